// The dense projection: y = x·Wᵀ + b over an F32, BF16 or F16 weight stored [out, in] as in PyTorch and safetensors.
package dev.llamafit.nn;

import java.lang.foreign.MemorySegment;

import dev.llamafit.kernels.Kernels;
import dev.llamafit.tensor.DType;
import dev.llamafit.tensor.Tensor;

/**
 * A dense layer. Weight [out, in] (row-major, as Hugging Face stores it) in F32, BF16 or F16, used in place (a 16-bit
 * weight is widened inside the GEMM's packing, never copied whole); optional bias [out], always F32 (the model folder
 * widens 16-bit biases, which are tiny, so every element-wise kernel stays fp32). An F32 weight runs the fp32 GEMM
 * exactly as before. The weight gradient never reads W, so a 16-bit working copy of an fp32 master has one (fp32), and
 * so has a bf16-pure BF16 weight (BF16, through {@link WeightGradient}).
 */
public final class Linear implements Projection {
    private final Tensor weight; // [out, in]
    private final Tensor bias;   // [out] or null
    private final int in;
    private final int out;

    public Linear(Tensor weight, Tensor bias) {
        if (!isDenseType(weight.dtype()) || weight.shape().rank() != 2)
            throw new IllegalArgumentException("Linear needs an F32, BF16 or F16 [out, in] weight, got " + weight);
        this.weight = weight;
        this.out = Math.toIntExact(weight.shape().dim(0));
        this.in = Math.toIntExact(weight.shape().dim(1));
        if (bias != null && (bias.dtype() != DType.F32 || bias.elements() != out))
            throw new IllegalArgumentException("bias " + bias + " does not match weight " + weight);
        this.bias = bias;
    }

    /** The weight dtypes a dense projection reads in place. */
    public static boolean isDenseType(DType t) { return t == DType.F32 || t == DType.BF16 || t == DType.F16; }

    @Override
    public int in() { return in; }

    @Override
    public int out() { return out; }

    public Tensor weight() { return weight; }

    public Tensor bias() { return bias; }

    /** y[rows, out] = x[rows, in] · Wᵀ + b: one GEMM over all columns, then the bias row by row. */
    @Override
    public void forward(Kernels k, MemorySegment x, long xOff, int rows, MemorySegment y, long yOff) {
        if (weight.dtype() == DType.F32) k.gemm(false, true, rows, out, in, 1f, x, xOff, in, weight.segment(), 0, in, 0f, y, yOff, out);
        else k.gemm(false, true, rows, out, in, 1f, x, DType.F32, xOff, in, weight.segment(), weight.dtype(), 0, in, 0f, y, yOff, out);
        if (bias != null) {
            for (int r = 0; r < rows; r++) k.add(y, yOff + (long) r * out, bias.segment(), 0, out);
        }
    }

    /** Columns [from, to): rows from..to of W against x, written at column offset {@code from} of y's rows. */
    @Override
    public void forwardColumns(Kernels k, MemorySegment x, long xOff, int rows, int from, int to, MemorySegment y, long yOff) {
        if (weight.dtype() == DType.F32)
            k.gemm(false, true, rows, to - from, in, 1f, x, xOff, in, weight.segment(), (long) from * in, in,
                    0f, y, yOff + from, out);
        else
            k.gemm(false, true, rows, to - from, in, 1f, x, DType.F32, xOff, in, weight.segment(), weight.dtype(),
                    (long) from * in, in, 0f, y, yOff + from, out);
        if (bias != null)
            for (int r = 0; r < rows; r++) k.add(y, yOff + (long) r * out + from, bias.segment(), from, to - from);
    }

    @Override
    public void backward(Kernels k, MemorySegment x, long xOff, MemorySegment dY, long dYOff, int rows,
                         MemorySegment dX, long dXOff, boolean accumulateDx, Tensor dWeight, Tensor dBias, MemorySegment gradScratch) {
        // The weight gradient reads x first, so that dX may overwrite x (the block reuses h's buffer for dH).
        if (dWeight != null)
            WeightGradient.addProduct(k, true, false, out, in, rows, 1f, dY, dYOff, out, x, xOff, in, dWeight, gradScratch);
        if (dX != null && weight.dtype() == DType.F32)
            k.gemm(false, false, rows, in, out, 1f, dY, dYOff, out, weight.segment(), 0, in,
                    accumulateDx ? 1f : 0f, dX, dXOff, in);
        else if (dX != null)
            k.gemm(false, false, rows, in, out, 1f, dY, DType.F32, dYOff, out, weight.segment(), weight.dtype(), 0, in,
                    accumulateDx ? 1f : 0f, dX, dXOff, in);
        if (dBias != null)
            for (int r = 0; r < rows; r++) k.add(dBias.segment(), 0, dY, dYOff + (long) r * out, out);
    }
}
