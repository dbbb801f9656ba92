// Round trips through SafetensorsWriter and SafetensorsFile, and checks both against hand-assembled bytes.
package dev.llamafit.io.safetensors;

import static dev.llamafit.io.safetensors.TestFiles.concat;
import static dev.llamafit.io.safetensors.TestFiles.f32;
import static dev.llamafit.io.safetensors.TestFiles.u16;
import static dev.llamafit.io.safetensors.TestFiles.u64;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.lang.foreign.MemorySegment;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.SequencedMap;
import java.util.stream.Stream;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import dev.llamafit.memory.Category;
import dev.llamafit.memory.MemoryLedger;
import dev.llamafit.tensor.DType;
import dev.llamafit.tensor.Shape;
import dev.llamafit.tensor.Tensor;

class SafetensorsRoundTripTest {
    @TempDir
    Path dir;

    private final MemoryLedger ledger = new MemoryLedger();

    /** F32 from the ledger, F16 from a byte[] heap segment, BF16 from a short[] heap segment (the staging path). */
    private List<Tensor> sampleTensors() {
        Tensor f32 = Tensor.allocate(ledger, Category.WORKSPACE, "z.f32", DType.F32, Shape.of(2, 3));
        for (int i = 0; i < 6; i++) f32.setFloat(i, i * 0.5f - 1f);
        Tensor f16 = new Tensor("a.f16", DType.F16, Shape.of(3),
                MemorySegment.ofArray(u16(0x3C00, 0xC000, 0x3800))); // 1.0, -2.0, 0.5
        Tensor empty = new Tensor("m.empty", DType.F32, Shape.of(0, 4), MemorySegment.ofArray(new byte[0]));
        Tensor bf16 = new Tensor("b.bf16", DType.BF16, Shape.of(2, 2),
                MemorySegment.ofArray(new short[] {(short) 0x3F80, (short) 0xC040, (short) 0x4100, (short) 0xBE80})); // 1, -3, 8, -0.25
        return List.of(f32, f16, empty, bf16);
    }

    @Test
    void roundTripsAllFloatDtypesMetadataAndFileOrder() throws IOException {
        Path file = dir.resolve("model.safetensors");
        Map<String, String> metadata = new LinkedHashMap<>();
        metadata.put("format", "pt");
        metadata.put("note", "ünïcode ok");
        SafetensorsWriter.write(file, sampleTensors(), metadata);

        try (SafetensorsFile st = SafetensorsFile.open(file, ledger)) {
            assertEquals(List.of("z.f32", "a.f16", "m.empty", "b.bf16"), List.copyOf(st.names()), "file order, not sorted");
            assertEquals(metadata, st.metadata());
            Tensor f32 = st.find("z.f32").orElseThrow();
            assertEquals(DType.F32, f32.dtype());
            assertEquals(Shape.of(2, 3), f32.shape());
            assertArrayEquals(new float[] {-1f, -0.5f, 0f, 0.5f, 1f, 1.5f}, f32.toFloatArray());
            Tensor f16 = st.find("a.f16").orElseThrow();
            assertEquals(DType.F16, f16.dtype());
            assertArrayEquals(new float[] {1f, -2f, 0.5f}, f16.toFloatArray());
            Tensor bf16 = st.find("b.bf16").orElseThrow();
            assertEquals(DType.BF16, bf16.dtype());
            assertEquals(Shape.of(2, 2), bf16.shape());
            assertArrayEquals(new float[] {1f, -3f, 8f, -0.25f}, bf16.toFloatArray());
            assertEquals(0, st.find("m.empty").orElseThrow().elements());
            assertTrue(st.find("missing").isEmpty());
            assertEquals(24 + 6 + 8, st.dataBytes());
            assertEquals(st.dataBytes(), ledger.mappedBytes(Category.WEIGHTS), "one WEIGHTS mapping of the data section");
        }
        assertEquals(0, ledger.currentBytes(Category.WEIGHTS), "close unmaps");
    }

    @Test
    void headerIsPaddedToEightBytesAndDataIsContiguous() throws IOException {
        Path file = dir.resolve("x.safetensors");
        SafetensorsWriter.write(file, sampleTensors(), Map.of("format", "pt"));
        byte[] bytes = Files.readAllBytes(file);
        long n = java.nio.ByteBuffer.wrap(bytes, 0, 8).order(java.nio.ByteOrder.LITTLE_ENDIAN).getLong();
        assertEquals(0, n % 8, "header length is a multiple of 8");
        String header = new String(bytes, 8, (int) n, StandardCharsets.UTF_8);
        assertTrue(header.startsWith("{\"__metadata__\":{\"format\":\"pt\"}"), header);
        assertTrue(header.stripTrailing().endsWith("}"), "only spaces after the JSON object");
        assertEquals(8 + n + 24 + 6 + 0 + 8, bytes.length, "data section holds exactly the tensors");
    }

    /**
     * A file assembled byte by byte from the format description (no PyTorch needed): reading it gives the values
     * encoded, and the writer reproduces it exactly (padding with spaces to a multiple of 8, as the reference does).
     */
    @Test
    void readsAndReproducesHandAssembledFile() throws IOException {
        String json = "{\"__metadata__\":{\"format\":\"pt\"},"
                + "\"b\":{\"dtype\":\"BF16\",\"shape\":[2],\"data_offsets\":[0,4]},"
                + "\"a\":{\"dtype\":\"F32\",\"shape\":[1,2],\"data_offsets\":[4,12]}}";
        int padding = (8 - json.length() % 8) % 8;
        byte[] header = (json + " ".repeat(padding)).getBytes(StandardCharsets.US_ASCII);
        byte[] data = concat(u16(0x3F80, 0xC000), f32(0.5f, 3f)); // bf16 1, -2; f32 0.5, 3
        byte[] expected = concat(u64(header.length), header, data);
        Path handMade = TestFiles.raw(dir, "hand.safetensors", expected);

        try (SafetensorsFile st = SafetensorsFile.open(handMade, ledger)) {
            assertEquals(List.of("b", "a"), List.copyOf(st.names()));
            assertEquals(Map.of("format", "pt"), st.metadata());
            assertArrayEquals(new float[] {1f, -2f}, st.find("b").orElseThrow().toFloatArray());
            assertEquals(Shape.of(1, 2), st.find("a").orElseThrow().shape());
            assertArrayEquals(new float[] {0.5f, 3f}, st.find("a").orElseThrow().toFloatArray());

            Path rewritten = dir.resolve("rewritten.safetensors");
            SequencedMap<String, Tensor> tensors = new LinkedHashMap<>();
            for (String name : st.names()) tensors.put(name, st.find(name).orElseThrow());
            SafetensorsWriter.write(rewritten, tensors, st.metadata());
            assertArrayEquals(expected, Files.readAllBytes(rewritten), "writer output is byte-identical");
        }
    }

    @Test
    void writesI8ButReaderRefusesIt() throws IOException {
        Path file = dir.resolve("i8.safetensors");
        Tensor q = new Tensor("q", DType.I8, Shape.of(4), MemorySegment.ofArray(new byte[] {1, -2, 3, -4}));
        SafetensorsWriter.write(file, List.of(q), null);
        byte[] bytes = Files.readAllBytes(file);
        assertArrayEquals(new byte[] {1, -2, 3, -4}, java.util.Arrays.copyOfRange(bytes, bytes.length - 4, bytes.length));
        TestFiles.assertInputError(file, () -> SafetensorsFile.open(file, ledger),
                "unsupported dtype I8 for tensor q (llamafit reads F32, F16, BF16, U8)");
    }

    @Test
    void streamsTensorsLargerThanOneChunk() throws IOException {
        long elements = 3L << 20; // 12 MiB of F32: more than one 8 MiB write chunk
        try (Tensor big = Tensor.allocate(ledger, Category.WORKSPACE, "big", DType.F32, Shape.of(elements))) {
            for (long i = 0; i < elements; i += 4099) big.setFloat(i, i);
            big.setFloat(elements - 1, -7f);
            Path file = dir.resolve("big.safetensors");
            SafetensorsWriter.write(file, List.of(big), null);
            try (SafetensorsFile st = SafetensorsFile.open(file, ledger)) {
                Tensor back = st.find("big").orElseThrow();
                for (long i = 0; i < elements; i += 4099) assertEquals((float) i, back.getFloat(i));
                assertEquals(-7f, back.getFloat(elements - 1));
                assertTrue(st.metadata().isEmpty());
            }
        }
    }

    /** Overwriting is a rename: no temporary file stays behind, and a reader of the old file is undisturbed. */
    @Test
    void overwriteIsAtomicAndLeavesNoTemporaryFiles() throws IOException {
        Path file = dir.resolve("model.safetensors");
        Tensor one = new Tensor("w", DType.F32, Shape.of(2), MemorySegment.ofArray(f32(1f, 2f)));
        SafetensorsWriter.write(file, List.of(one), null);
        try (SafetensorsFile old = SafetensorsFile.open(file, ledger)) {
            Tensor two = new Tensor("w", DType.F32, Shape.of(3), MemorySegment.ofArray(f32(3f, 4f, 5f)));
            SafetensorsWriter.write(file, List.of(two), Map.of("v", "2"));
            assertArrayEquals(new float[] {1f, 2f}, old.find("w").orElseThrow().toFloatArray(), "old mapping intact");
            try (SafetensorsFile fresh = SafetensorsFile.open(file, ledger)) {
                assertArrayEquals(new float[] {3f, 4f, 5f}, fresh.find("w").orElseThrow().toFloatArray());
            }
        }
        try (Stream<Path> files = Files.list(dir)) {
            assertEquals(List.of(file), files.toList(), "only the target remains");
        }
    }

    /** A write that fails part-way (here: a tensor whose memory was freed) leaves the previous file untouched. */
    @Test
    void failedWriteKeepsPreviousFile() throws IOException {
        Path file = dir.resolve("model.safetensors");
        SafetensorsWriter.write(file, List.of(new Tensor("w", DType.F32, Shape.of(1), MemorySegment.ofArray(f32(9f)))), null);
        byte[] before = Files.readAllBytes(file);
        Tensor good = new Tensor("a", DType.F32, Shape.of(1), MemorySegment.ofArray(f32(1f)));
        Tensor freed = Tensor.allocate(ledger, Category.WORKSPACE, "freed", DType.F32, Shape.of(4));
        freed.close();
        assertThrows(IllegalStateException.class, () -> SafetensorsWriter.write(file, List.of(good, freed), null));
        assertArrayEquals(before, Files.readAllBytes(file));
        try (Stream<Path> files = Files.list(dir)) {
            assertEquals(List.of(file), files.toList(), "the temporary file was removed");
        }
    }

    @Test
    void rejectsDuplicateAndReservedNames() {
        Tensor a = new Tensor("a", DType.F32, Shape.of(1), MemorySegment.ofArray(f32(1f)));
        assertThrows(IllegalArgumentException.class,
                () -> SafetensorsWriter.write(dir.resolve("d.safetensors"), List.of(a, a), null));
        Tensor meta = new Tensor("__metadata__", DType.F32, Shape.of(1), MemorySegment.ofArray(f32(1f)));
        assertThrows(IllegalArgumentException.class,
                () -> SafetensorsWriter.write(dir.resolve("m.safetensors"), List.of(meta), null));
    }

    @Test
    void closedFileRefusesAccess() throws IOException {
        Path file = dir.resolve("c.safetensors");
        SafetensorsWriter.write(file, List.of(new Tensor("w", DType.F32, Shape.of(1), MemorySegment.ofArray(f32(1f)))), null);
        SafetensorsFile st = SafetensorsFile.open(file, ledger);
        Tensor w = st.find("w").orElseThrow();
        st.close();
        assertThrows(IllegalStateException.class, () -> st.find("w"));
        assertThrows(IllegalStateException.class, () -> w.getFloat(0), "views die with the mapping");
    }
}
