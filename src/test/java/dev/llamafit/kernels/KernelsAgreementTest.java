// VectorKernels must agree with the ScalarKernels specification on awkward sizes (DESIGN §4).
package dev.llamafit.kernels;

import static dev.llamafit.tensor.Tensor.F32_LE;
import static dev.llamafit.tensor.Tensor.I16_LE;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.util.SplittableRandom;

import dev.llamafit.tensor.DType;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.Test;

class KernelsAgreementTest {
    static final int[] SIZES = {1, 3, 7, 13, 31, 207, 702, 1024};
    static final float EPS = Math.ulp(1f);
    static final Kernels SCALAR = new ScalarKernels();
    static final Kernels VECTOR = new VectorKernels();
    static final Arena ARENA = Arena.ofShared();

    @AfterAll
    static void close() { ARENA.close(); }

    static MemorySegment random(long n, long seed) {
        MemorySegment s = ARENA.allocate(Math.max(1, n) * 4, 64);
        SplittableRandom r = new SplittableRandom(seed);
        for (long i = 0; i < n; i++) s.setAtIndex(F32_LE, i, (float) (r.nextDouble() * 2 - 1));
        return s;
    }

    static MemorySegment copy(MemorySegment s) {
        MemorySegment c = ARENA.allocate(s.byteSize(), 64);
        c.copyFrom(s);
        return c;
    }

    @Test
    void gemmAgreesOnAllVariantsAndAwkwardShapes() {
        int cases = 0;
        for (int m : SIZES) for (int n : SIZES) for (int k : SIZES) {
            long work = (long) m * n * k;
            // The scalar reference is slow; keep the big corners only where one or two dimensions are small.
            if (work > 1_500_000) continue;
            for (int variant = 0; variant < 4; variant++) {
                int beta = (m + n + k + variant) % 3;
                gemmCase(variant >= 2, (variant & 1) == 1, m, n, k, variant % 2 == 0 ? 1f : -0.75f,
                        beta == 0 ? 0f : beta == 1 ? 1f : 0.5f, cases++);
            }
        }
        // A few large shapes on every variant, incl. the forward pass's [T, C]·[F, C]ᵀ shape.
        int[][] big = {{1024, 31, 31}, {702, 207, 13}, {13, 1024, 207}, {207, 702, 31}, {64, 702, 207}};
        for (int[] s : big) for (int variant = 0; variant < 4; variant++) {
            gemmCase(variant >= 2, (variant & 1) == 1, s[0], s[1], s[2], 1.25f, variant % 2 == 0 ? 0f : 1f, cases++);
        }
        assertTrue(cases > 100, "too few gemm cases ran: " + cases);
    }

    /** C [m, n] = alpha·op(A)·op(B) + beta·C with padded strides and odd offsets; C holds NaN when beta == 0. */
    static void gemmCase(boolean transA, boolean transB, int m, int n, int k, float alpha, float beta, long seed) {
        int aRows = transA ? k : m, aCols = transA ? m : k, bRows = transB ? n : k, bCols = transB ? k : n;
        int lda = aCols + 5, ldb = bCols + 2, ldc = n + 3;
        long aOff = 3, bOff = 11, cOff = 7;
        MemorySegment a = random(aOff + (long) aRows * lda, seed * 3 + 1);
        MemorySegment b = random(bOff + (long) bRows * ldb, seed * 3 + 2);
        MemorySegment c0 = random(cOff + (long) m * ldc, seed * 3 + 3);
        if (beta == 0f) {
            for (long i = 0; i < c0.byteSize() / 4; i++) c0.setAtIndex(F32_LE, i, Float.NaN);
        }
        MemorySegment cs = copy(c0), cv = copy(c0);
        SCALAR.gemm(transA, transB, m, n, k, alpha, a, aOff, lda, b, bOff, ldb, beta, cs, cOff, ldc);
        VECTOR.gemm(transA, transB, m, n, k, alpha, a, aOff, lda, b, bOff, ldb, beta, cv, cOff, ldc);
        for (int i = 0; i < m; i++) {
            for (int j = 0; j < n; j++) {
                double mag = 0;
                for (int p = 0; p < k; p++) {
                    float x = a.getAtIndex(F32_LE, aOff + (transA ? (long) p * lda + i : (long) i * lda + p));
                    float y = b.getAtIndex(F32_LE, bOff + (transB ? (long) j * ldb + p : (long) p * ldb + j));
                    mag += Math.abs((double) x * y);
                }
                long ci = cOff + (long) i * ldc + j;
                mag = Math.abs(alpha) * mag + (beta == 0f ? 0 : Math.abs(beta * c0.getAtIndex(F32_LE, ci)));
                float s = cs.getAtIndex(F32_LE, ci), v = cv.getAtIndex(F32_LE, ci);
                double tol = 2.0 * (k + 2) * EPS * mag + 1e-30;
                if (!(Math.abs(s - v) <= tol)) {
                    fail(String.format("gemm transA=%b transB=%b m=%d n=%d k=%d alpha=%s beta=%s: C[%d,%d] scalar %s vector %s tol %s",
                            transA, transB, m, n, k, alpha, beta, i, j, s, v, tol));
                }
            }
        }
        // Nothing outside C's [m, n] window may change (padding columns and the offset prefix).
        for (long i = 0; i < cv.byteSize() / 4; i++) {
            long rel = i - cOff;
            boolean inside = rel >= 0 && rel / ldc < m && rel % ldc < n;
            if (!inside) {
                assertEquals(Float.floatToRawIntBits(c0.getAtIndex(F32_LE, i)), Float.floatToRawIntBits(cv.getAtIndex(F32_LE, i)),
                        "gemm wrote outside C at element " + i + " (m=" + m + " n=" + n + " k=" + k + ")");
            }
        }
    }

    @Test
    void gemmWithZeroDepthScalesC() {
        MemorySegment c = random(6, 5), cs = copy(c);
        VECTOR.gemm(false, true, 2, 3, 0, 1f, c, 0, 1, c, 0, 1, 2f, c, 0, 3);
        SCALAR.gemm(false, true, 2, 3, 0, 1f, cs, 0, 1, cs, 0, 1, 2f, cs, 0, 3);
        for (int i = 0; i < 6; i++) assertEquals(cs.getAtIndex(F32_LE, i), c.getAtIndex(F32_LE, i));
    }

    @Test
    void gemmWithZeroAlphaIgnoresNaNInOperands() {
        MemorySegment a = random(6, 1), c = random(4, 2);
        a.setAtIndex(F32_LE, 0, Float.NaN);
        MemorySegment cs = copy(c), cv = copy(c);
        SCALAR.gemm(false, true, 2, 2, 3, 0f, a, 0, 3, a, 0, 3, 0.5f, cs, 0, 2);
        VECTOR.gemm(false, true, 2, 2, 3, 0f, a, 0, 3, a, 0, 3, 0.5f, cv, 0, 2);
        for (int i = 0; i < 4; i++) {
            assertEquals(0.5f * c.getAtIndex(F32_LE, i), cs.getAtIndex(F32_LE, i));
            assertEquals(0.5f * c.getAtIndex(F32_LE, i), cv.getAtIndex(F32_LE, i));
        }
    }

    static void assertClose(MemorySegment expected, MemorySegment actual, long n, double relTol, String what) {
        for (long i = 0; i < n; i++) {
            float e = expected.getAtIndex(F32_LE, i), a = actual.getAtIndex(F32_LE, i);
            if (Float.isNaN(e) && Float.isNaN(a)) continue;
            double tol = relTol * Math.max(Math.abs(e), Float.MIN_NORMAL);
            if (!(Math.abs(e - a) <= tol)) fail(what + ": element " + i + " of " + n + ": scalar " + e + " vector " + a);
        }
    }

    @Test
    void elementwiseKernelsAgree() {
        for (int n : SIZES) {
            MemorySegment x = random(n, n), y = random(n, n + 100);
            MemorySegment s = copy(y), v = copy(y);
            SCALAR.add(s, 0, x, 0, n);
            VECTOR.add(v, 0, x, 0, n);
            assertClose(s, v, n, 0, "add n=" + n);
            SCALAR.axpy(-0.3f, x, 0, s, 0, n);
            VECTOR.axpy(-0.3f, x, 0, v, 0, n);
            assertClose(s, v, n, 0, "axpy n=" + n);
            SCALAR.scale(s, 0, n, 1.7f);
            VECTOR.scale(v, 0, n, 1.7f);
            assertClose(s, v, n, 0, "scale n=" + n);
            float ds = SCALAR.dot(x, 0, y, 0, n), dv = VECTOR.dot(x, 0, y, 0, n);
            double mag = 0;
            for (int i = 0; i < n; i++) mag += Math.abs(x.getAtIndex(F32_LE, i) * y.getAtIndex(F32_LE, i));
            assertTrue(Math.abs(ds - dv) <= 2 * n * EPS * mag, "dot n=" + n + ": " + ds + " vs " + dv);

            MemorySegment os = ARENA.allocate(n * 4L), ov = ARENA.allocate(n * 4L);
            SCALAR.silu(os, 0, x, 0, n);
            VECTOR.silu(ov, 0, x, 0, n);
            assertClose(os, ov, n, 4 * EPS, "silu n=" + n);
            SCALAR.swiglu(os, 0, x, 0, y, 0, n);
            VECTOR.swiglu(ov, 0, x, 0, y, 0, n);
            assertClose(os, ov, n, 4 * EPS, "swiglu n=" + n);
            // In place, as the MLP uses it (out aliases gate).
            MemorySegment gs = copy(x), gv = copy(x);
            SCALAR.swiglu(gs, 0, gs, 0, y, 0, n);
            VECTOR.swiglu(gv, 0, gv, 0, y, 0, n);
            assertClose(gs, gv, n, 4 * EPS, "swiglu in place n=" + n);
        }
    }

    @Test
    void siluHandlesLargeMagnitudes() {
        MemorySegment x = ARENA.allocate(4 * 32);
        for (int i = 0; i < 32; i++) x.setAtIndex(F32_LE, i, (i % 2 == 0 ? 1 : -1) * (float) Math.pow(2, i % 9 * 2));
        MemorySegment s = ARENA.allocate(4 * 32), v = ARENA.allocate(4 * 32);
        SCALAR.silu(s, 0, x, 0, 32);
        VECTOR.silu(v, 0, x, 0, 32);
        assertClose(s, v, 32, 4 * EPS, "silu extremes");
    }

    @Test
    void rmsnormAgrees() {
        for (int dim : SIZES) {
            int rows = 3;
            MemorySegment x = random((long) rows * dim, dim), w = random(dim, dim + 7);
            MemorySegment s = ARENA.allocate(rows * dim * 4L), v = ARENA.allocate(rows * dim * 4L);
            SCALAR.rmsnorm(s, 0, x, 0, w, 0, rows, dim, 1e-5f);
            VECTOR.rmsnorm(v, 0, x, 0, w, 0, rows, dim, 1e-5f);
            assertClose(s, v, (long) rows * dim, 4 * (dim + 4) * EPS, "rmsnorm dim=" + dim);
            MemorySegment inPlace = copy(x);
            VECTOR.rmsnorm(inPlace, 0, inPlace, 0, w, 0, rows, dim, 1e-5f);
            assertClose(v, inPlace, (long) rows * dim, 0, "rmsnorm in place dim=" + dim);
        }
    }

    @Test
    void softmaxAgreesAndHandlesMinusInfinity() {
        for (int n : SIZES) {
            MemorySegment x = random(n, 40 + n);
            for (int i = 0; i < n; i += 3) x.setAtIndex(F32_LE, i, Float.NEGATIVE_INFINITY); // causal-mask style
            if (n > 1) x.setAtIndex(F32_LE, 1, 30f);
            MemorySegment s = copy(x), v = copy(x);
            SCALAR.softmax(s, 0, n);
            VECTOR.softmax(v, 0, n);
            assertClose(s, v, n, 1e-6, "softmax n=" + n);
            double sum = 0;
            for (int i = 0; i < n; i++) {
                float p = v.getAtIndex(F32_LE, i);
                if (i % 3 == 0 && n > 1) assertEquals(0f, p, "softmax of -Inf must be 0 (n=" + n + ")");
                sum += p;
            }
            // n == 1 holds only -Inf: NaN, as in PyTorch.
            if (n > 1) assertEquals(1.0, sum, 1e-5, "softmax sum n=" + n);
        }
    }

    @Test
    void ropeAgrees() {
        int rows = 5, heads = 3, maxPos = 40;
        for (int headDim : new int[] {2, 6, 14, 64, 128}) {
            int half = headDim / 2, ldx = heads * headDim + 9;
            MemorySegment x = random((long) rows * ldx, headDim);
            MemorySegment cos = random((long) maxPos * half, 1), sin = random((long) maxPos * half, 2);
            int[] pos = {0, 7, 39, 3, 3};
            MemorySegment s = copy(x), v = copy(x);
            SCALAR.rope(s, 0, ldx, rows, heads, headDim, cos, sin, pos);
            VECTOR.rope(v, 0, ldx, rows, heads, headDim, cos, sin, pos);
            assertClose(s, v, (long) rows * ldx, 0, "rope headDim=" + headDim);
        }
    }

    @Test
    void conversionsAgree() {
        for (int n : SIZES) {
            MemorySegment f = random(n, 77 + n);
            SplittableRandom r = new SplittableRandom(n);
            for (int i = 0; i < n; i += 5) f.setAtIndex(F32_LE, i, Float.intBitsToFloat(r.nextInt()));
            if (n > 2) f.setAtIndex(F32_LE, 2, Float.intBitsToFloat(0x7F800001)); // signalling NaN
            MemorySegment hs = ARENA.allocate(n * 2L), hv = ARENA.allocate(n * 2L);
            SCALAR.f32ToBf16(f, 0, hs, 0, n);
            VECTOR.f32ToBf16(f, 0, hv, 0, n);
            SCALAR.f32ToF16(f, 0, hs, 0, 0); // no-op: n == 0 must be fine
            for (int i = 0; i < n; i++) assertEquals(hs.getAtIndex(I16_LE, i), hv.getAtIndex(I16_LE, i), "f32ToBf16 n=" + n + " i=" + i);
            MemorySegment fs = ARENA.allocate(n * 4L), fv = ARENA.allocate(n * 4L);
            SCALAR.bf16ToF32(hs, 0, fs, 0, n);
            VECTOR.bf16ToF32(hs, 0, fv, 0, n);
            for (int i = 0; i < n; i++) {
                assertEquals(Float.floatToRawIntBits(fs.getAtIndex(F32_LE, i)), Float.floatToRawIntBits(fv.getAtIndex(F32_LE, i)), "bf16ToF32 i=" + i);
            }
            SCALAR.f32ToF16(f, 0, hs, 0, n);
            VECTOR.f32ToF16(f, 0, hv, 0, n);
            for (int i = 0; i < n; i++) assertEquals(hs.getAtIndex(I16_LE, i), hv.getAtIndex(I16_LE, i), "f32ToF16 i=" + i);
        }
    }

    /** round16 is the conversion to 16 bits and back, bit for bit (NaN stays NaN, fp16 overflows to Inf), at an offset. */
    @Test
    void round16IsTheRoundTripThroughSixteenBits() {
        for (int n : SIZES)
            for (dev.llamafit.tensor.DType to : new dev.llamafit.tensor.DType[] {dev.llamafit.tensor.DType.BF16, dev.llamafit.tensor.DType.F16}) {
                MemorySegment f = random(n + 3, 91 + n);
                SplittableRandom r = new SplittableRandom(n);
                for (int i = 3; i < n + 3; i += 4) f.setAtIndex(F32_LE, i, Float.intBitsToFloat(r.nextInt()));
                if (n > 2) f.setAtIndex(F32_LE, 4, Float.intBitsToFloat(0x7F800001)); // signalling NaN
                if (n > 3) f.setAtIndex(F32_LE, 5, 70000f);                        // above fp16's largest finite value
                MemorySegment half = ARENA.allocate((n + 3) * 2L), want = ARENA.allocate((n + 3) * 4L);
                if (to == dev.llamafit.tensor.DType.BF16) { SCALAR.f32ToBf16(f, 3, half, 0, n); SCALAR.bf16ToF32(half, 0, want, 0, n); }
                else { SCALAR.f32ToF16(f, 3, half, 0, n); SCALAR.f16ToF32(half, 0, want, 0, n); }
                for (Kernels k : new Kernels[] {SCALAR, VECTOR}) {
                    MemorySegment x = copy(f);
                    k.round16(x, 3, n, to);
                    for (int i = 0; i < 3; i++) assertEquals(f.getAtIndex(F32_LE, i), x.getAtIndex(F32_LE, i), "before the offset");
                    for (int i = 0; i < n; i++)
                        assertEquals(Float.floatToRawIntBits(want.getAtIndex(F32_LE, i)), Float.floatToRawIntBits(x.getAtIndex(F32_LE, 3 + i)),
                                k.getClass().getSimpleName() + " " + to + " n=" + n + " i=" + i);
                }
            }
    }

    @Test
    void embeddingAgreesAndRejectsBadIds() {
        int vocab = 13, dim = 31;
        MemorySegment table = random((long) vocab * dim, 9);
        MemorySegment half = ARENA.allocate(vocab * dim * 2L);
        SCALAR.f32ToBf16(table, 0, half, 0, (long) vocab * dim);
        int[] ids = {0, 12, 5, 5};
        for (DType t : new DType[] {DType.F32, DType.BF16, DType.F16}) {
            MemorySegment src = t == DType.F32 ? table : half;
            if (t == DType.F16) SCALAR.f32ToF16(table, 0, half, 0, (long) vocab * dim);
            MemorySegment s = ARENA.allocate(ids.length * dim * 4L), v = ARENA.allocate(ids.length * dim * 4L);
            SCALAR.embedding(s, 0, src, t, vocab, dim, ids);
            VECTOR.embedding(v, 0, src, t, vocab, dim, ids);
            assertClose(s, v, (long) ids.length * dim, 0, "embedding " + t);
            for (int j = 0; j < dim; j++) {
                float want = t == DType.F32 ? table.getAtIndex(F32_LE, 12L * dim + j)
                        : t == DType.F16 ? Float.float16ToFloat(half.getAtIndex(I16_LE, 12L * dim + j))
                        : ScalarKernels.bf16ToFloat(half.getAtIndex(I16_LE, 12L * dim + j));
                assertEquals(want, v.getAtIndex(F32_LE, (long) dim + j));
            }
        }
        MemorySegment out = ARENA.allocate(dim * 4L);
        for (Kernels k : new Kernels[] {SCALAR, VECTOR}) {
            IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                    () -> k.embedding(out, 0, table, DType.F32, vocab, dim, new int[] {13}));
            assertTrue(e.getMessage().contains("token id 13") && e.getMessage().contains("[0, 13)"), e.getMessage());
            assertThrows(IllegalArgumentException.class, () -> k.embedding(out, 0, table, DType.F32, vocab, dim, new int[] {-1}));
        }
    }

    /** Bit equality: the backward kernels feed training, which must not depend on the backend's JIT state. */
    static void assertSameBits(MemorySegment want, MemorySegment got, long n, String what) {
        for (long i = 0; i < n; i++) {
            int w = Float.floatToRawIntBits(want.getAtIndex(F32_LE, i)), g = Float.floatToRawIntBits(got.getAtIndex(F32_LE, i));
            if (w != g) fail(what + ": element " + i + " of " + n + ": scalar " + Float.intBitsToFloat(w) + " vector " + Float.intBitsToFloat(g));
        }
    }

    @Test
    void rmsnormBackwardGivesTheSpecificationsBits() {
        for (int dim : SIZES) {
            int rows = 3;
            long n = (long) rows * dim;
            MemorySegment x = random(n, dim), w = random(dim, dim + 1), dy = random(n, dim + 2), inv = random(rows, dim + 3);
            MemorySegment dx0 = random(n, dim + 4), dw0 = random(dim, dim + 5);
            MemorySegment dxs = copy(dx0), dxv = copy(dx0), dws = copy(dw0), dwv = copy(dw0);
            SCALAR.rmsnormBackward(x, 0, inv, 0, dy, 0, w, 0, rows, dim, dxs, 0, dws, 0);
            VECTOR.rmsnormBackward(x, 0, inv, 0, dy, 0, w, 0, rows, dim, dxv, 0, dwv, 0);
            assertSameBits(dxs, dxv, n, "rmsnormBackward dX dim=" + dim);
            assertSameBits(dws, dwv, dim, "rmsnormBackward dW dim=" + dim);
            // Frozen gain: dX alone, the same as with a gain gradient.
            MemorySegment frozen = copy(dx0);
            VECTOR.rmsnormBackward(x, 0, inv, 0, dy, 0, w, 0, rows, dim, frozen, 0, null, 0);
            assertSameBits(dxs, frozen, n, "rmsnormBackward without dW dim=" + dim);
            // dX changed from its incoming value (the kernel accumulates).
            assertTrue(dxs.getAtIndex(F32_LE, 0) != dx0.getAtIndex(F32_LE, 0), "rmsnormBackward did not touch dX");
        }
    }

    @Test
    void ropeBackwardGivesTheSpecificationsBitsAndUndoesRope() {
        int rows = 5, heads = 3, maxPos = 40;
        for (int headDim : new int[] {2, 6, 14, 26, 62, 64, 128}) {
            int half = headDim / 2, ldx = heads * headDim + 9;
            MemorySegment x = random((long) rows * ldx, headDim);
            MemorySegment cos = ARENA.allocate((long) maxPos * half * 4), sin = ARENA.allocate((long) maxPos * half * 4);
            for (int i = 0; i < maxPos * half; i++) {
                double a = 0.37 * i;
                cos.setAtIndex(F32_LE, i, (float) Math.cos(a));
                sin.setAtIndex(F32_LE, i, (float) Math.sin(a));
            }
            int[] pos = {0, 7, 39, 3, 3};
            MemorySegment s = copy(x), v = copy(x);
            SCALAR.ropeBackward(s, 0, ldx, rows, heads, headDim, cos, sin, pos);
            VECTOR.ropeBackward(v, 0, ldx, rows, heads, headDim, cos, sin, pos);
            assertSameBits(s, v, (long) rows * ldx, "ropeBackward headDim=" + headDim);
            // The rotation's transpose is its inverse: rope then ropeBackward returns x (to rounding).
            VECTOR.rope(v, 0, ldx, rows, heads, headDim, cos, sin, pos);
            for (long i = 0; i < (long) rows * ldx; i++) {
                assertEquals(x.getAtIndex(F32_LE, i), v.getAtIndex(F32_LE, i), 8 * EPS, "rope(ropeBackward(x)) headDim=" + headDim + " i=" + i);
            }
        }
    }

    @Test
    void swigluBackwardAgrees() {
        for (int n : SIZES) {
            MemorySegment g = random(n, n + 11), u = random(n, n + 12), dh = random(n, n + 13);
            for (int i = 0; i < n; i += 5) g.setAtIndex(F32_LE, i, g.getAtIndex(F32_LE, i) * 12f); // saturated sigmoids too
            MemorySegment dhs = copy(dh), dhv = copy(dh), dus = ARENA.allocate(n * 4L), duv = ARENA.allocate(n * 4L);
            SCALAR.swigluBackward(g, 0, u, 0, dhs, 0, dus, 0, n);
            VECTOR.swigluBackward(g, 0, u, 0, dhv, 0, duv, 0, n);
            for (int i = 0; i < n; i++) {
                double gi = g.getAtIndex(F32_LE, i), ui = u.getAtIndex(F32_LE, i), d = dh.getAtIndex(F32_LE, i);
                // σ differs by about an ulp (VectorMath.exp vs Math.exp); bound each output by its terms' sizes.
                double tolUp = 8 * EPS * Math.abs(d * gi) + 1e-30;
                double tolG = 8 * EPS * Math.abs(d * ui) * (1 + 2 * Math.abs(gi)) + 1e-30;
                float su = dus.getAtIndex(F32_LE, i), vu = duv.getAtIndex(F32_LE, i);
                float sg = dhs.getAtIndex(F32_LE, i), vg = dhv.getAtIndex(F32_LE, i);
                if (!(Math.abs(su - vu) <= tolUp)) fail("swigluBackward du n=" + n + " i=" + i + ": " + su + " vs " + vu);
                if (!(Math.abs(sg - vg) <= tolG)) fail("swigluBackward dg n=" + n + " i=" + i + ": " + sg + " vs " + vg);
                // And the specification is the derivative: du = dh·silu(g).
                double silu = gi / (1 + Math.exp(-gi));
                assertEquals(d * silu, su, 4 * EPS * Math.abs(d * gi) + 1e-30, "du = dh·silu(g) at n=" + n + " i=" + i);
            }
        }
    }

    @Test
    void softmaxBackwardGivesTheSpecificationsBits() {
        for (int n : SIZES) {
            MemorySegment p = random(n, n + 21);
            for (int i = 0; i < n; i++) p.setAtIndex(F32_LE, i, Math.abs(p.getAtIndex(F32_LE, i)));
            SCALAR.softmax(p, 0, n); // a real distribution
            MemorySegment d = random(n, n + 22), s = copy(d), v = copy(d);
            SCALAR.softmaxBackward(p, 0, s, 0, n);
            VECTOR.softmaxBackward(p, 0, v, 0, n);
            assertSameBits(s, v, n, "softmaxBackward n=" + n);
            // Softmax is shift-invariant, so its gradient sums to zero.
            double sum = 0, mag = 0;
            for (int i = 0; i < n; i++) {
                sum += s.getAtIndex(F32_LE, i);
                mag += Math.abs(s.getAtIndex(F32_LE, i));
            }
            assertEquals(0, sum, 4 * n * EPS * Math.max(mag, 1e-3), "softmaxBackward rows sum to 0, n=" + n);
        }
    }

    @Test
    void tiledSoftmaxPrimitivesAgree() {
        for (int n : SIZES) {
            MemorySegment x = random(n, 60 + n);
            for (int i = 0; i < n; i++) x.setAtIndex(F32_LE, i, x.getAtIndex(F32_LE, i) * 6);
            if (n > 4) x.setAtIndex(F32_LE, n - 2, 7f); // the maximum in the scalar tail or not
            for (int i = 0; i < n; i += 5) x.setAtIndex(F32_LE, i, Float.NEGATIVE_INFINITY); // masked entries
            float want = Float.NEGATIVE_INFINITY;
            for (int i = 0; i < n; i++) want = Math.max(want, x.getAtIndex(F32_LE, i));
            assertEquals(want, SCALAR.max(x, 0, n), "scalar max n=" + n);
            assertEquals(want, VECTOR.max(x, 0, n), "vector max n=" + n);
            // exp with a shift: the running max, and a shift above it (backward's log-sum-exp).
            for (float shift : new float[] {want, want + 2.5f}) {
                if (Float.isInfinite(shift)) continue;
                MemorySegment s = copy(x), v = copy(x);
                float ss = SCALAR.expSum(s, 0, n, shift), vs = VECTOR.expSum(v, 0, n, shift);
                assertClose(s, v, n, 1e-6, "expSum n=" + n);
                assertEquals(ss, vs, 1e-6 * n * ss, "expSum's sum n=" + n);
                double exact = 0;
                for (int i = 0; i < n; i++) {
                    exact += Math.exp((double) x.getAtIndex(F32_LE, i) - shift);
                    if (i % 5 == 0) assertEquals(0f, v.getAtIndex(F32_LE, i), "e^-Inf is 0 (n=" + n + ")");
                }
                assertEquals(exact, vs, 1e-6 * n * exact, "expSum against double n=" + n);
                // Same bits the second time round (JIT or not).
                MemorySegment again = copy(x);
                assertEquals(Float.floatToRawIntBits(vs), Float.floatToRawIntBits(VECTOR.expSum(again, 0, n, shift)), "repeat n=" + n);
                assertSameBits(v, again, n, "expSum repeat n=" + n);
            }
            // softmaxBackward with the row sum given equals the one that computes it.
            MemorySegment p = random(n, n + 71);
            for (int i = 0; i < n; i++) p.setAtIndex(F32_LE, i, Math.abs(p.getAtIndex(F32_LE, i)));
            SCALAR.softmax(p, 0, n);
            MemorySegment d = random(n, n + 72), full = copy(d), s = copy(d), v = copy(d);
            double dot = 0;
            for (int j = 0; j < n; j++) dot += p.getAtIndex(F32_LE, j) * d.getAtIndex(F32_LE, j);
            SCALAR.softmaxBackward(p, 0, full, 0, n);
            SCALAR.softmaxBackward(p, 0, s, 0, n, (float) dot);
            VECTOR.softmaxBackward(p, 0, v, 0, n, (float) dot);
            assertSameBits(full, s, n, "softmaxBackward with s n=" + n);
            assertSameBits(s, v, n, "vector softmaxBackward with s n=" + n);
        }
    }

    @Test
    void softmaxCrossEntropyGivesTheSpecificationsBits() {
        for (int n : SIZES) {
            for (int label : new int[] {0, n / 2, n - 1}) {
                MemorySegment z = random(n, n + 31 + label);
                for (int i = 0; i < n; i++) z.setAtIndex(F32_LE, i, z.getAtIndex(F32_LE, i) * 8);
                if (n > 4) z.setAtIndex(F32_LE, n - 2, 9f); // the maximum near the end, in the scalar tail or not
                MemorySegment s = copy(z), v = copy(z);
                double ls = SCALAR.softmaxCrossEntropy(s, 0, n, label, 0.25f);
                double lv = VECTOR.softmaxCrossEntropy(v, 0, n, label, 0.25f);
                // Each backend uses its own softmax (inference's), so the two agree as softmax does (logits up to ±9 here) ...
                assertEquals(ls, lv, 1e-6 * Math.max(1, Math.abs(ls)), "loss n=" + n + " label=" + label);
                assertClose(s, v, n, 4e-6, "dlogits n=" + n + " label=" + label);
                // ... and the vector arg-max, scaling and one-hot give exactly the composition of its own kernels.
                MemorySegment c = copy(z);
                int arg = 0;
                for (int i = 1; i < n; i++) if (z.getAtIndex(F32_LE, i) > z.getAtIndex(F32_LE, arg)) arg = i;
                VECTOR.softmax(c, 0, n);
                double lc = z.getAtIndex(F32_LE, arg) - z.getAtIndex(F32_LE, label) - Math.log(c.getAtIndex(F32_LE, arg));
                VECTOR.scale(c, 0, n, 0.25f);
                c.setAtIndex(F32_LE, label, c.getAtIndex(F32_LE, label) - 0.25f);
                assertEquals(Double.doubleToRawLongBits(lc), Double.doubleToRawLongBits(lv), "vector loss n=" + n + " label=" + label);
                assertSameBits(c, v, n, "vector dlogits n=" + n + " label=" + label);
                double lse = 0, max = Double.NEGATIVE_INFINITY;
                for (int i = 0; i < n; i++) max = Math.max(max, z.getAtIndex(F32_LE, i));
                for (int i = 0; i < n; i++) lse += Math.exp(z.getAtIndex(F32_LE, i) - max);
                assertEquals(max + Math.log(lse) - z.getAtIndex(F32_LE, label), ls, 1e-5, "loss = lse − z[label]");
            }
        }
    }
}
