// Global L2-norm gradient clipping with torch.nn.utils.clip_grad_norm_ semantics.
package dev.llamafit.optim;

import static dev.llamafit.tensor.Tensor.F32_LE;

import java.lang.foreign.MemorySegment;
import java.util.List;

import dev.llamafit.kernels.KernelBackends;
import dev.llamafit.kernels.Kernels;
import dev.llamafit.kernels.Parallel;
import dev.llamafit.tensor.DType;
import dev.llamafit.tensor.Tensor;

/**
 * Clips gradients by their global L2 norm, as torch.nn.utils.clip_grad_norm_(params, max_norm) with
 * norm_type 2: total = ‖(‖g₁‖, ‖g₂‖, …)‖ = √Σ g², coefficient max_norm / (total + 1e-6), clamped to at
 * most 1, multiplied into every gradient. Differences, on purpose: the sum of squares is taken in double
 * (PyTorch reduces in the gradient's float32), and a non-finite norm leaves the gradients untouched and is
 * returned for the trainer to report (PyTorch would multiply by NaN unless error_if_nonfinite).
 */
public final class GradClip {
    /** The epsilon PyTorch adds to the norm before dividing. */
    public static final double EPS = 1e-6;
    /** Elements per block of the sum of squares; partial sums are added in block order, so the result does not depend on threads. */
    private static final int BLOCK = 1 << 15;

    private GradClip() {}

    /**
     * Scales {@code grads} in place by min(1, maxNorm / (norm + 1e-6)) and returns the norm before clipping.
     * {@code maxNorm} ≤ 0 or infinite means no clipping (the norm is still computed and returned).
     */
    public static double clipGlobalNorm(List<Tensor> grads, double maxNorm) {
        if (Double.isNaN(maxNorm)) throw new IllegalArgumentException("max gradient norm is NaN");
        double norm = globalNorm(grads);
        if (maxNorm <= 0 || Double.isInfinite(maxNorm) || !Double.isFinite(norm)) return norm;
        double coef = maxNorm / (norm + EPS);
        if (coef >= 1.0) return norm; // clamp(max=1): multiplying by 1 changes nothing
        float scale = (float) coef;
        Kernels k = KernelBackends.get();
        for (Tensor g : grads) {
            MemorySegment s = g.segment();
            UpdateKernels.forBlocks(g.elements(), (from, to) -> k.scale(s, from, to - from, scale));
        }
        return norm;
    }

    /** The L2 norm of all elements of {@code grads} together, accumulated in double. */
    public static double globalNorm(List<Tensor> grads) {
        double sum = 0;
        for (Tensor g : grads) {
            if (g.dtype() != DType.F32) throw new IllegalArgumentException("gradient " + g.name() + " is " + g.dtype() + ", clipping needs F32");
            sum += sumOfSquares(g.segment(), g.elements());
        }
        return Math.sqrt(sum);
    }

    private static double sumOfSquares(MemorySegment s, long n) {
        int blocks = Math.toIntExact((n + BLOCK - 1) / BLOCK);
        if (blocks <= 1) return sumOfSquares(s, 0, n);
        double[] partial = new double[blocks];
        Parallel.forRange(blocks, (b0, b1) -> {
            for (int b = b0; b < b1; b++) partial[b] = sumOfSquares(s, (long) b * BLOCK, Math.min(n, (long) (b + 1) * BLOCK));
        });
        double sum = 0;
        for (double p : partial) sum += p;
        return sum;
    }

    /** Four independent accumulators: shorter dependency chains, and a little less rounding than one. */
    private static double sumOfSquares(MemorySegment s, long from, long to) {
        double a0 = 0, a1 = 0, a2 = 0, a3 = 0;
        long i = from;
        for (; i + 4 <= to; i += 4) {
            double x0 = s.getAtIndex(F32_LE, i), x1 = s.getAtIndex(F32_LE, i + 1);
            double x2 = s.getAtIndex(F32_LE, i + 2), x3 = s.getAtIndex(F32_LE, i + 3);
            a0 += x0 * x0;
            a1 += x1 * x1;
            a2 += x2 * x2;
            a3 += x3 * x3;
        }
        for (; i < to; i++) {
            double x = s.getAtIndex(F32_LE, i);
            a0 += x * x;
        }
        return (a0 + a1) + (a2 + a3);
    }
}
