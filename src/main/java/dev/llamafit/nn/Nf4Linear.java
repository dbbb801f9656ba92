// A frozen projection over an NF4 weight (QLoRA's base): y = x·Wᵀ + b with W dequantised inside the GEMM's packing.
package dev.llamafit.nn;

import java.lang.foreign.MemorySegment;
import java.util.Map;

import dev.llamafit.kernels.Kernels;
import dev.llamafit.quant.Nf4Weight;
import dev.llamafit.tensor.DType;
import dev.llamafit.tensor.Tensor;

/**
 * A linear layer whose weight [out, in] is stored as NF4 codes (bitsandbytes' tensors, {@link Nf4Weight}). W is read
 * only through {@link Kernels#gemm(boolean, int, int, int, float, MemorySegment, long, int,
 * dev.llamafit.kernels.PackSource, long, int, float, MemorySegment, long, int) the pack-source GEMM}: each thread
 * dequantises the slice it is packing into its packing buffers, so no dequantised matrix exists, and the result is the
 * fp32 GEMM on the dequantised weight (bit for bit on the Vector backends). The weight is frozen: backward gives dX =
 * dY·W (W dequantised a packed panel at a time, the same way) and the bias gradient; asking for a weight gradient is a
 * caller's bug.
 *
 * <p>On oneDNN's bf16 view (mixed precision) the same call computes in bf16 instead, as bitsandbytes does with a bf16
 * compute dtype: each task dequantises a slab of at most {@code Bf16SourceGemm.SLAB} = 128 rows (forward) or columns
 * (backward) of W, rounded to bf16, into its own buffer and runs oneDNN's bf16 matmul on it. Workspace per thread:
 * 128·k·2 bytes of W (k = in forward, out backward: 72 KiB for in = 288) plus one run of k floats, and the bf16 copy
 * of X or dY (rows·k·2 bytes, as the view keeps for any fp32 operand); never the dequantised matrix.
 */
public final class Nf4Linear implements Projection {
    private final Nf4Weight weight;
    private final Tensor bias; // [out] F32, or null
    private final int in;
    private final int out;

    public Nf4Linear(Nf4Weight weight, Tensor bias) {
        long[] shape = weight.shape();
        if (shape.length != 2) throw new IllegalArgumentException("Nf4Linear needs an [out, in] weight, got " + weight);
        this.weight = weight;
        this.out = Math.toIntExact(shape[0]);
        this.in = Math.toIntExact(shape[1]);
        if (bias != null && (bias.dtype() != DType.F32 || bias.elements() != out))
            throw new IllegalArgumentException("bias " + bias + " does not match weight " + weight);
        this.bias = bias;
    }

    /** The NF4 projection of the weight stored under {@code weightKey} ({@code P.weight}) in {@code w}, no bias. */
    public static Nf4Linear of(Map<String, Tensor> w, String weightKey) { return of(w, weightKey, null); }

    /** As {@link #of(Map, String)} with an F32 bias [out] (or null). */
    public static Nf4Linear of(Map<String, Tensor> w, String weightKey, Tensor bias) {
        return new Nf4Linear(Nf4Weight.of(w, weightKey), bias);
    }

    @Override
    public int in() { return in; }

    @Override
    public int out() { return out; }

    public Nf4Weight weight() { return weight; }

    public Tensor bias() { return bias; }

    @Override
    public void forward(Kernels k, MemorySegment x, long xOff, int rows, MemorySegment y, long yOff) {
        k.gemm(true, rows, out, in, 1f, x, xOff, in, weight, 0, in, 0f, y, yOff, out);
        if (bias != null)
            for (int r = 0; r < rows; r++) k.add(y, yOff + (long) r * out, bias.segment(), 0, out);
    }

    /** Columns [from, to): rows from..to of W against x, written at column offset {@code from} of y's rows. */
    @Override
    public void forwardColumns(Kernels k, MemorySegment x, long xOff, int rows, int from, int to, MemorySegment y, long yOff) {
        k.gemm(true, rows, to - from, in, 1f, x, xOff, in, weight, (long) from * in, in, 0f, y, yOff + from, out);
        if (bias != null)
            for (int r = 0; r < rows; r++) k.add(y, yOff + (long) r * out + from, bias.segment(), from, to - from);
    }

    /** dX = dY·W (W [out, in] as B [k = out, n = in]); dBias += Σ dY. A weight gradient does not exist for a frozen NF4 base. */
    @Override
    public void backward(Kernels k, MemorySegment x, long xOff, MemorySegment dY, long dYOff, int rows,
                         MemorySegment dX, long dXOff, boolean accumulateDx, Tensor dWeight, Tensor dBias, MemorySegment gradScratch) {
        if (dWeight != null)
            throw new IllegalArgumentException("the NF4 weight " + weight.name() + " is frozen: it has no gradient (" + dWeight + ")");
        if (dX != null) k.gemm(false, rows, in, out, 1f, dY, dYOff, out, weight, 0, in, accumulateDx ? 1f : 0f, dX, dXOff, in);
        if (dBias != null)
            for (int r = 0; r < rows; r++) k.add(dBias.segment(), 0, dY, dYOff + (long) r * out, out);
    }
}
