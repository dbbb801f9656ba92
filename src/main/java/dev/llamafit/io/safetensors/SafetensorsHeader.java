// Parses and validates a safetensors JSON header (huggingface/safetensors format) before any tensor byte is touched.
package dev.llamafit.io.safetensors;

import java.io.IOException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collections;
import java.util.Comparator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.Set;

import com.fasterxml.jackson.core.JsonLocation;
import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.core.StreamReadFeature;
import com.fasterxml.jackson.databind.DeserializationFeature;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.json.JsonMapper;

import dev.llamafit.io.InputException;
import dev.llamafit.tensor.DType;
import dev.llamafit.tensor.Shape;

/**
 * The validated content of a safetensors header: tensor entries in file (data section) order and the optional
 * {@code __metadata__} string map.
 *
 * <p>Format (https://github.com/huggingface/safetensors, README "Format"): an 8-byte little-endian u64 N, N bytes
 * of UTF-8 JSON {@code {"NAME": {"dtype": "F32", "shape": [..], "data_offsets": [BEGIN, END]}, ...,
 * "__metadata__": {"KEY": "VALUE"}}}, then the data section; offsets are relative to the data section's start.
 * Every check here mirrors one the reference Rust library makes (it rejects non-contiguous data with
 * {@code InvalidOffset} and trailing bytes with {@code MetadataIncompleteBuffer}), so a file accepted here is one
 * the reference library accepts, and a file it rejects is rejected here with a message saying why.
 *
 * @param entries  tensors sorted by their data offsets (file order), header order breaking ties
 * @param metadata the {@code __metadata__} map, in header order; empty if absent
 */
record SafetensorsHeader(List<Entry> entries, Map<String, String> metadata) {

    /** The reference library's cap on N (its {@code MAX_HEADER_SIZE}); larger headers are refused unread. */
    static final long MAX_HEADER_BYTES = 100_000_000L;

    /** Bytes of the length prefix before the JSON header. */
    static final int PREFIX_BYTES = 8;

    static final String METADATA_KEY = "__metadata__";

    /**
     * Dtype names the safetensors format defines that llamafit does not read: recognised so the error can say
     * "unsupported" rather than "unknown" (the list follows the reference library's {@code Dtype} enum).
     */
    private static final Set<String> KNOWN_UNSUPPORTED = Set.of(
            "BOOL", "U8", "I8", "I16", "U16", "I32", "U32", "I64", "U64", "F64", "C64",
            "F8_E4M3", "F8_E5M2", "F8_E8M0", "F6_E2M3", "F6_E3M2", "F4");

    /** Dtypes llamafit reads from safetensors files. */
    private static final List<DType> READABLE = List.of(DType.F32, DType.F16, DType.BF16, DType.U8);

    /**
     * Strict JSON: duplicate keys are an error (the last one would silently win otherwise, hiding a tensor), and
     * nothing but whitespace may follow the object (writers pad the header with spaces to 8 bytes).
     */
    private static final JsonMapper JSON = JsonMapper.builder()
            .enable(StreamReadFeature.STRICT_DUPLICATE_DETECTION)
            .enable(DeserializationFeature.FAIL_ON_TRAILING_TOKENS)
            .build();

    SafetensorsHeader {
        entries = List.copyOf(entries);
        metadata = Collections.unmodifiableMap(new LinkedHashMap<>(metadata));
    }

    /**
     * One tensor's header entry, validated.
     *
     * @param beginByte offset of the first byte, relative to the data section
     * @param endByte   offset one past the last byte, relative to the data section
     */
    record Entry(String name, DType dtype, Shape shape, long beginByte, long endByte) {
        long bytes() { return endByte - beginByte; }
    }

    /**
     * Parses {@code json} (the N header bytes of {@code file}) and checks every entry against a data section of
     * {@code dataBytes} bytes starting at file byte {@code dataStart}.
     */
    static SafetensorsHeader parse(Path file, byte[] json, long dataStart, long dataBytes) {
        JsonNode root = readJson(file, json);
        if (!root.isObject()) {
            throw InputException.at(file, "byte 8", "safetensors header is not a JSON object (found "
                    + root.getNodeType().toString().toLowerCase() + ")");
        }
        Map<String, String> metadata = new LinkedHashMap<>();
        List<Entry> entries = new ArrayList<>();
        for (Map.Entry<String, JsonNode> field : root.properties()) {
            String name = field.getKey();
            if (name.equals(METADATA_KEY)) {
                metadata = readMetadata(file, field.getValue());
            } else {
                entries.add(readEntry(file, name, field.getValue(), dataStart, dataBytes));
            }
        }
        List<Entry> ordered = new ArrayList<>(entries);
        // Stable sort: zero-byte tensors sharing an offset keep their header order.
        ordered.sort(Comparator.comparingLong(Entry::beginByte).thenComparingLong(Entry::endByte));
        checkContiguous(file, ordered, dataStart, dataBytes);
        return new SafetensorsHeader(ordered, metadata);
    }

    private static JsonNode readJson(Path file, byte[] json) {
        try {
            JsonNode root = JSON.readTree(json);
            if (root == null || root.isMissingNode()) {
                throw InputException.at(file, "byte 8", "safetensors header is empty (expected a JSON object)");
            }
            return root;
        } catch (JsonProcessingException e) {
            JsonLocation at = e.getLocation();
            String where = at == null ? "header"
                    : "header line " + at.getLineNr() + ", column " + at.getColumnNr()
                    + (at.getByteOffset() >= 0 ? " (file byte " + (PREFIX_BYTES + at.getByteOffset()) + ")" : "");
            throw InputException.at(file, where, "malformed JSON in safetensors header: " + e.getOriginalMessage());
        } catch (IOException e) {
            // Only JsonProcessingException can come from an in-memory byte array; keep the compiler honest.
            throw InputException.at(file, "header", "unreadable safetensors header: " + e.getMessage());
        }
    }

    private static Map<String, String> readMetadata(Path file, JsonNode node) {
        if (!node.isObject()) {
            throw InputException.at(file, METADATA_KEY, "expected an object of string values, found "
                    + node.getNodeType().toString().toLowerCase());
        }
        Map<String, String> metadata = new LinkedHashMap<>();
        for (Map.Entry<String, JsonNode> kv : node.properties()) {
            if (!kv.getValue().isTextual()) {
                throw InputException.at(file, METADATA_KEY + "." + kv.getKey(),
                        "metadata values must be strings (the format allows only a string-to-string map), found "
                                + kv.getValue().getNodeType().toString().toLowerCase());
            }
            metadata.put(kv.getKey(), kv.getValue().textValue());
        }
        return metadata;
    }

    private static Entry readEntry(Path file, String name, JsonNode node, long dataStart, long dataBytes) {
        String where = "tensor " + name;
        if (!node.isObject()) {
            throw InputException.at(file, where, "header entry is not an object (found "
                    + node.getNodeType().toString().toLowerCase() + "); expected {\"dtype\", \"shape\", \"data_offsets\"}");
        }
        for (String key : List.of("dtype", "shape", "data_offsets")) {
            if (!node.has(key)) throw InputException.at(file, where, "header entry has no \"" + key + "\"");
        }
        DType dtype = readDType(file, where, node.get("dtype"));
        long[] dims = readLongs(file, where, "shape", node.get("shape"));
        long[] offsets = readLongs(file, where, "data_offsets", node.get("data_offsets"));
        if (offsets.length != 2) {
            throw InputException.at(file, where, "data_offsets must be [begin, end], found " + offsets.length + " numbers");
        }
        long begin = offsets[0];
        long end = offsets[1];
        if (begin > end) {
            throw InputException.at(file, where + ", byte " + (dataStart + begin),
                    "data_offsets begin " + begin + " is after end " + end);
        }
        if (end > dataBytes) {
            throw InputException.at(file, where + ", byte " + (dataStart + begin), "data_offsets [" + begin + ", " + end
                    + "] reach past the data section, which has " + dataBytes + " bytes (file truncated?)");
        }
        long elements = 1;
        long needBytes;
        try {
            for (long d : dims) elements = Math.multiplyExact(elements, d);
            needBytes = dtype.bytesFor(elements);
        } catch (ArithmeticException e) {
            throw InputException.at(file, where, "shape " + Arrays.toString(dims) + " overflows a 64-bit size");
        }
        if (needBytes != end - begin) {
            throw InputException.at(file, where + ", byte " + (dataStart + begin), "shape " + Arrays.toString(dims)
                    + " of " + dtype.safetensorsName() + " needs " + needBytes + " bytes, but data_offsets ["
                    + begin + ", " + end + "] span " + (end - begin));
        }
        return new Entry(name, dtype, Shape.of(dims), begin, end);
    }

    private static DType readDType(Path file, String where, JsonNode node) {
        if (!node.isTextual()) {
            throw InputException.at(file, where, "dtype must be a string, found " + node.getNodeType().toString().toLowerCase());
        }
        String name = node.textValue();
        Optional<DType> known = DType.fromSafetensors(name).filter(READABLE::contains);
        if (known.isPresent()) return known.get();
        String tensor = where.substring("tensor ".length());
        if (KNOWN_UNSUPPORTED.contains(name)) {
            throw InputException.at(file, where, "unsupported dtype " + name + " for tensor " + tensor
                    + " (llamafit reads F32, F16, BF16, U8)");
        }
        throw InputException.at(file, where, "unknown dtype \"" + name + "\" for tensor " + tensor
                + " (safetensors dtypes llamafit reads: F32, F16, BF16, U8)");
    }

    /** A JSON array of non-negative integers that fit in a long (the reference parses them as usize). */
    private static long[] readLongs(Path file, String where, String key, JsonNode node) {
        if (!node.isArray()) {
            throw InputException.at(file, where, key + " must be an array of integers, found "
                    + node.getNodeType().toString().toLowerCase());
        }
        long[] out = new long[node.size()];
        for (int i = 0; i < out.length; i++) {
            JsonNode n = node.get(i);
            if (!n.isIntegralNumber()) {
                throw InputException.at(file, where, key + "[" + i + "] must be an integer, found " + n);
            }
            if (!n.canConvertToLong()) {
                throw InputException.at(file, where, key + "[" + i + "] = " + n + " is too large (overflows 64 bits)");
            }
            long v = n.longValue();
            if (v < 0) {
                String what = key.equals("shape") ? "negative dimension " : "negative offset ";
                throw InputException.at(file, where, what + v + " in " + key + " " + node);
            }
            out[i] = v;
        }
        return out;
    }

    /**
     * The data section must be covered exactly: each tensor starts where the previous one ended, and the last one
     * ends at the end of the file. The reference library enforces the same (InvalidOffset for holes and overlaps,
     * MetadataIncompleteBuffer for uncovered trailing bytes), so files it writes always pass.
     */
    private static void checkContiguous(Path file, List<Entry> ordered, long dataStart, long dataBytes) {
        long expected = 0;
        Entry previous = null;
        for (Entry e : ordered) {
            String where = "tensor " + e.name() + ", byte " + (dataStart + e.beginByte());
            if (e.beginByte() < expected) {
                throw InputException.at(file, where, "data_offsets [" + e.beginByte() + ", " + e.endByte()
                        + "] overlap tensor " + previous.name() + " [" + previous.beginByte() + ", " + previous.endByte() + "]");
            }
            if (e.beginByte() > expected) {
                throw InputException.at(file, where, "data section bytes [" + expected + ", " + e.beginByte()
                        + ") belong to no tensor; safetensors data must be contiguous (the reference library rejects"
                        + " this as InvalidOffset)");
            }
            expected = e.endByte();
            previous = e;
        }
        if (expected != dataBytes) {
            throw InputException.at(file, "byte " + (dataStart + expected), (dataBytes - expected)
                    + " trailing bytes after the last tensor; the tensors cover " + expected + " of the data section's "
                    + dataBytes + " bytes (the reference library rejects this as MetadataIncompleteBuffer)");
        }
    }
}
