// The "onednn" kernel backend: 16-bit (and optionally fp32) GEMM in native oneDNN, every other kernel from the Vector API.
package dev.llamafit.kernels;

import java.lang.foreign.MemorySegment;

import dev.llamafit.tensor.DType;

/**
 * Kernels whose GEMMs may run in oneDNN (libdnnl.so.2 through java.lang.foreign, see {@link OneDnn}); every
 * other kernel, the optimizer's included, is the {@link VectorKernels} one it extends, so a kernel added to
 * {@link Kernels} can never be left to a default here by mistake.
 *
 * <p>fp32 {@link #gemm}: oneDNN's {@code dnnl_sgemm} only when {@link #NATIVE_SGEMM} is set
 * ({@code -Dllamafit.onednn.sgemm=true}); by default it stays on the Vector path, so that fp32 results stay
 * bit-identical to the vector backend's (sgemm measured 1.2-1.4× faster here, docs/BENCHMARKS.md, but it would
 * change the bits of every fp32 output). {@link #gemm16} is the bf16×bf16→fp32 (and f16×f16 where oneDNN
 * supports it) GEMM through the matmul primitive, which the Vector API cannot do at 16-bit speed.
 *
 * <p>Native calls need native memory: heap segments, and empty shapes, go to the Vector path (fp32) or are
 * widened by the caller (16-bit). Every range a native call reads or writes is bounds-checked first, since
 * the library itself cannot check.
 */
public final class OneDnnKernels extends VectorKernels {
    /** {@code -Dllamafit.onednn.sgemm=true}: send fp32 GEMM to dnnl_sgemm too. */
    public static final boolean NATIVE_SGEMM = Boolean.getBoolean("llamafit.onednn.sgemm");

    private final OneDnn dnnl;
    private final boolean nativeSgemm;

    OneDnnKernels(OneDnn dnnl, boolean nativeSgemm) {
        this.dnnl = dnnl;
        this.nativeSgemm = nativeSgemm;
    }

    /** The process's binding, loaded once; throws with the reason when oneDNN is unusable. */
    public static OneDnnKernels create() { return new OneDnnKernels(Binding.get(), NATIVE_SGEMM); }

    /** Null when oneDNN loads and its symbols resolve (and the Vector API, which it builds on, is usable), else why not. */
    public static String unavailableReason() {
        String vector = KernelBackends.vectorUnavailableReason();
        if (vector != null) return "the onednn backend runs its other kernels on the Vector API, but " + vector;
        try {
            Binding.get();
            return null;
        } catch (RuntimeException | LinkageError e) {
            return "oneDNN is not usable: " + e.getMessage();
        }
    }

    /** Loads the library on first use only; a failure is remembered, so the reason is the same every time. */
    private static final class Binding {
        private static final Object LOADED = loadOrReason();

        private static Object loadOrReason() {
            try {
                return OneDnn.load();
            } catch (RuntimeException | LinkageError e) {
                return e;
            }
        }

        static OneDnn get() {
            if (LOADED instanceof OneDnn d) return d;
            Throwable t = (Throwable) LOADED;
            throw new IllegalStateException(t.getMessage(), t);
        }
    }

    OneDnn binding() { return dnnl; }

    @Override
    public String name() {
        return "onednn(" + dnnl.version() + ", fp32 GEMM " + (nativeSgemm ? "native" : "vector") + ", other kernels " + super.name() + ")";
    }

    @Override
    public void gemm(boolean transA, boolean transB, int m, int n, int k, float alpha,
                     MemorySegment a, long aOff, int lda, MemorySegment b, long bOff, int ldb,
                     float beta, MemorySegment c, long cOff, int ldc) {
        if (!nativeSgemm || m == 0 || n == 0 || k == 0 || !a.isNative() || !b.isNative() || !c.isNative()) {
            super.gemm(transA, transB, m, n, k, alpha, a, aOff, lda, b, bOff, ldb, beta, c, cOff, ldc);
            return;
        }
        dnnl.sgemm(transA, transB, m, n, k, alpha,
                slice(a, aOff, transA ? k : m, transA ? m : k, lda, 4), lda,
                slice(b, bOff, transB ? n : k, transB ? k : n, ldb, 4), ldb,
                beta, slice(c, cOff, m, n, ldc, 4), ldc);
    }

    /**
     * The typed GEMM: two 16-bit operands of a type oneDNN's matmul supports here (bf16 on AVX-512 BF16) go to
     * {@link #gemm16}; every other pair (fp32 activations against 16-bit weights, as the model runs today) goes to the
     * Vector API path, which widens the 16-bit operand while packing.
     */
    @Override
    public void gemm(boolean transA, boolean transB, int m, int n, int k, float alpha,
                     MemorySegment a, DType aType, long aOff, int lda,
                     MemorySegment b, DType bType, long bOff, int ldb,
                     float beta, MemorySegment c, long cOff, int ldc) {
        if (aType == DType.F32 && bType == DType.F32) {
            gemm(transA, transB, m, n, k, alpha, a, aOff, lda, b, bOff, ldb, beta, c, cOff, ldc);
        } else if (supports16(aType, bType) && a.isNative() && b.isNative() && c.isNative()) {
            gemm16(transA, transB, m, n, k, alpha, a, aOff, lda, aType, b, bOff, ldb, bType, beta, c, cOff, ldc);
        } else {
            super.gemm(transA, transB, m, n, k, alpha, a, aType, aOff, lda, b, bType, bOff, ldb, beta, c, cOff, ldc);
        }
    }

    /** dnnl_sgemm regardless of the default choice: for the benchmark and the agreement tests. */
    public void nativeSgemm(boolean transA, boolean transB, int m, int n, int k, float alpha,
                            MemorySegment a, long aOff, int lda, MemorySegment b, long bOff, int ldb,
                            float beta, MemorySegment c, long cOff, int ldc) {
        new OneDnnKernels(dnnl, true).gemm(transA, transB, m, n, k, alpha, a, aOff, lda, b, bOff, ldb, beta, c, cOff, ldc);
    }

    /** Whether {@link #gemm16} has a oneDNN implementation for these operand types on this CPU. */
    public boolean supports16(DType aType, DType bType) {
        return aType == bType && aType != DType.F32 && dnnl.supportsMatmul(aType, bType);
    }

    /**
     * {@code C = alpha·op(A)·op(B) + beta·C} with A and B both bf16 (or both f16, where {@link #supports16}),
     * C fp32, products accumulated in fp32; the arguments otherwise as {@link #gemm}'s, offsets in elements of
     * each segment's own type. When {@code beta == 0} C's previous contents are ignored. Primitives are cached
     * per shape, layout, alpha, beta and thread count.
     *
     * @throws UnsupportedOperationException for other type pairs, or heap segments
     */
    public void gemm16(boolean transA, boolean transB, int m, int n, int k, float alpha,
                       MemorySegment a, long aOff, int lda, DType aType,
                       MemorySegment b, long bOff, int ldb, DType bType,
                       float beta, MemorySegment c, long cOff, int ldc) {
        if (aType != bType || aType == DType.F32 || OneDnn.dataType(aType) < 0)
            throw new UnsupportedOperationException("gemm16 takes two bf16 or two f16 operands, got " + aType + " and " + bType);
        if (!a.isNative() || !b.isNative() || !c.isNative())
            throw new UnsupportedOperationException("oneDNN needs native segments (heap segments cannot be passed to it)");
        if (m == 0 || n == 0) return;
        MemorySegment cs = slice(c, cOff, m, n, ldc, 4);
        if (k == 0) { // an empty sum: C = beta·C (oneDNN rejects zero-sized dimensions here)
            for (int i = 0; i < m; i++) {
                if (beta == 0f) cs.asSlice(4L * i * ldc, 4L * n).fill((byte) 0);
                else scale(c, cOff + (long) i * ldc, n, beta);
            }
            return;
        }
        int es = aType.bytes();
        OneDnn.MatmulKey key = new OneDnn.MatmulKey(OneDnn.dataType(aType), OneDnn.dataType(bType), transA, transB,
                m, n, k, lda, ldb, ldc, alpha, beta, OneDnn.threadsForCaller());
        dnnl.matmul(key, slice(a, aOff, transA ? k : m, transA ? m : k, lda, es),
                slice(b, bOff, transB ? n : k, transB ? k : n, ldb, es), cs);
    }

    /** bf16×bf16→fp32: {@link #gemm16} with both operands bf16. */
    public void gemmBf16(boolean transA, boolean transB, int m, int n, int k, float alpha,
                         MemorySegment a, long aOff, int lda, MemorySegment b, long bOff, int ldb,
                         float beta, MemorySegment c, long cOff, int ldc) {
        gemm16(transA, transB, m, n, k, alpha, a, aOff, lda, DType.BF16, b, bOff, ldb, DType.BF16, beta, c, cOff, ldc);
    }

    /** The part of {@code seg} a row-major [rows, cols] matrix with row stride ld at element offset off covers; checked. */
    private static MemorySegment slice(MemorySegment seg, long off, int rows, int cols, int ld, int elemBytes) {
        if (rows < 0 || cols < 0 || off < 0 || (rows > 1 && ld < cols))
            throw new IllegalArgumentException("bad matrix: off=" + off + " rows=" + rows + " cols=" + cols + " ld=" + ld);
        long elems = rows == 0 || cols == 0 ? 0 : (long) (rows - 1) * ld + cols;
        return seg.asSlice(off * elemBytes, elems * elemBytes); // throws IndexOutOfBoundsException past the end
    }
}
