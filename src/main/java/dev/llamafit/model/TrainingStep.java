// One training micro-batch: forward saving activations, chunked cross-entropy, backward into gradients.
package dev.llamafit.model;

import java.lang.foreign.MemorySegment;
import java.util.ArrayList;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

import dev.llamafit.kernels.Kernels;
import dev.llamafit.memory.Category;
import dev.llamafit.memory.MemoryLedger;
import dev.llamafit.nn.Attention;
import dev.llamafit.nn.CrossEntropy;
import dev.llamafit.nn.Embedding;
import dev.llamafit.nn.RmsNorm;
import dev.llamafit.nn.Rope;
import dev.llamafit.tensor.DType;
import dev.llamafit.tensor.Tensor;
import dev.llamafit.tensor.TensorSpec;

/**
 * Forward and backward of a LLaMA model for micro-batches of fixed shape [B, T], the llm.c way: every buffer is
 * allocated once from a {@link TrainingLayout} through the ledger, and the backward reads as the forward in reverse:
 * <pre>
 *   embedding → L × block → final norm → chunked (LM head + cross-entropy)
 *   dEmbedding ← L × block⁻¹ ← final norm⁻¹ ← dXf, dW_head
 * </pre>
 * Gradients accumulate (+=) across calls until {@link #zeroGradients()}. With tied embeddings the LM head's and the
 * embedding's weight gradient are the same tensor. Not thread-safe; one call at a time.
 */
public final class TrainingStep implements AutoCloseable {
    private final LlamaConfig config;
    private final Kernels kernels;
    private final TrainingLayout layout;
    private final Map<String, Tensor> gradients;
    private final Map<String, Tensor> buffers = new LinkedHashMap<>();
    private final Embedding embedding;
    private final List<Block> blocks = new ArrayList<>();
    private final List<BlockActivations> saved = new ArrayList<>();
    private final RmsNorm finalNorm;
    private final Tensor dFinalNorm;
    private final CrossEntropy loss;
    private final Tensor dHead;     // [V, C]: lm_head's gradient, or the embedding's when tied
    private final Tensor dEmbedding; // [V, C]
    private final Rope rope;
    private final Attention attention;
    private final Block.Scratch scratch;

    /** Loss summed over the counted tokens, and their number. */
    public record Loss(double sum, long tokens) {
        /** Mean loss per token; 0 when no token counted (every label ignored), never NaN. */
        public double mean() { return tokens == 0 ? 0.0 : sum / tokens; }
    }

    /**
     * @param weights owned, writable F32 tensors named as in {@link ParameterLayout} (tied: no lm_head); see {@link #ownedCopy}
     */
    public TrainingStep(LlamaConfig config, Map<String, Tensor> weights, Kernels k, MemoryLedger ledger, int batch, int seqLen) {
        this(TrainingLayout.of(config, batch, seqLen), weights, k, ledger);
    }

    public TrainingStep(TrainingLayout layout, Map<String, Tensor> weights, Kernels k, MemoryLedger ledger) {
        this.config = layout.config();
        this.kernels = k;
        this.layout = layout;
        for (TensorSpec spec : layout.gradientSpecs()) {
            Tensor t = weights.get(spec.name());
            if (t == null) throw new IllegalArgumentException("missing weight " + spec.name());
            if (t.dtype() != DType.F32 || !t.shape().equals(spec.shape()))
                throw new IllegalArgumentException("weight " + spec.name() + " is " + t.dtype() + t.shape() + ", expected F32" + spec.shape());
        }
        Map<String, Tensor> g = new LinkedHashMap<>();
        Rope r = null;
        try {
            for (TensorSpec spec : layout.gradientSpecs())
                g.put(spec.name(), Tensor.allocate(ledger, Category.GRADIENTS, spec.name(), DType.F32, spec.shape()));
            for (ActivationLayout.Slot s : layout.slots())
                buffers.put(s.spec().name(), Tensor.allocate(ledger, s.category(), s.spec().name(), s.spec().dtype(), s.spec().shape()));
            r = LlamaModel.newRope(config, ledger);
        } catch (RuntimeException e) {
            g.values().forEach(Tensor::close);
            buffers.values().forEach(Tensor::close);
            throw e;
        }
        this.gradients = Collections.unmodifiableMap(g);
        this.rope = r;
        this.attention = new Attention(config.numHeads(), config.numKvHeads(), config.headDim(), config.slidingWindow());
        this.embedding = new Embedding(weights.get(ParameterLayout.EMBED));
        this.dEmbedding = g.get(ParameterLayout.EMBED);
        for (int l = 0; l < config.numLayers(); l++) {
            blocks.add(new Block(config, l, weights, g));
            saved.add(BlockActivations.of(buffers, l));
        }
        this.finalNorm = new RmsNorm(weights.get(ParameterLayout.NORM), config.rmsNormEps());
        this.dFinalNorm = g.get(ParameterLayout.NORM);
        String head = config.tieWordEmbeddings() ? ParameterLayout.EMBED : ParameterLayout.LM_HEAD;
        this.loss = new CrossEntropy(weights.get(head), layout.lossChunkRows());
        this.dHead = g.get(head);
        this.scratch = new Block.Scratch(seg("grad.xn"), seg("grad.att"), seg("grad.q"), seg("grad.k"), seg("grad.v"),
                seg("grad.h"), seg("grad.up"), seg("attention_backward_scratch"));
    }

    private MemorySegment seg(String name) { return buffers.get(name).segment(); }

    /**
     * Writable fp32 copies of {@code weights}, filed under {@code weights} in the ledger: training updates weights
     * in place, and a model folder's F32 tensors are read-only file mappings. F16/BF16 tensors are widened.
     */
    public static Map<String, Tensor> ownedCopy(Map<String, Tensor> weights, MemoryLedger ledger) {
        Map<String, Tensor> out = new LinkedHashMap<>();
        try {
            for (Map.Entry<String, Tensor> e : weights.entrySet()) {
                Tensor src = e.getValue();
                Tensor dst = Tensor.allocate(ledger, Category.WEIGHTS, e.getKey(), DType.F32, src.shape());
                out.put(e.getKey(), dst);
                if (src.dtype() == DType.F32) MemorySegment.copy(src.segment(), 0, dst.segment(), 0, src.bytes());
                else for (long i = 0; i < src.elements(); i++) dst.setFloat(i, src.getFloat(i));
            }
        } catch (RuntimeException ex) {
            out.values().forEach(Tensor::close);
            throw ex;
        }
        return out;
    }

    public LlamaConfig config() { return config; }

    public TrainingLayout layout() { return layout; }

    /** Same names and shapes as the weights, F32, category gradients. */
    public Map<String, Tensor> gradients() { return gradients; }

    /** Activation and workspace specs of this step (the planner sums the same lists: {@link TrainingLayout}). */
    public static List<ActivationLayout.Slot> activationSlots(LlamaConfig config, int batch, int seqLen) {
        return TrainingLayout.of(config, batch, seqLen).slots();
    }

    /** Gradient specs: one F32 tensor per parameter. */
    public static List<TensorSpec> gradientSpecs(LlamaConfig config) {
        return ParameterLayout.of(config, DType.F32).specs();
    }

    public void zeroGradients() {
        for (Tensor t : gradients.values()) t.segment().fill((byte) 0);
    }

    /**
     * Forward, chunked loss and backward for one micro-batch; adds (1/normalizer)·∂(Σ token losses)/∂θ to the gradients.
     *
     * @param inputIds   [B][T] token ids
     * @param labels     [B][T] target id of each position (already shifted), or −100 to ignore it
     * @param normalizer counted tokens of the whole optimizer step (all micro-batches), > 0
     */
    public Loss forwardBackward(int[][] inputIds, int[][] labels, double normalizer) {
        if (!(normalizer > 0) || Double.isInfinite(normalizer))
            throw new IllegalArgumentException("normalizer must be a positive finite number, got " + normalizer);
        return run(inputIds, labels, (float) (1.0 / normalizer), true);
    }

    /** Forward and loss only (evaluation): no gradient work, gradients untouched. */
    public Loss forwardLoss(int[][] inputIds, int[][] labels) {
        return run(inputIds, labels, 1f, false);
    }

    private Loss run(int[][] inputIds, int[][] labels, float invNormalizer, boolean backward) {
        int b = layout.batch(), t = layout.seqLen(), n = layout.rows(), c = config.hiddenSize();
        int[] ids = flatten(inputIds, "inputIds", b, t);
        int[] targets = flatten(labels, "labels", b, t);
        int[] positions = new int[n];
        for (int i = 0; i < n; i++) positions[i] = i % t;
        Block.Context ctx = new Block.Context(kernels, rope, attention, config, b, t, positions);

        embedding.forward(kernels, ids, saved.getFirst().xIn(), 0);
        for (int l = 0; l < blocks.size(); l++) {
            MemorySegment out = l + 1 < blocks.size() ? saved.get(l + 1).xIn() : seg("final.x");
            blocks.get(l).forward(ctx, saved.get(l), out);
        }
        MemorySegment xFinal = seg("final.x"), xf = seg("final.xn"), invRms = seg("final.inv_rms");
        finalNorm.forward(kernels, xFinal, 0, n, xf, 0, invRms, 0);
        MemorySegment dXf = scratch.dXn();
        CrossEntropy.Result r = loss.forward(kernels, xf, 0, n, targets, invNormalizer,
                backward ? dHead : null, backward ? dXf : null, 0, seg("loss_logits"));
        if (!backward) return new Loss(r.sum(), r.tokens());

        MemorySegment dX = seg("grad.x");
        dX.fill((byte) 0); // the norm's backward adds into dX
        finalNorm.backward(xFinal, 0, invRms, 0, dXf, 0, n, dX, 0, dFinalNorm);
        for (int l = blocks.size() - 1; l >= 0; l--) blocks.get(l).backward(ctx, saved.get(l), scratch, dX);
        embedding.backward(kernels, ids, dX, 0, dEmbedding);
        return new Loss(r.sum(), r.tokens());
    }

    private static int[] flatten(int[][] rows, String what, int b, int t) {
        if (rows.length != b) throw new IllegalArgumentException(what + " has " + rows.length + " sequences, the step was built for B = " + b);
        int[] flat = new int[b * t];
        for (int i = 0; i < b; i++) {
            if (rows[i].length != t)
                throw new IllegalArgumentException(what + "[" + i + "] has " + rows[i].length + " tokens, the step was built for T = " + t + " (pad with label −100)");
            System.arraycopy(rows[i], 0, flat, i * t, t);
        }
        return flat;
    }

    @Override
    public void close() {
        buffers.values().forEach(Tensor::close);
        gradients.values().forEach(Tensor::close);
        rope.close();
    }
}
