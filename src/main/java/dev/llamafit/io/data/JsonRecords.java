// Reads the records of a JSON array or JSONL file, each with the line it starts on, for error messages.
package dev.llamafit.io.data;

import java.io.IOException;
import java.io.InputStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
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

    static List<Raw> read(Path file, long maxRecordBytes) {
        try {
            long size = Files.size(file);
            if (size > Json.MAX_FILE_BYTES)
                throw InputException.at(file, "file of " + size + " bytes is too large for a JSON dataset (limit "
                        + Json.MAX_FILE_BYTES + ")");
            return firstChar(file) == '[' ? readArray(file) : readLines(file, maxRecordBytes);
        } catch (NoSuchFileException e) {
            throw InputException.at(file, "file not found");
        } catch (IOException e) {
            throw InputException.at(file, "cannot read: " + e.getMessage());
        }
    }

    /**
     * The first non-whitespace character (skipping a UTF-8 BOM), or -1 for an empty file. Reads bytes, so that
     * invalid UTF-8 is reported where the records are read (with its line) rather than here.
     */
    static int firstChar(Path file) throws IOException {
        try (InputStream in = Files.newInputStream(file)) {
            byte[] b = in.readNBytes(1 << 16);
            String s = new String(b, StandardCharsets.UTF_8); // lenient: a bad byte is U+FFFD, which is no whitespace
            for (int i = 0; i < s.length(); i++) {
                char c = s.charAt(i);
                if (!Character.isWhitespace(c) && c != '\uFEFF') return c;
            }
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

    /**
     * JSONL, read as bytes so that a line is never held beyond {@code maxRecordBytes}: a longer line is counted to
     * its end and reported as a bad record without being kept. Line breaks are LF, CRLF or CR (as
     * BufferedReader.readLine), so line numbers are what an editor shows. Each line is checked as UTF-8 before it
     * is decoded, so an invalid byte is a bad record with its offsets rather than an unreadable file.
     */
    private static List<Raw> readLines(Path file, long maxRecordBytes) throws IOException {
        List<Raw> out = new ArrayList<>();
        int keep = (int) Math.min(maxRecordBytes, Integer.MAX_VALUE - 8);
        byte[] line = new byte[Math.min(keep, 1 << 12)];
        byte[] buf = new byte[1 << 16];
        long length = 0;      // bytes of the current line so far (also past the limit)
        long lineStart = 0;   // file offset of its first byte
        long offset = 0;      // file offset of buf[0]
        int lineNo = 0;
        boolean afterCr = false;
        try (InputStream in = Files.newInputStream(file)) {
            for (int n; (n = in.read(buf)) >= 0; offset += n) {
                for (int i = 0; i < n; i++) {
                    byte b = buf[i];
                    if (afterCr) {
                        afterCr = false;
                        if (b == '\n') {
                            lineStart = offset + i + 1;
                            continue;
                        }
                    }
                    if (b == '\n' || b == '\r') {
                        afterCr = b == '\r';
                        record(out, ++lineNo, line, length, lineStart, maxRecordBytes);
                        length = 0;
                        lineStart = offset + i + 1;
                        continue;
                    }
                    if (length < keep) {
                        if (length == line.length) line = Arrays.copyOf(line, (int) Math.min(keep, 2L * line.length));
                        line[(int) length] = b;
                    }
                    length++;
                }
            }
        }
        if (length > 0) record(out, ++lineNo, line, length, lineStart, maxRecordBytes);
        return out;
    }

    /** One JSONL line: a record, or a bad record (too long, invalid UTF-8, malformed JSON); blank lines add nothing. */
    private static void record(List<Raw> out, int lineNo, byte[] bytes, long length, long lineStart, long maxRecordBytes) {
        String pos = "line " + lineNo;
        // Reported when the record's turn comes, so reasons stay in file order.
        if (length > maxRecordBytes) {
            out.add(new Raw(null, pos, "record is " + length + " bytes, over the limit of " + maxRecordBytes
                    + " (raise with --max-record-bytes)"));
            return;
        }
        int n = (int) length, from = 0;
        if (lineNo == 1 && n >= 3 && (bytes[0] & 0xFF) == 0xEF && (bytes[1] & 0xFF) == 0xBB && (bytes[2] & 0xFF) == 0xBF) from = 3;
        int valid = Utf8.validUpTo(bytes, from, n);
        if (valid < n) {
            out.add(new Raw(null, pos, "invalid UTF-8 at byte offset " + valid + " of the line (offset " + (lineStart + valid)
                    + " of the file, counting from 0): " + Utf8.show(bytes, valid, n)));
            return;
        }
        String text = new String(bytes, from, n - from, StandardCharsets.UTF_8);
        if (text.isBlank()) return;
        try {
            out.add(new Raw(Json.MAPPER.readTree(text), pos));
        } catch (JsonProcessingException e) {
            JsonLocation loc = e.getLocation();
            out.add(new Raw(null, pos + (loc == null ? "" : ", column " + loc.getColumnNr()),
                    "malformed JSON: " + e.getOriginalMessage() + " (hint: JSONL needs one complete JSON object per line)"));
        }
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
