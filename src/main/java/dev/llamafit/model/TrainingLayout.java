// The buffers a training step allocates (saved activations per block, backward scratch, gradients) as specs.
package dev.llamafit.model;

import java.util.ArrayList;
import java.util.List;

import dev.llamafit.memory.Category;
import dev.llamafit.nn.Attention;
import dev.llamafit.nn.CrossEntropy;
import dev.llamafit.nn.FlashAttention;
import dev.llamafit.nn.Rope;
import dev.llamafit.tensor.DType;
import dev.llamafit.tensor.Shape;
import dev.llamafit.tensor.TensorSpec;

/**
 * Every buffer of a forward + backward step over B sequences of T tokens, fp32, N = B·T rows.
 *
 * <p>Saved activations are listed per block ({@link #blockSlots}), named {@code layers.{l}.…}. A tensor a block
 * uses but does not save lives in one {@code shared.…} buffer that every block overwrites ({@link #sharedSlots}).
 * Backward scratch (the {@code grad.*} buffers) is shared by all blocks: the backward pass holds one block's
 * gradients at a time. Per-thread scratch and the loss chunk are {@code workspace}. {@link TrainingStep}
 * allocates exactly {@link #slots()}, {@link #gradientSpecs()} and (LoRA) {@link #adapterSpecs()}; the planner
 * sums the same lists.
 *
 * <p><b>What a block saves.</b> Full fine-tuning: all 14 tensors of {@link BlockActivations}. With LoRA the base is
 * frozen, so a tensor that only a base weight gradient reads is not kept:
 * <ul>
 * <li>always kept (input gradient needs them): x_in and inv_rms_attn (attention norm backward), q, k, v, probs (or,
 *     with flash attention, lse [B, H, T])
 *     (attention backward), x_mid and inv_rms_mlp (MLP norm backward), gate and up (SwiGLU backward);</li>
 * <li>the inputs of the linear layers, xn_attn (q/k/v), att (o), xn_mlp (gate/up) and h (down), are kept only when
 *     an adapter reads them in backward, i.e. its module is targeted and lora_dropout = 0 (att also under flash
 *     attention, whose backward reads its output); otherwise they are forward temporaries in {@code shared.*};</li>
 * <li>per targeted module m: {@code layers.{l}.m.lora_u} [N, r] (for dB) and, with dropout, {@code
 *     layers.{l}.m.lora_x} = dropout(input) [N, in] (for dA; the mask is regenerated from a seed, never stored).</li>
 * </ul>
 * Backward adds {@code grad.lora_du} [N, r] and, with dropout, {@code grad.lora_dx} [N, max in].
 *
 * <p><b>Gradient checkpointing</b> ({@code checkpointEvery} = N &gt; 0): block l is checkpointed iff l % N == 0
 * (N = 1: every block; N = 2: blocks 0, 2, 4, …). A checkpointed block saves only {@code x_in}; its forward writes
 * everything else into {@code shared.*}, which then holds the full set of a block (13 tensors, plus the adapter's
 * u and dropout input under LoRA), and backward recomputes its forward there from x_in just before its backward.
 * Other blocks save as without checkpointing.
 *
 * <p><b>Mixed precision</b> ({@link Technique.Precision#mixed()}: bf16 or fp16 with fp32 master weights). The tensors
 * PyTorch's autocast holds in 16 bits ({@link #HALF_TENSORS}: the linear layers' inputs and outputs, attention's q, k, v,
 * probabilities and output, the MLP's gate, up and h, LoRA's u and dropout input) are saved in the 16-bit type; x_in,
 * x_mid and the inverse RMS stay fp32. A block computes in the fp32 {@code shared.*} set, on values already rounded to
 * 16 bits where they were produced, so saving them in 16 bits and widening them before the block's backward is exact.
 * Every trainable matrix then also has a 16-bit working copy ({@link #workingCopySpecs()}, under {@code weights}) that
 * the GEMMs read, and its fp32 master is filed under {@code master_weights}.
 *
 * <p><b>bf16-pure</b> ({@link #pure()}, torchtune's full bf16) rounds the same activations to bf16, but has no masters
 * and no working copies of trainable matrices: they are BF16 themselves ({@link #fullWeightSpecs()}, {@link
 * #adapterSpecs()}), and so are their gradients. A GEMM writes fp32 only, so each weight-gradient product goes through
 * one fp32 {@link #WEIGHT_GRAD_SCRATCH} (workspace) and is added to the BF16 gradient with one rounding.
 *
 * @param batch           B
 * @param seqLen          T
 * @param threads         parallel chunks that each get an attention-backward scratch [T, T]
 * @param lossChunkRows   rows of logits the chunked cross-entropy holds at once
 * @param technique       full fine-tuning or LoRA (adapters on a frozen base), and gradient checkpointing; the
 *                        layout reads {@link #lora()} and {@link #checkpointEvery()} from it
 */
public record TrainingLayout(LlamaConfig config, int batch, int seqLen, int threads, int lossChunkRows, Technique technique) {
    /** The block tensors saved in 16 bits under mixed precision (autocast's 16-bit tensors). */
    public static final java.util.Set<String> HALF_TENSORS = java.util.Set.of(
            "xn_attn", "q", "k", "v", "probs", "att", "xn_mlp", "gate", "up", "h", "lora_u", "lora_x");

    /** bf16-pure's fp32 scratch [largest trainable matrix] for weight-gradient products (workspace). */
    public static final String WEIGHT_GRAD_SCRATCH = "weight_grad_scratch";

    /** Default rows per loss chunk: [128, V] fp32 is 16 MB at V = 32000, big enough for an efficient GEMM. */
    public static final int DEFAULT_LOSS_CHUNK_ROWS = 128;

    public TrainingLayout {
        if (batch <= 0 || seqLen <= 0) throw new IllegalArgumentException("batch and seqLen must be > 0, got " + batch + ", " + seqLen);
        if (seqLen > config.maxPositions())
            throw new IllegalArgumentException("seqLen " + seqLen + " exceeds max_position_embeddings " + config.maxPositions());
        if (threads <= 0 || lossChunkRows <= 0) throw new IllegalArgumentException("threads and lossChunkRows must be > 0");
        if (technique == null) throw new IllegalArgumentException("a technique is required");
        tokens(batch, seqLen);
    }

    /** N = B·T, which must fit the int that indexes a batch's rows (IllegalArgumentException, not an overflow, otherwise). */
    static int tokens(int batch, int seqLen) {
        long n = (long) batch * seqLen;
        if (n > Integer.MAX_VALUE)
            throw new IllegalArgumentException("batch " + batch + " × sequence length " + seqLen + " = " + n
                    + " tokens is more than one batch can hold (" + Integer.MAX_VALUE + ")");
        return (int) n;
    }

    /** Full fine-tuning without checkpointing. */
    public TrainingLayout(LlamaConfig config, int batch, int seqLen, int threads, int lossChunkRows) {
        this(config, batch, seqLen, threads, lossChunkRows, Technique.FULL);
    }

    /** The layout with this process's thread count and the default loss chunk (capped at N). */
    public static TrainingLayout of(LlamaConfig config, int batch, int seqLen) {
        return of(config, batch, seqLen, Technique.FULL);
    }

    /** As {@link #of(LlamaConfig, int, int)}, for {@code technique} (its LoRA settings and checkpointing). */
    public static TrainingLayout of(LlamaConfig config, int batch, int seqLen, Technique technique) {
        return new TrainingLayout(config, batch, seqLen, dev.llamafit.kernels.Parallel.threads(),
                Math.min(DEFAULT_LOSS_CHUNK_ROWS, tokens(batch, seqLen)), technique);
    }

    /** The adapters on a frozen base, or null for full fine-tuning. */
    public LoraConfig lora() { return technique.lora(); }

    /** 0: no gradient checkpointing; N &gt; 0: blocks with index % N == 0 are checkpointed. */
    public int checkpointEvery() { return technique.checkpointInterval(); }

    /** N = B·T. */
    public int rows() { return batch * seqLen; }

    /**
     * Flash attention: a block saves one log-sum-exp per query row ({@code lse} [B, H, T]) instead of the probabilities
     * ({@code probs} [B, H, T, T]), and the per-thread attention scratch holds tiles, O(T·D) rather than T².
     */
    public boolean flash() { return technique.attention() == Technique.Attention.FLASH; }

    /**
     * The 16-bit type activations are rounded to (BF16 or F16: mixed precision, and bf16-pure, which rounds as bf16
     * does), or null when the step computes in fp32.
     */
    public DType half() {
        return switch (technique.precision()) {
            case BF16, BF16_PURE -> DType.BF16;
            case FP16 -> DType.F16;
            case FP32 -> null;
        };
    }

    /** bf16-pure: the trainable matrices, their gradients and their optimizer states are BF16; there are no fp32 masters. */
    public boolean pure() { return technique.precision() == Technique.Precision.BF16_PURE; }

    /** The dtype of the trainable matrices (full fine-tuning's weight matrices, LoRA's A and B) and of their gradients. */
    public DType trainableMatrixType() { return pure() ? DType.BF16 : DType.F32; }

    /** Where the trainable tensors are filed: {@code master_weights} under mixed precision (fp32 masters), else {@code weights}. */
    public Category trainableCategory() { return technique.precision().mixed() ? Category.MASTER_WEIGHTS : Category.WEIGHTS; }

    /**
     * Full fine-tuning's trainable tensors as the step needs them: {@link ParameterLayout}'s, with the matrices in
     * {@link #trainableMatrixType()}. Vectors (norm gains, biases: well under 0.1% of the parameters) stay fp32 in
     * every precision, because the norm and bias kernels are fp32.
     */
    public List<TensorSpec> fullWeightSpecs() {
        List<TensorSpec> out = new ArrayList<>();
        for (TensorSpec s : ParameterLayout.of(config, DType.F32).specs())
            out.add(s.shape().rank() == 2 ? new TensorSpec(s.name(), s.shape(), trainableMatrixType(), s.component()) : s);
        return List.copyOf(out);
    }

    public static String blockPrefix(int layer) { return "layers." + layer + "."; }

    public static final String SHARED_PREFIX = "shared.";

    /** Whether block {@code layer} keeps only its input and is recomputed in backward. */
    public boolean checkpointed(int layer) { return checkpointEvery() > 0 && layer % checkpointEvery() == 0; }

    // ---------------------------------------------------------------- linear modules and adapters

    /** The block tensor a module reads: xn_attn, att, xn_mlp or h. */
    static String moduleInput(LinearModule m) {
        return switch (m) {
            case Q, K, V -> "xn_attn";
            case O -> "att";
            case GATE, UP -> "xn_mlp";
            case DOWN -> "h";
        };
    }

    /**
     * LoRA: A [r, in] and B [out, r] per targeted module of every layer, in layer then module order; empty otherwise.
     * fp32, or BF16 under bf16-pure.
     */
    public List<TensorSpec> adapterSpecs() {
        if (lora() == null) return List.of();
        List<TensorSpec> s = new ArrayList<>();
        for (int l = 0; l < config.numLayers(); l++)
            for (LinearModule m : lora().modules()) {
                String component = m.parent() == LinearModule.Parent.MLP ? "mlp" : "attention";
                s.add(new TensorSpec(m.peftKey(l, 'A'), Shape.of(lora().rank(), m.in(config)), trainableMatrixType(), component));
                s.add(new TensorSpec(m.peftKey(l, 'B'), Shape.of(m.out(config), lora().rank()), trainableMatrixType(), component));
            }
        return List.copyOf(s);
    }

    // ---------------------------------------------------------------- activations

    /**
     * Every tensor a block's forward writes (besides its output), suffix names as in {@link BlockActivations}; saved
     * ones in their stored type (16-bit under mixed precision), the shared ones in fp32.
     */
    private List<ActivationLayout.Slot> blockTensors(String p) {
        List<ActivationLayout.Slot> s = new ArrayList<>();
        DType half = p.equals(SHARED_PREFIX) ? null : half();
        for (ActivationLayout.Slot slot : fp32BlockTensors(p)) {
            String suffix = suffix(slot.spec().name());
            if (half == null || !HALF_TENSORS.contains(suffix)) s.add(slot);
            else s.add(new ActivationLayout.Slot(new TensorSpec(slot.spec().name(), slot.spec().shape(), half, slot.spec().component()),
                    slot.category()));
        }
        return s;
    }

    /** "layers.3.q_proj.lora_u" → "lora_u", "shared.x_in" → "x_in": the name BlockActivations knows a tensor by. */
    static String suffix(String name) {
        int dot = name.lastIndexOf('.');
        return name.substring(dot + 1);
    }

    private List<ActivationLayout.Slot> fp32BlockTensors(String p) {
        int n = rows(), c = config.hiddenSize(), f = config.intermediateSize();
        List<ActivationLayout.Slot> s = new ArrayList<>(List.of(
                act(p + "x_in", Shape.of(n, c), "residual"),
                act(p + "xn_attn", Shape.of(n, c), "norm"),
                act(p + "inv_rms_attn", Shape.of(n), "norm"),
                act(p + "q", Shape.of(n, config.qDim()), "attention"),
                act(p + "k", Shape.of(n, config.kvDim()), "attention"),
                act(p + "v", Shape.of(n, config.kvDim()), "attention"),
                flash() ? act(p + "lse", Shape.of(batch, config.numHeads(), seqLen), "attention")
                        : act(p + "probs", Shape.of(batch, config.numHeads(), seqLen, seqLen), "attention"),
                act(p + "att", Shape.of(n, config.qDim()), "attention"),
                act(p + "x_mid", Shape.of(n, c), "residual"),
                act(p + "xn_mlp", Shape.of(n, c), "norm"),
                act(p + "inv_rms_mlp", Shape.of(n), "norm"),
                act(p + "gate", Shape.of(n, f), "mlp"),
                act(p + "up", Shape.of(n, f), "mlp"),
                act(p + "h", Shape.of(n, f), "mlp")));
        if (lora() != null)
            for (LinearModule m : lora().modules()) {
                s.add(act(p + m.key() + ".lora_u", Shape.of(n, lora().rank()), "lora"));
                if (lora().dropout() > 0) s.add(act(p + m.key() + ".lora_x", Shape.of(n, m.in(config)), "lora"));
            }
        return s;
    }

    /** Whether a non-checkpointed block keeps this tensor (suffix after the prefix) for backward; see the class comment. */
    boolean saves(String suffix) {
        if (lora() == null) return true;
        // Flash attention's backward reads its output O (D = rowsum(dO ⊙ O)), so att is kept whatever the adapters.
        if (suffix.equals("att") && flash()) return true;
        return switch (suffix) {
            case "xn_attn", "att", "xn_mlp", "h" -> lora().dropout() == 0
                    && lora().modules().stream().anyMatch(m -> moduleInput(m).equals(suffix));
            default -> true;
        };
    }

    /** What block {@code layer} saves in forward for its backward. */
    public List<ActivationLayout.Slot> blockSlots(int layer) {
        String p = blockPrefix(layer);
        List<ActivationLayout.Slot> out = new ArrayList<>();
        for (ActivationLayout.Slot s : blockTensors(p)) {
            String suffix = s.spec().name().substring(p.length());
            if (checkpointed(layer) ? suffix.equals("x_in") : saves(suffix)) out.add(s);
        }
        return List.copyOf(out);
    }

    /**
     * The one fp32 set of block tensors that blocks compute in without holding them in fp32 themselves: with
     * checkpointing, a block's full set but its input (checkpointed blocks run and are recomputed there); under LoRA,
     * the unsaved linear inputs; under mixed precision, the tensors saved in 16 bits.
     */
    public List<ActivationLayout.Slot> sharedSlots() {
        List<ActivationLayout.Slot> out = new ArrayList<>();
        for (ActivationLayout.Slot s : blockTensors(SHARED_PREFIX)) {
            String suffix = s.spec().name().substring(SHARED_PREFIX.length());
            boolean everyBlockHoldsIt = true;
            for (int l = 0; l < config.numLayers() && everyBlockHoldsIt; l++)
                everyBlockHoldsIt = checkpointed(l) ? suffix.equals("x_in") : saves(suffix) && (half() == null || !HALF_TENSORS.contains(suffix(suffix)));
            if (!everyBlockHoldsIt) out.add(s);
        }
        return List.copyOf(out);
    }

    /**
     * The final norm's input, shared backward buffers, and workspace. The norm's output (the LM head's input) lives in
     * grad.xn, which the chunked loss turns into its gradient chunk by chunk; the MLP's backward reuses h and up.
     */
    public List<ActivationLayout.Slot> headSlots() {
        int n = rows(), c = config.hiddenSize();
        List<ActivationLayout.Slot> s = new ArrayList<>(List.of(
                act("final.x", Shape.of(n, c), "residual"),
                act("final.inv_rms", Shape.of(n), "norm"),
                act("grad.x", Shape.of(n, c), "backward"),
                act("grad.xn", Shape.of(n, c), "backward"),
                act("grad.att", Shape.of(n, config.qDim()), "backward"),
                act("grad.q", Shape.of(n, config.qDim()), "backward"),
                act("grad.k", Shape.of(n, config.kvDim()), "backward"),
                act("grad.v", Shape.of(n, config.kvDim()), "backward"),
                new ActivationLayout.Slot(new TensorSpec("attention_backward_scratch", Shape.of(threads, flash()
                        ? FlashAttention.scratchPerThread(seqLen, seqLen, config.headDim()) : Attention.backwardScratchPerChunk(seqLen)),
                        DType.F32, "attention"), Category.WORKSPACE),
                new ActivationLayout.Slot(new TensorSpec("loss_logits",
                        Shape.of(CrossEntropy.scratchElements(lossChunkRows, config.vocabSize())), DType.F32, "lm_head"), Category.WORKSPACE)));
        if (pure()) {
            // A GEMM writes fp32 only: each BF16 weight gradient's contribution is computed here, then added with one rounding.
            long largest = 0;
            for (TensorSpec g : gradientSpecs()) if (g.dtype() == DType.BF16) largest = Math.max(largest, g.elements());
            s.add(new ActivationLayout.Slot(new TensorSpec(WEIGHT_GRAD_SCRATCH, Shape.of(largest), DType.F32, "backward"), Category.WORKSPACE));
        }
        if (lora() != null) {
            s.add(act("grad.lora_du", Shape.of(n, lora().rank()), "backward"));
            if (lora().dropout() > 0) {
                int maxIn = lora().modules().stream().mapToInt(m -> m.in(config)).max().orElseThrow();
                s.add(act("grad.lora_dx", Shape.of(n, maxIn), "backward"));
            }
        }
        return List.copyOf(s);
    }

    /** Every activation and workspace buffer: all blocks, the shared block set, then the head's. */
    public List<ActivationLayout.Slot> slots() {
        List<ActivationLayout.Slot> all = new ArrayList<>();
        for (int l = 0; l < config.numLayers(); l++) all.addAll(blockSlots(l));
        all.addAll(sharedSlots());
        all.addAll(headSlots());
        return List.copyOf(all);
    }

    /**
     * The gradients the step allocates (ledger: gradients), each in its parameter's dtype (fp32; BF16 matrices under
     * bf16-pure): full fine-tuning, one per parameter ({@link #fullWeightSpecs()}); LoRA, one per adapter matrix
     * ({@link #adapterSpecs()}) and none for the frozen base.
     */
    public List<TensorSpec> gradientSpecs() {
        if (lora() != null) return adapterSpecs();
        // A quantised model's int8/NF4 matrices take no gradient (a step over one only evaluates: `eval`).
        if (config.quantization() == null) return fullWeightSpecs();
        return fullWeightSpecs().stream().filter(s -> !ParameterLayout.isQuantizable(s)).toList();
    }

    /**
     * Mixed precision: the 16-bit working copies the step owns (ledger: weights), same names as their fp32 source and
     * refreshed from it after every update. Full fine-tuning: every matrix. LoRA: the adapters, and the base's matrices
     * unless the base is stored in the compute type already ({@link Technique#baseStorage()}), then read in place.
     * bf16-pure trains BF16 matrices themselves, so only a LoRA base not stored in bf16 has copies. Empty in fp32.
     */
    public List<TensorSpec> workingCopySpecs() {
        DType half = half();
        if (half == null) return List.of();
        List<TensorSpec> out = new ArrayList<>();
        Technique.BaseDtype bd = technique.baseStorage();
        // A quantised base keeps its int8/NF4 matrices, and holds its others (embeddings, LM head) in the compute dtype.
        boolean baseInPlace = bd == (half == DType.BF16 ? Technique.BaseDtype.BF16 : Technique.BaseDtype.FP16) || bd != null && bd.quantised();
        if (!baseInPlace && !(pure() && lora() == null))
            for (TensorSpec s : ParameterLayout.of(config, DType.F32).specs())
                if (s.shape().rank() == 2) out.add(new TensorSpec(s.name(), s.shape(), half, s.component()));
        if (!pure()) for (TensorSpec s : adapterSpecs()) out.add(new TensorSpec(s.name(), s.shape(), half, s.component()));
        return List.copyOf(out);
    }

    /**
     * Bytes of {@code category} this layout allocates: GRADIENTS counts {@link #gradientSpecs()}; the fp32 adapters the
     * step owns are WEIGHTS, or MASTER_WEIGHTS under mixed precision, whose working copies are WEIGHTS (the base
     * weights, and the masters of full fine-tuning, are the caller's); the others {@link #slots()}.
     */
    public long bytes(Category category) {
        if (category == Category.GRADIENTS) return sum(gradientSpecs());
        if (category == Category.WEIGHTS || category == Category.MASTER_WEIGHTS) {
            long adapters = category == trainableCategory() ? sum(adapterSpecs()) : 0;
            return Math.addExact(adapters, category == Category.WEIGHTS ? sum(workingCopySpecs()) : 0);
        }
        long sum = 0;
        for (ActivationLayout.Slot s : slots()) if (s.category() == category) sum = Math.addExact(sum, s.bytes());
        return sum;
    }

    private static long sum(List<TensorSpec> specs) {
        long n = 0;
        for (TensorSpec s : specs) n = Math.addExact(n, s.bytes());
        return n;
    }

    /** The RoPE cos/sin tables the step allocates under workspace besides {@link #slots()} (not batch-dependent). */
    public long ropeTableBytes() { return Rope.tableBytes(config.headDim(), config.maxPositions()); }

    /** component: residual, norm, attention, mlp, lora or backward (scratch shared by all blocks), for per-component reports. */
    private static ActivationLayout.Slot act(String name, Shape shape, String component) {
        return new ActivationLayout.Slot(new TensorSpec(name, shape, DType.F32, component), Category.ACTIVATIONS);
    }
}
