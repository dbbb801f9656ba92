// Reading JSON files with errors that name the file, line and column.
package dev.llamafit.io;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;

import com.fasterxml.jackson.core.JsonLocation;
import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.core.StreamReadConstraints;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.SerializationFeature;

/** The project's shared Jackson mapper and a file reader that turns every failure into an {@link InputException}. */
public final class Json {
    /** Files above this size are refused before reading (config and tokenizer files are far smaller). */
    public static final long MAX_FILE_BYTES = 512L << 20;

    public static final ObjectMapper MAPPER = new ObjectMapper()
            .enable(SerializationFeature.INDENT_OUTPUT);

    static {
        MAPPER.getFactory().setStreamReadConstraints(StreamReadConstraints.builder().maxStringLength(200_000_000).build());
    }

    private Json() {}

    /** Parses {@code file}; a missing, oversized or malformed file is an InputException naming it. */
    public static JsonNode read(Path file) {
        try {
            long size = Files.size(file);
            if (size > MAX_FILE_BYTES) throw InputException.at(file, "file of " + size + " bytes is too large for a JSON file here");
            return MAPPER.readTree(file.toFile());
        } catch (NoSuchFileException e) {
            throw InputException.at(file, "file not found");
        } catch (JsonProcessingException e) {
            JsonLocation loc = e.getLocation();
            String pos = loc == null ? null : "line " + loc.getLineNr() + ", column " + loc.getColumnNr();
            throw InputException.at(file, pos, "malformed JSON: " + e.getOriginalMessage());
        } catch (IOException e) {
            throw InputException.at(file, "cannot read: " + e.getMessage());
        }
    }

    /** Serialises a value (records, maps, lists) to indented JSON. */
    public static String write(Object value) {
        try {
            return MAPPER.writeValueAsString(value);
        } catch (JsonProcessingException e) {
            throw new IllegalStateException(e);
        }
    }

    /** One-line JSON. */
    public static String writeCompact(Object value) {
        try {
            return MAPPER.writer().without(SerializationFeature.INDENT_OUTPUT).writeValueAsString(value);
        } catch (JsonProcessingException e) {
            throw new IllegalStateException(e);
        }
    }
}
