// What a memory plan of PyTorch on CUDA is computed for: the technique, the micro-batch, data parallelism and the stack.
package dev.llamafit.plan.pytorch;

import java.util.List;

import dev.llamafit.model.LinearModule;
import dev.llamafit.model.LlamaConfig;
import dev.llamafit.model.LoraConfig;
import dev.llamafit.model.Technique;
import dev.llamafit.model.Technique.BaseDtype;
import dev.llamafit.model.Technique.Method;
import dev.llamafit.model.Technique.Optimizer;
import dev.llamafit.model.Technique.Precision;
import dev.llamafit.plan.Planner;

/**
 * The engine's {@link Technique} plus what only a PyTorch run has: data parallelism (ZeRO stage over N workers,
 * offload), the attention kernel, the training stack and its sharding, and the stack's settings that change memory.
 * Cross-field rules that do not depend on the model are checked here; {@link #validateFor(LlamaConfig)} adds the ones
 * that do (LoRA rank against matrix sizes, sequence length against the context).
 *
 * @param technique  method, adapters, precision, base dtype, optimizer, checkpointing, gradient accumulation (micro-steps
 *                   per optimizer step: from the second on, each forward and backward runs beside the gradients so far)
 * @param batchSize  B, sequences per micro-batch per worker
 * @param seqLen     T
 * @param zero       ZeRO stage 0..3 (3 = FSDP FULL_SHARD)
 * @param workers    N data-parallel workers (GPUs)
 * @param offload    none, cpu or disk (ZeRO-Offload / ZeRO-Infinity)
 * @param attention  eager (materialises B·H·T² probabilities) or flash (SDPA/FlashAttention, no T² term)
 * @param stack      which training stack's conventions (see {@link Stack})
 * @param sharding   with --zero: DeepSpeed ZeRO or PyTorch FSDP; DDP for replicas (see {@link Sharding})
 * @param pytorch    how the stack runs it, where that changes memory (see {@link PytorchSettings}); null =
 *                   {@link PytorchSettings#DEFAULTS}
 */
public record PytorchOptions(Technique technique, int batchSize, int seqLen, int zero, int workers, Offload offload, Attention attention,
                             Stack stack, Sharding sharding, PytorchSettings pytorch) {

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
     *                            (HF: full, torchtune: chunked), resolved by {@link PytorchOptions}
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
     * @param activationOffload   the tensors the model's forward saves go to pinned host memory and come back in backward
     *                            (torchtune's enable_activation_offloading, OffloadActivations)
     */
    public record PytorchSettings(boolean optimizerInBackward, boolean pagedOptimizer, boolean doubleQuant, boolean shardEmbeddings,
                                  Loss loss, OptimizerImpl optimizerImpl, boolean keepOutputs, boolean bnbSavesInputs, boolean compiled,
                                  boolean blockUnits, boolean noSync, boolean activationOffload) {
        /** What the stacks do unless told otherwise. */
        public static final PytorchSettings DEFAULTS = new PytorchSettings(false, false, true, false, null, null, false, false, false);
        /** major.minor[.patch] with an optional suffix (.dev0, rc1, +cu121). */
        private static final java.util.regex.Pattern VERSION = java.util.regex.Pattern.compile("(\\d+)\\.(\\d+)(?:\\.(\\d+))?(?:[.+-]?[A-Za-z0-9.+-]*)?");
        /** The first bitsandbytes release whose 4-bit matmul no longer saves its input. */
        public static final String BNB_FIXED_SAVED_INPUT = "0.43.2";

        public PytorchSettings {
            if (optimizerImpl == null) optimizerImpl = OptimizerImpl.FUSED;
        }

        /** Adapters as FSDP units of their own, gradients synchronised at every micro-step. */
        public PytorchSettings(boolean optimizerInBackward, boolean pagedOptimizer, boolean doubleQuant, boolean shardEmbeddings,
                               Loss loss, OptimizerImpl optimizerImpl, boolean keepOutputs, boolean bnbSavesInputs, boolean compiled) {
            this(optimizerInBackward, pagedOptimizer, doubleQuant, shardEmbeddings, loss, optimizerImpl, keepOutputs, bnbSavesInputs, compiled, false, false, false);
        }

        public PytorchSettings withLoss(Loss l) {
            return new PytorchSettings(optimizerInBackward, pagedOptimizer, doubleQuant, shardEmbeddings, l, optimizerImpl, keepOutputs, bnbSavesInputs, compiled,
                    blockUnits, noSync, activationOffload);
        }

        /** The same settings, compiled or not. */
        public PytorchSettings withCompiled(boolean c) {
            return new PytorchSettings(optimizerInBackward, pagedOptimizer, doubleQuant, shardEmbeddings, loss, optimizerImpl, keepOutputs, bnbSavesInputs, c,
                    blockUnits, noSync, activationOffload);
        }

        /** The same settings with FSDP's unit layout and gradient accumulation as given. */
        public PytorchSettings withFsdp(boolean units, boolean sync) {
            return new PytorchSettings(optimizerInBackward, pagedOptimizer, doubleQuant, shardEmbeddings, loss, optimizerImpl, keepOutputs, bnbSavesInputs, compiled,
                    units, sync, activationOffload);
        }

        /** The same settings with activations offloaded to the host or not. */
        public PytorchSettings withActivationOffload(boolean offload) {
            return new PytorchSettings(optimizerInBackward, pagedOptimizer, doubleQuant, shardEmbeddings, loss, optimizerImpl, keepOutputs, bnbSavesInputs, compiled,
                    blockUnits, noSync, offload);
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

    public enum Offload { NONE, CPU, DISK }

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

    public PytorchOptions {
        if (technique == null || offload == null || attention == null || stack == null || sharding == null)
            throw new IllegalArgumentException("PyTorch plan options need a technique, offload, attention, stack and sharding");
        if (batchSize < 1) throw new IllegalArgumentException("--batch-size must be >= 1, got " + batchSize);
        if (seqLen < 1) throw new IllegalArgumentException("--seq-len must be >= 1, got " + seqLen);
        if (zero < 0 || zero > 3) throw new IllegalArgumentException("--zero must be 0, 1, 2 or 3, got " + zero);
        if (workers < 1) throw new IllegalArgumentException("--workers must be >= 1, got " + workers);
        BaseDtype baseDtype = technique.baseDtype();
        if (technique.method() == Method.FULL && baseDtype != null) {
            if (baseDtype.quantised())
                throw new IllegalArgumentException("--base-dtype " + Technique.name(baseDtype) + " needs --method lora or qlora: int8/NF4 weights "
                        + "cannot be trained directly (their gradients are not representable); train adapters on a frozen quantised base");
            throw new IllegalArgumentException("--base-dtype " + Technique.name(baseDtype) + " is the storage of a frozen LoRA base (--method lora); "
                    + "full fine-tuning keeps its weights as --precision says");
        }
        if (technique.method() == Method.QLORA) {
            if (baseDtype != null && baseDtype != BaseDtype.NF4)
                throw new IllegalArgumentException("--method qlora means an NF4 base; for a " + Technique.name(baseDtype) + " base use --method lora --base-dtype "
                        + Technique.name(baseDtype));
            technique = technique.withMethod(Method.QLORA, technique.lora(), BaseDtype.NF4);
        }
        if (zero > 0 && workers == 1 && offload == Offload.NONE)
            throw new IllegalArgumentException("--zero " + zero + " shards over workers: give --workers N > 1 (or --offload cpu|disk)");
        if (pytorch == null) pytorch = PytorchSettings.DEFAULTS;
        if (pytorch.loss() == null) pytorch = pytorch.withLoss(stack == Stack.TORCHTUNE ? Loss.CHUNKED : Loss.FULL);
        if (pytorch.keepOutputs() && stack != Stack.HF)
            throw new IllegalArgumentException("--keep-outputs describes a hand-written loop over a transformers model (--stack hf); "
                    + "torchtune's recipes delete the logits before backward");
        if (pytorch.bnbSavesInputs() && (stack != Stack.HF || technique.baseDtype() != BaseDtype.NF4))
            throw new IllegalArgumentException("--bitsandbytes describes the 4-bit base of the HF stack: it needs --stack hf with --method qlora "
                    + "(torchtune quantises with torchao)");
        boolean fsdpShards = sharding == Sharding.FSDP && zero >= 2;
        if (pytorch.blockUnits() && (!fsdpShards || stack != Stack.HF || technique.method() == Method.FULL))
            throw new IllegalArgumentException("--fsdp-wrap blocks puts each block's adapters in the block's FSDP unit: it needs --method lora|qlora with "
                    + "--sharding fsdp --zero 2|3 and --stack hf (torchtune's FSDP2 shards every parameter on its own, so frozen weights take no gradient)");
        if (pytorch.noSync() && !fsdpShards)
            throw new IllegalArgumentException("--no-sync changes memory only under FSDP (--sharding fsdp --zero 2|3), whose no_sync() keeps unsharded "
                    + "gradients; DDP's no_sync holds the gradients a step holds anyway, and DeepSpeed reduces every micro-step");
        if (pytorch.noSync() && technique.gradAccum() == 1)
            throw new IllegalArgumentException("--no-sync is how FSDP accumulates gradients: give the micro-steps per optimizer step with --grad-accum N > 1");
        if (technique.gradAccum() > 1 && pytorch.optimizerInBackward())
            throw new IllegalArgumentException("--optimizer-in-backward steps and frees each gradient as it is made: it cannot accumulate over micro-steps (--grad-accum "
                    + technique.gradAccum() + ")");
        if (pytorch.loss() == Loss.CHUNKED && stack != Stack.TORCHTUNE)
            throw new IllegalArgumentException("--loss chunked is torchtune's CEWithChunkedOutputLoss: it needs --stack torchtune");
        if (sharding == Sharding.DDP && zero != 0)
            throw new IllegalArgumentException("--sharding ddp replicates the model on every worker: it takes --zero 0, got --zero " + zero
                    + " (for sharding use --sharding deepspeed or fsdp)");
        if (sharding == Sharding.FSDP && zero == 1)
            throw new IllegalArgumentException("FSDP has no ZeRO-1 (optimizer states only): use --zero 2 (SHARD_GRAD_OP), --zero 3 (FULL_SHARD), "
                    + "or --sharding deepspeed --zero 1");
        if (offload != Offload.NONE && zero == 0)
            throw new IllegalArgumentException("--offload " + Technique.name(offload) + " moves ZeRO partitions: give --zero 1..3 (ZeRO-Offload) or 3 (ZeRO-Infinity, parameters)");
        if (offload == Offload.DISK && zero != 3)
            throw new IllegalArgumentException("--offload disk (ZeRO-Infinity NVMe) needs --zero 3");
    }

    /** A technique from its flat settings, as the planner's tests and the recommender build them; targets empty = PEFT's default. */
    public static Technique technique(Method method, int loraRank, List<String> loraTargets, double loraDropout, Precision precision, BaseDtype baseDtype,
                                      Optimizer optimizer, boolean gradientCheckpointing, int checkpointEvery, int gradAccum) {
        if (method != Method.FULL && loraRank < 1)
            throw new IllegalArgumentException("--lora-r must be >= 1 for --method " + Technique.name(method) + ", got " + loraRank);
        // Alpha and rsLoRA do not change memory; dropout does (adapters keep their own input copy).
        LoraConfig lora = method == Method.FULL ? null : new LoraConfig(loraRank, 16, loraDropout,
                loraTargets == null || loraTargets.isEmpty() ? LoraConfig.parseTargets(LinearModule.DEFAULT_LORA_TARGETS) : loraTargets, false);
        return new Technique(method, lora, precision, baseDtype, optimizer, gradientCheckpointing, checkpointEvery, gradAccum);
    }

    /** The flat form: a technique from its settings, then the PyTorch fields. */
    public static PytorchOptions of(Method method, int loraRank, List<String> loraTargets, double loraDropout, Precision precision, BaseDtype baseDtype,
                                    Optimizer optimizer, boolean gradientCheckpointing, int checkpointEvery, int batchSize, int seqLen, int zero, int workers,
                                    Offload offload, Attention attention, Stack stack, Sharding sharding, PytorchSettings pytorch, int gradAccum) {
        return new PytorchOptions(technique(method, loraRank, loraTargets, loraDropout, precision, baseDtype, optimizer, gradientCheckpointing,
                checkpointEvery, gradAccum), batchSize, seqLen, zero, workers, offload, attention, stack, sharding, pytorch);
    }

    /** As {@link #of(Method, int, List, double, Precision, BaseDtype, Optimizer, boolean, int, int, int, int, int, Offload, Attention, Stack, Sharding, PytorchSettings, int)}, no accumulation. */
    public static PytorchOptions of(Method method, int loraRank, List<String> loraTargets, double loraDropout, Precision precision, BaseDtype baseDtype,
                                    Optimizer optimizer, boolean gradientCheckpointing, int checkpointEvery, int batchSize, int seqLen, int zero, int workers,
                                    Offload offload, Attention attention, Stack stack, Sharding sharding, PytorchSettings pytorch) {
        return of(method, loraRank, loraTargets, loraDropout, precision, baseDtype, optimizer, gradientCheckpointing, checkpointEvery, batchSize, seqLen,
                zero, workers, offload, attention, stack, sharding, pytorch, 1);
    }

    /** Checks the rules that need the model: sequence length within the context, LoRA rank within every adapted matrix. */
    public void validateFor(LlamaConfig config) { Planner.validate(config, technique, seqLen); }

    public Method method() { return technique.method(); }

    public boolean lora() { return technique.adapters(); }

    public int loraRank() { return lora() ? technique.lora().rank() : 0; }

    public List<String> loraTargets() { return lora() ? technique.lora().targets() : List.of(); }

    public double loraDropout() { return lora() ? technique.lora().dropout() : 0; }

    public Precision precision() { return technique.precision(); }

    public BaseDtype baseDtype() { return technique.baseDtype(); }

    public Optimizer optimizer() { return technique.optimizer(); }

    public boolean gradientCheckpointing() { return technique.gradientCheckpointing(); }

    public int checkpointEvery() { return technique.checkpointEvery(); }

    public int gradAccum() { return technique.gradAccum(); }

    /** How many of {@code layers} blocks are checkpointed. */
    public int checkpointedBlocks(int layers) { return technique.checkpointedBlocks(layers); }

    public PytorchOptions withTechnique(Technique t) {
        return new PytorchOptions(t, batchSize, seqLen, zero, workers, offload, attention, stack, sharding, pytorch);
    }

    public PytorchOptions withBatch(int b) {
        return new PytorchOptions(technique, b, seqLen, zero, workers, offload, attention, stack, sharding, pytorch);
    }

    public PytorchOptions withSeqLen(int t) {
        return new PytorchOptions(technique, batchSize, t, zero, workers, offload, attention, stack, sharding, pytorch);
    }

    /** The same plan run with other PyTorch settings (plan's --optimizer-in-backward, --paged-optimizer, --no-double-quant, ...). */
    public PytorchOptions withPytorch(PytorchSettings settings) {
        return new PytorchOptions(technique, batchSize, seqLen, zero, workers, offload, attention, stack, sharding, settings);
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

    public boolean activationOffload() { return pytorch.activationOffload(); }
}
