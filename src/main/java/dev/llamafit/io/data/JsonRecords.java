// Reads the records of a JSON array or JSONL file, each with the line it starts on, for error messages.
package dev.llamafit.io.data;

import java.io.BufferedReader;
import java.io.IOException;
import java.io.Reader;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;

import com.fasterxml.jackson.core.JsonLocation;
import com.fasterxml.jackson.core.JsonParser;
import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.core.JsonToken;
import com.fasterxml.jackson.databind.JsonNode;

import dev.llamafit.io.InputException;
import dev.llamafit.io.Json;

/**
 * The records of a dataset file: a JSON array of objects, or JSONL (one object per non-blank line). A file whose
 * first non-blank character is {@code [} is an array, else JSONL. A JSON syntax error inside an array stops
 * loading even with skipBadRecords, because the parser cannot find the next record after it; in JSONL the bad
 * line is skipped.
 */
final class JsonRecords {
    private JsonRecords() {}

    /**
     * A record and where it is: "line 12" (JSONL) or "record 7 (line 40)" (array, record index from 0).
     */
    record Raw(JsonNode node, String position, String syntaxError) {
        Raw(JsonNode node, String position) {
            this(node, position, null);
        }
    }

    /** Collects bad records: throws at the first unless skipping, else counts them and keeps the first reasons. */
    static final class Problems {
        final Path file;
        final boolean skip;
        int count;
        final List<String> reasons = new ArrayList<>();

        Problems(Path file, boolean skip) {
            this.file = file;
            this.skip = skip;
        }

        void report(String position, String what) {
            InputException e = InputException.at(file, position, what);
            if (!skip) throw e;
            count++;
            if (reasons.size() < LoadedDataset.MAX_REASONS) reasons.add(e.getMessage());
        }
    }

    static List<Raw> read(Path file) {
        try {
            long size = Files.size(file);
            if (size > Json.MAX_FILE_BYTES)
                throw InputException.at(file, "file of " + size + " bytes is too large for a JSON dataset (limit "
                        + Json.MAX_FILE_BYTES + ")");
            return firstChar(file) == '[' ? readArray(file) : readLines(file);
        } catch (NoSuchFileException e) {
            throw InputException.at(file, "file not found");
        } catch (IOException e) {
            throw InputException.at(file, "cannot read: " + e.getMessage());
        }
    }

    /** The first non-whitespace character (skipping a UTF-8 BOM), or -1 for an empty file. */
    static int firstChar(Path file) throws IOException {
        try (Reader r = Files.newBufferedReader(file, StandardCharsets.UTF_8)) {
            int c;
            while ((c = r.read()) >= 0) if (!Character.isWhitespace(c) && c != '\uFEFF') return c;
            return -1;
        }
    }

    private static List<Raw> readArray(Path file) throws IOException {
        List<Raw> out = new ArrayList<>();
        try (JsonParser p = Json.MAPPER.createParser(file.toFile())) {
            p.nextToken(); // START_ARRAY, checked by the caller's first-character test
            int index = 0;
            for (JsonToken t = p.nextToken(); t != JsonToken.END_ARRAY; t = p.nextToken(), index++) {
                if (t == null) throw InputException.at(file, "line " + p.currentLocation().getLineNr(), "unexpected end of file inside the array");
                int line = p.currentTokenLocation().getLineNr();
                JsonNode node = p.readValueAsTree();
                out.add(new Raw(node, "record " + index + " (line " + line + ")"));
            }
            if (p.nextToken() != null)
                throw InputException.at(file, "line " + p.currentTokenLocation().getLineNr(), "unexpected content after the JSON array");
        } catch (JsonProcessingException e) {
            throw syntax(file, e, 0);
        }
        return out;
    }

    private static List<Raw> readLines(Path file) throws IOException {
        List<Raw> out = new ArrayList<>();
        try (BufferedReader r = Files.newBufferedReader(file, StandardCharsets.UTF_8)) {
            String line;
            int lineNo = 0;
            while ((line = r.readLine()) != null) {
                lineNo++;
                if (lineNo == 1 && line.startsWith("\uFEFF")) line = line.substring(1);
                if (line.isBlank()) continue;
                try {
                    out.add(new Raw(Json.MAPPER.readTree(line), "line " + lineNo));
                } catch (JsonProcessingException e) {
                    JsonLocation loc = e.getLocation();
                    // Reported when the record's turn comes, so reasons stay in file order.
                    out.add(new Raw(null, "line " + lineNo + (loc == null ? "" : ", column " + loc.getColumnNr()),
                            "malformed JSON: " + e.getOriginalMessage() + " (hint: JSONL needs one complete JSON object per line)"));
                }
            }
        }
        return out;
    }

    private static InputException syntax(Path file, JsonProcessingException e, int lineOffset) {
        JsonLocation loc = e.getLocation();
        String pos = loc == null ? null : "line " + (loc.getLineNr() + lineOffset) + ", column " + loc.getColumnNr();
        return InputException.at(file, pos, "malformed JSON: " + e.getOriginalMessage());
    }

    /** The text field {@code name} of a record; null when absent; an error when present but not a string. */
    static String text(JsonNode record, String name, Raw raw, Problems problems) {
        JsonNode v = record.get(name);
        if (v == null || v.isNull()) return null;
        if (!v.isTextual()) {
            problems.report(raw.position(), "'" + name + "' must be a string, found " + v.getNodeType().name().toLowerCase(java.util.Locale.ROOT));
            throw Skip.INSTANCE;
        }
        return v.asText();
    }

    /** Thrown (without a stack trace) to abandon a record already reported to {@link Problems}. */
    static final class Skip extends RuntimeException {
        private static final long serialVersionUID = 1L;
        static final Skip INSTANCE = new Skip();

        private Skip() {
            super("record skipped", null, false, false);
        }
    }
}
