// The reference kernels against independent truths: double-precision GEMM, IEEE rounding edges, hand-worked RoPE.
package dev.llamafit.kernels;

import static dev.llamafit.tensor.Tensor.F32_LE;
import static dev.llamafit.tensor.Tensor.I16_LE;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.util.SplittableRandom;

import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.Test;

class ScalarKernelsTest {
    static final Kernels[] BOTH = {new ScalarKernels(), new VectorKernels()};
    static final Arena ARENA = Arena.ofShared();

    @AfterAll
    static void close() { ARENA.close(); }

    static MemorySegment floats(float... v) {
        MemorySegment s = ARENA.allocate(Math.max(1, v.length) * 4L, 64);
        for (int i = 0; i < v.length; i++) s.setAtIndex(F32_LE, i, v[i]);
        return s;
    }

    @Test
    void gemmMatchesDoublePrecisionTripleLoop() {
        SplittableRandom r = new SplittableRandom(42);
        int[][] shapes = {{1, 1, 1}, {3, 7, 13}, {31, 13, 207}, {17, 33, 64}};
        for (int[] s : shapes) for (int variant = 0; variant < 4; variant++) {
            boolean tA = variant >= 2, tB = (variant & 1) == 1;
            int m = s[0], n = s[1], k = s[2];
            float[] a = new float[m * k], b = new float[k * n];
            for (int i = 0; i < a.length; i++) a[i] = (float) (r.nextDouble() - 0.5);
            for (int i = 0; i < b.length; i++) b[i] = (float) (r.nextDouble() - 0.5);
            // Stored layouts: A is [m,k] or [k,m]; B is [k,n] or [n,k].
            MemorySegment as = ARENA.allocate(a.length * 4L), bs = ARENA.allocate(b.length * 4L), cs = ARENA.allocate(m * n * 4L);
            for (int i = 0; i < m; i++) for (int p = 0; p < k; p++) as.setAtIndex(F32_LE, tA ? (long) p * m + i : (long) i * k + p, a[i * k + p]);
            for (int p = 0; p < k; p++) for (int j = 0; j < n; j++) bs.setAtIndex(F32_LE, tB ? (long) j * k + p : (long) p * n + j, b[p * n + j]);
            for (int i = 0; i < m * n; i++) cs.setAtIndex(F32_LE, i, 1f);
            new ScalarKernels().gemm(tA, tB, m, n, k, 2f, as, 0, tA ? m : k, bs, 0, tB ? k : n, 0.5f, cs, 0, n);
            for (int i = 0; i < m; i++) for (int j = 0; j < n; j++) {
                double want = 0.5, mag = 0.5;
                for (int p = 0; p < k; p++) {
                    want += 2.0 * a[i * k + p] * b[p * n + j];
                    mag += Math.abs(2.0 * a[i * k + p] * b[p * n + j]);
                }
                assertEquals(want, cs.getAtIndex(F32_LE, (long) i * n + j), (k + 2) * Math.ulp(1f) * mag,
                        "variant " + variant + " shape " + m + "x" + n + "x" + k + " at " + i + "," + j);
            }
        }
    }

    static short toHalf(Kernels k, float v) {
        MemorySegment h = ARENA.allocate(2);
        k.f32ToF16(floats(v), 0, h, 0, 1);
        return h.getAtIndex(I16_LE, 0);
    }

    static short toBf16(Kernels k, float v) {
        MemorySegment h = ARENA.allocate(2);
        k.f32ToBf16(floats(v), 0, h, 0, 1);
        return h.getAtIndex(I16_LE, 0);
    }

    @Test
    void halfRoundTripsEveryValueAndRoundsToNearestEven() {
        MemorySegment all = ARENA.allocate(65536 * 2L), f = ARENA.allocate(65536 * 4L), back = ARENA.allocate(65536 * 2L);
        for (int i = 0; i < 65536; i++) all.setAtIndex(I16_LE, i, (short) i);
        for (Kernels k : BOTH) {
            k.f16ToF32(all, 0, f, 0, 65536);
            k.f32ToF16(f, 0, back, 0, 65536);
            for (int i = 0; i < 65536; i++) {
                short h = (short) i;
                boolean nan = (i & 0x7C00) == 0x7C00 && (i & 0x03FF) != 0;
                if (nan) assertTrue(Float.isNaN(f.getAtIndex(F32_LE, i)) && Float.isNaN(Float.float16ToFloat(back.getAtIndex(I16_LE, i))));
                else assertEquals(h, back.getAtIndex(I16_LE, i), k.name() + " half 0x" + Integer.toHexString(i));
            }
            assertEquals((short) 0x3C00, toHalf(k, 1f + 0x1p-11f), "tie rounds down to even 1.0");
            assertEquals((short) 0x3C02, toHalf(k, 1f + 3 * 0x1p-11f), "tie rounds up to even");
            assertEquals((short) 0x7BFF, toHalf(k, 65504f), "largest half");
            assertEquals((short) 0x7C00, toHalf(k, 65520f), "halfway past the largest half overflows to +Inf");
            assertEquals((short) 0xFC00, toHalf(k, -1e6f), "overflow to -Inf");
            assertEquals((short) 0x0001, toHalf(k, 0x1p-24f), "smallest subnormal");
            assertEquals((short) 0x0000, toHalf(k, 0x1p-25f), "half the smallest subnormal ties to even zero");
            assertEquals((short) 0x0002, toHalf(k, 1.5f * 0x1p-24f), "subnormal tie to even");
            assertTrue(Float.isNaN(Float.float16ToFloat(toHalf(k, Float.NaN))));
        }
    }

    @Test
    void bf16RoundsToNearestEvenAndKeepsNaN() {
        for (Kernels k : BOTH) {
            assertEquals((short) 0x3F80, toBf16(k, 1f + 0x1p-8f), "tie rounds down to even");
            assertEquals((short) 0x3F82, toBf16(k, 1f + 3 * 0x1p-8f), "tie rounds up to even");
            assertEquals((short) 0x3F81, toBf16(k, 1f + 0x1p-8f + 0x1p-20f), "above the tie rounds up");
            assertEquals((short) 0x7F80, toBf16(k, Float.MAX_VALUE), "overflow to +Inf");
            assertEquals((short) 0xFF80, toBf16(k, Float.NEGATIVE_INFINITY));
            assertEquals((short) 0x0001, toBf16(k, Float.intBitsToFloat(0x00010000)), "subnormal kept exactly");
            assertEquals((short) 0x7FC0, toBf16(k, Float.intBitsToFloat(0x7F800001)), "signalling NaN becomes quiet, not Inf");
            assertEquals((short) 0xFFC0, toBf16(k, Float.intBitsToFloat(0xFF800001)), "negative NaN keeps its sign");
            assertEquals((short) 0x7FC0, toBf16(k, Float.NaN));
            MemorySegment h = ARENA.allocate(2), f = ARENA.allocate(4);
            h.setAtIndex(I16_LE, 0, (short) 0xC0A0);
            k.bf16ToF32(h, 0, f, 0, 1);
            assertEquals(-5f, f.getAtIndex(F32_LE, 0));
        }
    }

    @Test
    void ropeRotatesHalvesAsWorkedByHand() {
        // One head of dim 4, two positions; row 0 at position 1: pairs are (x0, x2) and (x1, x3).
        double t0 = 0.3, t1 = 0.05;
        MemorySegment cos = floats(1, 1, (float) Math.cos(t0), (float) Math.cos(t1));
        MemorySegment sin = floats(0, 0, (float) Math.sin(t0), (float) Math.sin(t1));
        for (Kernels k : BOTH) {
            MemorySegment x = floats(1, 2, 3, 4);
            k.rope(x, 0, 4, 1, 1, 4, cos, sin, new int[] {1});
            assertEquals(1 * Math.cos(t0) - 3 * Math.sin(t0), x.getAtIndex(F32_LE, 0), 1e-6);
            assertEquals(2 * Math.cos(t1) - 4 * Math.sin(t1), x.getAtIndex(F32_LE, 1), 1e-6);
            assertEquals(3 * Math.cos(t0) + 1 * Math.sin(t0), x.getAtIndex(F32_LE, 2), 1e-6);
            assertEquals(4 * Math.cos(t1) + 2 * Math.sin(t1), x.getAtIndex(F32_LE, 3), 1e-6);
            MemorySegment y = floats(1, 2, 3, 4);
            k.rope(y, 0, 4, 1, 1, 4, cos, sin, new int[] {0});
            for (int i = 0; i < 4; i++) assertEquals(i + 1f, y.getAtIndex(F32_LE, i), "position 0 is the identity");
        }
    }

    @Test
    void softmaxSumsToOneAndZeroesMinusInfinity() {
        for (Kernels k : BOTH) {
            MemorySegment x = floats(1, Float.NEGATIVE_INFINITY, 3, 1000, -1000);
            k.softmax(x, 0, 5);
            assertEquals(0f, x.getAtIndex(F32_LE, 1));
            assertEquals(1f, x.getAtIndex(F32_LE, 3), 1e-6f);
            double sum = 0;
            for (int i = 0; i < 5; i++) sum += x.getAtIndex(F32_LE, i);
            assertEquals(1.0, sum, 1e-6);
            MemorySegment y = floats(0, (float) Math.log(3));
            k.softmax(y, 0, 2);
            assertEquals(0.25f, y.getAtIndex(F32_LE, 0), 1e-7f);
            assertEquals(0.75f, y.getAtIndex(F32_LE, 1), 1e-7f);
        }
    }

    @Test
    void rmsnormMatchesFormula() {
        for (Kernels k : BOTH) {
            MemorySegment x = floats(3, 4), w = floats(2, 1), out = ARENA.allocate(8);
            k.rmsnorm(out, 0, x, 0, w, 0, 1, 2, 0f);
            double rms = Math.sqrt((9 + 16) / 2.0);
            assertEquals(3 / rms * 2, out.getAtIndex(F32_LE, 0), 1e-6);
            assertEquals(4 / rms, out.getAtIndex(F32_LE, 1), 1e-6);
        }
    }
}
