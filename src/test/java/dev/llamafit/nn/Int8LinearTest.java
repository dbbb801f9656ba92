// Int8Linear against Linear on the dequantised weight: exact where int8 is exact, outliers in fp32, backward dX, no dW.
package dev.llamafit.nn;

import static dev.llamafit.tensor.Tensor.F32_LE;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.util.HashMap;
import java.util.Map;
import java.util.SplittableRandom;

import dev.llamafit.kernels.Kernels;
import dev.llamafit.kernels.OneDnnKernels;
import dev.llamafit.kernels.ScalarKernels;
import dev.llamafit.kernels.VectorKernels;
import dev.llamafit.memory.MemoryLedger;
import dev.llamafit.quant.Int8;
import dev.llamafit.tensor.DType;
import dev.llamafit.tensor.Shape;
import dev.llamafit.tensor.Tensor;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.Test;

class Int8LinearTest {
    static final Arena ARENA = Arena.ofShared();
    static final Kernels K = new VectorKernels();
    static final int ROWS = 7, IN = 150, OUT = 37; // awkward: tails of every block and vector length

    @AfterAll
    static void close() { ARENA.close(); }

    /** A quantised weight (with bias) and the dense Linear on its dequantised values. */
    record Layer(Map<String, Tensor> w, Linear dense) {}

    static Layer layer(long seed) {
        SplittableRandom rnd = new SplittableRandom(seed);
        Tensor w = new Tensor("w", DType.F32, Shape.of(OUT, IN), ARENA.allocate(4L * OUT * IN));
        for (long i = 0; i < w.elements(); i++) w.setFloat(i, (float) (rnd.nextGaussian() * 0.1));
        Map<String, Tensor> q = new HashMap<>(Int8.quantize(w, new MemoryLedger(), "p"));
        Tensor bias = new Tensor("p.bias", DType.F32, Shape.of(OUT), ARENA.allocate(4L * OUT));
        for (int i = 0; i < OUT; i++) bias.setFloat(i, (float) rnd.nextGaussian());
        q.put("p.bias", bias);
        Tensor deq = new Tensor("deq", DType.F32, Shape.of(OUT, IN), ARENA.allocate(4L * OUT * IN));
        Int8.dequantizeBlock(q.get("p.weight").segment(), q.get("p.SCB").segment(), IN, 0, OUT, 0, IN, deq.segment(), 0, IN);
        return new Layer(q, new Linear(deq, bias));
    }

    /** X whose rows hold integers with absmax 127 (int8 codes are then exact, scale 1), plus optional outlier columns. */
    static MemorySegment activations(long seed, int[] outlierCols, float outlier) {
        SplittableRandom rnd = new SplittableRandom(seed);
        MemorySegment x = ARENA.allocate(4L * ROWS * IN);
        for (int r = 0; r < ROWS; r++) {
            for (int c = 0; c < IN; c++) x.setAtIndex(F32_LE, (long) r * IN + c, rnd.nextInt(-127, 128));
            x.setAtIndex(F32_LE, (long) r * IN + (r * 13) % IN, r % 2 == 0 ? 127 : -127);
            for (int c : outlierCols) x.setAtIndex(F32_LE, (long) r * IN + c, (float) (outlier * (1 + rnd.nextDouble())));
        }
        return x;
    }

    static float[] forward(Kernels k, Projection p, MemorySegment x) {
        MemorySegment y = ARENA.allocate(4L * ROWS * p.out());
        p.forward(k, x, 0, ROWS, y, 0);
        return y.toArray(F32_LE);
    }

    static void assertClose(float[] want, float[] got, double relTol, String what) {
        double num = 0, den = 0;
        for (int i = 0; i < want.length; i++) {
            num = Math.max(num, Math.abs((double) want[i] - got[i]));
            den = Math.max(den, Math.abs(want[i]));
        }
        assertTrue(num <= relTol * den, what + ": max error " + num + " against max |y| " + den);
    }

    @Test
    void forwardMatchesLinearOnTheDequantisedWeightWhereInt8IsExact() {
        Layer l = layer(1);
        MemorySegment x = activations(2, new int[0], 0);
        for (float threshold : new float[] {0f, 6f * 1000}) {
            float[] want = forward(K, l.dense, x), got = forward(K, Int8Linear.of(l.w, "p.weight", threshold), x);
            assertClose(want, got, 1e-5, "threshold " + threshold);
        }
    }

    @Test
    void outlierColumnsAreComputedInFp32() {
        Layer l = layer(3);
        // Two columns of non-integer values around 300-600: not representable in int8 at the row's scale.
        MemorySegment x = activations(4, new int[] {5, 99}, 300.3f);
        float[] want = forward(K, l.dense, x);
        assertClose(want, forward(K, Int8Linear.of(l.w, "p.weight", 200f), x), 1e-5, "with decomposition");
        // Without it the outliers set each row's scale, and every ordinary value loses most of its bits.
        float[] plain = forward(K, Int8Linear.of(l.w, "p.weight", 0f), x);
        assertThrows(AssertionError.class, () -> assertClose(want, plain, 1e-3, "plain int8"));
    }

    @Test
    void forwardColumnsAndFusedEqualForward() {
        Layer l = layer(5);
        MemorySegment x = activations(6, new int[] {7}, 50f);
        // Without outliers every column is the exact int product times its scales: the same bits however columns are split.
        // The fp32 outlier product is a GEMM whose summation may depend on the split: equal up to rounding.
        for (float threshold : new float[] {0f, 6f}) {
            Int8Linear p = Int8Linear.of(l.w, "p.weight", threshold);
            float[] all = forward(K, p, x);
            MemorySegment y = ARENA.allocate(4L * ROWS * OUT);
            p.forwardColumns(K, x, 0, ROWS, 3, 20, y, 0);
            p.forwardColumns(K, x, 0, ROWS, 20, OUT, y, 0);
            p.forwardColumns(K, x, 0, ROWS, 0, 3, y, 0);
            MemorySegment y2 = ARENA.allocate(4L * ROWS * OUT), y3 = ARENA.allocate(4L * ROWS * OUT);
            Projection.forwardFused(K, x, 0, ROWS, new Projection[] {p, p}, new MemorySegment[] {y2, y3});
            for (MemorySegment got : new MemorySegment[] {y, y2, y3}) {
                if (threshold == 0f) assertEquals(java.util.Arrays.toString(all), java.util.Arrays.toString(got.toArray(F32_LE)));
                else assertClose(all, got.toArray(F32_LE), 1e-6, "columns with outliers");
            }
        }
    }

    @Test
    void backendsGiveTheSameBits() {
        Layer l = layer(7);
        MemorySegment x = activations(8, new int[] {1, 2}, 9.5f);
        for (float threshold : new float[] {0f, 6f}) {
            Int8Linear p = Int8Linear.of(l.w, "p.weight", threshold);
            float[] vector = forward(K, p, x);
            if (OneDnnKernels.unavailableReason() == null)
                assertEquals(java.util.Arrays.toString(vector), java.util.Arrays.toString(forward(OneDnnKernels.create(), p, x)));
            // The scalar specification sums the fp32 outlier part in another order: equal up to rounding.
            assertClose(vector, forward(new ScalarKernels(), p, x), 1e-6, "scalar, threshold " + threshold);
        }
    }

    @Test
    void backwardIsDyTimesTheDequantisedWeightAndHasNoWeightGradient() {
        Layer l = layer(9);
        Int8Linear p = Int8Linear.of(l.w, "p.weight", 6f);
        SplittableRandom rnd = new SplittableRandom(10);
        MemorySegment dY = ARENA.allocate(4L * ROWS * OUT), x = activations(11, new int[0], 0);
        for (long i = 0; i < (long) ROWS * OUT; i++) dY.setAtIndex(F32_LE, i, (float) rnd.nextGaussian());
        for (boolean accumulate : new boolean[] {false, true}) {
            MemorySegment want = ARENA.allocate(4L * ROWS * IN), got = ARENA.allocate(4L * ROWS * IN);
            for (long i = 0; i < (long) ROWS * IN; i++) { want.setAtIndex(F32_LE, i, 0.5f); got.setAtIndex(F32_LE, i, 0.5f); }
            Tensor dbWant = new Tensor("db", DType.F32, Shape.of(OUT), ARENA.allocate(4L * OUT));
            Tensor dbGot = new Tensor("db", DType.F32, Shape.of(OUT), ARENA.allocate(4L * OUT));
            l.dense.backward(K, x, 0, dY, 0, ROWS, want, 0, accumulate, null, dbWant);
            p.backward(K, x, 0, dY, 0, ROWS, got, 0, accumulate, null, dbGot);
            assertClose(want.toArray(F32_LE), got.toArray(F32_LE), 1e-6, "dX, accumulate " + accumulate);
            assertEquals(-1, dbWant.segment().mismatch(dbGot.segment()), "dBias");
        }
        Tensor dW = new Tensor("dW", DType.F32, Shape.of(OUT, IN), ARENA.allocate(4L * OUT * IN));
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                () -> p.backward(K, x, 0, dY, 0, ROWS, null, 0, false, dW, null));
        assertTrue(e.getMessage().contains("frozen"), e.getMessage());
    }

    @Test
    void underBf16MixedPrecisionBackwardIsABf16MatmulOnOneDnn() {
        Kernels plain = dev.llamafit.kernels.KernelBackends.get();
        Kernels view = plain.halfOperands(DType.BF16);
        org.junit.jupiter.api.Assumptions.assumeTrue(view instanceof dev.llamafit.kernels.OneDnnKernels && view != plain,
                "no oneDNN bf16 matmul here");
        dev.llamafit.kernels.OneDnnKernels k = (dev.llamafit.kernels.OneDnnKernels) view;
        int rows = 64, in = 200, out = 300;
        SplittableRandom rnd = new SplittableRandom(21);
        MemorySegment wf = ARENA.allocate(4L * out * in), dY = ARENA.allocate(4L * rows * out);
        for (long i = 0; i < (long) out * in; i++) wf.setAtIndex(F32_LE, i, (float) (rnd.nextGaussian() * 0.02));
        for (long i = 0; i < (long) rows * out; i++) dY.setAtIndex(F32_LE, i, (float) rnd.nextGaussian());
        Map<String, Tensor> q = dev.llamafit.quant.Int8.quantize(new Tensor("w", DType.F32, Shape.of(out, in), wf),
                new dev.llamafit.memory.MemoryLedger(), "p");
        Int8Linear p = Int8Linear.of(q, "p.weight", 6f);
        MemorySegment deq = ARENA.allocate(4L * out * in);
        dev.llamafit.quant.Int8.dequantizeBlock(q.get("p.weight").segment(), q.get("p.SCB").segment(), in, 0, out, 0, in, deq, 0, in);
        Linear dense = new Linear(new Tensor("w'", DType.F32, Shape.of(out, in), deq), null);
        MemorySegment want = ARENA.allocate(4L * rows * in), got = ARENA.allocate(4L * rows * in);
        dense.backward(K, null, 0, dY, 0, rows, want, 0, false, null, null);
        long before = k.nativeBf16Gemms();
        p.backward(k, null, 0, dY, 0, rows, got, 0, false, null, null);
        assertEquals(before + 1, k.nativeBf16Gemms(), "dX ran as a bf16 matmul");
        // Both operands rounded to bf16 (relative 2^-9 each): within 2^-8 of Σ|dY·W| per element, which is at most
        // out·max|dY|·max|W|; the random signs make the actual error far smaller, so bound by a tenth of that.
        float[] w = want.toArray(F32_LE), g = got.toArray(F32_LE);
        for (int i = 0; i < w.length; i++) assertEquals(w[i], g[i], 0.02 * Math.abs(w[i]) + 0.01, "dX[" + i + "]");
        q.values().forEach(Tensor::close);
    }

    @Test
    void aNanInTheInputReachesItsRowOfTheOutput() {
        Layer l = layer(12);
        MemorySegment x = activations(13, new int[0], 0);
        x.setAtIndex(F32_LE, 2L * IN + 4, Float.NaN);
        for (float threshold : new float[] {0f, 6f}) {
            float[] y = forward(K, Int8Linear.of(l.w, "p.weight", threshold), x);
            for (int j = 0; j < OUT; j++) {
                assertTrue(Float.isNaN(y[2 * OUT + j]), "row 2 must be NaN");
                assertTrue(Float.isFinite(y[j]), "row 0 stays finite");
            }
        }
    }

    @Test
    void malformedInputsAreRefused() {
        Layer l = layer(14);
        assertThrows(IllegalArgumentException.class, () -> Int8Linear.of(l.w, "q.weight", 6f));
        assertThrows(IllegalArgumentException.class, () -> Int8Linear.of(l.w, "p.weight", Float.NaN));
        assertThrows(IllegalArgumentException.class, () -> new Int8Linear(l.w.get("p.SCB"), l.w.get("p.SCB"), null, 6f));
        assertThrows(IllegalArgumentException.class, () -> Projection.of(l.w.get("p.weight"), null));
    }
}
