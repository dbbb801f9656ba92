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
import dev.llamafit.nn.Linear;
import dev.llamafit.nn.RmsNorm;
import dev.llamafit.nn.Rope;
import dev.llamafit.nn.SwiGlu;
import dev.llamafit.tensor.DType;
import dev.llamafit.tensor.Tensor;
import dev.llamafit.tensor.TensorSpec;

/**
 * A LLaMA-family decoder: embedding, L blocks of (RMSNorm → GQA attention with RoPE → residual,
 * RMSNorm → SwiGLU → residual), final RMSNorm, LM head. Weights are fp32 tensors named as in
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
    private final Linear lmHead;        // [V, C]
    private final Rope rope;
    private final Attention attention;
    private Buffers buffers;

    private record Block(RmsNorm attnNorm, Linear q, Linear k, Linear v, Linear o, RmsNorm mlpNorm, SwiGlu mlp) {}

    public LlamaModel(LlamaConfig config, Map<String, Tensor> weights, Kernels kernels, MemoryLedger ledger) {
        this.config = config;
        this.kernels = kernels;
        this.ledger = ledger;
        for (TensorSpec spec : ParameterLayout.of(config, DType.F32).specs()) {
            Tensor t = weights.get(spec.name());
            if (t == null) throw new IllegalArgumentException("missing weight " + spec.name());
            if (!t.shape().equals(spec.shape()) || t.dtype() != DType.F32)
                throw new IllegalArgumentException("weight " + spec.name() + " is " + t.dtype() + t.shape() + ", expected F32" + spec.shape());
        }
        this.embedding = weights.get(ParameterLayout.EMBED);
        List<Block> bs = new ArrayList<>();
        for (int l = 0; l < config.numLayers(); l++) {
            String p = ParameterLayout.layerPrefix(l);
            bs.add(new Block(
                    new RmsNorm(weights.get(p + "input_layernorm.weight"), config.rmsNormEps()),
                    linear(weights, p + "self_attn.q_proj"), linear(weights, p + "self_attn.k_proj"),
                    linear(weights, p + "self_attn.v_proj"), linear(weights, p + "self_attn.o_proj"),
                    new RmsNorm(weights.get(p + "post_attention_layernorm.weight"), config.rmsNormEps()),
                    new SwiGlu(linear(weights, p + "mlp.gate_proj"), linear(weights, p + "mlp.up_proj"),
                            linear(weights, p + "mlp.down_proj"))));
        }
        this.blocks = List.copyOf(bs);
        this.finalNorm = new RmsNorm(weights.get(ParameterLayout.NORM), config.rmsNormEps());
        this.lmHead = new Linear(config.tieWordEmbeddings() ? embedding : weights.get(ParameterLayout.LM_HEAD), null);
        this.rope = newRope(config, ledger);
        this.attention = new Attention(config.numHeads(), config.numKvHeads(), config.headDim(), config.slidingWindow());
    }

    private static Linear linear(Map<String, Tensor> w, String name) {
        return new Linear(w.get(name + ".weight"), w.get(name + ".bias"));
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
        Buffers buf = buffers(new ActivationLayout(config, batch, t, kvCapacity, logitsRows, Parallel.threads()));

        int n = batch * t, c = config.hiddenSize();
        int[] flat = new int[n];
        int[] positions = new int[n];
        for (int b = 0; b < batch; b++)
            for (int i = 0; i < t; i++) {
                flat[b * t + i] = ids[b][i];
                positions[b * t + i] = startPos + i;
            }
        Kernels k = kernels;
        MemorySegment x = buf.get("x"), xn = buf.get("xn"), q = buf.get("q"), kk = buf.get("k"), v = buf.get("v");
        MemorySegment att = buf.get("att"), scores = buf.get("attention_scores");
        k.embedding(x, 0, embedding.segment(), embedding.dtype(), config.vocabSize(), c, flat);

        int kvDim = config.kvDim();
        for (int l = 0; l < blocks.size(); l++) {
            Block blk = blocks.get(l);
            blk.attnNorm().forward(k, x, 0, n, xn, 0);
            Linear.forwardFused(k, xn, 0, n, new Linear[] {blk.q(), blk.k(), blk.v()}, new MemorySegment[] {q, kk, v});
            rope.apply(k, q, 0, config.qDim(), n, config.numHeads(), positions);
            rope.apply(k, kk, 0, kvDim, n, config.numKvHeads(), positions);
            Attention.KvView keys, values;
            if (cache != null) {
                keys = cache.keyView(l);
                values = cache.valueView(l);
                store(kk, keys, batch, t, startPos);
                store(v, values, batch, t, startPos);
            } else {
                keys = new Attention.KvView(kk, 0, (long) t * kvDim, config.headDim(), kvDim);
                values = new Attention.KvView(v, 0, (long) t * kvDim, config.headDim(), kvDim);
            }
            attention.forward(k, batch, t, startPos, q, keys, values, scores, att);
            blk.o().forward(k, att, 0, n, xn, 0);
            k.add(x, 0, xn, 0, (long) n * c);
            blk.mlpNorm().forward(k, x, 0, n, xn, 0);
            blk.mlp().forward(k, xn, 0, n, buf.get("h_gate"), buf.get("h_up"), xn, 0);
            k.add(x, 0, xn, 0, (long) n * c);
        }
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

    /** Copies new keys (or values) [B·T, KvH·D] into the cache at positions startPos…startPos+T−1. */
    private void store(MemorySegment src, Attention.KvView dst, int batch, int t, int startPos) {
        int d = config.headDim(), kvh = config.numKvHeads();
        long bytes = (long) d * 4;
        for (int b = 0; b < batch; b++)
            for (int i = 0; i < t; i++)
                for (int h = 0; h < kvh; h++) {
                    long from = ((long) (b * t + i) * kvh + h) * d;
                    long to = dst.off() + b * dst.strideB() + h * dst.strideH() + (long) (startPos + i) * dst.strideT();
                    MemorySegment.copy(src, from * 4, dst.segment(), to * 4, bytes);
                }
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
