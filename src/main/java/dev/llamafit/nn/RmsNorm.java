// RMSNorm (Zhang and Sennrich 2019) as used by LLaMA: x / rms(x) · weight.
package dev.llamafit.nn;

import java.lang.foreign.MemorySegment;

import dev.llamafit.kernels.Kernels;
import dev.llamafit.tensor.Tensor;

/** Root-mean-square layer normalisation with a learned per-channel gain [C]. */
public final class RmsNorm {
    private final Tensor weight; // [C]
    private final float eps;
    private final int dim;

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
}
