// The onednn backend: its native fp32 and bf16 GEMMs agree with the scalar specification, repeat bit for bit, and use the pool's thread count.
package dev.llamafit.kernels;

import static dev.llamafit.tensor.Tensor.F32_LE;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.util.ArrayList;
import java.util.List;
import java.util.SplittableRandom;
import java.util.concurrent.atomic.AtomicInteger;

import dev.llamafit.tensor.DType;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.Test;

/**
 * Needs libdnnl.so.2 (apt-get install -y libdnnl2): without it each test is skipped with the reason, or fails
 * when CI=true (as SharedData does for missing test data), since CI installs it.
 *
 * <p>Tolerance, for fp32 and bf16 alike: |native − scalar| ≤ 2·(k+2)·ulp(1)·(|alpha|·Σ|a·b| + |beta·c|), the
 * bound of two fp32 summations of k products in different orders. The bf16 operands are fp32 values rounded to
 * bf16 first, so the scalar specification run on their exact fp32 widenings is the same product; only the
 * summation order (and oneDNN's fp32 accumulation) differs.
 */
class OneDnnKernelsTest {
    static final Kernels SCALAR = new ScalarKernels();
    static final Arena ARENA = Arena.ofShared();
    static final float EPS = Math.ulp(1f);
    /** Awkward sizes plus the engine's: C=288 (stories15M), F=768, and a prefill's T. */
    static final int[][] SHAPES = {{1, 1, 1}, {3, 7, 13}, {13, 31, 7}, {31, 13, 207}, {207, 31, 64}, {64, 288, 288},
            {37, 768, 288}, {37, 288, 768}, {128, 32, 512}};

    @AfterAll
    static void close() { ARENA.close(); }

    static OneDnnKernels onednn() {
        String why = OneDnnKernels.unavailableReason();
        if (why != null) {
            if ("true".equals(System.getenv("CI"))) fail(why + "; CI must have libdnnl2 installed");
            Assumptions.abort(why);
        }
        return OneDnnKernels.create();
    }

    @Test
    void nativeSgemmAgreesWithTheSpecificationOnEveryLayout() {
        OneDnnKernels k = onednn();
        int cases = 0;
        for (int[] s : SHAPES) for (int variant = 0; variant < 4; variant++) {
            // variants: A·Bᵀ (forward), A·B (backward dX), Aᵀ·B (backward dW), and Aᵀ·Bᵀ for completeness
            boolean transA = variant >= 2, transB = (variant & 1) == 0;
            float alpha = variant == 1 ? -0.75f : 1f, beta = (cases % 3) == 0 ? 0f : (cases % 3) == 1 ? 1f : 0.5f;
            gemmCase(k, DType.F32, transA, transB, s[0], s[1], s[2], alpha, beta, cases++);
        }
        assertTrue(cases >= 36);
    }

    @Test
    void bf16GemmAgreesWithTheSpecificationOnBf16ExactOperands() {
        OneDnnKernels k = onednn();
        int cases = 0;
        for (int[] s : SHAPES) for (int variant = 0; variant < 4; variant++) {
            boolean transA = variant >= 2, transB = (variant & 1) == 0;
            float alpha = variant == 1 ? 0.5f : 1f, beta = (cases % 3) == 0 ? 0f : (cases % 3) == 1 ? 1f : -0.25f;
            gemmCase(k, DType.BF16, transA, transB, s[0], s[1], s[2], alpha, beta, cases++);
        }
        assertTrue(cases >= 36);
    }

    @Test
    void f16GemmAgreesWhereOneDnnSupportsIt() {
        OneDnnKernels k = onednn();
        // oneDNN 2.6's CPU matmul has f16 only on avx512_core_fp16 (Sapphire Rapids); elsewhere it must say so.
        Assumptions.assumeTrue(k.supports16(DType.F16, DType.F16), "oneDNN has no f16 matmul on this CPU");
        gemmCase(k, DType.F16, false, true, 37, 288, 96, 1f, 0f, 1);
        gemmCase(k, DType.F16, true, false, 31, 13, 207, 1f, 1f, 2);
    }

    @Test
    void unsupportedOperandsAreRefusedNotMisread() {
        OneDnnKernels k = onednn();
        MemorySegment x = ARENA.allocate(64), heap = MemorySegment.ofArray(new float[16]);
        assertThrows(UnsupportedOperationException.class,
                () -> k.gemm16(false, true, 2, 2, 2, 1f, x, 0, 2, DType.BF16, x, 0, 2, DType.F16, 0f, x, 0, 2));
        assertThrows(UnsupportedOperationException.class,
                () -> k.gemmBf16(false, true, 2, 2, 2, 1f, heap, 0, 2, x, 0, 2, 0f, x, 0, 2));
        // A matrix reaching past its segment is caught before the native call.
        assertThrows(IndexOutOfBoundsException.class, () -> k.gemmBf16(false, true, 8, 8, 8, 1f, x, 0, 8, x, 0, 8, 0f, x, 0, 8));
        assertThrows(IndexOutOfBoundsException.class, () -> k.nativeSgemm(false, true, 4, 4, 8, 1f, x, 0, 8, x, 0, 8, 0f, x, 0, 4));
    }

    /** The typed GEMM routes two bf16 operands to oneDNN and mixed pairs (fp32 × 16-bit weights) to the Vector API path. */
    @Test
    void typedGemmRoutesBf16PairsNativeAndMixedPairsToTheVectorPath() {
        OneDnnKernels k = onednn();
        Kernels vector = new VectorKernels();
        int m = 37, n = 288, kk = 64;
        MemorySegment x = random(DType.F32, (long) m * kk, 5), w = random(DType.BF16, (long) n * kk, 6), x16 = random(DType.BF16, (long) m * kk, 7);
        MemorySegment got = ARENA.allocate(4L * m * n), want = ARENA.allocate(4L * m * n);
        for (DType wt : new DType[] {DType.BF16, DType.F16}) {
            MemorySegment wTyped = wt == DType.BF16 ? w : random(DType.F16, (long) n * kk, 8);
            k.gemm(false, true, m, n, kk, 1f, x, DType.F32, 0, kk, wTyped, wt, 0, kk, 0f, got, 0, n);
            vector.gemm(false, true, m, n, kk, 1f, x, DType.F32, 0, kk, wTyped, wt, 0, kk, 0f, want, 0, n);
            assertEquals(-1, got.mismatch(want), "fp32 × " + wt + " must be the Vector API path, bit for bit");
        }
        k.gemm(false, true, m, n, kk, 1f, x16, DType.BF16, 0, kk, w, DType.BF16, 0, kk, 0f, got, 0, n);
        k.gemmBf16(false, true, m, n, kk, 1f, x16, 0, kk, w, 0, kk, 0f, want, 0, n);
        assertEquals(-1, got.mismatch(want), "bf16 × bf16 must go to oneDNN's matmul");
    }

    @Test
    void identicalCallsGiveIdenticalBits() {
        OneDnnKernels k = onednn();
        int m = 96, n = 288, kk = 768;
        MemorySegment a = random(DType.F32, (long) m * kk, 1), b = random(DType.F32, (long) n * kk, 2);
        MemorySegment a16 = random(DType.BF16, (long) m * kk, 3), b16 = random(DType.BF16, (long) n * kk, 4);
        MemorySegment c1 = ARENA.allocate(4L * m * n), c2 = ARENA.allocate(4L * m * n);
        for (int rep = 0; rep < 3; rep++) {
            k.nativeSgemm(false, true, m, n, kk, 1f, a, 0, kk, b, 0, kk, 0f, c1, 0, n);
            k.nativeSgemm(false, true, m, n, kk, 1f, a, 0, kk, b, 0, kk, 0f, c2, 0, n);
            assertEquals(-1, c1.mismatch(c2), "two identical dnnl_sgemm calls differ");
            k.gemmBf16(false, true, m, n, kk, 1f, a16, 0, kk, b16, 0, kk, 0f, c1, 0, n);
            k.gemmBf16(false, true, m, n, kk, 1f, a16, 0, kk, b16, 0, kk, 0f, c2, 0, n);
            assertEquals(-1, c1.mismatch(c2), "two identical bf16 matmuls differ");
        }
    }

    @Test
    void oneDnnUsesThePoolsThreadCountAndOneThreadInsidePoolTasks() {
        OneDnnKernels k = onednn();
        MemorySegment x = random(DType.BF16, 64, 5), c = ARENA.allocate(4 * 64);
        MemorySegment f = random(DType.F32, 64, 5);
        k.nativeSgemm(false, true, 8, 8, 8, 1f, f, 0, 8, f, 0, 8, 0f, c, 0, 8);
        assertEquals(Parallel.threads(), k.binding().ompMaxThreads(), "sgemm from an ordinary thread");
        // The matmul splits C over the pool itself: every stripe is one single-threaded call, so OpenMP never forks.
        k.gemmBf16(false, true, 8, 8, 8, 1f, x, 0, 8, x, 0, 8, 0f, c, 0, 8);
        assertEquals(1, k.binding().ompMaxThreads(), "bf16 matmul");
        List<Integer> inside = new ArrayList<>();
        AtomicInteger chunks = new AtomicInteger();
        Parallel.forChunks(Parallel.threads(), (chunk, from, to) -> {
            MemorySegment cc = ARENA.allocate(4 * 64);
            k.gemmBf16(false, true, 8, 8, 8, 1f, x, 0, 8, x, 0, 8, 0f, cc, 0, 8);
            synchronized (inside) { inside.add(k.binding().ompMaxThreads()); }
            chunks.incrementAndGet();
        });
        if (Parallel.threads() > 1) assertTrue(inside.stream().allMatch(t -> t == 1), "inside pool tasks: " + inside);
        assertEquals(chunks.get(), inside.size());
    }

    @Test
    void theProviderIsChosenByNameAndDelegatesOtherKernelsToTheVectorApi() {
        onednn();
        Kernels k = KernelBackends.choose("onednn", KernelBackends.PROVIDERS, s -> fail("nothing to log: " + s));
        assertInstanceOf(OneDnnKernels.class, k);
        assertTrue(k.name().startsWith("onednn(2."), k.name());
        MemorySegment x = random(DType.F32, 702, 6), y1 = random(DType.F32, 702, 7), y2 = ARENA.allocate(4 * 702);
        y2.copyFrom(y1);
        k.axpy(0.3f, x, 0, y1, 0, 702);
        new VectorKernels().axpy(0.3f, x, 0, y2, 0, 702);
        assertEquals(-1, y1.mismatch(y2));
        // The default fp32 GEMM is the Vector path's, so its bits are the vector backend's.
        MemorySegment c1 = ARENA.allocate(4L * 13 * 29), c2 = ARENA.allocate(4L * 13 * 29);
        k.gemm(false, true, 13, 29, 23, 1f, x, 0, 23, x, 0, 23, 0f, c1, 0, 29);
        new VectorKernels().gemm(false, true, 13, 29, 23, 1f, x, 0, 23, x, 0, 23, 0f, c2, 0, 29);
        if (!OneDnnKernels.NATIVE_SGEMM) assertEquals(-1, c1.mismatch(c2));
    }

    /** C [m, n] = alpha·op(A)·op(B) + beta·C in the given operand type, with padded strides and odd offsets; NaN in C when beta == 0. */
    static void gemmCase(OneDnnKernels k, DType type, boolean transA, boolean transB, int m, int n, int kk,
                         float alpha, float beta, long seed) {
        int aRows = transA ? kk : m, aCols = transA ? m : kk, bRows = transB ? n : kk, bCols = transB ? kk : n;
        int lda = aCols + 5, ldb = bCols + 2, ldc = n + 3;
        long aOff = 3, bOff = 11, cOff = 7;
        MemorySegment a = random(type, aOff + (long) aRows * lda, seed * 3 + 1);
        MemorySegment b = random(type, bOff + (long) bRows * ldb, seed * 3 + 2);
        MemorySegment a32 = widen(a, type), b32 = widen(b, type);
        MemorySegment c0 = random(DType.F32, cOff + (long) m * ldc, seed * 3 + 3);
        if (beta == 0f) for (long i = 0; i < c0.byteSize() / 4; i++) c0.setAtIndex(F32_LE, i, Float.NaN);
        MemorySegment cs = copy(c0), cn = copy(c0);
        SCALAR.gemm(transA, transB, m, n, kk, alpha, a32, aOff, lda, b32, bOff, ldb, beta, cs, cOff, ldc);
        if (type == DType.F32) k.nativeSgemm(transA, transB, m, n, kk, alpha, a, aOff, lda, b, bOff, ldb, beta, cn, cOff, ldc);
        else k.gemm16(transA, transB, m, n, kk, alpha, a, aOff, lda, type, b, bOff, ldb, type, beta, cn, cOff, ldc);
        for (int i = 0; i < m; i++) for (int j = 0; j < n; j++) {
            double mag = 0;
            for (int p = 0; p < kk; p++) {
                float x = a32.getAtIndex(F32_LE, aOff + (transA ? (long) p * lda + i : (long) i * lda + p));
                float y = b32.getAtIndex(F32_LE, bOff + (transB ? (long) j * ldb + p : (long) p * ldb + j));
                mag += Math.abs((double) x * y);
            }
            long ci = cOff + (long) i * ldc + j;
            mag = Math.abs(alpha) * mag + (beta == 0f ? 0 : Math.abs(beta * c0.getAtIndex(F32_LE, ci)));
            float s = cs.getAtIndex(F32_LE, ci), v = cn.getAtIndex(F32_LE, ci);
            double tol = 2.0 * (kk + 2) * EPS * mag + 1e-30;
            if (!(Math.abs(s - v) <= tol))
                fail(String.format("%s gemm transA=%b transB=%b m=%d n=%d k=%d alpha=%s beta=%s: C[%d,%d] scalar %s onednn %s tol %s",
                        type, transA, transB, m, n, kk, alpha, beta, i, j, s, v, tol));
        }
        for (long i = 0; i < cn.byteSize() / 4; i++) {
            long rel = i - cOff;
            boolean inside = rel >= 0 && rel / ldc < m && rel % ldc < n;
            if (!inside && Float.floatToRawIntBits(c0.getAtIndex(F32_LE, i)) != Float.floatToRawIntBits(cn.getAtIndex(F32_LE, i)))
                fail(type + " gemm wrote outside C at element " + i + " (m=" + m + " n=" + n + " k=" + kk + ")");
        }
    }

    /** n random values in [-1, 1) of the given type (16-bit ones rounded to nearest even from fp32). */
    /**
     * The mixed-precision view: on operands holding bf16 values (F32 rounded, or BF16) every GEMM is the bf16 matmul on
     * the same values, bit for bit as gemmBf16 on bf16 copies; an F32 operand with a value that is not bf16 sends that
     * GEMM back to the Vector path, whose bits it then has; small products stay there too.
     */
    @Test
    void theBf16ViewRunsTheNativeMatmulOnBf16ExactOperandsAndTheVectorPathOtherwise() {
        OneDnnKernels k = onednn();
        Kernels view = k.halfOperands(DType.BF16);
        Kernels vector = new VectorKernels();
        assertInstanceOf(OneDnnKernels.class, view);
        assertTrue(view.name().contains("bf16"), view.name());
        assertTrue(!k.halfOperands(DType.F16).name().contains("bf16"), "f16 stays on the Vector path");
        assertThrows(IllegalArgumentException.class, () -> k.halfOperands(DType.F32));
        int m = 96, n = 130, kk = 100; // 2·m·n·k ≥ MIN_BF16_FLOPS
        for (int variant = 0; variant < 4; variant++) {
            boolean transA = variant >= 2, transB = (variant & 1) == 0;
            float alpha = variant == 1 ? 0.5f : 1f, beta = variant == 3 ? 1f : 0f;
            MemorySegment a16 = random(DType.BF16, (long) m * kk, 20 + variant), b16 = random(DType.BF16, (long) kk * n, 30 + variant);
            MemorySegment a = widen(a16, DType.BF16), b = widen(b16, DType.BF16);
            int lda = transA ? m : kk, ldb = transB ? kk : n;
            MemorySegment c0 = random(DType.F32, (long) m * n, 40), want = ARENA.allocate(4L * m * n), got = ARENA.allocate(4L * m * n);
            want.copyFrom(c0);
            k.gemmBf16(transA, transB, m, n, kk, alpha, a16, 0, lda, b16, 0, ldb, beta, want, 0, n);
            got.copyFrom(c0);
            view.gemm(transA, transB, m, n, kk, alpha, a, 0, lda, b, 0, ldb, beta, got, 0, n);
            assertEquals(-1, want.mismatch(got), "F32×F32 through the view, variant " + variant);
            got.copyFrom(c0);
            view.gemm(transA, transB, m, n, kk, alpha, a, DType.F32, 0, lda, b16, DType.BF16, 0, ldb, beta, got, 0, n);
            assertEquals(-1, want.mismatch(got), "F32×BF16 through the view, variant " + variant);
            // One value that is not bf16: the whole GEMM runs on the Vector path.
            a.setAtIndex(F32_LE, 7, Math.nextUp(a.getAtIndex(F32_LE, 7)));
            want.copyFrom(c0);
            vector.gemm(transA, transB, m, n, kk, alpha, a, 0, lda, b, 0, ldb, beta, want, 0, n);
            got.copyFrom(c0);
            view.gemm(transA, transB, m, n, kk, alpha, a, 0, lda, b, 0, ldb, beta, got, 0, n);
            assertEquals(-1, want.mismatch(got), "an inexact operand falls back to the Vector path, variant " + variant);
        }
        // A rank-8 LoRA product (k = 8) is below MIN_BF16_SIDE: the Vector path's bits.
        MemorySegment u = widen(random(DType.BF16, 512L * 8, 50), DType.BF16), bb = widen(random(DType.BF16, 300L * 8, 51), DType.BF16);
        MemorySegment want = ARENA.allocate(4L * 512 * 300), got = ARENA.allocate(4L * 512 * 300);
        vector.gemm(false, true, 512, 300, 8, 1f, u, 0, 8, bb, 0, 8, 0f, want, 0, 300);
        view.gemm(false, true, 512, 300, 8, 1f, u, 0, 8, bb, 0, 8, 0f, got, 0, 300);
        assertEquals(-1, want.mismatch(got), "rank-8 product");
    }

    static MemorySegment random(DType type, long n, long seed) {
        SplittableRandom rnd = new SplittableRandom(seed);
        MemorySegment f = ARENA.allocate(4 * n, 64);
        for (long i = 0; i < n; i++) f.setAtIndex(F32_LE, i, (float) (rnd.nextDouble() * 2 - 1));
        if (type == DType.F32) return f;
        MemorySegment h = ARENA.allocate(2 * n, 64);
        if (type == DType.BF16) SCALAR.f32ToBf16(f, 0, h, 0, n);
        else SCALAR.f32ToF16(f, 0, h, 0, n);
        return h;
    }

    static MemorySegment widen(MemorySegment s, DType type) {
        if (type == DType.F32) return s;
        long n = s.byteSize() / 2;
        MemorySegment f = ARENA.allocate(4 * n, 64);
        if (type == DType.BF16) SCALAR.bf16ToF32(s, 0, f, 0, n);
        else SCALAR.f16ToF32(s, 0, f, 0, n);
        return f;
    }

    static MemorySegment copy(MemorySegment s) {
        MemorySegment c = ARENA.allocate(s.byteSize(), 64);
        c.copyFrom(s);
        return c;
    }
}
