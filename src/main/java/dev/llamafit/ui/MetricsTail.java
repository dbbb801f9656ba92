// Reads a metrics.jsonl that a run may be appending to, from a byte offset on: new records, and malformed lines as such.
package dev.llamafit.ui;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.ArrayList;
import java.util.Iterator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

import com.fasterxml.jackson.databind.JsonNode;

import dev.llamafit.io.Json;

/**
 * The page polls with the offset and line number it has read to; only whole lines (ending in a newline) are consumed,
 * so a line the trainer is half way through writing is read on the next poll. A file shorter than the offset was
 * rewritten (a resume drops the lines after its checkpoint): reading starts over and says so ({@code reset}). A line
 * that is not a JSON object with a numeric {@code step} is reported with its number and the parser's words; it never
 * fails the request.
 */
final class MetricsTail {
    /** Most bytes one poll reads; the rest comes with the next. */
    static final int MAX_BYTES = 4 << 20;
    /** Most characters of a malformed line that are sent back. */
    static final int SHOWN_CHARS = 200;

    private MetricsTail() {}

    /** Records from byte {@code from} (line {@code line}, 1-based, of the next line) of {@code file}: entries, malformed, next, next_line, reset. */
    static Map<String, Object> read(Path file, long from, long line) throws IOException {
        List<Map<String, Object>> entries = new ArrayList<>(), malformed = new ArrayList<>();
        Map<String, Object> out = new LinkedHashMap<>();
        long size;
        byte[] bytes;
        boolean reset = false;
        try (FileChannel ch = FileChannel.open(file, StandardOpenOption.READ)) {
            size = ch.size();
            if (from > size || from < 0) {
                from = 0;
                line = 1;
                reset = true;
            }
            ByteBuffer buf = ByteBuffer.allocate((int) Math.min(MAX_BYTES, size - from));
            while (buf.hasRemaining() && ch.read(buf, from + buf.position()) > 0) { /* read on */ }
            bytes = java.util.Arrays.copyOf(buf.array(), buf.position());
        } catch (NoSuchFileException e) {
            bytes = new byte[0];
        }
        int start = 0;
        for (int i = 0; i < bytes.length; i++) {
            if (bytes[i] != '\n') continue;
            String text = new String(bytes, start, i - start, StandardCharsets.UTF_8);
            if (!text.isBlank()) parse(text, line, entries, malformed);
            line++;
            start = i + 1;
        }
        out.put("entries", entries);
        out.put("malformed", malformed);
        out.put("next", from + start);
        out.put("next_line", line);
        out.put("reset", reset);
        return out;
    }

    private static void parse(String text, long line, List<Map<String, Object>> entries, List<Map<String, Object>> malformed) {
        String problem;
        try {
            JsonNode n = Json.MAPPER.readTree(text);
            if (n != null && n.isObject() && n.path("step").isNumber()) {
                Map<String, Object> e = new LinkedHashMap<>();
                for (Iterator<Map.Entry<String, JsonNode>> it = n.fields(); it.hasNext(); ) {
                    Map.Entry<String, JsonNode> f = it.next();
                    JsonNode v = f.getValue();
                    // Jackson writes a non-finite double as the string "NaN"/"Infinity"; the charts skip those points.
                    e.put(f.getKey(), v.isNumber() ? (Object) v.numberValue() : v.isTextual() ? v.asText() : v);
                }
                e.put("line", line);
                entries.add(e);
                return;
            }
            problem = "not a metrics record (a JSON object with a numeric \"step\")";
        } catch (IOException e) {
            problem = e.getMessage().lines().findFirst().orElse("not JSON");
        }
        Map<String, Object> m = new LinkedHashMap<>();
        m.put("line", line);
        m.put("error", problem);
        m.put("text", text.length() > SHOWN_CHARS ? text.substring(0, SHOWN_CHARS) + "…" : text);
        malformed.add(m);
    }

    /** The step of the last step record in the file's last 64 KiB, or -1 (none, or no file). */
    static long lastStep(Path file) throws IOException {
        if (!Files.isRegularFile(file)) return -1;
        long size = Files.size(file);
        long from = Math.max(0, size - 65536);
        @SuppressWarnings("unchecked")
        List<Map<String, Object>> entries = (List<Map<String, Object>>) read(file, from, 1).get("entries");
        for (int i = entries.size() - 1; i >= 0; i--)
            if (!entries.get(i).containsKey("event")) return ((Number) entries.get(i).get("step")).longValue();
        return -1;
    }
}
