// The LM head fused with softmax cross-entropy, computed in chunks of rows so [N, V] logits never exist at once.
package dev.llamafit.nn;

import java.lang.foreign.MemorySegment;

import dev.llamafit.kernels.Kernels;
import dev.llamafit.kernels.Parallel;
import dev.llamafit.tensor.DType;
import dev.llamafit.tensor.Tensor;

/**
 * Loss = Σ_rows −log softmax(xf·Wᵀ)[label] / normalizer, over rows whose label is not {@link #IGNORE}.
 *
 * <p>Why chunks: for a 32000-token vocabulary, B·T = 2048 rows of fp32 logits are 262 MB, and their gradient as
 * much again. Per chunk of m rows we compute the logits [m, V], turn them in place into their gradient
 * (softmax − onehot)/normalizer, and immediately push it into dW_head and dXf, so only [m, V] is ever held.
 * The normalizer is the caller's (unmasked tokens of the whole optimizer step), so k micro-batches add up to
 * exactly the gradient of one batch k times larger.
 */
public final class CrossEntropy {
    /** Label of a position that does not count (padding, prompt tokens), as in PyTorch's ignore_index. */
    public static final int IGNORE = -100;

    private final Tensor head; // [V, C]: lm_head.weight, or the embedding when tied
    private final int vocab;   // V
    private final int dim;     // C
    private final int chunkRows;
    private final DType half;  // mixed precision: logits and their gradient rounded to this 16-bit type; null in fp32
    private final MemorySegment gradScratch; // bf16-pure: fp32 [V, C] for each chunk's dW_head before it is added; else null

    public CrossEntropy(Tensor head, int chunkRows) { this(head, chunkRows, null); }

    public CrossEntropy(Tensor head, int chunkRows, DType half) { this(head, chunkRows, half, null); }

    /**
     * @param half under mixed precision, BF16 or F16: the logits are the 16-bit output of the LM head's GEMM (as under
     *             autocast) and their gradient is rounded likewise; the softmax and the loss stay fp32. Null: fp32.
     * @param gradScratch fp32 scratch of at least V·C floats when dHead is BF16 (bf16-pure, {@link WeightGradient}); else null
     */
    public CrossEntropy(Tensor head, int chunkRows, DType half, MemorySegment gradScratch) {
        this.gradScratch = gradScratch;
        if (chunkRows <= 0) throw new IllegalArgumentException("chunkRows must be > 0, got " + chunkRows);
        this.half = half;
        this.head = head;
        this.vocab = Math.toIntExact(head.shape().dim(0));
        this.dim = Math.toIntExact(head.shape().dim(1));
        this.chunkRows = chunkRows;
    }

    public int chunkRows() { return chunkRows; }

    /** Floats of the logits scratch: [chunkRows, V]. */
    public static long scratchElements(int chunkRows, int vocab) { return Math.multiplyExact((long) chunkRows, vocab); }

    /** The summed loss and how many rows counted. */
    public record Result(double sum, long tokens) {}

    /**
     * Forward, and backward when {@code dHead} or {@code dXf} is given.
     *
     * @param xf            [rows, C], the final norm's output
     * @param labels        one per row: a target id in [0, V), or {@link #IGNORE}
     * @param invNormalizer 1/normalizer: the scale of every gradient written
     * @param dHead         [V, C] F32 (BF16 under bf16-pure: each chunk's part added with one rounding), accumulated (+=);
     *                      null for no weight gradient (the head may be 16-bit: a working copy, or bf16-pure's weight)
     * @param dXf           [rows, C], written; null for no input gradient
     * @param logits        scratch of at least {@link #scratchElements} floats
     */
    public Result forward(Kernels k, MemorySegment xf, long xfOff, int rows, int[] labels, float invNormalizer,
                          Tensor dHead, MemorySegment dXf, long dXfOff, MemorySegment logits) {
        if (labels.length != rows) throw new IllegalArgumentException(labels.length + " labels for " + rows + " rows");
        for (int r = 0; r < rows; r++)
            if (labels[r] != IGNORE && (labels[r] < 0 || labels[r] >= vocab))
                throw new IllegalArgumentException("label " + labels[r] + " at row " + r + " is outside [0, " + vocab + ") and is not " + IGNORE);
        boolean backward = dHead != null || dXf != null;
        double sum = 0;
        long tokens = 0;
        double[] rowLoss = new double[chunkRows];
        for (int r0 = 0; r0 < rows; r0 += chunkRows) {
            int m = Math.min(chunkRows, rows - r0), first = r0;
            long xOff = xfOff + (long) r0 * dim;
            // logits[m, V] = xf_chunk · Wᵀ
            if (head.dtype() == DType.F32) k.gemm(false, true, m, vocab, dim, 1f, xf, xOff, dim, head.segment(), 0, dim, 0f, logits, 0, vocab);
            else k.gemm(false, true, m, vocab, dim, 1f, xf, DType.F32, xOff, dim, head.segment(), head.dtype(), 0, dim, 0f, logits, 0, vocab);
            if (half != null) k.round16(logits, 0, (long) m * vocab, half);
            Parallel.forRange(m, (from, to) -> {
                for (int i = from; i < to; i++) rowLoss[i] = row(k, logits, (long) i * vocab, labels[first + i], invNormalizer);
            });
            for (int i = 0; i < m; i++) {
                if (labels[r0 + i] == IGNORE) continue;
                sum += rowLoss[i]; // summed in row order: the result does not depend on the thread count
                tokens++;
            }
            if (!backward) continue;
            if (half != null) k.round16(logits, 0, (long) m * vocab, half);
            // The chunk now holds dlogits. dW_head[V, C] += dlogitsᵀ · xf_chunk ; dXf_chunk[m, C] = dlogits · W
            if (dHead != null)
                WeightGradient.addProduct(k, true, false, vocab, dim, m, 1f, logits, 0, vocab, xf, xOff, dim, dHead, gradScratch);
            if (dXf != null && head.dtype() == DType.F32)
                k.gemm(false, false, m, dim, vocab, 1f, logits, 0, vocab, head.segment(), 0, dim, 0f, dXf, dXfOff + (long) r0 * dim, dim);
            else if (dXf != null)
                k.gemm(false, false, m, dim, vocab, 1f, logits, DType.F32, 0, vocab, head.segment(), head.dtype(), 0, dim,
                        0f, dXf, dXfOff + (long) r0 * dim, dim);
        }
        return new Result(sum, tokens);
    }

    /**
     * The logits xf·Wᵀ of {@code rows} rows into {@code out} [rows·V] (rounded to the 16-bit type under mixed precision,
     * as the loss sees them), computed a chunk at a time in {@code scratch}.
     */
    public void logits(Kernels k, MemorySegment xf, int rows, float[] out, MemorySegment scratch) {
        for (int r0 = 0; r0 < rows; r0 += chunkRows) {
            int m = Math.min(chunkRows, rows - r0);
            k.gemm(false, true, m, vocab, dim, 1f, xf, DType.F32, (long) r0 * dim, dim, head.segment(), head.dtype(), 0, dim, 0f, scratch, 0, vocab);
            if (half != null) k.round16(scratch, 0, (long) m * vocab, half);
            MemorySegment.copy(scratch, Tensor.F32_LE, 0, out, r0 * vocab, m * vocab);
        }
    }

    /** One row: its loss, and its logits replaced by (softmax − onehot)·invNormalizer (zeros if ignored). */
    private double row(Kernels k, MemorySegment z, long off, int label, float invNormalizer) {
        if (label == IGNORE) {
            z.asSlice(off * 4, (long) vocab * 4).fill((byte) 0);
            return 0;
        }
        return k.softmaxCrossEntropy(z, off, vocab, label, invNormalizer);
    }
}
