// One test per way a safetensors file can be malformed: each must give an InputException naming file and problem.
package dev.llamafit.io.safetensors;

import static dev.llamafit.io.safetensors.TestFiles.assertInputError;
import static dev.llamafit.io.safetensors.TestFiles.concat;
import static dev.llamafit.io.safetensors.TestFiles.f32;
import static dev.llamafit.io.safetensors.TestFiles.file;
import static dev.llamafit.io.safetensors.TestFiles.raw;
import static dev.llamafit.io.safetensors.TestFiles.u64;
import static org.junit.jupiter.api.Assertions.assertEquals;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import dev.llamafit.memory.Category;
import dev.llamafit.memory.MemoryLedger;

class SafetensorsMalformedTest {
    @TempDir
    Path dir;

    private final MemoryLedger ledger = new MemoryLedger();

    private static String entry(String name, String dtype, String shape, long begin, long end) {
        return "\"" + name + "\":{\"dtype\":\"" + dtype + "\",\"shape\":" + shape + ",\"data_offsets\":[" + begin + "," + end + "]}";
    }

    private void expectError(Path file, String... fragments) {
        assertInputError(file, () -> SafetensorsFile.open(file, ledger), fragments);
        assertEquals(0, ledger.totalCurrentBytes(), "nothing mapped or allocated through the ledger");
    }

    @Test
    void missingFile() {
        expectError(dir.resolve("absent.safetensors"), "file not found");
    }

    @Test
    void truncatedBelowEightBytes() throws IOException {
        expectError(raw(dir, "t.safetensors", new byte[] {1, 2, 3}), "byte 0", "truncated", "3 bytes");
    }

    @Test
    void headerLongerThanFile() throws IOException {
        expectError(raw(dir, "h.safetensors", concat(u64(500), "{}".getBytes(StandardCharsets.US_ASCII))),
                "header length 500", "past the end of the file");
    }

    /** 2^62 must be refused from the length alone: allocating it would kill the JVM. Also u64 values >= 2^63. */
    @Test
    void headerLengthAboveCapIsRefusedWithoutAllocating() throws IOException {
        expectError(raw(dir, "big.safetensors", concat(u64(1L << 62), new byte[16])),
                "header length 4611686018427387904", "exceeds the 100000000-byte limit");
        expectError(raw(dir, "huge.safetensors", concat(u64(-1L), new byte[16])),
                "header length 18446744073709551615", "exceeds");
    }

    @Test
    void malformedJsonGivesLineAndColumn() throws IOException {
        expectError(file(dir, "j.safetensors", "{\"a\":{\"dtype\":\"F32\",\n\"shape\":[1] \"data_offsets\":[0,4]}}", f32(1f)),
                "header line 2, column", "malformed JSON");
    }

    @Test
    void headerNotAnObject() throws IOException {
        expectError(file(dir, "arr.safetensors", "[1,2]", new byte[0]), "not a JSON object");
    }

    @Test
    void invalidUtf8InHeader() throws IOException {
        byte[] header = {'{', '"', (byte) 0xC3, (byte) 0x28, '"', ':', '1', '}'};
        expectError(raw(dir, "u.safetensors", concat(u64(header.length), header)), "malformed JSON", "UTF-8");
    }

    @Test
    void duplicateTensorName() throws IOException {
        String json = "{" + entry("a", "F32", "[1]", 0, 4) + "," + entry("a", "F32", "[1]", 4, 8) + "}";
        expectError(file(dir, "dup.safetensors", json, f32(1f, 2f)), "malformed JSON", "Duplicate field 'a'");
    }

    @Test
    void entryNotAnObjectOrMissingField() throws IOException {
        expectError(file(dir, "e1.safetensors", "{\"a\":[1,2]}", new byte[0]), "tensor a", "not an object");
        expectError(file(dir, "e2.safetensors", "{\"a\":{\"dtype\":\"F32\",\"data_offsets\":[0,4]}}", f32(1f)),
                "tensor a", "no \"shape\"");
        expectError(file(dir, "e3.safetensors", "{\"a\":{\"shape\":[1],\"data_offsets\":[0,4]}}", f32(1f)),
                "tensor a", "no \"dtype\"");
        expectError(file(dir, "e4.safetensors", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1]}}", f32(1f)),
                "tensor a", "no \"data_offsets\"");
    }

    @Test
    void metadataMustBeStrings() throws IOException {
        expectError(file(dir, "m.safetensors", "{\"__metadata__\":{\"epochs\":3}}", new byte[0]),
                "__metadata__.epochs", "must be strings");
    }

    @Test
    void spanOutOfRange() throws IOException {
        String json = "{" + entry("a", "F32", "[2]", 0, 8) + "," + entry("b", "F32", "[2]", 8, 16) + "}";
        expectError(file(dir, "r.safetensors", json, f32(1f, 2f, 3f)),
                "tensor b", "[8, 16] reach past the data section, which has 12 bytes");
    }

    @Test
    void beginAfterEnd() throws IOException {
        expectError(file(dir, "be.safetensors", "{" + entry("a", "F32", "[0]", 4, 0) + "}", f32(1f)),
                "tensor a", "begin 4 is after end 0");
    }

    @Test
    void overlappingSpans() throws IOException {
        String json = "{" + entry("a", "F32", "[2]", 0, 8) + "," + entry("b", "F32", "[2]", 4, 12) + "}";
        expectError(file(dir, "o.safetensors", json, f32(1f, 2f, 3f)), "tensor b", "overlap tensor a");
    }

    @Test
    void holeBetweenSpans() throws IOException {
        String json = "{" + entry("a", "F32", "[1]", 0, 4) + "," + entry("b", "F32", "[1]", 8, 12) + "}";
        expectError(file(dir, "hole.safetensors", json, f32(1f, 2f, 3f)), "tensor b", "[4, 8) belong to no tensor", "InvalidOffset");
    }

    @Test
    void trailingBytes() throws IOException {
        expectError(file(dir, "tr.safetensors", "{" + entry("a", "F32", "[1]", 0, 4) + "}", f32(1f, 2f)),
                "4 trailing bytes", "MetadataIncompleteBuffer");
    }

    @Test
    void unknownDtype() throws IOException {
        expectError(file(dir, "ud.safetensors", "{" + entry("w", "F33", "[1]", 0, 4) + "}", f32(1f)),
                "tensor w", "unknown dtype \"F33\"");
    }

    @Test
    void unsupportedDtype() throws IOException {
        for (String dtype : new String[] {"I32", "F64", "BOOL", "F8_E4M3", "I64"}) {
            expectError(file(dir, dtype + ".safetensors", "{" + entry("w", dtype, "[1]", 0, 4) + "}", f32(1f)),
                    "unsupported dtype " + dtype + " for tensor w (llamafit reads F32, F16, BF16, U8)");
        }
    }

    @Test
    void shapeSizeMismatch() throws IOException {
        expectError(file(dir, "s.safetensors", "{" + entry("w", "F16", "[3]", 0, 8) + "}", f32(1f, 2f)),
                "tensor w", "shape [3] of F16 needs 6 bytes, but data_offsets [0, 8] span 8");
    }

    @Test
    void negativeShapeDim() throws IOException {
        expectError(file(dir, "n.safetensors", "{" + entry("w", "F32", "[-1,4]", 0, 4) + "}", f32(1f)),
                "tensor w", "negative dimension -1");
    }

    @Test
    void overflowingShape() throws IOException {
        expectError(file(dir, "ov.safetensors", "{" + entry("w", "F32", "[4294967296,4294967296]", 0, 4) + "}", f32(1f)),
                "tensor w", "overflows");
        expectError(file(dir, "ov2.safetensors", "{" + entry("w", "F32", "[99999999999999999999]", 0, 4) + "}", f32(1f)),
                "tensor w", "too large");
    }

    @Test
    void nothingLeftMappedAfterAnyError() throws IOException {
        expectError(file(dir, "z.safetensors", "{" + entry("w", "F32", "[2]", 0, 4) + "}", f32(1f)), "tensor w");
        assertEquals(0, ledger.currentBytes(Category.WEIGHTS));
    }
}
