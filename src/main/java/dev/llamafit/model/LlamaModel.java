// The LLaMA forward pass for a batch of sequences, with or without a KV cache for incremental decoding.
package dev.llamafit.model;

import java.lang.foreign.MemorySegment;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;

import dev.llamafit.kernels.Kernels;
import dev.llamafit.kernels.Parallel;
import dev.llamafit.memory.MemoryLedger;
import dev.llamafit.nn.Attention;
import dev.llamafit.nn.FlashAttention;
import dev.llamafit.nn.Linear;
import dev.llamafit.nn.Projection;
import dev.llamafit.nn.RmsNorm;
import dev.llamafit.nn.Rope;
import dev.llamafit.tensor.DType;
import dev.llamafit.tensor.Tensor;
import dev.llamafit.tensor.TensorSpec;

/**
 * A LLaMA-family decoder: embedding, L {@link Block}s of (RMSNorm → GQA attention with RoPE → residual,
 * RMSNorm → SwiGLU → residual), final RMSNorm, LM head; the blocks are the ones training runs, here without
 * adapters or saved activations. Weights are fp32 tensors named as in
 * {@link ParameterLayout}; the model does not own them (the loader does).
 *
 * <p>Not thread-safe: one forward at a time. Activation buffers are allocated through the ledger from an
 * {@link ActivationLayout} and reused while the call shape stays the same.
 */
public final class LlamaModel implements AutoCloseable {
    private final LlamaConfig config;
    private final Kernels kernels;
    private final MemoryLedger ledger;
    private final Tensor embedding;     // [V, C]
    private final List<Block> blocks;
    private final RmsNorm finalNorm;
    private final Projection lmHead;    // [V, C]
    private final Rope rope;
    private final Attention attention;
    private final Technique.Attention attentionKind;
    private final FlashAttention flash; // flash attention, else null
    private Buffers buffers;

    public LlamaModel(LlamaConfig config, Map<String, Tensor> weights, Kernels kernels, MemoryLedger ledger) {
        this(config, weights, kernels, ledger, Technique.DEFAULT_ATTENTION);
    }

    /** @param attentionKind eager, or flash (tiled over the KV cache: no [T, kvLength] score matrix) */
    public LlamaModel(LlamaConfig config, Map<String, Tensor> weights, Kernels kernels, MemoryLedger ledger,
                      Technique.Attention attentionKind) {
        this.config = config;
        this.attentionKind = attentionKind;
        this.kernels = kernels;
        this.ledger = ledger;
        for (TensorSpec spec : ParameterLayout.of(config, DType.F32).specs()) {
            // An int8/NF4 matrix is bitsandbytes' tensors under its name, which its projection checks (Projection.of).
            if (config.quantization() != null && ParameterLayout.isQuantizable(spec)) continue;
            Tensor t = weights.get(spec.name());
            if (t == null) throw new IllegalArgumentException("missing weight " + spec.name());
            // Matrices may be F32, BF16 or F16 (used in place by the projections and the embedding); vectors are F32.
            boolean typeOk = spec.shape().rank() == 2 ? Linear.isDenseType(t.dtype()) : t.dtype() == DType.F32;
            if (!t.shape().equals(spec.shape()) || !typeOk)
                throw new IllegalArgumentException("weight " + spec.name() + " is " + t.dtype() + t.shape() + ", expected "
                        + (spec.shape().rank() == 2 ? "F32, BF16 or F16" : "F32") + spec.shape());
        }
        this.embedding = weights.get(ParameterLayout.EMBED);
        List<Block> bs = new ArrayList<>();
        for (int l = 0; l < config.numLayers(); l++) bs.add(new Block(config, l, weights));
        this.blocks = List.copyOf(bs);
        this.finalNorm = new RmsNorm(weights.get(ParameterLayout.NORM), config.rmsNormEps());
        this.lmHead = Projection.of(config.tieWordEmbeddings() ? embedding : weights.get(ParameterLayout.LM_HEAD), null);
        this.rope = newRope(config, ledger);
        this.attention = new Attention(config.numHeads(), config.numKvHeads(), config.headDim(), config.slidingWindow());
        this.flash = attentionKind == Technique.Attention.FLASH
                ? new FlashAttention(config.numHeads(), config.numKvHeads(), config.headDim(), config.slidingWindow(), null) : null;
    }

    static Rope newRope(LlamaConfig c, MemoryLedger ledger) {
        double[] inv;
        double positionScale = 1;
        switch (c.ropeScaling()) {
            case RopeScaling.Llama3 s -> inv = Rope.inverseFrequencies(c.headDim(), c.ropeTheta(), s.factor(),
                    s.lowFreqFactor(), s.highFreqFactor(), s.originalMaxPositions(), true);
            case RopeScaling.Linear s -> {
                inv = Rope.inverseFrequencies(c.headDim(), c.ropeTheta(), 1, 0, 1, 1, false);
                positionScale = 1 / s.factor();
            }
            case RopeScaling.None n -> inv = Rope.inverseFrequencies(c.headDim(), c.ropeTheta(), 1, 0, 1, 1, false);
        }
        return new Rope(ledger, c.headDim(), c.maxPositions(), inv, positionScale);
    }

    public LlamaConfig config() { return config; }

    public Kernels kernels() { return kernels; }

    /** Which positions get logits. */
    public enum Logits { ALL, LAST }

    /** A new KV cache for {@code batch} sequences of up to {@code capacity} positions. */
    public KvCache newCache(int batch, int capacity) { return new KvCache(ledger, config, batch, capacity); }

    /**
     * Runs the model on {@code ids} [B][T] (equal lengths). With a cache, the tokens continue the cached
     * sequences (positions cache.length()…) and their keys/values are appended; without one, positions start at 0.
     *
     * @return logits [B·T, V] (ALL) or [B, V] (LAST), fp32, valid until the next call
     */
    public Tensor forward(int[][] ids, KvCache cache, Logits which) {
        int batch = ids.length;
        if (batch == 0) throw new IllegalArgumentException("empty batch");
        int t = ids[0].length;
        for (int[] row : ids)
            if (row.length != t) throw new IllegalArgumentException("all sequences in a batch must have the same length");
        if (t == 0) throw new IllegalArgumentException("empty sequence");
        int startPos = cache == null ? 0 : cache.length();
        if (cache != null) {
            if (cache.batch() != batch) throw new IllegalArgumentException("cache holds " + cache.batch() + " sequences, got " + batch);
            if (startPos + t > cache.capacity())
                throw new IllegalArgumentException("sequence of " + (startPos + t) + " tokens exceeds the KV cache capacity " + cache.capacity());
        } else if (t > config.maxPositions()) {
            throw new IllegalArgumentException("sequence of " + t + " tokens exceeds max_position_embeddings " + config.maxPositions());
        }
        int kvCapacity = cache == null ? t : cache.capacity();
        int logitsRows = which == Logits.ALL ? batch * t : batch;
        Buffers buf = buffers(new ActivationLayout(config, batch, t, kvCapacity, logitsRows, Parallel.threads(), attentionKind));

        int n = batch * t, c = config.hiddenSize();
        int[] flat = new int[n];
        int[] positions = new int[n];
        for (int b = 0; b < batch; b++)
            for (int i = 0; i < t; i++) {
                flat[b * t + i] = ids[b][i];
                positions[b * t + i] = startPos + i;
            }
        Kernels k = kernels;
        MemorySegment x = buf.get("x"), xn = buf.get("xn");
        k.embedding(x, 0, embedding.segment(), embedding.dtype(), config.vocabSize(), c, flat);
        Block.Context ctx = new Block.Context(k, rope, attention, config, batch, t, positions, false, 0, null, flash, null);
        Block.Scratch scratch = new Block.Scratch(xn, buf.get("q"), buf.get("k"), buf.get("v"), buf.get("att"),
                buf.get("attention_scores"), buf.get("h_gate"), buf.get("h_up"));
        for (Block block : blocks) block.forward(ctx, x, scratch, cache, startPos);
        if (cache != null) cache.advance(t);

        if (which == Logits.ALL) {
            finalNorm.forward(k, x, 0, n, xn, 0);
        } else {
            for (int b = 0; b < batch; b++)
                MemorySegment.copy(x, (long) (b * t + t - 1) * c * 4, xn, (long) b * c * 4, (long) c * 4);
            finalNorm.forward(k, xn, 0, batch, xn, 0);
        }
        Tensor logits = buf.tensor("logits");
        lmHead.forward(k, xn, 0, logitsRows, logits.segment(), 0);
        return logits;
    }

    private Buffers buffers(ActivationLayout layout) {
        if (buffers != null && buffers.layout.equals(layout)) return buffers;
        if (buffers != null) buffers.close();
        buffers = new Buffers(layout, ledger);
        return buffers;
    }

    /** Frees the activation buffers (they are reallocated on the next call). */
    public void releaseActivations() {
        if (buffers != null) buffers.close();
        buffers = null;
    }

    @Override
    public void close() {
        releaseActivations();
        rope.close();
    }

    /** The activation buffers of one call shape, carved from the layout's slots. */
    private static final class Buffers implements AutoCloseable {
        final ActivationLayout layout;
        final Map<String, Tensor> tensors = new HashMap<>();

        Buffers(ActivationLayout layout, MemoryLedger ledger) {
            this.layout = layout;
            for (ActivationLayout.Slot s : layout.slots())
                tensors.put(s.spec().name(), Tensor.allocate(ledger, s.category(), s.spec().name(), s.spec().dtype(), s.spec().shape()));
        }

        MemorySegment get(String name) { return tensors.get(name).segment(); }

        Tensor tensor(String name) { return tensors.get(name); }

        @Override
        public void close() { tensors.values().forEach(Tensor::close); }
    }
}
