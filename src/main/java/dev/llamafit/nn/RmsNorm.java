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
     * dx_i = r·w_i·dy_i − x_i·(r³/C)·Σ_j dy_j·w_j·x_j, and dw_i = Σ_rows dy_i·x_i·r (see {@link Kernels#rmsnormBackward}).
     * Rows are split into {@code Parallel.threads()} chunks; each chunk sums its dw apart, and the chunks' sums
     * are added in chunk order, so the result depends on sizes and the thread count only.
     *
     * @param x       [rows, C], the forward's input
     * @param invRms  [rows] saved by the training forward
     * @param dY      [rows, C]
     * @param dX      [rows, C]; the input gradient is ADDED (the residual stream's gradient arrives there too)
     * @param dWeight [C], accumulated; null for a frozen gain
     */
    public void backward(Kernels k, MemorySegment x, long xOff, MemorySegment invRms, long invOff, MemorySegment dY, long dYOff,
                         int rows, MemorySegment dX, long dXOff, Tensor dWeight) {
        int chunks = Math.min(Parallel.threads(), Math.max(1, rows));
        // Per-chunk dw [C] on byte arrays: heap segments the Vector API can read (float[]-backed ones it cannot).
        MemorySegment[] partial = new MemorySegment[dWeight == null ? 0 : chunks];
        for (int c = 0; c < partial.length; c++) partial[c] = MemorySegment.ofArray(new byte[dim * 4]);
        Parallel.forChunks(rows, (chunk, from, to) -> k.rmsnormBackward(x, xOff + (long) from * dim, invRms, invOff + from,
                dY, dYOff + (long) from * dim, weight.segment(), 0, to - from, dim, dX, dXOff + (long) from * dim,
                dWeight == null ? null : partial[chunk], 0));
        for (MemorySegment dw : partial) k.add(dWeight.segment(), 0, dw, 0, dim);
    }
}
