// Global L2-norm gradient clipping with torch.nn.utils.clip_grad_norm_ semantics.
package dev.llamafit.optim;

import java.lang.foreign.MemorySegment;
import java.util.List;

import dev.llamafit.kernels.KernelBackends;
import dev.llamafit.kernels.Kernels;
import dev.llamafit.kernels.Parallel;
import dev.llamafit.kernels.UpdateKernels;
import dev.llamafit.tensor.DType;
import dev.llamafit.tensor.Tensor;

/**
 * Clips gradients by their global L2 norm, as torch.nn.utils.clip_grad_norm_(params, max_norm) with
 * norm_type 2: total = ‖(‖g₁‖, ‖g₂‖, …)‖ = √Σ g², coefficient max_norm / (total + 1e-6), clamped to at
 * most 1, multiplied into every gradient. Differences, on purpose: the sum of squares is taken in double
 * (PyTorch reduces in the gradient's float32), and a non-finite norm leaves the gradients untouched and is
 * returned for the trainer to report (PyTorch would multiply by NaN unless error_if_nonfinite). BF16 gradients
 * (bf16-pure) are widened for the sum and rounded to nearest even when scaled.
 */
public final class GradClip {
    /** The epsilon PyTorch adds to the norm before dividing. */
    public static final double EPS = 1e-6;
    /** Elements per block of the sum of squares; partial sums are added in block order, so the result does not depend on threads. */
    private static final int BLOCK = UpdateKernels.BLOCK;

    private GradClip() {}

    /**
     * Scales {@code grads} in place by min(1, maxNorm / (norm + 1e-6)) and returns the norm before clipping.
     * {@code maxNorm} ≤ 0 or infinite means no clipping (the norm is still computed and returned).
     */
    public static double clipGlobalNorm(List<Tensor> grads, double maxNorm) {
        return clip(grads, maxNorm, globalNorm(grads));
    }

    /** As {@link #clipGlobalNorm} with the norm already computed ({@link #globalNorm}, e.g. by the loss scaler's unscale). */
    public static double clip(List<Tensor> grads, double maxNorm, double norm) {
        if (Double.isNaN(maxNorm)) throw new IllegalArgumentException("max gradient norm is NaN");
        if (maxNorm <= 0 || Double.isInfinite(maxNorm) || !Double.isFinite(norm)) return norm;
        double coef = maxNorm / (norm + EPS);
        if (coef >= 1.0) return norm; // clamp(max=1): multiplying by 1 changes nothing
        float scale = (float) coef;
        Kernels k = KernelBackends.get();
        for (Tensor g : grads) {
            MemorySegment s = g.segment();
            if (g.dtype() == DType.BF16) UpdateKernels.forBlocks(g.elements(), (from, to) -> k.scaleBf16(s, from, to, scale));
            else UpdateKernels.forBlocks(g.elements(), (from, to) -> k.scale(s, from, to - from, scale));
        }
        return norm;
    }

    /** The L2 norm of all elements of {@code grads} together, accumulated in double. */
    public static double globalNorm(List<Tensor> grads) {
        Kernels k = KernelBackends.get();
        double sum = 0;
        for (Tensor g : grads) {
            if (g.dtype() != DType.F32 && g.dtype() != DType.BF16)
                throw new IllegalArgumentException("gradient " + g.name() + " is " + g.dtype() + ", clipping needs F32 or BF16");
            sum += sumOfSquares(k, g.segment(), g.elements(), g.dtype() == DType.BF16);
        }
        return Math.sqrt(sum);
    }

    /** Σ x² in double over F32 elements, or BF16 ones widened exactly (bf16-pure gradients). */
    private static double sumOfSquares(Kernels k, MemorySegment s, long n, boolean bf16) {
        int blocks = Math.toIntExact((n + BLOCK - 1) / BLOCK);
        if (blocks <= 1) return bf16 ? k.sumOfSquaresBf16(s, 0, n) : k.sumOfSquares(s, 0, n);
        double[] partial = new double[blocks];
        Parallel.forRange(blocks, (b0, b1) -> {
            for (int b = b0; b < b1; b++) {
                long from = (long) b * BLOCK, to = Math.min(n, (long) (b + 1) * BLOCK);
                partial[b] = bf16 ? k.sumOfSquaresBf16(s, from, to) : k.sumOfSquares(s, from, to);
            }
        });
        double sum = 0;
        for (double p : partial) sum += p;
        return sum;
    }
}
