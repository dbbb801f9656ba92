// The buffers a forward pass allocates, as tensor specs computed from config, batch and sequence length.
package dev.llamafit.model;

import java.util.List;

import dev.llamafit.memory.Category;
import dev.llamafit.nn.Attention;
import dev.llamafit.nn.FlashAttention;
import dev.llamafit.tensor.DType;
import dev.llamafit.tensor.Shape;
import dev.llamafit.tensor.TensorSpec;

/**
 * Buffers of an inference forward pass for B sequences of T new tokens. Layers reuse them: the pass
 * holds one layer's intermediates at a time. The engine allocates exactly these, and the planner sums them.
 *
 * @param batch        B
 * @param tokens       T, new tokens per sequence in this call
 * @param kvLength     longest key length attended to (T, or the KV cache's capacity)
 * @param logitsRows   rows of logits produced: B·T (all positions) or B (last position only)
 * @param threads      parallel chunks that each get an attention score scratch
 * @param attention    eager: each chunk's scratch is a [T, kvLength] score matrix; flash: tiles, O(T·D)
 */
public record ActivationLayout(LlamaConfig config, int batch, int tokens, int kvLength, int logitsRows, int threads,
                               Technique.Attention attention) {

    /** With the default attention. */
    public ActivationLayout(LlamaConfig config, int batch, int tokens, int kvLength, int logitsRows, int threads) {
        this(config, batch, tokens, kvLength, logitsRows, threads, Technique.DEFAULT_ATTENTION);
    }

    /** One buffer: what it is and which ledger category it is filed under. */
    public record Slot(TensorSpec spec, Category category) {
        public long bytes() { return spec.bytes(); }
    }

    public ActivationLayout {
        if (batch <= 0 || tokens <= 0) throw new IllegalArgumentException("batch and tokens must be > 0");
        if (kvLength < tokens) throw new IllegalArgumentException("kvLength " + kvLength + " < tokens " + tokens);
        TrainingLayout.tokens(batch, tokens);
    }

    public int rows() { return batch * tokens; }

    public List<Slot> slots() {
        int n = rows();
        int c = config.hiddenSize(), f = config.intermediateSize();
        return List.of(
                act("x", Shape.of(n, c), "residual stream"),
                act("xn", Shape.of(n, c), "normalised input / block output"),
                act("q", Shape.of(n, config.qDim()), "attention"),
                act("k", Shape.of(n, config.kvDim()), "attention"),
                act("v", Shape.of(n, config.kvDim()), "attention"),
                act("att", Shape.of(n, config.qDim()), "attention"),
                act("h_gate", Shape.of(n, f), "mlp"),
                act("h_up", Shape.of(n, f), "mlp"),
                act("logits", Shape.of(logitsRows, config.vocabSize()), "lm_head"),
                new Slot(new TensorSpec("attention_scores", Shape.of(threads, attention == Technique.Attention.FLASH
                        ? FlashAttention.scratchPerThread(tokens, kvLength, config.headDim()) : Attention.scratchPerChunk(tokens, kvLength)),
                        DType.F32, "attention"), Category.WORKSPACE));
    }

    private static Slot act(String name, Shape shape, String component) {
        return new Slot(new TensorSpec(name, shape, DType.F32, component), Category.ACTIVATIONS);
    }

    public long bytes(Category category) {
        long sum = 0;
        for (Slot s : slots()) if (s.category() == category) sum = Math.addExact(sum, s.bytes());
        return sum;
    }
}
