// The optimizer kernel family: the vector backend gives the scalar specification's bits, on awkward sizes and across blocks.
package dev.llamafit.kernels;

import static dev.llamafit.tensor.Tensor.F32_LE;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.util.Random;

import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

class UpdateKernelsTest {
    static final Kernels[] IMPLS = {new ScalarKernels(), new VectorKernels()};
    static final Arena ARENA = Arena.ofShared();

    @AfterAll
    static void close() { ARENA.close(); }

    static MemorySegment copy(MemorySegment s) {
        MemorySegment c = ARENA.allocate(s.byteSize(), 64);
        c.copyFrom(s);
        return c;
    }

    static MemorySegment gaussian(Random r, int n, float scale, boolean abs) {
        MemorySegment s = ARENA.allocate(Math.max(1, n) * 4L, 64);
        for (int i = 0; i < n; i++) {
            float v = (float) r.nextGaussian() * scale;
            s.setAtIndex(F32_LE, i, abs ? Math.abs(v) : v);
        }
        return s;
    }

    static void assertSameBits(MemorySegment want, MemorySegment got, int n, String what) {
        for (int i = 0; i < n; i++) {
            assertEquals(Float.floatToRawIntBits(want.getAtIndex(F32_LE, i)), Float.floatToRawIntBits(got.getAtIndex(F32_LE, i)),
                    what + ": element " + i + " of " + n);
        }
    }

    @ParameterizedTest
    @ValueSource(ints = {1, 3, 7, 13, 31, 207, 702, 1024, 70_001})
    void vectorMatchesScalar(int n) {
        Random r = new Random(n);
        MemorySegment p = gaussian(r, n, 1, false), g = gaussian(r, n, 0.1f, false);
        MemorySegment m = gaussian(r, n, 0.01f, false), v = gaussian(r, n, 1e-3f, true);
        var adam = new UpdateKernels.AdamCoefficients(0.999f, 0.9f, 0.1f, 0.95f, 0.05f, -0.0123f, 0.31f, 1e-8f);
        MemorySegment[][] out = new MemorySegment[2][];
        for (int k = 0; k < 2; k++) {
            Kernels impl = IMPLS[k];
            MemorySegment tp = copy(p), tm = copy(m), tv = copy(v);
            UpdateKernels.forBlocks(n, (a, b) -> impl.adamw(tp, g, tm, tv, a, b, adam));
            MemorySegment sp = copy(p), sb = copy(m);
            for (boolean first : new boolean[] {true, false}) {
                for (boolean nesterov : new boolean[] {false, true}) {
                    var c = new UpdateKernels.SgdCoefficients(0.01f, 0.9f, nesterov ? 1f : 0.7f, nesterov, first, -0.05f);
                    UpdateKernels.forBlocks(n, (a, b) -> impl.sgd(sp, g, sb, a, b, c));
                }
            }
            MemorySegment np = copy(p);
            var noMomentum = new UpdateKernels.SgdCoefficients(0.01f, 0, 1, false, false, -0.05f);
            UpdateKernels.forBlocks(n, (a, b) -> impl.sgd(np, g, null, a, b, noMomentum));
            out[k] = new MemorySegment[] {tp, tm, tv, sp, sb, np};
        }
        for (int j = 0; j < out[0].length; j++) assertSameBits(out[0][j], out[1][j], n, "output " + j + " at n=" + n);
        // The updates did something: AdamW moved (nearly) every parameter.
        int moved = 0;
        for (int i = 0; i < n; i++) if (out[0][0].getAtIndex(F32_LE, i) != p.getAtIndex(F32_LE, i)) moved++;
        assertTrue(moved >= 0.9 * n, "AdamW moved only " + moved + " of " + n + " parameters");
    }

    @ParameterizedTest
    @ValueSource(ints = {0, 1, 3, 4, 7, 13, 31, 207, 702, 1024, 70_001})
    void sumOfSquaresHasTheSpecifiedOrder(int n) {
        Random r = new Random(31 + n);
        MemorySegment x = gaussian(r, n + 3, 10, false);
        for (long from : new long[] {0, 3}) {
            if (from > n) continue;
            double want = IMPLS[0].sumOfSquares(x, from, n);
            assertEquals(Double.doubleToRawLongBits(want), Double.doubleToRawLongBits(IMPLS[1].sumOfSquares(x, from, n)),
                    "sumOfSquares n=" + n + " from=" + from);
            double exact = 0;
            for (long i = from; i < n; i++) exact += Math.pow(x.getAtIndex(F32_LE, i), 2);
            assertEquals(exact, want, 1e-12 * Math.max(1, exact), "sumOfSquares is the sum of squares");
        }
    }
}
