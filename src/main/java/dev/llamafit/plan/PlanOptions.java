// The technique options a memory plan (and, for the llamafit runtime, a training run) is computed for, validated together.
package dev.llamafit.plan;

import java.util.List;
import java.util.Locale;

import dev.llamafit.model.LlamaConfig;
import dev.llamafit.model.LoraConfig;
import dev.llamafit.model.TrainingLayout;

/**
 * What to plan: the training technique (method, precision, base dtype, optimizer, checkpointing), the micro-batch
 * shape, data parallelism (ZeRO stage over N workers, offload) and the runtime it runs in. Cross-field rules that do
 * not depend on the model are checked here; {@link #validateFor(LlamaConfig)} adds the ones that do (LoRA rank
 * against matrix sizes, sequence length against the context).
 *
 * @param method                full, lora or qlora (qlora = LoRA on a 4-bit NF4 base)
 * @param loraRank              r (LoRA/QLoRA only; ignored for full)
 * @param loraTargets           adapted linear modules (LoRA/QLoRA only)
 * @param loraDropout           dropout on the adapters' input (LoRA/QLoRA only): adapters then keep their own input copy
 * @param precision             fp32; bf16/fp16 (half compute, fp32 master weights); bf16-pure (everything bf16)
 * @param baseDtype             storage of the frozen base: null (= compute dtype); fp32/bf16/fp16 (the dtype it is loaded in);
 *                              int8 or nf4 (quantised)
 * @param optimizer             adamw, adamw8bit or sgd (momentum)
 * @param gradientCheckpointing keep only block inputs and recompute blocks in backward
 * @param checkpointEvery       with checkpointing: blocks with index % N == 0 are checkpointed (1 = every block)
 * @param batchSize             B, sequences per micro-batch per worker
 * @param seqLen                T
 * @param zero                  ZeRO stage 0..3 (3 = FSDP FULL_SHARD)
 * @param workers               N data-parallel workers (GPUs)
 * @param offload               none, cpu or disk (ZeRO-Offload / ZeRO-Infinity)
 * @param runtime               llamafit (this engine, CPU) or pytorch (PyTorch on CUDA GPUs)
 * @param attention             eager (materialises B·H·T² probabilities) or flash (SDPA/FlashAttention, no T² term)
 * @param stack                 for runtime pytorch: which training stack's conventions (see {@link Stack})
 * @param sharding              for runtime pytorch with --zero: DeepSpeed ZeRO or PyTorch FSDP (see {@link Sharding})
 * @param pytorch               how the PyTorch stack runs it, where that changes memory (see {@link PytorchSettings}); null =
 *                              {@link PytorchSettings#DEFAULTS}
 */
public record PlanOptions(Method method, int loraRank, List<String> loraTargets, double loraDropout, Precision precision, BaseDtype baseDtype,
                          Optim optimizer, boolean gradientCheckpointing, int checkpointEvery, int batchSize, int seqLen, int zero, int workers,
                          Offload offload, Runtime runtime, Attention attention, Stack stack, Sharding sharding, PytorchSettings pytorch) {

    /**
     * Settings of the PyTorch stack that change memory without changing the technique (plan's flags of the same names).
     *
     * @param optimizerInBackward step each parameter as soon as its gradient is ready and free it (torchtune)
     * @param pagedOptimizer      optimizer states in CUDA unified memory (bitsandbytes paged optimizers): host column
     * @param doubleQuant         NF4 with double-quantised block constants (QLoRA)
     * @param shardEmbeddings     FSDP: the embedding and LM head are wrapped as units of their own (torchtune's
     *                            custom_sharded_layers); otherwise they belong to the root unit, which FSDP keeps gathered
     *                            from the start of forward to the end of backward
     * @param loss                how the loss over the vocabulary is computed (see {@link Loss}); null = the stack's default
     *                            (HF: full, torchtune: chunked), resolved by {@link PlanOptions}
     * @param optimizerImpl       how torch.optim runs the AdamW step (see {@link OptimizerImpl}); null = fused
     * @param keepOutputs         HF stack: the training loop holds the model's output (its logits) through backward, as a
     *                            hand-written {@code out = model(...); out.loss.backward()} does; the HF Trainer returns the
     *                            loss alone, so the logits are freed before backward
     * @param bnbSavesInputs      bitsandbytes before 0.43.2: its 4-bit matmul saves its input for backward although the
     *                            frozen weight takes no gradient (fixed in 0.43.2, July 2024), so every NF4 linear layer's
     *                            input is kept, as for full fine-tuning
     * @param compiled            the decoder blocks run under torch.compile (torchtune's {@code compile: True}, the HF
     *                            Trainer's {@code torch_compile}): its partitioner saves fewer tensors than eager PyTorch
     * @param blockUnits          FSDP1 with adapters: each decoder block is one unit together with its adapters
     *                            ({@code use_orig_params=True}; Lightning Fabric's {@code FSDPStrategy(auto_wrap_policy={Block})}),
     *                            so the unit's flat parameter requires grad and its gradient covers the frozen weights too;
     *                            otherwise the adapters are units of their own (PEFT's {@code fsdp_auto_wrap_policy})
     * @param noSync              FSDP gradient accumulation inside {@code no_sync()} (Fabric's {@code no_backward_sync}, accelerate
     *                            without {@code sync_each_batch}): between optimizer steps each worker keeps the unsharded
     *                            gradients of every unit that trains
     * @param gradAccum           micro-steps per optimizer step (gradient accumulation, 1 = none): from the second on, each
     *                            forward and backward runs beside the gradients accumulated so far
     * @param activationOffload   the tensors the model's forward saves go to pinned host memory and come back in backward
     *                            (torchtune's enable_activation_offloading, OffloadActivations)
     */
    public record PytorchSettings(boolean optimizerInBackward, boolean pagedOptimizer, boolean doubleQuant, boolean shardEmbeddings,
                                  Loss loss, OptimizerImpl optimizerImpl, boolean keepOutputs, boolean bnbSavesInputs, boolean compiled,
                                  boolean blockUnits, boolean noSync, int gradAccum, boolean activationOffload) {
        /** What the stacks do unless told otherwise. */
        public static final PytorchSettings DEFAULTS = new PytorchSettings(false, false, true, false, null, null, false, false, false);
        /** major.minor[.patch] with an optional suffix (.dev0, rc1, +cu121). */
        private static final java.util.regex.Pattern VERSION = java.util.regex.Pattern.compile("(\\d+)\\.(\\d+)(?:\\.(\\d+))?(?:[.+-]?[A-Za-z0-9.+-]*)?");
        /** The first bitsandbytes release whose 4-bit matmul no longer saves its input. */
        public static final String BNB_FIXED_SAVED_INPUT = "0.43.2";

        public PytorchSettings {
            if (optimizerImpl == null) optimizerImpl = OptimizerImpl.FUSED;
            if (gradAccum < 1) throw new IllegalArgumentException("--grad-accum must be >= 1, got " + gradAccum);
        }

        /** Adapters as FSDP units of their own, gradients synchronised at every micro-step. */
        public PytorchSettings(boolean optimizerInBackward, boolean pagedOptimizer, boolean doubleQuant, boolean shardEmbeddings,
                               Loss loss, OptimizerImpl optimizerImpl, boolean keepOutputs, boolean bnbSavesInputs, boolean compiled) {
            this(optimizerInBackward, pagedOptimizer, doubleQuant, shardEmbeddings, loss, optimizerImpl, keepOutputs, bnbSavesInputs, compiled, false, false, 1, false);
        }

        PytorchSettings withLoss(Loss l) {
            return new PytorchSettings(optimizerInBackward, pagedOptimizer, doubleQuant, shardEmbeddings, l, optimizerImpl, keepOutputs, bnbSavesInputs, compiled,
                    blockUnits, noSync, gradAccum, activationOffload);
        }

        /** The same settings, compiled or not. */
        public PytorchSettings withCompiled(boolean c) {
            return new PytorchSettings(optimizerInBackward, pagedOptimizer, doubleQuant, shardEmbeddings, loss, optimizerImpl, keepOutputs, bnbSavesInputs, c,
                    blockUnits, noSync, gradAccum, activationOffload);
        }

        /** The same settings with FSDP's unit layout and gradient accumulation as given. */
        public PytorchSettings withFsdp(boolean units, boolean sync) {
            return new PytorchSettings(optimizerInBackward, pagedOptimizer, doubleQuant, shardEmbeddings, loss, optimizerImpl, keepOutputs, bnbSavesInputs, compiled,
                    units, sync, gradAccum, activationOffload);
        }

        /** The same settings accumulating gradients over {@code steps} micro-steps. */
        public PytorchSettings withGradAccum(int steps) {
            return new PytorchSettings(optimizerInBackward, pagedOptimizer, doubleQuant, shardEmbeddings, loss, optimizerImpl, keepOutputs, bnbSavesInputs, compiled,
                    blockUnits, noSync, steps, activationOffload);
        }

        /** The same settings with activations offloaded to the host or not. */
        public PytorchSettings withActivationOffload(boolean offload) {
            return new PytorchSettings(optimizerInBackward, pagedOptimizer, doubleQuant, shardEmbeddings, loss, optimizerImpl, keepOutputs, bnbSavesInputs, compiled,
                    blockUnits, noSync, gradAccum, offload);
        }

        /** A bitsandbytes version "major.minor.patch" (suffixes such as .dev0 ignored): does its 4-bit matmul save its input? */
        public static boolean bnbSavesInputs(String version) {
            return compareVersions(version, BNB_FIXED_SAVED_INPUT) < 0;
        }

        static int compareVersions(String a, String b) {
            int[] x = versionParts(a), y = versionParts(b);
            for (int i = 0; i < 3; i++) if (x[i] != y[i]) return Integer.compare(x[i], y[i]);
            return 0;
        }

        private static int[] versionParts(String v) {
            java.util.regex.Matcher m = VERSION.matcher(v == null ? "" : v.trim());
            if (!m.matches()) throw new IllegalArgumentException("--bitsandbytes takes a version such as 0.43.1, got '" + v + "'");
            return new int[]{Integer.parseInt(m.group(1)), Integer.parseInt(m.group(2)), m.group(3) == null ? 0 : Integer.parseInt(m.group(3))};
        }
    }

    public enum Method { FULL, LORA, QLORA }

    public enum Precision {
        FP32, BF16, FP16, BF16_PURE;

        /** Bytes per element of activations and half weights: 4 for fp32, 2 otherwise. */
        public int computeBytes() { return this == FP32 ? 4 : 2; }

        public boolean mixed() { return this == BF16 || this == FP16; }
    }

    public enum BaseDtype {
        FP32, BF16, FP16, INT8, NF4;

        public boolean quantised() { return this == INT8 || this == NF4; }

        /** Bytes per element of an unquantised base (0 for int8/NF4, which count their own block constants). */
        public int floatBytes() { return this == FP32 ? 4 : this == BF16 || this == FP16 ? 2 : 0; }
    }

    public enum Optim { ADAMW, ADAMW8BIT, SGD }

    public enum Offload { NONE, CPU, DISK }

    public enum Runtime { LLAMAFIT, PYTORCH }

    public enum Attention { EAGER, FLASH }

    /**
     * PyTorch training stacks differ in conventions that change memory: HF = transformers + PEFT + bitsandbytes
     * (+ accelerate / DeepSpeed): logits upcast to fp32 and a full cross-entropy, adapters kept in fp32, non-quantised
     * parameters upcast to fp32 by prepare_model_for_kbit_training (unsharded QLoRA). TORCHTUNE: everything in the
     * model dtype and a chunked cross-entropy (CEWithChunkedOutputLoss).
     */
    public enum Stack { HF, TORCHTUNE }

    /**
     * Who shards under --zero: DEEPSPEED (ZeRO; in bf16/fp16 mode the engine casts the module to the half dtype, and
     * fp32 master copies of the trainable parameters are kept beside it) or FSDP (PyTorch FullyShardedDataParallel with
     * a MixedPrecision policy: shards stay in the dtype the model was loaded in, and are all-gathered in the compute
     * dtype; for full fine-tuning the fp32 shards are the master weights). DDP (torch DistributedDataParallel, what the
     * HF Trainer uses on several GPUs without DeepSpeed or FSDP) shards nothing (--zero 0): every worker holds the whole
     * model, and its all-reduce buckets hold a second copy of the gradients (gradient_as_bucket_view=False, the default).
     */
    public enum Sharding {
        DEEPSPEED, FSDP, DDP;

        /**
         * What a run without a stated sharding gets: replicas under DistributedDataParallel when there are several
         * workers and no ZeRO stage (torchrun's and accelerate's multi-GPU default), DeepSpeed ZeRO otherwise.
         */
        public static Sharding defaultFor(int zero, int workers) { return zero == 0 && workers > 1 ? DDP : DEEPSPEED; }
    }

    /**
     * The loss over the vocabulary. FULL: the whole N × V logits at once (transformers' ForCausalLMLoss upcasts them to
     * fp32; torchtune's plain CrossEntropyLoss gets fp32 logits from the model's output.float()). CHUNKED: torchtune's
     * CEWithChunkedOutputLoss, the LM head applied per chunk and each chunk upcast only inside the loss.
     */
    public enum Loss { FULL, CHUNKED }

    /**
     * How torch.optim.AdamW runs its step. FUSED (fused=True): one kernel per tensor group, no temporaries; the HF
     * Trainer's default optim (adamw_torch_fused) with torch >= 2.8, torchtune's configs since September 2024, and
     * DeepSpeed's own FusedAdam. FOREACH: torch.optim.AdamW's default when neither flag is given (transformers'
     * adamw_torch, the Trainer's default before torch 2.8, plain training loops): the multi-tensor step materialises
     * sqrt(v) for every tensor at once, one more state's worth of memory during the step.
     */
    public enum OptimizerImpl { FUSED, FOREACH }

    public PlanOptions {
        if (method == null || precision == null || optimizer == null || offload == null || runtime == null || attention == null || stack == null || sharding == null)
            throw new IllegalArgumentException("plan options need method, precision, optimizer, offload, runtime, attention, stack and sharding");
        if (checkpointEvery < 1) throw new IllegalArgumentException("--checkpoint-every must be >= 1, got " + checkpointEvery);
        if (batchSize < 1) throw new IllegalArgumentException("--batch-size must be >= 1, got " + batchSize);
        if (seqLen < 1) throw new IllegalArgumentException("--seq-len must be >= 1, got " + seqLen);
        if (zero < 0 || zero > 3) throw new IllegalArgumentException("--zero must be 0, 1, 2 or 3, got " + zero);
        if (workers < 1) throw new IllegalArgumentException("--workers must be >= 1, got " + workers);
        if (method == Method.FULL) {
            if (baseDtype != null && baseDtype.quantised())
                throw new IllegalArgumentException("--base-dtype " + name(baseDtype) + " needs --method lora or qlora: int8/NF4 weights "
                        + "cannot be trained directly (their gradients are not representable); train adapters on a frozen quantised base");
            if (baseDtype != null)
                throw new IllegalArgumentException("--base-dtype " + name(baseDtype) + " is the storage of a frozen LoRA base (--method lora); "
                        + "full fine-tuning keeps its weights as --precision says");
            loraTargets = List.of();
            loraRank = 0;
            loraDropout = 0;
        } else {
            if (method == Method.QLORA) {
                if (baseDtype != null && baseDtype != BaseDtype.NF4)
                    throw new IllegalArgumentException("--method qlora means an NF4 base; for a " + name(baseDtype) + " base use --method lora --base-dtype " + name(baseDtype));
                baseDtype = BaseDtype.NF4;
            }
            if (!(loraDropout >= 0 && loraDropout < 1)) throw new IllegalArgumentException("--lora-dropout must be in [0, 1), got " + loraDropout);
            if (loraRank < 1) throw new IllegalArgumentException("--lora-r must be >= 1 for --method " + name(method) + ", got " + loraRank);
            loraTargets = new LoraConfig(loraRank, 16, 0, loraTargets == null || loraTargets.isEmpty() ? List.of("q_proj", "v_proj") : loraTargets, false).targets();
        }
        if (zero > 0 && workers == 1 && offload == Offload.NONE)
            throw new IllegalArgumentException("--zero " + zero + " shards over workers: give --workers N > 1 (or --offload cpu|disk)");
        if (pytorch == null) pytorch = PytorchSettings.DEFAULTS;
        if (pytorch.loss() == null) pytorch = pytorch.withLoss(stack == Stack.TORCHTUNE ? Loss.CHUNKED : Loss.FULL);
        if (pytorch.keepOutputs() && stack != Stack.HF)
            throw new IllegalArgumentException("--keep-outputs describes a hand-written loop over a transformers model (--stack hf); "
                    + "torchtune's recipes delete the logits before backward");
        if (pytorch.bnbSavesInputs() && (stack != Stack.HF || baseDtype != BaseDtype.NF4))
            throw new IllegalArgumentException("--bitsandbytes describes the 4-bit base of the HF stack: it needs --stack hf with --method qlora "
                    + "(torchtune quantises with torchao)");
        boolean fsdpShards = sharding == Sharding.FSDP && zero >= 2;
        if (pytorch.blockUnits() && (!fsdpShards || stack != Stack.HF || method == Method.FULL))
            throw new IllegalArgumentException("--fsdp-wrap blocks puts each block's adapters in the block's FSDP unit: it needs --method lora|qlora with "
                    + "--sharding fsdp --zero 2|3 and --stack hf (torchtune's FSDP2 shards every parameter on its own, so frozen weights take no gradient)");
        if (pytorch.noSync() && !fsdpShards)
            throw new IllegalArgumentException("--no-sync changes memory only under FSDP (--sharding fsdp --zero 2|3), whose no_sync() keeps unsharded "
                    + "gradients; DDP's no_sync holds the gradients a step holds anyway, and DeepSpeed reduces every micro-step");
        if (pytorch.noSync() && pytorch.gradAccum() == 1)
            throw new IllegalArgumentException("--no-sync is how FSDP accumulates gradients: give the micro-steps per optimizer step with --grad-accum N > 1");
        if (pytorch.gradAccum() > 1 && pytorch.optimizerInBackward())
            throw new IllegalArgumentException("--optimizer-in-backward steps and frees each gradient as it is made: it cannot accumulate over micro-steps (--grad-accum "
                    + pytorch.gradAccum() + ")");
        if (pytorch.loss() == Loss.CHUNKED && stack != Stack.TORCHTUNE)
            throw new IllegalArgumentException("--loss chunked is torchtune's CEWithChunkedOutputLoss: it needs --stack torchtune");
        if (sharding == Sharding.DDP && zero != 0)
            throw new IllegalArgumentException("--sharding ddp replicates the model on every worker: it takes --zero 0, got --zero " + zero
                    + " (for sharding use --sharding deepspeed or fsdp)");
        if (sharding == Sharding.FSDP && zero == 1)
            throw new IllegalArgumentException("FSDP has no ZeRO-1 (optimizer states only): use --zero 2 (SHARD_GRAD_OP), --zero 3 (FULL_SHARD), "
                    + "or --sharding deepspeed --zero 1");
        if (offload != Offload.NONE && zero == 0)
            throw new IllegalArgumentException("--offload " + name(offload) + " moves ZeRO partitions: give --zero 1..3 (ZeRO-Offload) or 3 (ZeRO-Infinity, parameters)");
        if (offload == Offload.DISK && zero != 3)
            throw new IllegalArgumentException("--offload disk (ZeRO-Infinity NVMe) needs --zero 3");
        if (runtime == Runtime.LLAMAFIT) {
            String missing = null;
            if (precision != Precision.FP32) missing = "--precision " + name(precision);
            else if (baseDtype != null && baseDtype != BaseDtype.FP32) missing = "--base-dtype " + name(baseDtype) + (method == Method.QLORA ? " (--method qlora)" : "");
            else if (optimizer == Optim.ADAMW8BIT) missing = "--optimizer adamw8bit";
            else if (zero != 0) missing = "--zero " + zero;
            else if (workers != 1) missing = "--workers " + workers;
            else if (offload != Offload.NONE) missing = "--offload " + name(offload);
            else if (attention == Attention.FLASH) missing = "flash attention";
            else if (pytorch.optimizerInBackward()) missing = "optimizer in backward";
            else if (pytorch.pagedOptimizer()) missing = "paged optimizer states";
            else if (pytorch.activationOffload()) missing = "activation offloading";
            if (missing != null)
                throw new IllegalArgumentException(missing + " is not implemented in the llamafit runtime yet (it trains fp32 full or LoRA, "
                        + "AdamW/SGD, with optional gradient checkpointing, on one worker); plan it with --runtime pytorch");
        }
    }

    /** Defaults: full fine-tuning, fp32, AdamW, B = 4, T = 256, one worker, llamafit runtime (train's defaults). */
    public static PlanOptions defaults() {
        return new PlanOptions(Method.FULL, 0, List.of(), 0, Precision.FP32, null, Optim.ADAMW, false, 1, 4, 256, 0, 1, Offload.NONE,
                Runtime.LLAMAFIT, Attention.EAGER, Stack.HF, Sharding.DEEPSPEED, PytorchSettings.DEFAULTS);
    }

    /** Checks the rules that need the model: sequence length within the context, LoRA rank within every adapted matrix. */
    public void validateFor(LlamaConfig config) {
        if (seqLen > config.maxPositions())
            throw new IllegalArgumentException("--seq-len " + seqLen + " exceeds the model's max_position_embeddings " + config.maxPositions());
        for (String m : loraTargets) {
            int in = TrainingLayout.moduleIn(config, m), out = TrainingLayout.moduleOut(config, m);
            if (loraRank > Math.min(in, out))
                throw new IllegalArgumentException("--lora-r " + loraRank + " exceeds the dimension of " + m + " (" + out + " × " + in
                        + "): a rank-r update needs r <= min(out, in) = " + Math.min(in, out));
        }
    }

    public boolean lora() { return method != Method.FULL; }

    /** The engine's checkpoint interval: 0 without checkpointing, else N (blocks with index % N == 0 keep only their input). */
    public int checkpointInterval() { return gradientCheckpointing ? checkpointEvery : 0; }

    /** How many of {@code layers} blocks are checkpointed. */
    public int checkpointedBlocks(int layers) { return gradientCheckpointing ? (layers + checkpointEvery - 1) / checkpointEvery : 0; }

    /** The engine's LoRA settings for this plan (alpha and rsLoRA do not change memory; dropout does), or null. */
    public LoraConfig loraConfig() { return lora() ? new LoraConfig(loraRank, 16, loraDropout, loraTargets, false) : null; }

    public PlanOptions withBatch(int b) {
        return new PlanOptions(method, loraRank, loraTargets, loraDropout, precision, baseDtype, optimizer, gradientCheckpointing, checkpointEvery, b, seqLen, zero, workers,
                offload, runtime, attention, stack, sharding, pytorch);
    }

    public PlanOptions withSeqLen(int t) {
        return new PlanOptions(method, loraRank, loraTargets, loraDropout, precision, baseDtype, optimizer, gradientCheckpointing, checkpointEvery, batchSize, t, zero, workers,
                offload, runtime, attention, stack, sharding, pytorch);
    }

    /** The same plan run with other PyTorch settings (plan's --optimizer-in-backward, --paged-optimizer, --no-double-quant, ...). */
    public PlanOptions withPytorch(PytorchSettings settings) {
        return new PlanOptions(method, loraRank, loraTargets, loraDropout, precision, baseDtype, optimizer, gradientCheckpointing, checkpointEvery, batchSize, seqLen, zero, workers,
                offload, runtime, attention, stack, sharding, settings);
    }

    public boolean optimizerInBackward() { return pytorch.optimizerInBackward(); }

    public boolean pagedOptimizer() { return pytorch.pagedOptimizer(); }

    public boolean doubleQuant() { return pytorch.doubleQuant(); }

    public boolean shardEmbeddings() { return pytorch.shardEmbeddings(); }

    public Loss loss() { return pytorch.loss(); }

    public OptimizerImpl optimizerImpl() { return pytorch.optimizerImpl(); }

    public boolean keepOutputs() { return pytorch.keepOutputs(); }

    public boolean bnbSavesInputs() { return pytorch.bnbSavesInputs(); }

    public boolean compiled() { return pytorch.compiled(); }

    public boolean fsdpBlockUnits() { return pytorch.blockUnits(); }

    public boolean fsdpNoSync() { return pytorch.noSync(); }

    public int gradAccum() { return pytorch.gradAccum(); }

    public boolean activationOffload() { return pytorch.activationOffload(); }

    /** The flag spelling of an enum constant: BF16_PURE -> bf16-pure. */
    public static String name(Enum<?> e) { return e.name().toLowerCase(Locale.ROOT).replace('_', '-'); }

    /** Parses a flag value into an enum constant, with the allowed values in the message. */
    public static <E extends Enum<E>> E parse(Class<E> type, String flag, String value) {
        for (E e : type.getEnumConstants()) if (name(e).equals(value.toLowerCase(Locale.ROOT))) return e;
        List<String> names = java.util.Arrays.stream(type.getEnumConstants()).map(PlanOptions::name).toList();
        throw new IllegalArgumentException(flag + " must be one of " + String.join(", ", names) + ", got '" + value + "'");
    }
}
