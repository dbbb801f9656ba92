// Adds an fp32 GEMM product into a weight gradient stored in fp32, or in bf16 under bf16-pure training.
package dev.llamafit.nn;

import java.lang.foreign.MemorySegment;

import dev.llamafit.kernels.Kernels;
import dev.llamafit.tensor.DType;
import dev.llamafit.tensor.Tensor;

/**
 * The GEMMs write fp32 only. An F32 gradient takes a product in the GEMM itself (beta = 1), exactly as before; a BF16
 * gradient (bf16-pure: gradients in the parameters' dtype, as in torchtune) gets it in an fp32 scratch and then
 * dW ← bf16(dW + product), one rounding per contribution ({@link Kernels#addRoundBf16}).
 */
public final class WeightGradient {
    private WeightGradient() {}

    /**
     * dW[m, n] += alpha·op(A)·op(B), op(A) [m, kk] and op(B) [kk, n] fp32, dW row-major with leading dimension n.
     *
     * @param scratch fp32, at least m·n floats; needed (non-null) only when dW is BF16
     */
    public static void addProduct(Kernels k, boolean transA, boolean transB, int m, int n, int kk, float alpha,
                                  MemorySegment a, long aOff, int lda, MemorySegment b, long bOff, int ldb,
                                  Tensor dW, MemorySegment scratch) {
        if (dW.dtype() == DType.F32) {
            k.gemm(transA, transB, m, n, kk, alpha, a, aOff, lda, b, bOff, ldb, 1f, dW.segment(), 0, n);
            return;
        }
        if (dW.dtype() != DType.BF16) throw new IllegalArgumentException("a weight gradient is F32 or BF16, not " + dW);
        long elements = (long) m * n;
        if (scratch == null || scratch.byteSize() < elements * 4)
            throw new IllegalArgumentException("a BF16 weight gradient needs an fp32 scratch of " + elements + " floats: " + dW);
        k.gemm(transA, transB, m, n, kk, alpha, a, aOff, lda, b, bOff, ldb, 0f, scratch, 0, n);
        k.addRoundBf16(dW.segment(), 0, scratch, 0, elements);
    }
}
