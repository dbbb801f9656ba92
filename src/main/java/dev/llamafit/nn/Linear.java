// A linear layer y = x·Wᵀ + b over fp32 weights stored [out, in] as in PyTorch and safetensors.
package dev.llamafit.nn;

import java.lang.foreign.MemorySegment;

import dev.llamafit.kernels.Kernels;
import dev.llamafit.kernels.Parallel;
import dev.llamafit.tensor.DType;
import dev.llamafit.tensor.Tensor;

/** A dense layer. Weight [out, in] (row-major, as Hugging Face stores it), optional bias [out]. */
public final class Linear {
    private final Tensor weight; // [out, in]
    private final Tensor bias;   // [out] or null
    private final int in;
    private final int out;

    public Linear(Tensor weight, Tensor bias) {
        if (weight.dtype() != DType.F32 || weight.shape().rank() != 2)
            throw new IllegalArgumentException("Linear needs an F32 [out, in] weight, got " + weight);
        this.weight = weight;
        this.out = Math.toIntExact(weight.shape().dim(0));
        this.in = Math.toIntExact(weight.shape().dim(1));
        if (bias != null && (bias.dtype() != DType.F32 || bias.elements() != out))
            throw new IllegalArgumentException("bias " + bias + " does not match weight " + weight);
        this.bias = bias;
    }

    public int in() { return in; }

    public int out() { return out; }

    public Tensor weight() { return weight; }

    public Tensor bias() { return bias; }

    /**
     * y[rows, out] = x[rows, in] · Wᵀ + b.
     *
     * @param x [rows, in] at element offset xOff, contiguous rows
     * @param y [rows, out] at element offset yOff, contiguous rows; overwritten
     */
    public void forward(Kernels k, MemorySegment x, long xOff, int rows, MemorySegment y, long yOff) {
        k.gemm(false, true, rows, out, in, 1f, x, xOff, in, weight.segment(), 0, in, 0f, y, yOff, out);
        if (bias != null) {
            for (int r = 0; r < rows; r++) k.add(y, yOff + (long) r * out, bias.segment(), 0, out);
        }
    }

    /**
     * Backward of {@link #forward}: dX[rows, in] = dY·W (overwritten, or added to with {@code accumulateDx}),
     * dWeight[out, in] += dYᵀ·X, dBias[out] += Σ_rows dY. Parameter gradients always accumulate, so micro-batches
     * add up and q/k/v (or gate/up) sharing one input can each add their part of dX.
     *
     * @param x       [rows, in], the forward's input (saved)
     * @param dY      [rows, out], gradient of the loss with respect to y
     * @param dX      [rows, in], or null when the input needs no gradient
     * @param dWeight [out, in] F32, or null for a frozen weight
     * @param dBias   [out] F32, or null (no bias, or frozen)
     */
    public void backward(Kernels k, MemorySegment x, long xOff, MemorySegment dY, long dYOff, int rows,
                         MemorySegment dX, long dXOff, boolean accumulateDx, Tensor dWeight, Tensor dBias) {
        if (dX != null)
            k.gemm(false, false, rows, in, out, 1f, dY, dYOff, out, weight.segment(), 0, in,
                    accumulateDx ? 1f : 0f, dX, dXOff, in);
        if (dWeight != null)
            k.gemm(true, false, out, in, rows, 1f, dY, dYOff, out, x, xOff, in, 1f, dWeight.segment(), 0, in);
        if (dBias != null)
            for (int r = 0; r < rows; r++) k.add(dBias.segment(), 0, dY, dYOff + (long) r * out, out);
    }

    /**
     * Several layers reading the same input (q/k/v, or gate/up) in one parallel pass: the pool splits their
     * concatenated output columns, so a decode step hands work to the threads once instead of once per layer.
     * Each {@code ys[i]} is [rows, layers[i].out()], contiguous rows.
     */
    public static void forwardFused(Kernels k, MemorySegment x, long xOff, int rows, Linear[] layers, MemorySegment[] ys) {
        int in = layers[0].in;
        int total = 0;
        for (Linear l : layers) {
            if (l.in != in) throw new IllegalArgumentException("fused layers must share their input width");
            total += l.out;
        }
        Parallel.forRange(total, 64, (from, to) -> {
            int base = 0;
            for (int i = 0; i < layers.length; i++) {
                Linear l = layers[i];
                int j0 = Math.max(from - base, 0), j1 = Math.min(to - base, l.out);
                if (j0 < j1) {
                    k.gemm(false, true, rows, j1 - j0, in, 1f, x, xOff, in, l.weight.segment(), (long) j0 * in, in,
                            0f, ys[i], j0, l.out);
                    if (l.bias != null)
                        for (int r = 0; r < rows; r++) k.add(ys[i], (long) r * l.out + j0, l.bias.segment(), j0, j1 - j0);
                }
                base += l.out;
            }
        });
    }
}
