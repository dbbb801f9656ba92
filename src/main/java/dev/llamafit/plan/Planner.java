// The engine's memory planner: (config, technique, micro-batch, device) -> MemoryPlan, summed over the engine's layouts.
package dev.llamafit.plan;

import java.util.ArrayList;
import java.util.List;

import dev.llamafit.memory.Category;
import dev.llamafit.model.ActivationLayout;
import dev.llamafit.model.LinearModule;
import dev.llamafit.model.LlamaConfig;
import dev.llamafit.model.ParameterLayout;
import dev.llamafit.model.ShardLayout;
import dev.llamafit.model.Sharding;
import dev.llamafit.model.Technique;
import dev.llamafit.model.TrainingLayout;
import dev.llamafit.tensor.DType;
import dev.llamafit.tensor.TensorSpec;

/**
 * Pure functions, no allocation. For the llamafit runtime every number is a sum over the engine's own layouts
 * ({@link ParameterLayout}, {@link TrainingLayout}), so planned bytes equal the ledger by construction (DESIGN §3).
 * It plans only what the engine runs: a technique with parts the engine does not implement is refused, by name
 * ({@link Technique#notImplemented()}). PyTorch on CUDA is planned by {@code dev.llamafit.plan.pytorch}.
 */
public final class Planner {
    /** AdamW keeps m and v in fp32 (optim.AdamW): 8 bytes per trainable element. */
    public static final int ADAMW_STATE_BYTES = 8;
    /** SGD with momentum keeps one fp32 buffer (optim.Sgd): 4 bytes per trainable element. */
    public static final int SGD_STATE_BYTES = 4;

    private Planner() {}

    /**
     * The engine's memory for training {@code technique} on micro-batches of {@code batch} × {@code seqLen} tokens.
     * Refuses (IllegalArgumentException, one message) what the engine does not implement, a GPU device, and shapes
     * the model cannot take.
     */
    public static MemoryPlan plan(LlamaConfig config, Technique technique, int batch, int seqLen, Device device) {
        return plan(config, technique, batch, seqLen, device, Sharding.NONE);
    }

    /**
     * The plan of one rank of a data-parallel run: {@code sharding} says the ranks, this rank and the ZeRO stage, and the
     * trainable tensors' buffers are {@link Sharding}'s sizes over the same {@link ShardLayout} the engine allocates from.
     */
    public static MemoryPlan plan(LlamaConfig config, Technique technique, int batch, int seqLen, Device device, Sharding sharding) {
        List<String> missing = technique.notImplemented();
        if (!missing.isEmpty()) throw new IllegalArgumentException(notImplementedMessage(missing));
        if (!technique.adapters() && technique.baseDtype() != null)
            throw new IllegalArgumentException("--base-dtype " + Technique.name(technique.baseDtype()) + " is the storage of a frozen LoRA base (--method lora); "
                    + "full fine-tuning keeps its weights as --precision says");
        if (batch < 1) throw new IllegalArgumentException("--batch-size must be >= 1, got " + batch);
        if (seqLen < 1) throw new IllegalArgumentException("--seq-len must be >= 1, got " + seqLen);
        validate(config, technique, seqLen);
        checkTokens(batch, seqLen);
        try {
            return llamafit(config, technique, batch, seqLen, device, sharding);
        } catch (ArithmeticException overflow) {
            throw tooLarge(batch, seqLen);
        }
    }

    /** Most tokens in one micro-batch (B × T): the engine's layouts index the rows of a batch with an int. */
    public static final long MAX_TOKENS_PER_BATCH = Integer.MAX_VALUE;

    /** Refuses (IllegalArgumentException) a micro-batch of more than {@link #MAX_TOKENS_PER_BATCH} tokens, whatever the memory. */
    public static void checkTokens(int batch, int seqLen) {
        long tokens = (long) batch * seqLen;
        if (tokens > MAX_TOKENS_PER_BATCH)
            throw new IllegalArgumentException(String.format(java.util.Locale.ROOT, "--batch-size %d × --seq-len %d = %,d tokens per micro-batch "
                    + "does not fit: the llamafit runtime holds at most %,d tokens in one micro-batch (lower --batch-size; --grad-accum "
                    + "keeps the effective batch)", batch, seqLen, tokens, MAX_TOKENS_PER_BATCH));
    }

    /**
     * A plan whose bytes overflow a long (its sizes are summed with Math.addExact/multiplyExact) is more than 8 EiB:
     * refused as not fitting anything, with the flags that made it so.
     */
    public static IllegalArgumentException tooLarge(int batch, int seqLen) {
        return new IllegalArgumentException("--batch-size " + batch + " with --seq-len " + seqLen
                + " does not fit: its memory is above 8 EiB (2^63 bytes); lower --batch-size or --seq-len");
    }

    /** One message for everything the engine cannot run yet, each by its flag. */
    public static String notImplementedMessage(List<String> missing) {
        return String.join(", ", missing) + (missing.size() == 1 ? " is" : " are") + " not implemented in the llamafit runtime yet (it trains full or LoRA, on an fp32, bf16, fp16, int8 or NF4 frozen base, "
                + "in fp32, bf16/fp16 mixed precision or bf16-pure (AdamW), AdamW/AdamW8bit/SGD, with optional gradient checkpointing, on one worker); plan it with --runtime pytorch";
    }

    /** Checks the rules that need the model: sequence length within the context, LoRA rank within every adapted matrix. */
    public static void validate(LlamaConfig config, Technique technique, int seqLen) {
        if (seqLen > config.maxPositions())
            throw new IllegalArgumentException("--seq-len " + seqLen + " exceeds the model's max_position_embeddings " + config.maxPositions());
        if (!technique.adapters()) return;
        int r = technique.lora().rank();
        for (String key : technique.lora().targets()) {
            LinearModule m = LinearModule.byKey(key).orElseThrow(() -> new IllegalArgumentException("unknown LoRA target '" + key + "'"));
            int in = m.in(config), out = m.out(config);
            if (r > Math.min(in, out))
                throw new IllegalArgumentException("--lora-r " + r + " exceeds the dimension of " + key + " (" + out + " × " + in
                        + "): a rank-r update needs r <= min(out, in) = " + Math.min(in, out));
        }
    }

    /** The engine's layout for this technique and micro-batch on this device (its thread count sizes the attention scratch). */
    public static TrainingLayout layout(LlamaConfig config, Technique t, int batch, int seqLen, Device device) {
        return new TrainingLayout(config, batch, seqLen, device.threads(),
                (int) Math.min(TrainingLayout.DEFAULT_LOSS_CHUNK_ROWS, (long) batch * seqLen), t);
    }

    private static MemoryPlan llamafit(LlamaConfig config, Technique o, int batch, int seqLen, Device device, Sharding sharding) {
        if (device.gpu())
            throw new IllegalArgumentException("the llamafit runtime trains on the CPU; plan a GPU with --runtime pytorch, or use --device cpu / --memory SIZE");
        TrainingLayout layout = layout(config, o, batch, seqLen, device);
        boolean mixed = o.precision().mixed(), pure = layout.pure();
        // Full fine-tuning's mixed-precision values are masters of the working copies, which ZeRO stages 1-2 shard too.
        sharding = sharding.withMasters(mixed && !pure && !o.adapters());
        // The engine's flat ZeRO buffers (train.ZeroState): full fine-tuning's fp32 (master) weights always, LoRA's
        // adapters over several ranks; bf16-pure keeps its own tensors (and runs on one rank).
        ShardLayout units = pure || o.adapters() && sharding.ranks() == 1 ? null
                : ShardLayout.of(o.adapters() ? layout.adapterSpecs() : ParameterLayout.of(config, DType.F32).specs(), sharding.ranks());
        String zero = units == null || sharding.effectiveStage() == 0 ? "" : " (ZeRO-" + sharding.effectiveStage() + ", rank "
                + sharding.rank() + " of " + sharding.ranks() + ": " + switch (sharding.effectiveStage()) {
                    case 1, 2 -> sharding.shardsMasters()
                            ? "this rank's shard of each unit's masters + whole fp32 copies of the embedding and the norm/bias vectors (read in fp32), optimizer state for the shard"
                            : "whole values, optimizer state for this rank's shard of each unit";
                    default -> "values, gradients and optimizer state for this rank's shard of each unit, + gathered buffers";
                } + ")";
        List<Component> c = new ArrayList<>();
        long base = ParameterLayout.of(config, DType.F32).bytes();
        Technique.BaseDtype bd = o.baseStorage();
        if (o.adapters() && o.quantization() != null) {
            // Quantised on load (or read from a bitsandbytes folder) into owned buffers, the mapping released: the block
            // linear layers in their int8/NF4 tensors, the other matrices in the compute dtype, vectors fp32.
            DType matrices = layout.half() != null ? layout.half() : DType.F32;
            c.add(Component.constant("weights", Column.DEVICE, Category.WEIGHTS,
                    sum(ParameterLayout.quantizedSpecs(config, o.quantization(), matrices)),
                    "frozen " + o.quantization().describe() + " base: block linear layers in bitsandbytes' tensors"
                            + (o.quantization().kind() == dev.llamafit.quant.Quantization.Kind.INT8 ? " (1 B per weight + an fp32 scale per row)"
                            : o.quantization().doubleQuant() ? " (4 bits per weight + 8-bit absmax per 64, fp32 per 16384)" : " (4 bits per weight + fp32 absmax per 64)")
                            + ", embeddings and LM head " + Technique.name(o.precision() == Technique.Precision.FP32 ? Technique.BaseDtype.FP32
                            : layout.half() == DType.BF16 ? Technique.BaseDtype.BF16 : Technique.BaseDtype.FP16)
                            + ", norms fp32, all owned: Σ ParameterLayout.quantizedSpecs"));
        } else if (o.adapters() && bd != null && bd.floatBytes() == 2) {
            // A 16-bit checkpoint used in place: the whole mapping at 2 B per parameter, plus owned fp32 copies of the
            // vectors (norm gains, biases), which the kernels read as fp32.
            long vectors = 0;
            for (TensorSpec s : ParameterLayout.of(config, DType.F32).specs()) if (s.shape().rank() < 2) vectors = Math.addExact(vectors, s.bytes());
            long mapped = ParameterLayout.of(config, DType.BF16).bytes();
            c.add(Component.constant("weights", Column.DEVICE, Category.WEIGHTS, Math.addExact(mapped, vectors),
                    "frozen " + Technique.name(bd) + " base, read in place (memory-mapped; ledger: weights, mapped) at 2 B per parameter"
                            + " + owned fp32 copies of the norm/bias vectors: Σ ParameterLayout(" + Technique.name(bd) + ") + Σ vectors × 4 B"));
        } else if (o.adapters()) {
            c.add(Component.constant("weights", Column.DEVICE, Category.WEIGHTS, base,
                    "frozen fp32 base, read in place (memory-mapped safetensors; ledger: weights, mapped): Σ ParameterLayout"));
        } else if (pure) {
            c.add(Component.constant("weights", Column.DEVICE, Category.WEIGHTS, sum(layout.fullWeightSpecs()),
                    "owned bf16 copy of every matrix (2 B per parameter) + fp32 norm/bias vectors (well under 0.1% of the"
                            + " parameters; the norm kernels are fp32), no fp32 masters: Σ TrainingLayout.fullWeightSpecs"));
        } else {
            c.add(Component.constant(mixed ? "master_weights" : "weights", Column.DEVICE, layout.trainableCategory(),
                    Math.multiplyExact(4L, sharding.valueElements(units)),
                    "owned fp32 copy of every parameter, one flat buffer per unit (Trainer copies, then closes the mapping): Σ ParameterLayout" + zero));
        }
        if (o.adapters())
            c.add(Component.constant(mixed ? "master_weights.adapters" : "weights.adapters", Column.DEVICE, layout.trainableCategory(),
                    units == null ? sum(layout.adapterSpecs()) : Math.multiplyExact(4L, sharding.valueElements(units)), "LoRA A [r, in] + B [out, r] per targeted module, " + (pure ? "bf16" : "fp32")
                            + ": Σ TrainingLayout.adapterSpecs"));
        if (!layout.workingCopySpecs().isEmpty())
            c.add(Component.constant("weights.working_copies", Column.DEVICE, Category.WEIGHTS, sum(layout.workingCopySpecs()),
                    pure ? "bf16 copies of the frozen base's matrices, which the GEMMs read: Σ TrainingLayout.workingCopySpecs"
                            : Technique.name(o.precision()) + " copies of the trainable matrices" + (o.adapters() ? " (and of an fp32 base's)" : "")
                            + ", refreshed after every update, that the GEMMs read: Σ TrainingLayout.workingCopySpecs"));
        long gradients = sum(layout.gradientSpecs());
        c.add(Component.constant("gradients", Column.DEVICE, Category.GRADIENTS,
                units == null ? gradients : Math.multiplyExact(4L, sharding.gradientElements(units)),
                (pure ? "bf16 for matrices, fp32 for vectors" : "fp32") + ", trainable tensors only, allocated once: Σ TrainingLayout.gradientSpecs"
                        + (units != null && sharding.effectiveStage() >= 2 ? " (ZeRO-" + sharding.effectiveStage() + ": this rank's shard of each unit"
                        + " + one block's bucket + the whole units outside the blocks)" : "")));
        // One state per kind in each parameter's dtype (optim.StateStore), so as many bytes per kind as the gradients.
        int kinds = o.optimizer() == Technique.Optimizer.SGD ? SGD_STATE_BYTES / 4 : ADAMW_STATE_BYTES / 4;
        long optimizer = Math.multiplyExact(units == null ? gradients : Math.multiplyExact(4L, sharding.optimizerElements(units)), (long) kinds);
        // 8-bit AdamW sizes each trainable tensor's state itself (U8 codes + F32 absmax per block; small tensors fp32).
        if (o.optimizer() == Technique.Optimizer.ADAMW8BIT) {
            optimizer = 0;
            for (TensorSpec g : layout.gradientSpecs()) optimizer = Math.addExact(optimizer, dev.llamafit.optim.AdamW8bit.stateBytes(g.elements()));
        }
        // States are allocated at the first step and live for the run: from step 2 on they are there in every phase.
        c.add(Component.constant("optimizer", Column.DEVICE, Category.OPTIMIZER, optimizer,
                o.optimizer() == Technique.Optimizer.ADAMW8BIT
                        ? "8-bit AdamW: m, v as U8 codes (2 B per element) + an F32 absmax each per block of 2048, for tensors of >= 4096"
                                + " elements; fp32 m, v (8 B per element) below: Σ AdamW8bit.stateBytes(TrainingLayout.gradientSpecs)"
                        : pure ? "AdamW m, v in each parameter's dtype: 4 B per bf16 matrix element, 8 B per fp32 vector element"
                        : (kinds * 4) + " B per trainable element (" + (kinds == 2 ? "AdamW m, v" : "SGD momentum") + ", fp32)"));
        long act = 0, ws = layout.ropeTableBytes();
        if (units != null) ws = Math.addExact(ws, Math.multiplyExact(4L, sharding.workspaceElements(units)));
        for (ActivationLayout.Slot s : layout.slots()) {
            if (s.category() == Category.ACTIVATIONS) act = Math.addExact(act, s.bytes());
            else ws = Math.addExact(ws, s.bytes());
        }
        c.add(Component.constant("activations", Column.DEVICE, Category.ACTIVATIONS, act,
                "saved block tensors" + (mixed ? " (autocast's 16-bit ones in " + Technique.name(o.precision()) + ")" : "")
                        + " + shared block set + head and backward buffers, allocated once: Σ TrainingLayout.slots"
                        + (o.gradientCheckpointing() ? " (checkpointing: " + (o.checkpointEvery() == 1 ? "blocks keep" : "every " + o.checkpointEvery() + "-th block keeps") + " x_in only)" : "")));
        c.add(Component.constant("workspace", Column.DEVICE, Category.WORKSPACE, ws,
                "per-thread attention scratch [threads, T²], loss chunk [rows, V], RoPE tables"
                        + (units != null && sharding.effectiveStage() >= 1 ? ", ZeRO's staging shard [largest unit's shard"
                                + (sharding.shardsMasters() ? ", or one chunk of the masters' all-gather" : "") + "]" : "")
                        + (pure ? ", fp32 weight-gradient scratch [largest trainable matrix] (bf16 gradients take each product with one rounding)" : "")));
        long saveGather = units == null ? 0 : Math.multiplyExact(4L, sharding.saveGatherElements(units));
        if (saveGather > 0)
            c.add(Component.constant("workspace.save_gather", Column.DEVICE, Category.WORKSPACE, saveGather,
                    "while a checkpoint's model.safetensors or final/ is written, every unit gathered whole into fp32 temporaries"
                            + " (this rank holds only shards of the values): Σ units' ⌈n/ranks⌉ × ranks × 4 B"));
        List<String> notes = new ArrayList<>();
        if (o.adapters() && o.quantization() != null)
            notes.add("while loading, the checkpoint's mapping is held as well (a matrix is quantised from it, then the mapping is"
                    + " released); its pages are evictable page cache");
        else if (o.adapters() && bd != null && bd.floatBytes() == 2)
            notes.add("planned for a " + Technique.name(bd) + " checkpoint used in place; converting an fp32 checkpoint on load (--dtype "
                    + Technique.name(bd) + ") holds its fp32 mapping and owned " + Technique.name(bd) + " matrices instead");
        if (!o.adapters())
            notes.add("while loading, full fine-tuning holds the mapped checkpoint and its owned copy at once (+"
                    + dev.llamafit.memory.ByteSize.format(base) + " of mapped, evictable page cache for F32 files)");
        notes.add("the JVM adds its own heap, code and data (not in the ledger): about 248 MiB measured with the launcher's flags"
                + " (+12 MiB with the onednn kernel backend's native library)");
        return new MemoryPlan(device, c, notes);
    }

    static long sum(List<TensorSpec> specs) {
        long n = 0;
        for (TensorSpec s : specs) n = Math.addExact(n, s.bytes());
        return n;
    }
}
