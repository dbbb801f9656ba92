// Deterministic mutations of input files (bytes, JSON trees, JSON lines, safetensors headers) for the fuzz suite.
package dev.llamafit.fuzz;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.SplittableRandom;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.JsonNodeFactory;
import com.fasterxml.jackson.databind.node.ObjectNode;

/**
 * Every mutation draws only from the {@link SplittableRandom} it is given, so a case's seed alone reproduces its
 * input. Each method returns the mutated bytes and appends a short description of what it did to {@code log}, which
 * becomes the case's name in the report.
 */
final class Mutator {
    private static final ObjectMapper JSON = new ObjectMapper();
    private static final JsonNodeFactory F = JsonNodeFactory.instance;

    private final SplittableRandom r;
    private final StringBuilder log = new StringBuilder();

    Mutator(long seed) {
        r = new SplittableRandom(seed);
    }

    String description() { return log.toString(); }

    int nextInt(int bound) { return r.nextInt(bound); }

    void note(String s) {
        if (!log.isEmpty()) log.append("; ");
        log.append(s);
    }

    /** Values that break readers: wrong types, huge and negative numbers, overflow edges, deep and long values. */
    JsonNode hostileValue() {
        return switch (r.nextInt(16)) {
            case 0 -> F.textNode("tiny");
            case 1 -> F.textNode("");
            case 2 -> F.numberNode(-1);
            case 3 -> F.numberNode(0);
            case 4 -> F.numberNode(Integer.MAX_VALUE);
            case 5 -> F.numberNode(1_000_000_000);
            case 6 -> F.numberNode(Long.MIN_VALUE);
            case 7 -> F.numberNode(new java.math.BigInteger("123456789012345678901234567890"));
            case 8 -> F.numberNode(1e308);
            case 9 -> F.numberNode(0.5);
            case 10 -> F.nullNode();
            case 11 -> F.booleanNode(r.nextBoolean());
            case 12 -> F.arrayNode().add(1).add("x");
            case 13 -> F.objectNode().put("content", 7);
            case 14 -> F.textNode("x".repeat(1 + r.nextInt(5000)));
            default -> F.arrayNode();
        };
    }

    /**
     * A structured JSON mutation: picks a node anywhere in the tree and replaces it with a hostile value, removes it,
     * duplicates an array element, or renames a key. Several rounds compound.
     */
    byte[] json(byte[] in) {
        JsonNode root;
        try {
            root = JSON.readTree(in);
        } catch (java.io.IOException e) {
            return bytes(in);
        }
        if (root == null || !root.isContainerNode()) return bytes(in);
        int rounds = 1 + (r.nextInt(4) == 0 ? r.nextInt(3) : 0);
        for (int i = 0; i < rounds; i++) mutateTree(root);
        return root.toString().getBytes(StandardCharsets.UTF_8);
    }

    private void mutateTree(JsonNode root) {
        // Collect (container, key-or-index) slots; a breadth of the whole tree so deep fields are reachable too.
        List<Object[]> slots = new ArrayList<>();
        collect(root, "$", slots, 0);
        if (slots.isEmpty()) return;
        Object[] slot = slots.get(r.nextInt(slots.size()));
        JsonNode parent = (JsonNode) slot[0];
        String path = (String) slot[2];
        int op = r.nextInt(10);
        if (parent instanceof ObjectNode o) {
            String key = (String) slot[1];
            if (op == 0) {
                o.remove(key);
                note("removed " + path);
            } else if (op == 1) {
                JsonNode v = o.remove(key);
                o.set(key + "_x", v);
                note("renamed " + path);
            } else {
                JsonNode v = hostileValue();
                o.set(key, v);
                note(path + " = " + abbreviate(v.toString()));
            }
        } else if (parent instanceof ArrayNode a) {
            int idx = (Integer) slot[1];
            if (op == 0) {
                a.remove(idx);
                note("removed " + path);
            } else if (op == 1) {
                int copies = 1 + r.nextInt(50);
                for (int k = 0; k < copies; k++) a.insert(idx, a.get(idx).deepCopy());
                note("repeated " + path + " x" + copies);
            } else {
                JsonNode v = hostileValue();
                a.set(idx, v);
                note(path + " = " + abbreviate(v.toString()));
            }
        }
    }

    private static void collect(JsonNode node, String path, List<Object[]> out, int depth) {
        if (depth > 12) return;
        if (node instanceof ObjectNode o) {
            for (var e : o.properties()) {
                String p = path + "." + e.getKey();
                out.add(new Object[] {o, e.getKey(), p});
                collect(e.getValue(), p, out, depth + 1);
            }
        } else if (node instanceof ArrayNode a) {
            // Long arrays (vocabularies, merges): a sample of indices keeps the slot list small.
            int step = Math.max(1, a.size() / 64);
            for (int i = 0; i < a.size(); i += step) {
                String p = path + "[" + i + "]";
                out.add(new Object[] {a, i, p});
                collect(a.get(i), p, out, depth + 1);
            }
        }
    }

    /** JSON lines: a structured mutation of one record, or a byte-level one of the whole file. */
    byte[] jsonLines(byte[] in) {
        if (r.nextInt(3) == 0) return bytes(in);
        String[] lines = new String(in, StandardCharsets.UTF_8).split("\n", -1);
        int i = r.nextInt(Math.max(1, lines.length - 1));
        note("line " + (i + 1));
        lines[i] = new String(json(lines[i].getBytes(StandardCharsets.UTF_8)), StandardCharsets.UTF_8).replace("\n", " ");
        return String.join("\n", lines).getBytes(StandardCharsets.UTF_8);
    }

    /**
     * A safetensors file: mutates the header JSON structurally (and rewrites the length prefix to match), the length
     * prefix itself, header bytes, or data bytes; or applies a plain byte mutation to the whole file.
     */
    byte[] safetensors(byte[] in) {
        if (in.length < 8) return bytes(in);
        long n = ByteBuffer.wrap(in, 0, 8).order(ByteOrder.LITTLE_ENDIAN).getLong();
        if (n < 0 || n > in.length - 8) return bytes(in);
        byte[] header = Arrays.copyOfRange(in, 8, 8 + (int) n);
        byte[] data = Arrays.copyOfRange(in, 8 + (int) n, in.length);
        switch (r.nextInt(6)) {
            case 0, 1 -> {
                note("header json");
                return withHeader(json(header), data);
            }
            case 2 -> {
                long[] lengths = {0, 1, 7, n - 1, n + 1, n + r.nextInt(100), in.length, -1, Long.MAX_VALUE, 100_000_001L,
                        1L << 32 | n, r.nextLong()};
                long v = lengths[r.nextInt(lengths.length)];
                note("header length " + n + " -> " + v);
                byte[] out = in.clone();
                ByteBuffer.wrap(out, 0, 8).order(ByteOrder.LITTLE_ENDIAN).putLong(v);
                return out;
            }
            case 3 -> {
                note("header bytes");
                return withHeader(bytes(header), data);
            }
            case 4 -> {
                note("data bytes");
                byte[] out = in.clone();
                int flips = 1 + r.nextInt(64);
                for (int k = 0; k < flips && data.length > 0; k++) {
                    int at = 8 + (int) n + r.nextInt(data.length);
                    out[at] = r.nextBoolean() ? (byte) 0xFF : (byte) r.nextInt(256); // 0xFF bytes make NaN floats
                }
                note(flips + " data bytes set");
                return out;
            }
            default -> {
                return bytes(in);
            }
        }
    }

    private static byte[] withHeader(byte[] header, byte[] data) {
        ByteBuffer b = ByteBuffer.allocate(8 + header.length + data.length).order(ByteOrder.LITTLE_ENDIAN);
        return b.putLong(header.length).put(header).put(data).array();
    }

    /** Byte-level mutations: flips, truncation, garbage insertion, invalid UTF-8, deletion, repetition, huge digits. */
    byte[] bytes(byte[] in) {
        byte[] out = in;
        int rounds = 1 + r.nextInt(3);
        for (int k = 0; k < rounds; k++) out = byteRound(out);
        return out;
    }

    private byte[] byteRound(byte[] in) {
        int len = in.length;
        int at = len == 0 ? 0 : r.nextInt(len);
        switch (r.nextInt(8)) {
            case 0 -> {
                byte[] out = in.clone();
                int flips = 1 + r.nextInt(16);
                for (int i = 0; i < flips && len > 0; i++) out[r.nextInt(len)] ^= (byte) (1 << r.nextInt(8));
                note(flips + " bit flips");
                return out;
            }
            case 1 -> {
                // Near the start (headers) half the time.
                int cut = r.nextBoolean() ? Math.min(len, r.nextInt(64)) : at;
                note("truncated to " + cut);
                return Arrays.copyOf(in, cut);
            }
            case 2 -> {
                byte[] junk = new byte[1 + r.nextInt(256)];
                for (int i = 0; i < junk.length; i++) junk[i] = (byte) r.nextInt(256);
                note(junk.length + " random bytes inserted at " + at);
                return insert(in, at, junk);
            }
            case 3 -> {
                byte[][] invalid = {{(byte) 0xFF}, {(byte) 0xC3}, {(byte) 0xE2, (byte) 0x82}, {(byte) 0xED, (byte) 0xA0, (byte) 0x80},
                        {(byte) 0xF8, (byte) 0x88, (byte) 0x80, (byte) 0x80, (byte) 0x80}, {0}};
                byte[] bad = invalid[r.nextInt(invalid.length)];
                note("invalid UTF-8 " + Arrays.toString(bad) + " at " + at);
                return insert(in, at, bad);
            }
            case 4 -> {
                int del = Math.min(len - at, 1 + r.nextInt(512));
                note(del + " bytes deleted at " + at);
                byte[] out = new byte[len - del];
                System.arraycopy(in, 0, out, 0, at);
                System.arraycopy(in, at + del, out, at, len - at - del);
                return out;
            }
            case 5 -> {
                int span = Math.min(len - at, 1 + r.nextInt(64));
                int times = 1 + r.nextInt(r.nextBoolean() ? 20 : Math.max(1, 65_536 / span)); // at most ~64 KiB more: a case stays cheap
                byte[] chunk = Arrays.copyOfRange(in, at, at + span);
                byte[] rep = new byte[chunk.length * times];
                for (int i = 0; i < times; i++) System.arraycopy(chunk, 0, rep, i * chunk.length, chunk.length);
                note(span + " bytes at " + at + " repeated x" + times);
                return insert(in, at, rep);
            }
            case 6 -> {
                String[] numbers = {"99999999999999999999999", "-1", "2147483648", "1e400", "-0", "NaN", "1000000000"};
                String s = numbers[r.nextInt(numbers.length)];
                note("\"" + s + "\" inserted at " + at);
                return insert(in, at, s.getBytes(StandardCharsets.US_ASCII));
            }
            default -> {
                byte[] out = in.clone();
                byte[] interesting = {0, (byte) 0xFF, 0x7F, (byte) 0x80, '"', '{', ']', '\n', '\\'};
                int n = 1 + r.nextInt(8);
                for (int i = 0; i < n && len > 0; i++) out[r.nextInt(len)] = interesting[r.nextInt(interesting.length)];
                note(n + " bytes set to special values");
                return out;
            }
        }
    }

    private static byte[] insert(byte[] in, int at, byte[] what) {
        byte[] out = new byte[in.length + what.length];
        System.arraycopy(in, 0, out, 0, at);
        System.arraycopy(what, 0, out, at, what.length);
        System.arraycopy(in, at, out, at + what.length, in.length - at);
        return out;
    }

    private static String abbreviate(String s) {
        return s.length() <= 40 ? s : s.substring(0, 37) + "...";
    }
}
