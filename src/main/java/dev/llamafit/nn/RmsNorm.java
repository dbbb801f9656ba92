// RMSNorm (Zhang and Sennrich 2019) as used by LLaMA: x / rms(x) · weight, forward and backward.
package dev.llamafit.nn;

import static dev.llamafit.tensor.Tensor.F32_LE;

import java.lang.foreign.MemorySegment;

import dev.llamafit.kernels.Kernels;
import dev.llamafit.kernels.Parallel;
import dev.llamafit.tensor.Tensor;

/** Root-mean-square layer normalisation with a learned per-channel gain [C]. */
public final class RmsNorm {
    private final Tensor weight; // [C]
    private final float eps;
    private final int dim;       // C

    public RmsNorm(Tensor weight, double eps) {
        this.weight = weight;
        this.eps = (float) eps;
        this.dim = Math.toIntExact(weight.elements());
    }

    public Tensor weight() { return weight; }

    /** out[rows, C] = rmsnorm(x[rows, C]); out may alias x. */
    public void forward(Kernels k, MemorySegment x, long xOff, int rows, MemorySegment out, long outOff) {
        k.rmsnorm(out, outOff, x, xOff, weight.segment(), 0, rows, dim, eps);
    }

    /**
     * Training forward: as {@link #forward}, and saves r = 1/sqrt(mean(x²) + eps) per row, which backward needs
     * and which would otherwise cost a second pass over x. out must not alias x (backward reads x).
     *
     * @param invRms [rows] at element offset invOff, written
     */
    public void forward(Kernels k, MemorySegment x, long xOff, int rows, MemorySegment out, long outOff,
                        MemorySegment invRms, long invOff) {
        for (int r = 0; r < rows; r++) {
            long row = xOff + (long) r * dim;
            double ss = k.dot(x, row, x, row, dim);
            invRms.setAtIndex(F32_LE, invOff + r, (float) (1.0 / Math.sqrt(ss / dim + eps)));
        }
        k.rmsnorm(out, outOff, x, xOff, weight.segment(), 0, rows, dim, eps);
    }

    /**
     * Backward. With y = x·r·w and r = (mean(x²) + eps)^(−1/2), dr/dx_i = −x_i·r³/C, so
     * dx_i = r·w_i·dy_i − x_i·(r³/C)·Σ_j dy_j·w_j·x_j, and dw_i = Σ_rows dy_i·x_i·r.
     *
     * @param x       [rows, C], the forward's input
     * @param invRms  [rows] saved by the training forward
     * @param dY      [rows, C]
     * @param dX      [rows, C]; the input gradient is ADDED (the residual stream's gradient arrives there too)
     * @param dWeight [C], accumulated; null for a frozen gain
     */
    public void backward(MemorySegment x, long xOff, MemorySegment invRms, long invOff, MemorySegment dY, long dYOff,
                         int rows, MemorySegment dX, long dXOff, Tensor dWeight) {
        MemorySegment w = weight.segment();
        int chunks = Math.min(Parallel.threads(), Math.max(1, rows));
        float[][] partial = new float[chunks][dWeight == null ? 0 : dim]; // per-chunk dw, summed below: no races
        Parallel.forChunks(rows, (chunk, from, to) -> {
            float[] xr = new float[dim], dyr = new float[dim];
            float[] dw = partial[chunk];
            for (int r = from; r < to; r++) {
                long row = (long) r * dim;
                MemorySegment.copy(x, F32_LE, (xOff + row) * 4, xr, 0, dim);
                MemorySegment.copy(dY, F32_LE, (dYOff + row) * 4, dyr, 0, dim);
                float inv = invRms.getAtIndex(F32_LE, invOff + r);
                double dot = 0;
                for (int i = 0; i < dim; i++) dot += dyr[i] * w.getAtIndex(F32_LE, i) * xr[i];
                float coef = (float) (dot * inv * inv * inv / dim);
                for (int i = 0; i < dim; i++) {
                    long at = dXOff + row + i;
                    float wi = w.getAtIndex(F32_LE, i);
                    dX.setAtIndex(F32_LE, at, dX.getAtIndex(F32_LE, at) + inv * wi * dyr[i] - xr[i] * coef);
                }
                if (dWeight != null) for (int i = 0; i < dim; i++) dw[i] += dyr[i] * xr[i] * inv;
            }
        });
        if (dWeight != null)
            for (float[] dw : partial)
                for (int i = 0; i < dim; i++) dWeight.setFloat(i, dWeight.getFloat(i) + dw[i]);
    }
}
