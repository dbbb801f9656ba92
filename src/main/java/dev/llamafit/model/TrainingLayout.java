// The buffers a training step allocates (saved activations per block, backward scratch, gradients) as specs.
package dev.llamafit.model;

import java.util.ArrayList;
import java.util.List;

import dev.llamafit.memory.Category;
import dev.llamafit.nn.Attention;
import dev.llamafit.nn.CrossEntropy;
import dev.llamafit.nn.Rope;
import dev.llamafit.tensor.DType;
import dev.llamafit.tensor.Shape;
import dev.llamafit.tensor.TensorSpec;

/**
 * Every buffer of a forward + backward step over B sequences of T tokens, fp32, N = B·T rows.
 *
 * <p>Saved activations are listed per block ({@link #blockSlots}), named {@code layers.{l}.…}, because that is
 * the unit gradient checkpointing changes: with it, a block keeps only {@code x_in} and one shared set is
 * recomputed in backward. Backward scratch (the {@code grad.*} buffers) is shared by all blocks: the backward
 * pass holds one block's gradients at a time. Per-thread scratch and the loss chunk are {@code workspace}.
 * {@link TrainingStep} allocates exactly {@link #slots()} and {@link #gradientSpecs()}, the planner sums them.
 *
 * @param batch         B
 * @param seqLen        T
 * @param threads       parallel chunks that each get an attention-backward scratch [T, T]
 * @param lossChunkRows rows of logits the chunked cross-entropy holds at once
 */
public record TrainingLayout(LlamaConfig config, int batch, int seqLen, int threads, int lossChunkRows) {
    /** Default rows per loss chunk: [128, V] fp32 is 16 MB at V = 32000, big enough for an efficient GEMM. */
    public static final int DEFAULT_LOSS_CHUNK_ROWS = 128;

    public TrainingLayout {
        if (batch <= 0 || seqLen <= 0) throw new IllegalArgumentException("batch and seqLen must be > 0, got " + batch + ", " + seqLen);
        if (seqLen > config.maxPositions())
            throw new IllegalArgumentException("seqLen " + seqLen + " exceeds max_position_embeddings " + config.maxPositions());
        if (threads <= 0 || lossChunkRows <= 0) throw new IllegalArgumentException("threads and lossChunkRows must be > 0");
        Math.multiplyExact(batch, seqLen);
    }

    /** The layout with this process's thread count and the default loss chunk (capped at N). */
    public static TrainingLayout of(LlamaConfig config, int batch, int seqLen) {
        return new TrainingLayout(config, batch, seqLen, dev.llamafit.kernels.Parallel.threads(),
                Math.min(DEFAULT_LOSS_CHUNK_ROWS, Math.multiplyExact(batch, seqLen)));
    }

    /** N = B·T. */
    public int rows() { return batch * seqLen; }

    public static String blockPrefix(int layer) { return "layers." + layer + "."; }

    /** What block {@code layer} saves in forward for its backward. */
    public List<ActivationLayout.Slot> blockSlots(int layer) {
        int n = rows(), c = config.hiddenSize(), f = config.intermediateSize();
        String p = blockPrefix(layer);
        return List.of(
                act(p + "x_in", Shape.of(n, c), "residual"),
                act(p + "xn_attn", Shape.of(n, c), "norm"),
                act(p + "inv_rms_attn", Shape.of(n), "norm"),
                act(p + "q", Shape.of(n, config.qDim()), "attention"),
                act(p + "k", Shape.of(n, config.kvDim()), "attention"),
                act(p + "v", Shape.of(n, config.kvDim()), "attention"),
                act(p + "probs", Shape.of(batch, config.numHeads(), seqLen, seqLen), "attention"),
                act(p + "att", Shape.of(n, config.qDim()), "attention"),
                act(p + "x_mid", Shape.of(n, c), "residual"),
                act(p + "xn_mlp", Shape.of(n, c), "norm"),
                act(p + "inv_rms_mlp", Shape.of(n), "norm"),
                act(p + "gate", Shape.of(n, f), "mlp"),
                act(p + "up", Shape.of(n, f), "mlp"),
                act(p + "h", Shape.of(n, f), "mlp"));
    }

    /** The final norm's input and output, shared backward buffers, and workspace. */
    public List<ActivationLayout.Slot> headSlots() {
        int n = rows(), c = config.hiddenSize(), f = config.intermediateSize();
        return List.of(
                act("final.x", Shape.of(n, c), "residual"),
                act("final.xn", Shape.of(n, c), "norm"),
                act("final.inv_rms", Shape.of(n), "norm"),
                act("grad.x", Shape.of(n, c), "backward"),
                act("grad.xn", Shape.of(n, c), "backward"),
                act("grad.att", Shape.of(n, config.qDim()), "backward"),
                act("grad.q", Shape.of(n, config.qDim()), "backward"),
                act("grad.k", Shape.of(n, config.kvDim()), "backward"),
                act("grad.v", Shape.of(n, config.kvDim()), "backward"),
                act("grad.h", Shape.of(n, f), "backward"),
                act("grad.up", Shape.of(n, f), "backward"),
                new ActivationLayout.Slot(new TensorSpec("attention_backward_scratch",
                        Shape.of(threads, Attention.backwardScratchPerChunk(seqLen)), DType.F32, "attention"), Category.WORKSPACE),
                new ActivationLayout.Slot(new TensorSpec("loss_logits",
                        Shape.of(CrossEntropy.scratchElements(lossChunkRows, config.vocabSize())), DType.F32, "lm_head"), Category.WORKSPACE));
    }

    /** Every activation and workspace buffer: all blocks, then the head's. */
    public List<ActivationLayout.Slot> slots() {
        List<ActivationLayout.Slot> all = new ArrayList<>();
        for (int l = 0; l < config.numLayers(); l++) all.addAll(blockSlots(l));
        all.addAll(headSlots());
        return List.copyOf(all);
    }

    /** One fp32 gradient per parameter, same names and shapes as {@link ParameterLayout} (ledger: gradients). */
    public List<TensorSpec> gradientSpecs() { return ParameterLayout.of(config, DType.F32).specs(); }

    /** Bytes of {@code category} in this layout (GRADIENTS counts {@link #gradientSpecs()}). */
    public long bytes(Category category) {
        long sum = 0;
        if (category == Category.GRADIENTS) {
            for (TensorSpec s : gradientSpecs()) sum = Math.addExact(sum, s.bytes());
            return sum;
        }
        for (ActivationLayout.Slot s : slots()) if (s.category() == category) sum = Math.addExact(sum, s.bytes());
        return sum;
    }

    /** The RoPE cos/sin tables the step allocates under workspace besides {@link #slots()} (not batch-dependent). */
    public long ropeTableBytes() { return Rope.tableBytes(config.headDim(), config.maxPositions()); }

    /** component: residual, norm, attention, mlp or backward (scratch shared by all blocks), for per-component reports. */
    private static ActivationLayout.Slot act(String name, Shape shape, String component) {
        return new ActivationLayout.Slot(new TensorSpec(name, shape, DType.F32, component), Category.ACTIVATIONS);
    }
}
