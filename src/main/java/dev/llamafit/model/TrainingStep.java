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
import dev.llamafit.nn.FlashAttention;
import dev.llamafit.nn.Linear;
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
 *
 * <p>With LoRA ({@link Technique#lora()}) the base weights are frozen: the step owns LoRA adapters A [r, in], B [out, r] per
 * targeted module (PEFT init: A ~ U(−1/√in, 1/√in), B = 0, so the model starts as the base) filed under
 * {@code weights}, and only their gradients exist. With gradient checkpointing, checkpointed blocks
 * ({@link TrainingLayout#checkpointed}) are recomputed from their saved input just before their backward.
 *
 * <p>Mixed precision ({@link TrainingLayout#half()}): the given fp32 weights (and the step's adapters) are the masters;
 * the step owns a 16-bit working copy of each matrix ({@link TrainingLayout#workingCopySpecs()}) that the GEMMs read,
 * refreshed by {@link #syncWorkingCopies()} after every update. The embedding lookup and the norms read the fp32
 * masters, as autocast does. Blocks round their 16-bit tensors ({@link Block}), save them in 16 bits after their
 * forward and widen them before their backward.
 *
 * <p>bf16-pure ({@link TrainingLayout#pure()}): the trainable matrices (full fine-tuning's, given BF16; LoRA's adapters,
 * allocated BF16) are read by the GEMMs directly and their gradients are BF16 ({@link dev.llamafit.nn.WeightGradient});
 * activations are rounded as under bf16. A LoRA base not stored in bf16 still gets working copies.
 */
public final class TrainingStep implements AutoCloseable {
    private final LlamaConfig config;
    private final Kernels kernels;
    private final TrainingLayout layout;
    private final Map<String, Tensor> gradients;
    private final Map<String, Tensor> adapters;  // LoRA A/B by PEFT name; empty for full fine-tuning
    private final List<Tensor> owned;             // the adapters and gradients this step allocated (not supplied ones)
    private final long seed;
    private final Tensor sixteenBitWeight;       // a BF16/F16 base matrix, or null: full fine-tuning then cannot run
    private final DType half;                     // mixed precision's 16-bit type, or null (fp32)
    private final Map<Tensor, Tensor> working = new LinkedHashMap<>(); // mixed precision: fp32 master → 16-bit working copy
    private final Map<String, Tensor> copies = new LinkedHashMap<>();  // every working copy by name (masters elsewhere too)
    private long calls;                           // forwardBackward calls so far: each draws fresh dropout masks
    private final Map<String, Tensor> buffers = new LinkedHashMap<>();
    private final Embedding embedding;
    private final List<Block> blocks = new ArrayList<>();
    private final List<BlockActivations> saved = new ArrayList<>();
    private final RmsNorm finalNorm;
    private final Tensor dFinalNorm; // [C], null when frozen
    private final CrossEntropy loss;
    private final Tensor dHead;     // [V, C]: lm_head's gradient, or the embedding's when tied; null when frozen
    private final Tensor dEmbedding; // [V, C], null when frozen
    private final Rope rope;
    private final Attention attention;
    private final FlashAttention flash; // --attention flash, else null
    private final Block.Grads scratch;
    private StepHooks hooks = StepHooks.NONE;

    /** Loss summed over the counted tokens, and their number. */
    public record Loss(double sum, long tokens) {
        /** Mean loss per token; 0 when no token counted (every label ignored), never NaN. */
        public double mean() { return tokens == 0 ? 0.0 : sum / tokens; }
    }

    /**
     * Full fine-tuning.
     *
     * @param weights owned, writable F32 tensors named as in {@link ParameterLayout} (tied: no lm_head); see {@link #ownedCopy}
     */
    public TrainingStep(LlamaConfig config, Map<String, Tensor> weights, Kernels k, MemoryLedger ledger, int batch, int seqLen) {
        this(TrainingLayout.of(config, batch, seqLen), weights, k, ledger, 0);
    }

    /**
     * @param weights   base weights; with LoRA they are only read (a read-only mapping will do), and matrices may be
     *                  BF16/F16 (used in place); full fine-tuning needs them all F32
     * @param technique full fine-tuning or LoRA, and gradient checkpointing (what the layout reads)
     * @param seed      adapter initialisation and dropout masks
     */
    public TrainingStep(LlamaConfig config, Map<String, Tensor> weights, Kernels k, MemoryLedger ledger, int batch, int seqLen,
                        Technique technique, long seed) {
        this(TrainingLayout.of(config, batch, seqLen, technique), weights, k, ledger, seed);
    }

    public TrainingStep(TrainingLayout layout, Map<String, Tensor> weights, Kernels k, MemoryLedger ledger) {
        this(layout, weights, k, ledger, 0);
    }

    /**
     * Storage the caller supplies instead of the step allocating it (views into ZeRO's flat buffers, say). The step
     * neither frees nor zeroes it at construction; the caller keeps it alive while the step runs.
     *
     * @param adapters     LoRA A/B by PEFT key ({@link TrainingLayout#adapterSpecs()}), or null: the step allocates them
     * @param initAdapters whether the step writes PEFT's initialisation into supplied adapters (false: the caller did)
     * @param gradients    the gradients by name ({@link TrainingLayout#gradientSpecs()}), or null: the step allocates them;
     *                     several names may share memory (a bucket) when hooks reduce them between blocks
     */
    public record Storage(Map<String, Tensor> adapters, boolean initAdapters, Map<String, Tensor> gradients, boolean mastersElsewhere) {
        /** The step allocates everything. */
        public static final Storage OWN = new Storage(null, true, null);

        /** With every fp32 master among the weights. */
        public Storage(Map<String, Tensor> adapters, boolean initAdapters, Map<String, Tensor> gradients) {
            this(adapters, initAdapters, gradients, false);
        }
    }

    /** @param seed LoRA initialisation and dropout masks (unused by full fine-tuning without dropout) */
    public TrainingStep(TrainingLayout layout, Map<String, Tensor> weights, Kernels k, MemoryLedger ledger, long seed) {
        this(layout, weights, k, ledger, seed, Storage.OWN);
    }

    /** As above, with {@code storage} for what the caller supplies. */
    public TrainingStep(TrainingLayout layout, Map<String, Tensor> weights, Kernels k, MemoryLedger ledger, long seed, Storage storage) {
        this.config = layout.config();
        // Mixed precision: every GEMM operand holds 16-bit values (rounded where produced), which a backend may exploit.
        this.kernels = layout.half() == null ? k : k.halfOperands(layout.half());
        this.layout = layout;
        this.seed = seed;
        Tensor halfWeight = null;
        for (TensorSpec spec : ParameterLayout.of(config, DType.F32).specs()) {
            // An int8/NF4 matrix is bitsandbytes' tensors under its name, which its projection checks (Projection.of).
            if (config.quantization() != null && ParameterLayout.isQuantizable(spec)) continue;
            Tensor t = weights.get(spec.name());
            // Masters kept elsewhere (ZeRO's shards): only those the forward reads in fp32 are given; the caller fills
            // the working copies of the others (workingCopies()).
            if (t == null && storage.mastersElsewhere() && layout.half() != null && !layout.pure() && spec.shape().rank() == 2) continue;
            if (t == null) throw new IllegalArgumentException("missing weight " + spec.name());
            // A frozen base (LoRA, or a step used only for forwardLoss) may keep its matrices in BF16/F16, read in place;
            // full fine-tuning updates weights and needs them F32 (forwardBackward refuses otherwise). Vectors are F32.
            boolean matrix = spec.shape().rank() == 2;
            boolean typeOk = matrix ? Linear.isDenseType(t.dtype()) : t.dtype() == DType.F32;
            if (!typeOk || !t.shape().equals(spec.shape()))
                throw new IllegalArgumentException("weight " + spec.name() + " is " + t.dtype() + t.shape() + ", expected "
                        + (matrix ? "F32, BF16 or F16" : "F32") + spec.shape());
            if (t.dtype() != DType.F32 && halfWeight == null) halfWeight = t;
            if (layout.pure() && layout.lora() == null && matrix && t.dtype() != DType.BF16)
                throw new IllegalArgumentException("bf16-pure full fine-tuning trains BF16 matrices, but " + spec.name() + " is " + t.dtype());
        }
        this.sixteenBitWeight = halfWeight;
        this.half = layout.half();
        Map<String, Tensor> g = new LinkedHashMap<>(), ad = new LinkedHashMap<>();
        List<Tensor> allocated = new ArrayList<>(); // what this step frees: supplied storage is the caller's
        Map<String, Tensor> computeWeights = new LinkedHashMap<>(weights), computeAdapters = ad;
        Rope r = null;
        try {
            for (TensorSpec spec : layout.adapterSpecs())
                ad.put(spec.name(), storage.adapters() != null ? supplied(storage.adapters(), spec)
                        : own(allocated, Tensor.allocate(ledger, layout.trainableCategory(), spec.name(), spec.dtype(), spec.shape())));
            if (!layout.workingCopySpecs().isEmpty()) {
                computeAdapters = new LinkedHashMap<>(ad); // bf16-pure: the adapters themselves; mixed: replaced by copies
                for (TensorSpec spec : layout.workingCopySpecs()) {
                    Tensor master = ad.containsKey(spec.name()) ? ad.get(spec.name()) : weights.get(spec.name());
                    Tensor copy = Tensor.allocate(ledger, Category.WEIGHTS, spec.name(), half, spec.shape());
                    copies.put(spec.name(), copy);
                    if (master != null) working.put(master, copy);
                    (ad.containsKey(spec.name()) ? computeAdapters : computeWeights).put(spec.name(), copy);
                }
            }
            // Under 16-bit compute every matrix a GEMM reads is 16-bit: a copy, a bf16-pure weight, or a base the
            // technique says is stored so.
            if (half != null)
                for (Tensor t : computeWeights.values())
                    if (t.shape().rank() == 2 && Linear.isDenseType(t.dtype()) && t.dtype() != half)
                        throw new IllegalArgumentException("the technique stores the LoRA base as " + layout.technique().baseStorage()
                                + ", but " + t + " is " + t.dtype() + " (name the base's dtype in Technique.baseDtype)");
            for (TensorSpec spec : layout.gradientSpecs())
                g.put(spec.name(), storage.gradients() != null ? supplied(storage.gradients(), spec)
                        : own(allocated, Tensor.allocate(ledger, Category.GRADIENTS, spec.name(), spec.dtype(), spec.shape())));
            for (ActivationLayout.Slot s : layout.slots())
                buffers.put(s.spec().name(), Tensor.allocate(ledger, s.category(), s.spec().name(), s.spec().dtype(), s.spec().shape()));
            r = LlamaModel.newRope(config, ledger);
        } catch (RuntimeException e) {
            allocated.forEach(Tensor::close);
            copies.values().forEach(Tensor::close);
            buffers.values().forEach(Tensor::close);
            throw e;
        }
        this.owned = allocated;
        this.gradients = Collections.unmodifiableMap(g);
        this.adapters = Collections.unmodifiableMap(ad);
        if (storage.adapters() == null || storage.initAdapters()) initAdapters();
        syncWorkingCopies();
        this.rope = r;
        this.attention = new Attention(config.numHeads(), config.numKvHeads(), config.headDim(), config.slidingWindow(), half);
        this.flash = layout.flash() ? new FlashAttention(config.numHeads(), config.numKvHeads(), config.headDim(), config.slidingWindow(), half) : null;
        this.embedding = new Embedding(weights.get(ParameterLayout.EMBED)); // the fp32 master: autocast looks rows up in fp32
        this.dEmbedding = g.get(ParameterLayout.EMBED);
        for (int l = 0; l < config.numLayers(); l++) {
            blocks.add(new Block(config, l, computeWeights, g, layout.lora(), computeAdapters, g, half));
            saved.add(BlockActivations.of(buffers, l));
        }
        this.finalNorm = new RmsNorm(weights.get(ParameterLayout.NORM), config.rmsNormEps());
        this.dFinalNorm = g.get(ParameterLayout.NORM);
        String head = config.tieWordEmbeddings() ? ParameterLayout.EMBED : ParameterLayout.LM_HEAD;
        this.loss = new CrossEntropy(computeWeights.get(head), layout.lossChunkRows(), half, optSeg(TrainingLayout.WEIGHT_GRAD_SCRATCH));
        this.dHead = g.get(head);
        this.scratch = new Block.Grads(seg("grad.xn"), seg("grad.att"), seg("grad.q"), seg("grad.k"), seg("grad.v"),
                seg("attention_backward_scratch"), optSeg("grad.lora_du"), optSeg("grad.lora_dx"),
                optSeg(TrainingLayout.WEIGHT_GRAD_SCRATCH));
    }

    private static Tensor own(List<Tensor> allocated, Tensor t) {
        allocated.add(t);
        return t;
    }

    private static Tensor supplied(Map<String, Tensor> given, TensorSpec spec) {
        Tensor t = given.get(spec.name());
        if (t == null || t.dtype() != spec.dtype() || !t.shape().equals(spec.shape()))
            throw new IllegalArgumentException("supplied storage for " + spec.name() + " is " + t + ", expected " + spec.dtype() + spec.shape());
        return t;
    }

    /** Sets the hooks the next calls run ({@link StepHooks#NONE} for none). */
    public void setHooks(StepHooks hooks) { this.hooks = java.util.Objects.requireNonNull(hooks, "hooks"); }

    private MemorySegment seg(String name) { return buffers.get(name).segment(); }

    private MemorySegment optSeg(String name) { return buffers.containsKey(name) ? buffers.get(name).segment() : null; }

    /**
     * PEFT's initialisation: A from nn.Linear's default, Kaiming-uniform with a = √5 over fan_in = in, i.e.
     * U(−1/√in, 1/√in); B = 0, so the adapted model starts exactly as the base.
     */
    private void initAdapters() {
        java.util.SplittableRandom rnd = new java.util.SplittableRandom(seed);
        for (Tensor t : adapters.values()) initAdapter(t, rnd);
    }

    /**
     * One adapter's initial values; {@code rnd} starts as {@code new SplittableRandom(seed)} and visits the adapters in
     * {@link TrainingLayout#adapterSpecs()} order (what a caller that stores them elsewhere repeats).
     */
    public static void initAdapter(Tensor t, java.util.SplittableRandom rnd) {
        if (t.name().contains(".lora_B.")) {
            t.segment().fill((byte) 0);
            return;
        }
        double bound = 1 / Math.sqrt(t.shape().dim(1));
        for (long i = 0; i < t.elements(); i++) put(t, i, (float) ((rnd.nextDouble() * 2 - 1) * bound));
    }

    /**
     * Mixed precision: rounds every fp32 master into its 16-bit working copy (nearest even). Call after each update of
     * the masters (the optimizer step, loading an adapter or a checkpoint); a no-op in fp32.
     */
    public void syncWorkingCopies() {
        for (Map.Entry<Tensor, Tensor> e : working.entrySet()) {
            Tensor master = e.getKey(), copy = e.getValue();
            if (master.dtype() == copy.dtype()) MemorySegment.copy(master.segment(), 0, copy.segment(), 0, copy.bytes());
            else if (master.dtype() != DType.F32) {
                // A 16-bit base of the other 16-bit type (a bf16 checkpoint under fp16, say): through fp32, element by element.
                for (long i = 0; i < copy.elements(); i++) {
                    float v = master.getFloat(i);
                    short h = half == DType.BF16 ? dev.llamafit.kernels.ScalarKernels.floatToBf16(v) : Float.floatToFloat16(v);
                    copy.segment().setAtIndex(Tensor.I16_LE, i, h);
                }
            } else if (half == DType.BF16) kernels.f32ToBf16(master.segment(), 0, copy.segment(), 0, copy.elements());
            else kernels.f32ToF16(master.segment(), 0, copy.segment(), 0, copy.elements());
        }
    }

    /**
     * The 16-bit working copies by name. With {@link Storage#mastersElsewhere()} those of matrices whose masters were
     * not given are the caller's to fill, rounding each fp32 value as {@link #syncWorkingCopies()} does.
     */
    public Map<String, Tensor> workingCopies() { return Collections.unmodifiableMap(copies); }

    /** Element i of an F32 or BF16 (bf16-pure) adapter ← v, rounded to nearest even for BF16. */
    private static void put(Tensor t, long i, float v) {
        if (t.dtype() == DType.BF16) t.segment().setAtIndex(Tensor.I16_LE, i, dev.llamafit.kernels.ScalarKernels.floatToBf16(v));
        else t.setFloat(i, v);
    }

    /** LoRA A and B by PEFT key ({@link LinearModule#peftKey}), trainable, owned by this step; empty for full fine-tuning. */
    public Map<String, Tensor> adapterWeights() { return adapters; }

    /** The adapters' gradients, same keys; with LoRA this is all of {@link #gradients()}. */
    public Map<String, Tensor> adapterGradients() { return layout.lora() == null ? Map.of() : gradients; }

    /**
     * Copies given adapter values (e.g. an adapter_model.safetensors) into this step's adapters. Every adapter must be
     * given, with its exact shape; other dtypes are converted to the adapters' (fp32; BF16 under bf16-pure).
     */
    public void loadAdapter(Map<String, Tensor> given) {
        if (layout.lora() == null) throw new IllegalStateException("this training step has no LoRA adapters (full fine-tuning)");
        for (String name : given.keySet())
            if (!adapters.containsKey(name))
                throw new IllegalArgumentException("unexpected adapter tensor " + name + " (this step adapts " + layout.lora().targets()
                        + " with r = " + layout.lora().rank() + "; keys look like " + adapters.keySet().iterator().next() + ")");
        for (Tensor dst : adapters.values()) {
            Tensor src = given.get(dst.name());
            if (src == null) throw new IllegalArgumentException("missing adapter tensor " + dst.name());
            if (!src.shape().equals(dst.shape()))
                throw new IllegalArgumentException("adapter tensor " + dst.name() + " has shape " + src.shape() + ", expected " + dst.shape()
                        + (src.shape().rank() == 2 && dst.name().contains("lora_A") ? " ([r, in])" : " ([out, r])"));
        }
        for (Tensor dst : adapters.values()) {
            Tensor src = given.get(dst.name());
            if (src.dtype() == dst.dtype()) MemorySegment.copy(src.segment(), 0, dst.segment(), 0, dst.bytes());
            else for (long i = 0; i < dst.elements(); i++) put(dst, i, src.getFloat(i));
        }
        syncWorkingCopies();
    }

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

    /** The backend this step computes with. */
    public Kernels kernels() { return kernels; }

    /** forwardBackward calls so far; dropout masks derive from (seed, this count), so checkpoints store it. */
    public long dropoutCalls() { return calls; }

    /** Restores the count on resume, so the next step draws the masks an uninterrupted run would. */
    public void setDropoutCalls(long calls) {
        if (calls < 0) throw new IllegalArgumentException("negative call count " + calls);
        this.calls = calls;
    }

    public TrainingLayout layout() { return layout; }

    /** Full fine-tuning: same names and shapes as the weights; LoRA: the adapters' only. F32 (bf16-pure: BF16 matrices), category gradients. */
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
        if (layout.lora() == null && half == null && sixteenBitWeight != null)
            throw new IllegalStateException("full fine-tuning updates every weight and needs them F32, but " + sixteenBitWeight
                    + " is not (make an owned fp32 copy: ownedCopy)");
        calls++;
        return run(inputIds, labels, (float) (1.0 / normalizer), true);
    }

    /** Forward and loss only (evaluation): no gradient work, gradients untouched. */
    public Loss forwardLoss(int[][] inputIds, int[][] labels) {
        return run(inputIds, labels, 1f, false);
    }

    /**
     * The logits [B·T, V] of an evaluation forward (no dropout), row-major: what the loss reads, in the step's precision
     * (under mixed precision the LM head's 16-bit output). For tests and inspection: it holds B·T·V floats on the heap.
     */
    public float[] logits(int[][] inputIds) {
        int n = layout.rows(), v = config.vocabSize();
        int[] ids = flatten(inputIds, "inputIds", layout.batch(), layout.seqLen());
        hooks.beforeForward(false);
        MemorySegment xf = forwardToHead(ids, context(false), false);
        float[] out = new float[Math.multiplyExact(n, v)];
        loss.logits(kernels, xf, n, out, seg("loss_logits"));
        return out;
    }

    private Block.Context context(boolean backward) {
        int b = layout.batch(), t = layout.seqLen(), n = layout.rows();
        int[] positions = new int[n];
        for (int i = 0; i < n; i++) positions[i] = i % t;
        long stepSeed = seed + 0x9E3779B97F4A7C15L * calls; // dropout masks: fresh per step, reproducible from the seed
        return new Block.Context(kernels, rope, attention, config, b, t, positions, backward, stepSeed, half, flash,
                seg("attention_backward_scratch"));
    }

    /** Embedding, every block (saving for backward when asked) and the final norm; returns its output, the head's input. */
    private MemorySegment forwardToHead(int[] ids, Block.Context ctx, boolean backward) {
        int n = layout.rows(), c = config.hiddenSize();
        embedding.forward(kernels, ids, saved.getFirst().xIn(), 0);
        for (int l = 0; l < blocks.size(); l++) {
            // A checkpointed block's views point at the shared set, except x_in: only its input survives the next block.
            MemorySegment out = l + 1 < blocks.size() ? saved.get(l + 1).xIn() : seg("final.x");
            hooks.beforeBlockForward(l, false);
            blocks.get(l).forward(ctx, saved.get(l), out);
            if (backward && !layout.checkpointed(l)) saved.get(l).save(kernels); // mixed precision: its 16-bit tensors
        }
        // The head's input lives in grad.xn: the chunked loss reads each chunk of it just before writing that chunk's dXf.
        MemorySegment xf = scratch.dXn();
        finalNorm.forward(kernels, seg("final.x"), 0, n, xf, 0, seg("final.inv_rms"), 0);
        if (half != null) kernels.round16(xf, 0, (long) n * c, half); // the LM head's 16-bit input
        return xf;
    }

    private Loss run(int[][] inputIds, int[][] labels, float invNormalizer, boolean backward) {
        int b = layout.batch(), t = layout.seqLen(), n = layout.rows(), c = config.hiddenSize();
        int[] ids = flatten(inputIds, "inputIds", b, t);
        int[] targets = flatten(labels, "labels", b, t);
        Block.Context ctx = context(backward);
        hooks.beforeForward(backward);
        MemorySegment xf = forwardToHead(ids, ctx, backward);
        MemorySegment xFinal = seg("final.x"), invRms = seg("final.inv_rms");
        MemorySegment dXf = scratch.dXn();
        CrossEntropy.Result r = loss.forward(kernels, xf, 0, n, targets, invNormalizer,
                backward ? dHead : null, backward ? dXf : null, 0, seg("loss_logits"));
        if (!backward) return new Loss(r.sum(), r.tokens());

        MemorySegment dX = seg("grad.x");
        dX.fill((byte) 0); // the norm's backward adds into dX
        if (half != null) kernels.round16(dXf, 0, (long) n * c, half);
        finalNorm.backward(kernels, xFinal, 0, invRms, 0, dXf, 0, n, dX, 0, dFinalNorm);
        for (int l = blocks.size() - 1; l >= 0; l--) {
            // Recompute into the shared set; the output (already saved as the next block's input) goes to dXn,
            // scratch that this block's backward overwrites before reading.
            if (layout.checkpointed(l)) {
                hooks.beforeBlockForward(l, true);
                blocks.get(l).forward(ctx, saved.get(l), scratch.dXn());
            } else saved.get(l).restore(kernels);
            hooks.beforeBlockBackward(l);
            blocks.get(l).backward(ctx, saved.get(l), scratch, dX);
            hooks.afterBlockBackward(l);
        }
        if (dEmbedding != null) embedding.backward(kernels, ids, dX, 0, dEmbedding, optSeg(TrainingLayout.WEIGHT_GRAD_SCRATCH));
        hooks.afterBackward();
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
        owned.forEach(Tensor::close);
        copies.values().forEach(Tensor::close);
        rope.close();
    }
}
