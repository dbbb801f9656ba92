// The seam every linear layer calls: y = x·Wᵀ (+ b), dX = dY·W, dW += dYᵀ·X, whatever format the weight is stored in.
package dev.llamafit.nn;

import java.lang.foreign.MemorySegment;
import java.util.Map;

import dev.llamafit.kernels.Kernels;
import dev.llamafit.kernels.Parallel;
import dev.llamafit.quant.Quantization;
import dev.llamafit.tensor.Tensor;

/**
 * A weight W [out, in] (PyTorch's layout) with an optional bias [out], seen only through its products with
 * activations. Callers (the decoder block, {@link LoraLinear}, the LM head) never read W's bytes, so a weight kept in
 * another format (bf16/fp16, int8, NF4: DESIGN §10, "weights know their format") is one more implementation here.
 * Activations and gradients are fp32 [rows, features], contiguous rows, at element offsets.
 */
public sealed interface Projection permits Linear, Nf4Linear, Int8Linear {
    /** Input features: columns of W. */
    int in();

    /** Output features: rows of W. */
    int out();

    /** The projection of {@code weight} [out, in] (+ {@code bias} [out], or null) in the weight's own format. */
    static Projection of(Tensor weight, Tensor bias) {
        if (Linear.isDenseType(weight.dtype())) return new Linear(weight, bias);
        throw new IllegalArgumentException("no projection for " + weight.dtype() + " weights: " + weight);
    }

    /**
     * The projection stored under {@code weightKey} in {@code w}: dense when {@code q} is null, else the int8 or NF4 one
     * reading bitsandbytes' tensors of that module ({@link dev.llamafit.quant.QuantizedWeights}).
     */
    static Projection of(Map<String, Tensor> w, String weightKey, Tensor bias, Quantization q) {
        if (q == null) return of(w.get(weightKey), bias);
        return switch (q.kind()) {
            case INT8 -> Int8Linear.of(w, weightKey, (float) q.int8Threshold());
            case NF4 -> Nf4Linear.of(w, weightKey, bias);
        };
    }

    /** y[rows, out] = x[rows, in] · Wᵀ + b; y is overwritten. */
    default void forward(Kernels k, MemorySegment x, long xOff, int rows, MemorySegment y, long yOff) {
        forwardColumns(k, x, xOff, rows, 0, out(), y, yOff);
    }

    /**
     * Output columns [from, to) of {@link #forward}: y[r, j] for j in that range, y being [rows, out] at yOff; the
     * other columns are untouched. Lets {@link #forwardFused} split several projections' columns across threads.
     */
    void forwardColumns(Kernels k, MemorySegment x, long xOff, int rows, int from, int to, MemorySegment y, long yOff);

    /**
     * Backward of {@link #forward}: dX[rows, in] = dY·W (overwritten, or added to with {@code accumulateDx}),
     * dWeight[out, in] += dYᵀ·X, dBias[out] += Σ_rows dY. Parameter gradients always accumulate, so micro-batches
     * add up and q/k/v (or gate/up) sharing one input can each add their part of dX.
     *
     * @param x       [rows, in], the forward's input (saved); read only for dWeight
     * @param dY      [rows, out], gradient of the loss with respect to y
     * @param dX      [rows, in], or null when the input needs no gradient
     * @param dWeight [out, in] F32 (or BF16 under bf16-pure, with {@code gradScratch}), or null for a frozen weight
     * @param dBias   [out] F32, or null (no bias, or frozen)
     * @param gradScratch fp32 scratch of at least out·in floats for a BF16 dWeight ({@link WeightGradient}), else null
     */
    void backward(Kernels k, MemorySegment x, long xOff, MemorySegment dY, long dYOff, int rows,
                  MemorySegment dX, long dXOff, boolean accumulateDx, Tensor dWeight, Tensor dBias, MemorySegment gradScratch);

    /** {@link #backward} with an F32 (or no) weight gradient. */
    default void backward(Kernels k, MemorySegment x, long xOff, MemorySegment dY, long dYOff, int rows,
                          MemorySegment dX, long dXOff, boolean accumulateDx, Tensor dWeight, Tensor dBias) {
        backward(k, x, xOff, dY, dYOff, rows, dX, dXOff, accumulateDx, dWeight, dBias, null);
    }

    /**
     * Several projections reading the same input (q/k/v, or gate/up) in one parallel pass: the pool splits their
     * concatenated output columns, so a decode step hands work to the threads once instead of once per layer.
     * Each {@code ys[i]} is [rows, ps[i].out()] at offset 0, contiguous rows.
     */
    static void forwardFused(Kernels k, MemorySegment x, long xOff, int rows, Projection[] ps, MemorySegment[] ys) {
        int in = ps[0].in();
        int total = 0;
        for (Projection p : ps) {
            if (p.in() != in) throw new IllegalArgumentException("fused projections must share their input width");
            total += p.out();
        }
        if (Int8Linear.forwardFused(k, x, xOff, rows, ps, ys)) return; // X quantised once for all of them
        Parallel.forRange(total, 64, (from, to) -> {
            int base = 0;
            for (int i = 0; i < ps.length; i++) {
                int j0 = Math.max(from - base, 0), j1 = Math.min(to - base, ps[i].out());
                if (j0 < j1) ps[i].forwardColumns(k, x, xOff, rows, j0, j1, ys[i], 0);
                base += ps[i].out();
            }
        });
    }
}
