// int8 weight quantisation equals, bit for bit, the independent PyTorch reference (scripts/make_int8_fixtures.py), with bnb's keys.
package dev.llamafit.quant;

import static dev.llamafit.tensor.Tensor.F32_LE;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;

import com.fasterxml.jackson.databind.JsonNode;
import dev.llamafit.io.Json;
import dev.llamafit.io.safetensors.SafetensorsFile;
import dev.llamafit.memory.MemoryLedger;
import dev.llamafit.tensor.DType;
import dev.llamafit.tensor.Shape;
import dev.llamafit.tensor.Tensor;
import dev.llamafit.testing.SharedData;
import org.junit.jupiter.api.Test;

class Int8Test {
    static final Path FIXTURES = Path.of("src/test/resources/quant/int8").toAbsolutePath();

    @Test
    void codesAndScbEqualTheReferenceBitForBit() throws IOException {
        JsonNode cases = Json.read(FIXTURES.resolve("manifest.json")).get("cases");
        MemoryLedger ledger = new MemoryLedger();
        int real = 0;
        try (SafetensorsFile model = SafetensorsFile.open(SharedData.require("models/tinystories-656k/model.safetensors"), ledger);
             Arena arena = Arena.ofShared()) {
            for (JsonNode c : cases) {
                String name = c.get("name").asText();
                long out = c.get("shape").get(0).asLong(), in = c.get("shape").get(1).asLong();
                Tensor weight;
                if (c.has("tensor")) {
                    weight = model.find(c.get("tensor").asText()).orElseThrow();
                    real++;
                } else {
                    byte[] raw = Files.readAllBytes(FIXTURES.resolve(c.get("input").asText()));
                    MemorySegment seg = arena.allocate(raw.length);
                    MemorySegment.copy(raw, 0, seg, ValueLayout.JAVA_BYTE, 0, raw.length);
                    weight = new Tensor(name, DType.valueOf(c.get("dtype").asText()), Shape.of(out, in), seg);
                }
                Map<String, Tensor> q = Int8.quantize(weight, ledger, "m." + name);
                assertEquals(List.of("m." + name + ".weight", "m." + name + ".SCB", "m." + name + ".weight_format"), List.copyOf(q.keySet()));
                Tensor codes = q.get("m." + name + ".weight"), scb = q.get("m." + name + ".SCB"), format = q.get("m." + name + ".weight_format");
                assertEquals(DType.I8, codes.dtype());
                assertEquals(Shape.of(out, in), codes.shape());
                assertEquals(DType.F32, scb.dtype());
                assertEquals(Shape.of(out), scb.shape());
                assertEquals(DType.U8, format.dtype());
                assertEquals(0, format.shape().rank());
                assertEquals(0, format.segment().get(ValueLayout.JAVA_BYTE, 0));
                assertArrayEquals(Files.readAllBytes(FIXTURES.resolve(c.get("codes").asText())),
                        codes.segment().toArray(ValueLayout.JAVA_BYTE), name + ": codes differ from the reference");
                assertArrayEquals(Files.readAllBytes(FIXTURES.resolve(c.get("scb").asText())),
                        scb.segment().toArray(ValueLayout.JAVA_BYTE), name + ": SCB differs from the reference");
                q.values().forEach(Tensor::close);
            }
        }
        assertEquals(3, real, "three real tinystories-656k tensors");
        assertTrue(cases.size() >= 18);
        assertEquals(0, ledger.currentBytes(dev.llamafit.memory.Category.WEIGHTS), "every quantised tensor went through the ledger and was released");
    }

    @Test
    void aValueOutsideFp16IsRefusedWithItsPlace() {
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment seg = arena.allocate(4L * 6);
            for (int i = 0; i < 6; i++) seg.setAtIndex(F32_LE, i, i == 4 ? 70000f : 1f);
            Tensor w = new Tensor("w", DType.F32, Shape.of(2, 3), seg);
            MemoryLedger ledger = new MemoryLedger();
            IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> Int8.quantize(w, ledger, "p"));
            assertTrue(e.getMessage().contains("row 1 column 1") && e.getMessage().contains("fp16"), e.getMessage());
            assertEquals(0, ledger.currentBytes(dev.llamafit.memory.Category.WEIGHTS), "nothing is left allocated");
        }
    }

    @Test
    void activationsSkipOutlierColumnsAndScaleByTheRest() {
        try (Arena arena = Arena.ofConfined()) {
            float[] x = {0.5f, 8f, -1f, 0.25f,
                         2f, -0.5f, 0.1f, 0f,
                         0f, 0f, 0f, 0f};
            MemorySegment xs = arena.allocate(4L * x.length), codes = arena.allocate(x.length);
            MemorySegment.copy(x, 0, xs, F32_LE, 0, x.length);
            boolean[] outlier = new boolean[4];
            assertEquals(1, Int8.outlierColumns(xs, 0, 3, 4, 6f, outlier));
            assertArrayEquals(new boolean[] {false, true, false, false}, outlier);
            float[] absmax = new float[3];
            Int8.quantizeRows(xs, 0, 3, 4, outlier, codes, 0, absmax);
            // row 0: absmax over columns 0, 2, 3 is 1 (not 8); row 1: 2 (the −0.5 in the outlier column is left out too)
            assertArrayEquals(new float[] {1f, 2f, 0f}, absmax);
            assertArrayEquals(new byte[] {64, 0, -127, 32, 127, 0, 6, 0, 0, 0, 0, 0}, codes.toArray(ValueLayout.JAVA_BYTE));
            // Threshold off (0, negative or +inf): no outliers, plain vector-wise quantisation.
            for (float off : new float[] {0f, -1f, Float.POSITIVE_INFINITY}) {
                assertEquals(0, Int8.outlierColumns(xs, 0, 3, 4, off, outlier));
                assertFalse(outlier[1]);
            }
            assertThrows(IllegalArgumentException.class, () -> Int8.thresholdOn(Float.NaN));
        }
    }

    @Test
    void vectorisedRowsGiveTheScalarCodes() {
        // No outlier column: the vectorised path. Ties at .5 after scaling, a NaN row, an ∞ row, a subnormal absmax (an
        // infinite scale, clamped), a zero row, and 150 columns (vector tails).
        int rows = 40, cols = 150;
        java.util.SplittableRandom rnd = new java.util.SplittableRandom(3);
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment xs = arena.allocate(4L * rows * cols), codes = arena.allocate((long) rows * cols);
            float[] x = new float[rows * cols];
            for (int i = 0; i < x.length; i++) x[i] = (float) rnd.nextGaussian();
            for (int c = 0; c < cols; c++) x[cols + c] = (c % 2 == 0 ? 127f : (c - 75) + 0.5f) * (c % 3 == 0 ? -1 : 1);
            x[2 * cols + 7] = Float.NaN;
            x[3 * cols + 100] = Float.NEGATIVE_INFINITY;
            for (int c = 0; c < cols; c++) x[4 * cols + c] = c == 5 ? Float.MIN_NORMAL / 4 : 0f;
            for (int c = 0; c < cols; c++) x[5 * cols + c] = 0f;
            MemorySegment.copy(x, 0, xs, F32_LE, 0, x.length);
            float[] absmax = new float[rows];
            Int8.quantizeRows(xs, 0, rows, cols, new boolean[cols], codes, 0, absmax);
            for (int r = 0; r < rows; r++) {
                float max = 0f;
                for (int c = 0; c < cols; c++) max = Math.max(max, Math.abs(x[r * cols + c]));
                assertEquals(max, absmax[r], "absmax of row " + r);
                float scale = max == 0f || !Float.isFinite(max) ? 0f : Int8.scale(max);
                for (int c = 0; c < cols; c++) {
                    byte want = (byte) Math.max(-127, Math.min(127, Math.rint(x[r * cols + c] * scale)));
                    assertEquals(want, codes.get(ValueLayout.JAVA_BYTE, (long) r * cols + c), "row " + r + " column " + c);
                }
            }
        }
    }

    @Test
    void dequantisationIsCodeTimesScbOver127() {
        assertEquals(127 * 0.5f * (1f / 127f), Int8.dequantize((byte) 127, 0.5f));
        assertEquals(-64 * 3f * (1f / 127f), Int8.dequantize((byte) -64, 3f));
        assertEquals("model.layers.0.mlp.up_proj", Int8.modulePrefix("model.layers.0.mlp.up_proj.weight"));
        assertThrows(IllegalArgumentException.class, () -> Int8.modulePrefix("model.norm"));
    }
}
