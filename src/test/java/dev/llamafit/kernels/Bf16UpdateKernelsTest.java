// bf16-pure's kernels: BF16 AdamW, the BF16 gradient add-round and clipping's BF16 sum and scale, vector against scalar specification.
package dev.llamafit.kernels;

import static dev.llamafit.tensor.Tensor.F32_LE;
import static dev.llamafit.tensor.Tensor.I16_LE;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.util.Random;

import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

class Bf16UpdateKernelsTest {
    static final Arena ARENA = Arena.ofShared();
    static final ScalarKernels SCALAR = new ScalarKernels();
    static final VectorKernels VECTOR = new VectorKernels();
    static final UpdateKernels.AdamCoefficients ADAM = new UpdateKernels.AdamCoefficients(0.999f, 0.9f, 0.1f, 0.95f, 0.05f, -0.0123f, 0.31f, 1e-8f);

    @AfterAll
    static void close() { ARENA.close(); }

    /** n BF16 values (scale·gaussian, |·| when abs), a NaN at index 5 when withNaN and n > 5. */
    static MemorySegment bf16(Random r, int n, float scale, boolean abs, boolean withNaN) {
        MemorySegment s = ARENA.allocate(Math.max(1, n) * 2L, 64);
        for (int i = 0; i < n; i++) {
            float v = (float) r.nextGaussian() * scale;
            s.setAtIndex(I16_LE, i, ScalarKernels.floatToBf16(abs ? Math.abs(v) : v));
        }
        if (withNaN && n > 5) s.setAtIndex(I16_LE, 5, ScalarKernels.floatToBf16(Float.NaN));
        return s;
    }

    static MemorySegment copy(MemorySegment s) {
        MemorySegment c = ARENA.allocate(s.byteSize(), 64);
        c.copyFrom(s);
        return c;
    }

    static MemorySegment widen(MemorySegment s, int n) {
        MemorySegment w = ARENA.allocate(Math.max(1, n) * 4L, 64);
        for (int i = 0; i < n; i++) w.setAtIndex(F32_LE, i, ScalarKernels.bf16ToFloat(s.getAtIndex(I16_LE, i)));
        return w;
    }

    static void assertSameShorts(MemorySegment want, MemorySegment got, int n, String what) {
        for (int i = 0; i < n; i++)
            assertEquals(want.getAtIndex(I16_LE, i), got.getAtIndex(I16_LE, i), what + ": element " + i + " of " + n);
    }

    @ParameterizedTest
    @ValueSource(ints = {1, 3, 7, 13, 31, 207, 1024, 70_001})
    void adamwBf16IsTheFp32UpdateOfWidenedValuesRoundedAndVectorMatchesScalar(int n) {
        int seed = 0x5EED + n;
        Random r = new Random(n);
        MemorySegment p = bf16(r, n, 1, false, true), g = bf16(r, n, 0.1f, false, false);
        MemorySegment m = bf16(r, n, 0.01f, false, false), v = bf16(r, n, 1e-3f, true, false);
        MemorySegment sp = copy(p), sm = copy(m), sv = copy(v), vp = copy(p), vm = copy(m), vv = copy(v);
        UpdateKernels.forBlocks(n, (a, b) -> SCALAR.adamwBf16(sp, g, sm, sv, a, b, ADAM, seed));
        UpdateKernels.forBlocks(n, (a, b) -> VECTOR.adamwBf16(vp, g, vm, vv, a, b, ADAM, seed));
        assertSameShorts(sp, vp, n, "p");
        assertSameShorts(sm, vm, n, "m");
        assertSameShorts(sv, vv, n, "v");
        // The specification: the fp32 kernel on the widened values; m, v rounded to nearest even, p stochastically.
        MemorySegment fp = widen(p, n), fm = widen(m, n), fv = widen(v, n), fg = widen(g, n);
        SCALAR.adamw(fp, fg, fm, fv, 0, n, ADAM);
        int moved = 0;
        for (int i = 0; i < n; i++) {
            assertEquals(UpdateKernels.stochasticBf16(fp.getAtIndex(F32_LE, i), UpdateKernels.roundingBits(seed, i)), sp.getAtIndex(I16_LE, i), "p " + i);
            assertEquals(ScalarKernels.floatToBf16(fm.getAtIndex(F32_LE, i)), sm.getAtIndex(I16_LE, i), "m " + i);
            assertEquals(ScalarKernels.floatToBf16(fv.getAtIndex(F32_LE, i)), sv.getAtIndex(I16_LE, i), "v " + i);
            if (sp.getAtIndex(I16_LE, i) != p.getAtIndex(I16_LE, i)) moved++;
        }
        if (n > 5) assertTrue(Float.isNaN(ScalarKernels.bf16ToFloat(vp.getAtIndex(I16_LE, 5))), "a NaN parameter stays NaN");
        // lr·|update| ~ 0.0123 against |p| ~ 1 is about 1.5 bf16 ulps: most parameters move, some round back.
        if (n >= 31) assertTrue(moved >= 0.3 * n, "AdamW moved only " + moved + " of " + n + " parameters");
    }

    @ParameterizedTest
    @ValueSource(ints = {1, 3, 7, 13, 31, 207, 1024, 70_001})
    void addRoundBf16RoundsTheFp32SumOnceAndVectorMatchesScalar(int n) {
        Random r = new Random(7 + n);
        MemorySegment dst = bf16(r, n, 1, false, true);
        MemorySegment src = ARENA.allocate(n * 4L, 64);
        for (int i = 0; i < n; i++) src.setAtIndex(F32_LE, i, (float) r.nextGaussian() * (i % 3 == 0 ? 1e-3f : 1f));
        if (n > 2) { // a tie: 1 + 2^-8 lies halfway between bf16 neighbours 1 and 1 + 2^-7; nearest even is 1
            dst.setAtIndex(I16_LE, 2, ScalarKernels.floatToBf16(1f));
            src.setAtIndex(F32_LE, 2, 0x1p-8f);
        }
        MemorySegment s = copy(dst), v = copy(dst);
        SCALAR.addRoundBf16(s, 0, src, 0, n);
        VECTOR.addRoundBf16(v, 0, src, 0, n);
        assertSameShorts(s, v, n, "addRoundBf16");
        for (int i = 0; i < n; i++) {
            float sum = ScalarKernels.bf16ToFloat(dst.getAtIndex(I16_LE, i)) + src.getAtIndex(F32_LE, i);
            assertEquals(ScalarKernels.floatToBf16(sum), s.getAtIndex(I16_LE, i), "element " + i);
        }
        if (n > 2) assertEquals(1f, ScalarKernels.bf16ToFloat(s.getAtIndex(I16_LE, 2)), "ties round to even");
        // An offset slice leaves its neighbours alone.
        if (n > 8) {
            MemorySegment o = copy(dst);
            VECTOR.addRoundBf16(o, 3, src, 1, n - 4);
            assertEquals(dst.getAtIndex(I16_LE, 2), o.getAtIndex(I16_LE, 2));
            assertEquals(ScalarKernels.floatToBf16(ScalarKernels.bf16ToFloat(dst.getAtIndex(I16_LE, 3)) + src.getAtIndex(F32_LE, 1)),
                    o.getAtIndex(I16_LE, 3));
            assertEquals(dst.getAtIndex(I16_LE, n - 1), o.getAtIndex(I16_LE, n - 1));
        }
    }

    @ParameterizedTest
    @ValueSource(ints = {0, 1, 3, 4, 7, 13, 31, 207, 1024, 70_001})
    void clippingsBf16SumAndScaleAreThoseOfTheWidenedValues(int n) {
        Random r = new Random(11 + n);
        MemorySegment x = bf16(r, n, 3, false, false);
        MemorySegment w = widen(x, n);
        for (Kernels k : new Kernels[] {SCALAR, VECTOR}) {
            assertEquals(Double.doubleToRawLongBits(SCALAR.sumOfSquares(w, 0, n)), Double.doubleToRawLongBits(k.sumOfSquaresBf16(x, 0, n)));
            MemorySegment y = copy(x);
            k.scaleBf16(y, 0, n, 0.37f);
            for (int i = 0; i < n; i++)
                assertEquals(ScalarKernels.floatToBf16(w.getAtIndex(F32_LE, i) * 0.37f), y.getAtIndex(I16_LE, i), "scaled element " + i);
        }
    }

    /**
     * Stochastic rounding is unbiased: 1 + x for x a quarter of a bf16 ulp rounds up in about a quarter of the elements
     * (nearest even would never move them), and a value already in bf16 never moves. Different seeds draw differently.
     */
    @org.junit.jupiter.api.Test
    void stochasticRoundingRoundsUpWithTheDroppedFraction() {
        int n = 100_000, up = 0, upOtherSeed = 0, same = 0;
        float v = 1f + 0x1p-9f; // bf16 ulp at 1 is 2^-7
        for (int i = 0; i < n; i++) {
            short r = UpdateKernels.stochasticBf16(v, UpdateKernels.roundingBits(42, i));
            assertTrue(r == ScalarKernels.floatToBf16(1f) || r == ScalarKernels.floatToBf16(1f + 0x1p-7f));
            if (r != ScalarKernels.floatToBf16(1f)) up++;
            short o = UpdateKernels.stochasticBf16(v, UpdateKernels.roundingBits(43, i));
            if (o != ScalarKernels.floatToBf16(1f)) upOtherSeed++;
            if (o == r) same++;
            assertEquals(ScalarKernels.floatToBf16(-1.5f), UpdateKernels.stochasticBf16(-1.5f, UpdateKernels.roundingBits(42, i)));
        }
        assertEquals(0.25, up / (double) n, 0.01);
        assertEquals(0.25, upOtherSeed / (double) n, 0.01);
        assertTrue(same < 0.7 * n, "another seed draws other bits: " + same + " equal of " + n);
        assertTrue(Float.isNaN(ScalarKernels.bf16ToFloat(UpdateKernels.stochasticBf16(Float.NaN, 0xFFFF))));
    }
}
