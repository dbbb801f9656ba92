// Token embedding: a gather of rows of a [V, C] table forward, a scatter-add of row gradients backward.
package dev.llamafit.nn;

import java.lang.foreign.MemorySegment;

import dev.llamafit.kernels.Kernels;
import dev.llamafit.tensor.DType;
import dev.llamafit.tensor.Tensor;

/** The input embedding. With tied embeddings the same table is the LM head's weight (see {@link CrossEntropy}). */
public final class Embedding {
    private final Tensor weight; // [V, C]
    private final int vocab;     // V
    private final int dim;       // C

    public Embedding(Tensor weight) {
        if (weight.shape().rank() != 2) throw new IllegalArgumentException("embedding needs a [V, C] table, got " + weight);
        this.weight = weight;
        this.vocab = Math.toIntExact(weight.shape().dim(0));
        this.dim = Math.toIntExact(weight.shape().dim(1));
    }

    public Tensor weight() { return weight; }

    /** out[N, C] = weight[ids[n]]; ids are checked against V. */
    public void forward(Kernels k, int[] ids, MemorySegment out, long outOff) {
        k.embedding(out, outOff, weight.segment(), weight.dtype(), vocab, dim, ids);
    }

    /**
     * dWeight[ids[n]] += dOut[n] for every row. Serial on purpose: a token repeated in the batch adds to the same
     * row, and the O(N·C) work is small next to any GEMM.
     *
     * @param dOut    [N, C]
     * @param dWeight [V, C] F32, accumulated (with tied embeddings, the same tensor as the LM head's gradient)
     */
    public void backward(Kernels k, int[] ids, MemorySegment dOut, long dOutOff, Tensor dWeight) {
        backward(k, ids, dOut, dOutOff, dWeight, null);
    }

    /**
     * As {@link #backward(Kernels, int[], MemorySegment, long, Tensor)}; a BF16 dWeight (bf16-pure) gets the rows
     * scattered into {@code gradScratch} (fp32, at least V·C floats) first and is then added to with one rounding,
     * so a token repeated in the batch is summed in fp32.
     */
    public void backward(Kernels k, int[] ids, MemorySegment dOut, long dOutOff, Tensor dWeight, MemorySegment gradScratch) {
        if (dWeight.dtype() == DType.F32) {
            for (int n = 0; n < ids.length; n++)
                k.add(dWeight.segment(), (long) ids[n] * dim, dOut, dOutOff + (long) n * dim, dim);
            return;
        }
        if (dWeight.dtype() != DType.BF16 || gradScratch == null || gradScratch.byteSize() < (long) vocab * dim * 4)
            throw new IllegalArgumentException("an embedding gradient is F32, or BF16 with an fp32 scratch of V·C floats: " + dWeight);
        MemorySegment sum = gradScratch.asSlice(0, (long) vocab * dim * 4);
        sum.fill((byte) 0);
        for (int n = 0; n < ids.length; n++)
            k.add(sum, (long) ids[n] * dim, dOut, dOutOff + (long) n * dim, dim);
        k.addRoundBf16(dWeight.segment(), 0, sum, 0, (long) vocab * dim);
    }
}
