// The component model for training in PyTorch on CUDA GPUs: parameters, states, activations, allocator and context.
package dev.llamafit.plan.pytorch;

import java.util.ArrayList;
import java.util.List;

import dev.llamafit.memory.Category;
import dev.llamafit.model.LinearModule;
import dev.llamafit.model.LlamaConfig;
import dev.llamafit.model.ParameterLayout;
import dev.llamafit.model.Technique;
import dev.llamafit.tensor.DType;
import dev.llamafit.tensor.TensorSpec;
import dev.llamafit.plan.Accounting;
import dev.llamafit.plan.Column;
import dev.llamafit.plan.Component;
import dev.llamafit.plan.Device;
import dev.llamafit.plan.MemoryPlan;
import dev.llamafit.plan.Metric;
import dev.llamafit.plan.Phase;
import dev.llamafit.model.Technique.Method;
import dev.llamafit.plan.pytorch.PytorchOptions.Offload;
import dev.llamafit.model.Technique.Optimizer;
import dev.llamafit.model.Technique.Precision;
import dev.llamafit.plan.pytorch.PytorchOptions.Stack;

/**
 * Per-GPU memory of a PyTorch training step, as the maximum over {@link Phase}s. Sources (docs/PLANNER.md):
 * <ul>
 * <li>model states and their ZeRO partitioning: Rajbhandari et al. 2020 (ZeRO), mixed precision 2 + 2 + 12 bytes
 *     per parameter; ZeRO-Offload (Ren et al. 2021) and ZeRO-Infinity (Rajbhandari et al. 2021) for offload;</li>
 * <li>activations: Korthikanti et al. 2022, "Reducing Activation Recomputation in Large Transformer Models" §4.1,
 *     recounted for LLaMA (RMSNorm, SwiGLU with three F-wide tensors, GQA, no dropout, no biases);</li>
 * <li>NF4 and double quantisation: Dettmers et al. 2023 (QLoRA) §3; int8: Dettmers et al. 2022 (LLM.int8());
 *     8-bit optimizers: Dettmers et al. 2022, block-wise quantisation with 2048-element blocks (bitsandbytes);</li>
 * <li>allocator and context: PyTorch CUDA caching allocator semantics (torch.cuda.memory_allocated vs
 *     memory_reserved), CUDA lazy module loading (CUDA 11.7+).</li>
 * </ul>
 * The model takes no per-case constants; the assumptions below are stated once and apply to every plan.
 */
public final class PytorchProfile {
    /** Unused-but-cached share of the caching allocator at peak (reserved / allocated − 1). An assumption, see docs. */
    public static final double ALLOCATOR_CACHE_FRACTION = 0.10;
    /** NF4: 64 weights per block (QLoRA §3). */
    public static final int NF4_BLOCK = 64;
    /** Double quantisation: 256 first-level constants per second-level block (QLoRA §3). */
    public static final int NF4_SECOND_BLOCK = 256;
    /** bitsandbytes 8-bit optimizers quantise states in blocks of 2048 with an fp32 absmax per block. */
    public static final int OPTIM8_BLOCK = 2048;
    /**
     * DeepSpeed's default reduce_bucket_size (elements). With contiguous_gradients (the default) ZeRO allocates a gradient
     * bucket of this many elements in the training dtype (stage 3: at start-up; stages 1-2: at the first backward).
     * Configs that leave the value out (accelerate's generated config does) get this default; "auto" in an HF json
     * config would set hidden².
     */
    public static final long DEEPSPEED_REDUCE_BUCKET = 500_000_000L;
    /**
     * GPU memory an NCCL communicator takes on each GPU, outside PyTorch's allocator (so nvidia-smi sees it, the torch
     * counters do not): measured after a first all-reduce on 4 A100s with NVLink, 544 MiB in a 2-GPU group and 688 MiB
     * in larger ones (NVIDIA/nccl issue 964). Its buffers scale with the channel count, which the interconnect sets:
     * an assumption for other topologies, stated once.
     */
    public static final long NCCL_TWO_GPU_BYTES = 544L << 20, NCCL_GROUP_BYTES = 688L << 20;
    /** torchtune's OffloadActivations keeps up to this many saved tensors on the GPU while their copies run (max_fwd_stash_size). */
    public static final int ACTIVATION_OFFLOAD_STASH = 5;
    /** torchtune's CEWithChunkedOutputLoss splits the logits into 8 chunks. */
    public static final int LOSS_CHUNKS = 8;

    private PytorchProfile() {}

    /** Exact parameter counts from the config, split into what a quantiser may replace and what it keeps. */
    public record Counts(long total, long linearWeights, long other, long largestLayer, long largestLinear, long embedding, long lmHead) {}

    /** Memo of {@link #count}: a config's counts never change, and the recommender plans thousands of variants. */
    private static final java.util.Map<LlamaConfig, Counts> COUNTS = new java.util.concurrent.ConcurrentHashMap<>();

    public static Counts counts(LlamaConfig config) { return COUNTS.computeIfAbsent(config, PytorchProfile::count); }

    private static Counts count(LlamaConfig config) {
        long total = 0, linear = 0, largestLinear = 0, embedding = 0, lmHead = 0;
        long[] perLayer = new long[config.numLayers()];
        for (TensorSpec s : ParameterLayout.of(config, DType.F32).specs()) {
            total += s.elements();
            boolean linearWeight = (s.component().equals("attention") || s.component().equals("mlp")) && s.name().endsWith(".weight");
            if (linearWeight) { linear += s.elements(); largestLinear = Math.max(largestLinear, s.elements()); }
            if (s.name().startsWith("model.layers.")) perLayer[Integer.parseInt(s.name().split("\\.")[2])] += s.elements();
            if (s.name().equals(ParameterLayout.EMBED)) embedding = s.elements();
            if (s.name().equals(ParameterLayout.LM_HEAD)) lmHead = s.elements();
        }
        long largestLayer = 0;
        for (long n : perLayer) largestLayer = Math.max(largestLayer, n);
        return new Counts(total, linear, total - linear, largestLayer, largestLinear, embedding, lmHead);
    }

    /** LoRA parameters: r·(in + out) per adapted matrix (Hu et al. 2021), in every layer. */
    public static long loraParams(LlamaConfig config, PytorchOptions o) {
        long n = 0;
        for (String m : o.loraTargets())
            n += (long) o.loraRank() * (module(m).in(config) + module(m).out(config));
        return Math.multiplyExact(n, (long) config.numLayers());
    }

    /** Bytes per quantised weight element including block constants (bits / 8). */
    public static double quantisedBytesPerWeight(Technique.BaseDtype dtype, boolean doubleQuant) {
        return switch (dtype) {
            // LLM.int8(): int8 weights; the per-row fp32 absmax is added separately (it scales with rows, not elements).
            case INT8 -> 1.0;
            // NF4: 4 bits + an fp32 absmax per 64 weights (0.5 bit), or, double-quantised, an 8-bit absmax per 64
            // weights and an fp32 second-level constant per 256 blocks: 8/64 + 32/(64·256) = 0.127 bit (QLoRA §3).
            case NF4 -> doubleQuant ? 0.5 + (1.0 + 4.0 / NF4_SECOND_BLOCK) / NF4_BLOCK : 0.5 + 4.0 / NF4_BLOCK;
            case FP32, BF16, FP16 -> dtype.floatBytes();
        };
    }

    public static MemoryPlan plan(LlamaConfig c, PytorchOptions o, Device device) {
        try {
            return compute(c, o, device);
        } catch (ArithmeticException overflow) {
            throw dev.llamafit.plan.Planner.tooLarge(o.batchSize(), o.seqLen());
        }
    }

    private static MemoryPlan compute(LlamaConfig c, PytorchOptions o, Device device) {
        o.validateFor(c);
        if (!device.gpu()) throw new IllegalArgumentException("the pytorch runtime plans CUDA GPUs; pick a GPU --device (or --runtime llamafit for the CPU)");
        Counts n = counts(c);
        int a = o.precision().computeBytes();
        int workers = o.workers();
        boolean quantised = o.baseDtype() != null && o.baseDtype().quantised();
        boolean fsdp = o.zero() > 0 && o.sharding() == PytorchOptions.Sharding.FSDP;
        // FSDP's SHARD_GRAD_OP (ZeRO-2) shards the parameters too, but only at rest: a unit gathered for its forward
        // stays gathered until its backward, so the whole model is gathered at the end of forward.
        boolean gradOp = fsdp && o.zero() == 2;
        boolean paramsSharded = paramsSharded(o);
        // DeepSpeed in bf16/fp16 mode casts the whole module to the half dtype, whatever it was loaded in.
        boolean deepspeedCast = o.zero() > 0 && o.sharding() == PytorchOptions.Sharding.DEEPSPEED && o.precision() != Precision.FP32;
        boolean hf = o.stack() == Stack.HF;
        // Without DeepSpeed or FSDP, HF mixed precision is torch.amp autocast over the model as loaded: trained weights
        // stay fp32 (no separate master) and autocast caches a half copy of each for the forward (HF docs: 6 B/param).
        boolean amp = amp(o);
        List<Component> comps = new ArrayList<>();
        List<String> notes = new ArrayList<>();

        // ---- parameters: stored weights (frozen or trained), trainable count, their dtype
        long trainable;
        int trainDtype;          // bytes per trainable parameter as stored
        double weightBytes;      // all stored weights, unsharded
        double layerUnitBytes, headUnitBytes, endsDtype; // endsDtype: bytes per embedding / LM-head element as gathered
        double frozenUnitBytes = 0; // one block's frozen weights as its FSDP flat parameter stores them (LoRA)
        double replicated = 0;   // quantisation constants that sharding leaves whole on every GPU
        double castTemp = 0;     // a frozen base wider than the compute dtype is cast per matmul (autocast does not cache frozen weights)
        boolean wideBase = false; // LoRA over a base stored wider than the compute dtype (fp32 under bf16/fp16 autocast)
        if (o.method() == Method.FULL) {
            trainable = n.total();
            // FSDP mixed precision keeps fp32 shards (they are the master weights) and gathers them in the compute dtype.
            trainDtype = o.precision() == Precision.FP32 || fsdp && o.precision().mixed() || amp ? 4 : 2;
            weightBytes = (double) n.total() * trainDtype;
            layerUnitBytes = (double) n.largestLayer() * Math.min(trainDtype, a);
            endsDtype = Math.min(trainDtype, a);
            headUnitBytes = (double) Math.max(n.embedding(), n.lmHead()) * endsDtype;
        } else {
            trainable = loraParams(c, o);
            // prepare_model_for_kbit_training upcasts every non-quantised parameter (embeddings, norms, LM head) to
            // fp32; sharded runs keep quant_storage (bf16). An unquantised base is stored as loaded (--base-dtype
            // fp32|bf16|fp16, default the compute dtype).
            int loaded = o.baseDtype() == null || quantised || deepspeedCast ? a : o.baseDtype().floatBytes();
            // PEFT keeps adapters in fp32 (get_peft_model's autocast_adapter_dtype, on by default), with or without
            // autocast; torchtune keeps the model dtype. Adapters flattened into their block's FSDP unit take the
            // unit's dtype (a flat parameter has one dtype).
            trainDtype = o.fsdpBlockUnits() ? loaded : hf ? 4 : a;
            int otherDtype = kbitPrepared(o) ? 4 : loaded;
            double perLinear = quantised ? quantisedBytesPerWeight(o.baseDtype(), o.doubleQuant()) : loaded;
            double rowScales = o.baseDtype() == Technique.BaseDtype.INT8 ? linearRows(c) * 4.0 : 0;
            // bitsandbytes keeps each layer's quant_state (block absmax, nested constants) as a module attribute, not a
            // parameter: FSDP and ZeRO-3 shard, gather and offload only the packed 4-bit storage.
            boolean bnbSharded = quantised && hf && paramsSharded && o.baseDtype() == Technique.BaseDtype.NF4;
            replicated = bnbSharded ? n.linearWeights() * (perLinear - 0.5) : 0;
            weightBytes = n.linearWeights() * perLinear + rowScales + (double) n.other() * otherDtype - replicated;
            // FSDP's MixedPrecision all-gathers in the compute dtype; quantised shards travel packed.
            layerUnitBytes = n.largestLayer() * (bnbSharded ? 0.5 : quantised ? perLinear : Math.min(loaded, a));
            frozenUnitBytes = n.largestLayer() * (bnbSharded ? 0.5 : quantised ? perLinear : loaded);
            endsDtype = Math.min(otherDtype, a);
            headUnitBytes = (double) Math.max(n.embedding(), n.lmHead()) * endsDtype;
            wideBase = !quantised && loaded > a;
            if (wideBase && !fsdp && !amp) castTemp = n.largestLinear() * (double) a;
        }
        // ZeRO-Offload (DeepSpeed stages 1-2) moves optimizer states and gradients only; ZeRO-3's offload_param and
        // FSDP's CPUOffload (which offloads parameters at every sharded stage) move the parameter shards as well.
        boolean paramsOffloaded = o.offload() != Offload.NONE && (o.zero() == 3 || gradOp);
        Column paramColumn = paramsOffloaded ? (o.offload() == Offload.DISK ? Column.DISK : Column.HOST) : Column.DEVICE;
        // Parameter offload moves every sharded parameter, the adapters' included (they are FSDP/ZeRO-3 parameters
        // like the base); each unit's adapters travel to the GPU with the unit when it is gathered.
        if (o.method() != Method.FULL)
            comps.add(place("weights.adapters", paramColumn, Category.WEIGHTS, shard(trainable * (double) trainDtype, paramsSharded, workers),
                    "LoRA r·(in+out) per adapted matrix = " + trainable + " params × " + trainDtype + " B"));
        comps.add(place("weights", paramColumn, Category.WEIGHTS, shard(weightBytes, paramsSharded, workers),
                weightsFormula(o, n) + (o.zero() >= 3 ? ", sharded over " + workers + " workers (ZeRO-3/FSDP)"
                        : gradOp ? ", sharded over " + workers + " workers at rest (FSDP SHARD_GRAD_OP)" : "")));
        if (replicated > 0)
            comps.add(gpu("weights.quant_state", Category.WEIGHTS, replicated,
                    "bitsandbytes NF4 block constants: a module attribute, so every GPU holds all of them (not sharded, not offloaded)"));
        if (gradOp) {
            // SHARD_GRAD_OP: each unit is all-gathered before its forward and resharded only after its backward, so from
            // the end of forward to the start of backward every unit is gathered, in the gathered dtype.
            double all = c.numLayers() * layerUnitBytes + (n.embedding() + n.lmHead() + (double) c.hiddenSize()) * endsDtype;
            comps.add(new Component("weights.gathered", Column.DEVICE, Category.WEIGHTS, Accounting.TENSOR, phases(all, all, all, 0),
                    "FSDP SHARD_GRAD_OP: every unit stays gathered from its forward to its backward (the whole model in the gathered dtype)"));
        }
        if (o.zero() >= 3) {
            // ZeRO-3/FSDP all-gather one unit (a block, or the embedding / LM head) while the next is prefetched, and
            // free them after backward. FSDP wraps the decoder blocks; what is left (embedding, LM head, final norm)
            // is the root unit, which FSDP never reshards after forward: it stays gathered until the end of backward.
            boolean root = fsdp && !o.shardEmbeddings();
            double unit = root ? layerUnitBytes : Math.max(layerUnitBytes, headUnitBytes);
            double rootBytes = root ? (n.embedding() + n.lmHead() + (double) c.hiddenSize()) * endsDtype : 0;
            double gathered = 2 * unit + rootBytes;
            comps.add(new Component("weights.gathered", Column.DEVICE, Category.WEIGHTS, Accounting.TENSOR, phases(gathered, gathered, gathered, 0),
                    "2 × largest all-gathered unit (current + prefetch)" + (root ? " + the FSDP root unit (embedding, LM head, final norm) held through forward and backward" : "")));
        }
        if (paramsOffloaded) {
            // An offloaded shard lives in pinned host memory; before each all-gather it is copied to the GPU
            // (FSDP1 pre_unshard: flat_param_to(device) on the pre-unshard stream, handed to the unshard stream
            // with record_stream), so the current and the prefetched unit's shard copies are alive on the GPU.
            double unit = fsdp && !o.shardEmbeddings() ? layerUnitBytes : Math.max(layerUnitBytes, headUnitBytes);
            double staging = 2 * unit / workers;
            comps.add(new Component("weights.offload_staging", Column.DEVICE, Category.WEIGHTS, Accounting.TENSOR, phases(staging, staging, staging, 0),
                    "2 × one unit's shard, copied host → GPU ahead of its all-gather"));
        }
        if (amp && (o.method() == Method.FULL || wideBase)) {
            // Autocast caches the cast of every leaf that requires grad until the autocast region ends (the end of
            // forward, loss included); a frozen weight is cast anew at each call. Either way the matmul's graph keeps the
            // copy for backward (the input gradient needs it): all linear weights and the LM head (the embedding lookup
            // is not cast). A checkpointed block's graph is dropped, so once the cache is cleared its copies are gone;
            // its recomputation in backward casts that one block again.
            double head = (double) Math.max(n.lmHead(), c.tieWordEmbeddings() ? n.embedding() : 0) * a;
            double perBlock = (double) n.linearWeights() / c.numLayers() * a;
            int ckpt = o.checkpointedBlocks(c.numLayers());
            double kept = (c.numLayers() - ckpt) * perBlock;
            double all = n.linearWeights() * (double) a + head;
            comps.add(new Component("weights.autocast_copies", Column.DEVICE, Category.WORKSPACE, Accounting.TENSOR,
                    phases(all, kept + head, kept + (ckpt > 0 ? perBlock : 0), 0),
                    "torch.amp: half copies of the fp32 linear weights, " + (o.method() == Method.FULL ? "cached in forward" : "made per matmul and saved by its graph")
                            + (ckpt > 0 ? "; backward keeps those of uncheckpointed blocks, the LM head's and one recomputed block's" : ", held by backward")));
        }
        if (castTemp > 0)
            comps.add(new Component("weights.cast", Column.DEVICE, Category.WORKSPACE, Accounting.TENSOR,
                    phases(castTemp, castTemp, castTemp, 0), "largest frozen linear weight cast to the compute dtype for its matmul"));
        if (quantised)
            comps.add(new Component("weights.dequantised", Column.DEVICE, Category.WORKSPACE, Accounting.TENSOR,
                    phases(n.largestLinear() * (double) a, n.largestLinear() * (double) a, n.largestLinear() * (double) a, 0),
                    "largest linear weight dequantised to the compute dtype for its matmul"));

        // ---- master weights, gradients, optimizer states (ZeRO: optimizer ≥1, gradients ≥2, parameters 3)
        boolean master = o.precision().mixed() && trainDtype == 2;  // FSDP full FT: the fp32 shards are the master
        Column stateColumn = o.offload() == Offload.NONE ? Column.DEVICE : o.offload() == Offload.CPU ? Column.HOST : Column.DISK;
        if (master)
            comps.add(place("master_weights", stateColumn, Category.MASTER_WEIGHTS, shard(trainable * 4.0, o.zero() >= 1, workers),
                    "fp32 copy of the trainable parameters for mixed precision (ZeRO: 4 of the 16 bytes per parameter)"));
        double gradBytes = trainable * (double) trainDtype;
        // Adapters in their block's FSDP unit (use_orig_params=True): the unit's flat parameter requires grad, so its
        // gradient has the whole unit's size, frozen weights included (PyTorch FSDP docs: as if they were not frozen).
        double frozenInUnits = o.fsdpBlockUnits() ? c.numLayers() * frozenUnitBytes : 0;
        gradBytes += frozenInUnits;
        Column gradColumn = o.offload() != Offload.NONE && o.zero() >= 2 ? Column.HOST : Column.DEVICE;
        double gradShard = shard(gradBytes, o.zero() >= 2, workers);
        double headGrad = o.method() == Method.FULL ? (double) Math.max(n.lmHead(), n.embedding()) * trainDtype : 0;
        // What the partitioned gradients hold once the LM head's gradient is done: its shard (ZeRO-2/3; the whole
        // gradient before its reduce-scatter is gradients.unsharded_unit), or all of it.
        double headGradHeld = Math.min(o.zero() >= 2 && workers > 1 ? headGrad / workers : headGrad, gradShard);
        if (o.optimizerInBackward()) {
            // Each parameter is stepped and its gradient freed as soon as it is complete: one tensor at a time.
            double one = (double) Math.max(n.largestLinear(), Math.max(n.embedding(), n.lmHead())) * trainDtype;
            if (o.method() != Method.FULL) one = gradBytes;
            comps.add(new Component("gradients", Column.DEVICE, Category.GRADIENTS, Accounting.TENSOR, phases(0, one, one, 0),
                    "optimizer in backward: only the tensor being stepped holds a gradient"));
        } else if (o.fsdpNoSync()) {
            // Accumulating inside FSDP's no_sync(): the post-backward hook returns before the reduce-scatter, so each
            // unit's whole gradient stays on the worker from the first micro-step's backward to the last one's, and
            // through the forwards in between; the synchronising micro-step reduce-scatters it to the shards the step uses.
            comps.add(new Component("gradients", Column.DEVICE, Category.GRADIENTS, Accounting.TENSOR,
                    phases(gradBytes, gradBytes, gradBytes, gradShard),
                    (o.fsdpBlockUnits() ? "whole block units (frozen weights included) + adapters" : "trainable params × " + trainDtype + " B")
                            + ", unsharded while FSDP's no_sync() accumulates; sharded for the step"));
        } else {
            // Accumulating: from the second micro-step on, forward and backward run beside the gradients summed so far.
            double held = o.gradAccum() > 1 ? gradShard : 0;
            comps.add(new Component("gradients", gradColumn, Category.GRADIENTS, Accounting.TENSOR,
                    phases(held, Math.max(held, headGradHeld), gradShard, gradShard),
                    (o.fsdpBlockUnits() ? "whole block units (frozen weights included, FSDP flat parameters that require grad) + adapters"
                            : "trainable params × " + trainDtype + " B") + (o.zero() >= 2 ? ", partitioned (ZeRO-2/3)" : "")
                            + "; freed after the step (zero_grad(set_to_none=True))"
                            + (held > 0 ? "; held through the forward of every micro-step after the first (" + o.gradAccum() + " accumulated)" : "")));
            if (o.zero() >= 2 && workers > 1) {
                double bucket = o.method() == Method.FULL ? Math.max(layerUnitBytes / (double) a * trainDtype, headGrad)
                        : o.fsdpBlockUnits() ? frozenUnitBytes : 0;
                comps.add(new Component("gradients.unsharded_unit", Column.DEVICE, Category.GRADIENTS, Accounting.TENSOR,
                        phases(0, bucket, bucket, 0), "one unit's full gradient before its reduce-scatter"));
            }
        }
        if (o.sharding() == PytorchOptions.Sharding.DDP && workers > 1) {
            // DistributedDataParallel's Reducer allocates its all-reduce buckets at construction, one flat tensor per
            // bucket in the parameters' dtype, covering every trainable parameter; with gradient_as_bucket_view=False
            // (the default, also accelerate's) the .grad tensors are separate, so the gradients exist twice.
            comps.add(new Component("gradients.ddp_buckets", Column.DEVICE, Category.GRADIENTS, Accounting.TENSOR,
                    phases(gradBytes, gradBytes, gradBytes, gradBytes), "DDP all-reduce buckets: a second copy of the gradients, "
                    + trainable + " params × " + trainDtype + " B"));
        }
        if (o.zero() > 0 && o.sharding() == PytorchOptions.Sharding.DEEPSPEED) {
            double bucket = DEEPSPEED_REDUCE_BUCKET * (double) a;
            comps.add(new Component("gradients.reduce_bucket", Column.DEVICE, Category.WORKSPACE, Accounting.TENSOR, phases(bucket, bucket, bucket, bucket),
                    "DeepSpeed contiguous gradient bucket: reduce_bucket_size (default 5e8) elements × " + a + " B"));
        }
        int stateDtype = master ? 4 : trainDtype; // with a master copy, the optimizer steps (and keeps its states in) fp32
        double stateBytes = optimizerBytes(o.optimizer(), stateDtype) * trainable;
        Column optColumn = o.pagedOptimizer() ? Column.HOST : stateColumn;
        comps.add(place("optimizer", optColumn, Category.OPTIMIZER, shard(stateBytes, o.zero() >= 1, workers),
                optimizerFormula(o.optimizer(), stateDtype) + (o.pagedOptimizer() ? " (paged: CUDA unified memory, evicted to the host)" : "")));
        if (o.optimizer() == Optimizer.ADAMW && o.optimizerImpl() == PytorchOptions.OptimizerImpl.FOREACH && optColumn == Column.DEVICE && !o.optimizerInBackward()) {
            // torch.optim.AdamW (foreach) materialises sqrt(v) for all tensors at once: one more state's worth. The
            // fused kernel (fused=True) computes it per element and allocates nothing.
            double tmp = shard(trainable * (double) stateDtype, o.zero() >= 1, workers);
            comps.add(new Component("optimizer.step_temporaries", Column.DEVICE, Category.WORKSPACE, Accounting.TENSOR,
                    phases(0, 0, 0, tmp), "foreach AdamW: _foreach_sqrt(exp_avg_sq) temporary, one state's size"));
        }

        // ---- activations (per worker: N = B·T tokens)
        Activations act = activations(c, o);
        // Backward frees each block's saved tensors as it produces that block's gradients, so the two overlap only in
        // part: with uniform blocks the sum is linear in the block reached and peaks at an end, max(saved + head
        // gradient, all gradients + the block backward ends with), not at saved + all gradients. That last block keeps
        // its saved tensors until its own gradients are done (with checkpointing, every N-th block or all, act.backward
        // already holds one block beside the saved ones: the block being back-propagated, recomputed or not).
        // Gradients accumulated from earlier micro-steps are whole from the start of backward: nothing grows to offset.
        double deviceGrads = o.optimizerInBackward() || gradColumn != Column.DEVICE || o.gradAccum() > 1 ? 0 : gradShard;
        double freedWhileGradsGrow = Math.min(act.forward - act.lastBlock, Math.max(0, deviceGrads - headGradHeld));
        if (o.activationOffload()) {
            // torchtune's OffloadActivations: every tensor the model's forward saves (above 1 KiB) is copied to pinned host
            // memory on a side stream; the GPU keeps the last few until their copies finish (max_fwd_stash_size = 5) and
            // the LM head's input (excluded from offloading). Backward brings back one node's tensors while it prefetches
            // the next: two block inputs and the block recomputed from one under checkpointing, else two blocks' tensors.
            boolean allCheckpointed = o.gradientCheckpointing() && o.checkpointedBlocks(c.numLayers()) == c.numLayers();
            double forward = Math.min(act.forward, ACTIVATION_OFFLOAD_STASH * act.largest + act.headInput);
            double backward = Math.min(act.backward - freedWhileGradsGrow,
                    (allCheckpointed ? 2 * act.largest + act.block : 2 * act.block) + act.blockTransient + act.headInput);
            comps.add(new Component("activations", Column.DEVICE, Category.ACTIVATIONS, Accounting.TENSOR,
                    phases(forward, Math.min(act.backwardHead, forward), backward, 0),
                    "activation offloading: " + ACTIVATION_OFFLOAD_STASH + " × the largest saved tensor in flight to the host"
                            + (act.headInput > 0 ? " + the LM head's input" : "") + "; in backward two nodes brought back"
                            + (allCheckpointed ? " (block inputs) and the block recomputed" : " (blocks)") + " + backward temporaries"));
            comps.add(new Component("activations.offloaded", Column.HOST, Category.ACTIVATIONS, Accounting.TENSOR,
                    phases(act.forward, act.backwardHead, act.forward, 0), "the saved activations, in pinned host memory: " + act.formula));
        } else
            comps.add(new Component("activations", Column.DEVICE, Category.ACTIVATIONS, Accounting.TENSOR,
                    phases(act.forward, act.backwardHead, act.backward - freedWhileGradsGrow, 0), act.formula
                            + (freedWhileGradsGrow > 0 ? "; in backward, less what is freed while the gradients grow" : "")));
        comps.add(new Component("logits_and_loss", Column.DEVICE, Category.ACTIVATIONS, Accounting.TENSOR,
                phases(act.lossForward, act.lossBackward, 0, 0), act.lossFormula));

        // ---- what the allocator and the driver add
        long tensorPeak = addAllocatorAndContext(comps, device, o);
        if (fsdp && hf && paramsOffloaded && o.offload() == Offload.CPU)
            // Not a term of the plan: every published run of this kind read above it, by an amount that does not scale
            // with anything the plan knows (docs/PLANNER.md, calibration peft-13, held-out aa-13..19).
            notes.add("FSDP1 with CPU parameter offload: published runs of this kind held 1.7-5.7 GiB more per GPU than planned "
                    + "(cause not known; docs/PLANNER.md): keep that much headroom");
        notes.add("per GPU; torch.cuda.max_memory_allocated ≈ " + dev.llamafit.memory.ByteSize.format(tensorPeak)
                + ", max_memory_reserved ≈ +" + Math.round(ALLOCATOR_CACHE_FRACTION * 100) + "%, nvidia-smi adds the CUDA context" + (o.workers() > 1 ? " and NCCL's buffers" : ""));
        return new MemoryPlan(device, comps, notes);
    }

    /**
     * Appends what the caching allocator (its unused reserve, a share of the allocated peak of {@code comps}) and the
     * driver (CUDA context) add, and returns that allocated peak.
     */
    static long addAllocatorAndContext(List<Component> comps, Device device, PytorchOptions o) {
        long tensorPeak = new MemoryPlan(device, comps, List.of()).peak(Column.DEVICE, Metric.ALLOCATED);
        long cache = Math.round(tensorPeak * ALLOCATOR_CACHE_FRACTION);
        comps.add(new Component("allocator_cache", Column.DEVICE, Category.WORKSPACE, Accounting.ALLOCATOR_CACHE,
                phases(cache, cache, cache, cache), "caching allocator: blocks reserved but not in use, "
                + Math.round(ALLOCATOR_CACHE_FRACTION * 100) + "% of the allocated peak (reserved − allocated)"));
        long ctx = device.contextBytes();
        comps.add(new Component("cuda_context", Column.DEVICE, Category.WORKSPACE, Accounting.OUTSIDE_ALLOCATOR,
                phases(ctx, ctx, ctx, ctx), "CUDA context and kernel images (nvidia-smi only)"));
        if (o.workers() > 1) {
            long nccl = o.workers() == 2 ? NCCL_TWO_GPU_BYTES : NCCL_GROUP_BYTES;
            comps.add(new Component("nccl_buffers", Column.DEVICE, Category.WORKSPACE, Accounting.OUTSIDE_ALLOCATOR,
                    phases(nccl, nccl, nccl, nccl), "NCCL communicator buffers, allocated by NCCL outside PyTorch's allocator (nvidia-smi only; "
                    + "measured " + (NCCL_TWO_GPU_BYTES >> 20) + " MiB for 2 GPUs, " + (NCCL_GROUP_BYTES >> 20) + " MiB for more, A100 NVLink)"));
        }
        return tensorPeak;
    }

    /**
     * Activation bytes at each moment, per worker.
     *
     * @param block     one block's saved tensors (recomputed under checkpointing)
     * @param blockTransient what backward through one block holds besides them
     * @param largest   the largest single tensor the forward saves (a block input under checkpointing)
     * @param headInput the LM head's saved input (when its weight trains), which activation offloading leaves on the GPU
     */
    record Activations(double forward, double backwardHead, double backward, double lastBlock, double lossForward, double lossBackward,
                       String formula, String lossFormula, double block, double blockTransient, double largest, double headInput) {}

    /**
     * Bytes one block saves for backward per token, for LLaMA (Korthikanti et al. 2022 §4.1 recounted): the residual
     * inputs of both RMSNorms (2C; saved as fp32 copies when eager), q (H·D), k and v (2·KvH·D), the attention output (H·D), the SwiGLU gate, up and
     * silu(gate) (3F), and the inputs of the linear layers whose weights need a gradient: the two norm outputs (2C)
     * and the SwiGLU product (F). LoRA freezes the base: a frozen Linear's input is kept only if its adapter reads it
     * (PyTorch saves a matmul input only for a weight gradient). Eager attention adds B·H·T² probabilities per block.
     * Under torch.compile (measured per block with scripts/measure_block_saved.py) the partitioner recomputes the
     * pointwise silu(gate) and the norms' fp32 upcasts from what it keeps, and one cast of a shared input serves every
     * adapter that reads it.
     */
    public static double blockBytesPerToken(LlamaConfig c, PytorchOptions o) { return blockBytesPerToken(c, o, attentionKernel(c, o)); }

    /** The same, with the attention kernel given (a CPU runs fp32 SDPA with a flash kernel, which CUDA lacks). */
    public static double blockBytesPerToken(LlamaConfig c, PytorchOptions o, PytorchOptions.Attention kernel) {
        int a = o.precision().computeBytes();
        // Eager attention (and SDPA's math backend) multiplies by keys and values repeated to every query head
        // (repeat_kv), and those expanded copies are what its matmuls save; flash kernels read the grouped k and v.
        boolean eager = kernel == PytorchOptions.Attention.EAGER;
        boolean compiled = o.compiled();
        // silu(gate) is saved for the product's backward in eager PyTorch; the compiled graph recomputes it from gate.
        double el = 2.0 * c.hiddenSize() + c.qDim() + 2.0 * (eager ? c.qDim() : c.kvDim()) + (compiled ? 2.0 : 3.0) * c.intermediateSize();
        boolean full = o.method() == Method.FULL;
        // An adapter whose input is dropped out, or cast (PEFT's fp32 adapters over a half model: x.to(fp32), which
        // autocast, when on, casts back to the compute dtype for the matmul), saves its own copy of the input for dA
        // (plus a 1-byte dropout mask); otherwise it saves the very tensor the frozen layer read, shared by the modules
        // that read it.
        boolean copies = !full && (o.loraDropout() > 0 || o.stack() == Stack.HF && o.precision() != Precision.FP32);
        // Without autocast (bf16-pure) PEFT's x.to(fp32) is what the fp32 lora_A saves: 4 B per element, and x·Aᵀ is fp32.
        int adapterIo = o.stack() == Stack.HF && o.precision() == Precision.BF16_PURE ? 4 : a;
        // bitsandbytes before 0.43.2 saved the input of every 4-bit matmul (MatMul4Bit's ctx.tensors = (A, B)), as if
        // the frozen weight took a gradient: the base layers keep their inputs as under full fine-tuning.
        boolean baseKeepsInputs = full || o.bnbSavesInputs() && o.baseDtype() == Technique.BaseDtype.NF4;
        if (baseKeepsInputs || !copies && targets(o, LinearModule.Q, LinearModule.K, LinearModule.V)) el += c.hiddenSize();
        // Flash/SDPA saves its output for backward; eager attention saves probabilities and V instead.
        if (!eager || baseKeepsInputs || !copies && targets(o, LinearModule.O)) el += c.qDim();
        if (baseKeepsInputs || !copies && targets(o, LinearModule.GATE, LinearModule.UP)) el += c.hiddenSize();
        if (baseKeepsInputs || !copies && targets(o, LinearModule.DOWN)) el += c.intermediateSize();
        // Autocast over an fp32 residual stream casts each matmul's input itself, and a matmul whose weight trains saves
        // its own cast: q, k and v keep three half copies of the attention norm's output, gate and up two of the MLP
        // norm's, where eager half precision shares one (o and down read tensors already in the compute dtype).
        if (full && !compiled && a < 4 && residualBytes(o) == 4) el += 3.0 * c.hiddenSize();
        double bytes = el * a;
        if (!compiled) {
            // Eager RMSNorm (transformers' LlamaRMSNorm and torchtune's alike) upcasts its input to fp32, and pow/mul
            // save that fp32 copy rather than the half input; when its weight trains, the weight's multiply also saves
            // the normalised input, in the residual's dtype. Compiled, both are recomputed from the half input and the
            // fp32 rstd.
            bytes += 2.0 * c.hiddenSize() * (4 - a);
            if (full) bytes += 2.0 * c.hiddenSize() * residualBytes(o);
        }
        if (copies) {
            int perCopy = adapterIo + (o.loraDropout() > 0 ? 1 : 0);
            if (compiled && o.loraDropout() == 0) {
                // One cast per distinct input: q/k/v read the attention norm's output, gate/up the MLP norm's.
                for (List<LinearModule> reads : List.of(List.of(LinearModule.Q, LinearModule.K, LinearModule.V), List.of(LinearModule.O),
                        List.of(LinearModule.GATE, LinearModule.UP), List.of(LinearModule.DOWN)))
                    if (targets(o, reads.toArray(LinearModule[]::new))) bytes += (double) reads.getFirst().in(c) * perCopy;
            } else {
                for (String m : o.loraTargets()) bytes += (double) module(m).in(c) * perCopy;
            }
        }
        if (!full) bytes += (double) o.loraTargets().size() * o.loraRank() * adapterIo; // x·Aᵀ per adapter, for dB
        return bytes + 2 * 4.0; // each norm's fp32 rstd (one per token)
    }

    /**
     * The attention kernel that runs. --attention flash means SDPA/FlashAttention, which keeps no T² tensor; but for a
     * grouped-query model in fp32, transformers' SDPA path (enable_gqa, no padding mask) ends in PyTorch's math backend,
     * which materialises the fp32 probabilities of every layer like eager attention (measured with torch 2.11 and
     * transformers 5.17, docs/PLANNER.md). Half precision runs the flash kernel, which takes grouped queries.
     */
    public static PytorchOptions.Attention attentionKernel(LlamaConfig c, PytorchOptions o) {
        boolean mathFallback = o.stack() == Stack.HF && o.attention() == PytorchOptions.Attention.FLASH
                && o.precision().computeBytes() == 4 && c.numKvHeads() < c.numHeads();
        return mathFallback ? PytorchOptions.Attention.EAGER : o.attention();
    }

    /** Eager attention per block and sequence: softmax output in fp32 (4 B) plus its cast to the compute dtype. */
    public static double eagerAttentionBytesPerSequence(LlamaConfig c, PytorchOptions o) {
        int a = o.precision().computeBytes();
        return (double) c.numHeads() * o.seqLen() * o.seqLen() * (4 + (a == 4 ? 0 : a));
    }

    /**
     * Bytes per element of the residual stream. Under autocast over an fp32 model (full fine-tuning, or a base loaded
     * in fp32) the embedding output is fp32 and so is the residual stream (matmul outputs stay half);
     * prepare_model_for_kbit_training upcasts an unsharded quantised model's embedding to fp32: the same.
     */
    static int residualBytes(PytorchOptions o) {
        return amp(o) && (o.method() == Method.FULL || o.baseDtype() == Technique.BaseDtype.FP32 || kbitPrepared(o)) ? 4 : o.precision().computeBytes();
    }

    /** ZeRO-3 and FSDP at stage 2 (SHARD_GRAD_OP, sharded at rest) shard the parameters themselves. */
    static boolean paramsSharded(PytorchOptions o) {
        return o.zero() >= 3 || o.zero() == 2 && o.sharding() == PytorchOptions.Sharding.FSDP;
    }

    /**
     * Unsharded QLoRA in the HF stack runs PEFT's prepare_model_for_kbit_training: non-quantised parameters upcast to
     * fp32, and the embedding output made to require grad (enable_input_require_grads).
     */
    static boolean kbitPrepared(PytorchOptions o) {
        return o.baseDtype() != null && o.baseDtype().quantised() && o.stack() == Stack.HF && !paramsSharded(o);
    }

    /** HF mixed precision without DeepSpeed or FSDP: torch.amp autocast over the model in the dtype it was loaded in. */
    static boolean amp(PytorchOptions o) {
        return o.stack() == Stack.HF && o.precision().mixed() && o.zero() == 0;
    }

    static Activations activations(LlamaConfig c, PytorchOptions o) {
        int a = o.precision().computeBytes();
        // Block inputs and the final norm input are in the residual stream's dtype.
        int r = residualBytes(o);
        double tokens = (double) o.batchSize() * o.seqLen();
        int layers = c.numLayers();
        double perToken = blockBytesPerToken(c, o);
        double block = perToken * tokens;
        PytorchOptions.Attention kernel = attentionKernel(c, o);
        if (kernel == PytorchOptions.Attention.EAGER) block += eagerAttentionBytesPerSequence(c, o) * o.batchSize();
        else block += 4.0 * c.numHeads() * tokens; // logsumexp, fp32
        double residual = tokens * c.hiddenSize() * r;
        // The final norm saves its input (as an fp32 copy when eager, like every RMSNorm) and its rstd; when the norm
        // weight and the LM head train, also the normalised input (residual dtype) and the LM head's input, and the
        // embedding its token ids (int64). The rotary cos and sin (T × D each, shared by the batch, in the residual
        // dtype) are computed once per forward and saved by every block that is not checkpointed: once.
        boolean trainsHead = o.method() == Method.FULL;
        double head = tokens * (c.hiddenSize() * (o.compiled() ? r : 4.0) + 4
                + (trainsHead ? c.hiddenSize() * ((o.compiled() ? 0 : r) + (double) a) + 8 : 0))
                + (o.gradientCheckpointing() && o.checkpointedBlocks(layers) == layers ? 0 : 2.0 * c.headDim() * r * o.seqLen());
        // Backward through one block holds its input gradient and the largest intermediate gradients.
        double blockTransient = tokens * (2.0 * c.hiddenSize() + 2.0 * c.intermediateSize()) * a;
        double saved, backward;
        String formula;
        if (o.gradientCheckpointing()) {
            int ckpt = o.checkpointedBlocks(layers);
            saved = ckpt * residual + (layers - ckpt) * block + head;
            backward = saved + block + blockTransient;
            formula = String.format(java.util.Locale.ROOT, "checkpointing: L × N·C·%d B (block inputs) + one block recomputed (%.0f B/token) + backward temporaries", r, perToken);
        } else {
            saved = layers * block + head;
            // Adapters over a frozen embedding: nothing before the first block needs a gradient, so its attention norm
            // saves nothing (checkpointing, and prepare_model_for_kbit_training, turn the embedding output's
            // requires_grad on: then it saves as every other).
            if (o.method() != Method.FULL && !kbitPrepared(o)) saved -= tokens * (c.hiddenSize() * (o.compiled() ? a : 4.0) + 4);
            backward = saved + blockTransient;
            formula = String.format(java.util.Locale.ROOT, "L × %.0f B/token%s (Korthikanti et al. 2022, recounted for LLaMA) + backward temporaries",
                    perToken, kernel == PytorchOptions.Attention.EAGER ? " + B·H·T²·" + (4 + (a == 4 ? 0 : a)) + " B "
                            + (o.attention() == PytorchOptions.Attention.EAGER ? "eager attention" : "probabilities (SDPA's math backend: fp32 with grouped queries)") : "");
        }
        double nv = tokens * c.vocabSize();
        double lossForward, lossBackward;
        String lossFormula;
        if (o.loss() == PytorchOptions.Loss.CHUNKED && o.compiled()) {
            // Chunked CE under torch.compile (torchtune compiles the loss with the model): each chunk's graph saves its
            // model-dtype logits and two fp32 statistics per row, not the fp32 log-softmax, and its backward writes the
            // chunk's gradient in one fused pass (measured on the CPU: scripts/measure_loss_saved.py).
            lossForward = nv * a + tokens * 16;
            lossBackward = nv * a + a * nv / LOSS_CHUNKS + tokens * 16;
            lossFormula = "chunked cross-entropy (" + LOSS_CHUNKS + " chunks), compiled: N·V·" + a + " B logits kept for backward + one chunk's gradient";
        } else if (o.loss() == PytorchOptions.Loss.CHUNKED) {
            // Chunked CE in eager PyTorch: each chunk's log-softmax saves its fp32 output (4 B per logit for all chunks) and
            // not its input; the recipe deletes the logits before backward, which then holds the saved outputs and one
            // chunk's two fp32 gradients and its cast. Both keep the labels (int64).
            lossForward = nv * (a + 4.0) + 4.0 * nv / LOSS_CHUNKS + tokens * 8;
            lossBackward = nv * 4.0 + (4 + 4.0 + a) * nv / LOSS_CHUNKS + tokens * 8;
            lossFormula = "chunked cross-entropy (" + LOSS_CHUNKS + " chunks): N·V·" + a + " B logits + N·V·4 B fp32 log-softmax outputs in forward; "
                    + "in backward the log-softmax outputs and one chunk's gradients";
        } else if (o.stack() == Stack.TORCHTUNE) {
            // A plain CrossEntropyLoss stays eager under compile: training.compile_loss compiles a chunked loss in place but
            // returns a compiled plain one, which the full fine-tuning and distributed recipes of 2024 do not keep.
            // torchtune with a plain CrossEntropyLoss: the model returns output(h).float(), the recipe drops its
            // reference before backward (log_softmax keeps only its fp32 output). Forward: fp32 logits + log-softmax
            // (more than the half logits and their upcast, a + 4 ≤ 8); backward: log-softmax with its incoming and
            // outgoing fp32 gradients.
            lossForward = nv * (4 + 4);
            lossBackward = nv * (4 + 4 + 4);
            lossFormula = "full logits, model upcasts them: N·V × 8 B (fp32 logits + log-softmax) in forward, 12 B in backward";
        } else {
            // transformers (ForCausalLMLoss, since 4.48 it shifts the labels, not the logits): the model output keeps the
            // logits in the compute dtype; the loss upcasts them (.float(), a no-op in fp32) and log_softmax saves its
            // fp32 output. The Trainer's compute_loss returns the loss alone, so the logits and the upcast are freed
            // before backward (no backward needs them: the cast's gradient is a cast, the LM head saved its input).
            // Backward: the saved log-softmax output with its incoming and outgoing fp32 gradients (measured: the peak
            // holds exactly these three N·V fp32 tensors, docs/PLANNER.md).
            // A loop that keeps the output object (out = model(...); out.loss.backward()) holds the logits as well.
            int upcast = a == 4 ? 0 : 4;
            int held = o.keepOutputs() ? a : 0;
            // The loss also keeps its shifted labels (int64) for backward.
            lossForward = nv * (a + upcast + 4) + tokens * 8;
            lossBackward = nv * (held + 4 + 4 + 4) + tokens * 8;
            lossFormula = "full logits: N·V × (" + a + " logits" + (a == 4 ? "" : " + 4 fp32 upcast") + " + 4 log-softmax) in forward, "
                    + "N·V × " + (held + 12) + " B in backward (log-softmax output and its two fp32 gradients"
                    + (o.keepOutputs() ? ", and the logits the loop still holds)" : ")");
        }
        // The largest tensor one saved: a block input under checkpointing, else a SwiGLU intermediate, an fp32 norm copy, or
        // eager attention's probabilities.
        double largest = o.gradientCheckpointing() && o.checkpointedBlocks(layers) == layers ? residual
                : Math.max(tokens * Math.max(c.intermediateSize() * (double) a, c.hiddenSize() * 4.0),
                kernel == PytorchOptions.Attention.EAGER ? 4.0 * o.batchSize() * c.numHeads() * (double) o.seqLen() * o.seqLen() : 0);
        double headInput = trainsHead ? tokens * c.hiddenSize() * (double) a : 0;
        return new Activations(saved, saved, backward, o.gradientCheckpointing() ? 0 : block, lossForward, lossBackward, formula, lossFormula,
                block, blockTransient, largest, headInput);
    }

    static boolean targets(PytorchOptions o, LinearModule... modules) {
        for (LinearModule m : modules) if (o.loraTargets().contains(m.key())) return true;
        return false;
    }

    /** The linear module an adapter target names (targets are validated by LoraConfig). */
    static LinearModule module(String key) {
        return LinearModule.byKey(key).orElseThrow(() -> new IllegalArgumentException("unknown LoRA target '" + key + "'"));
    }

    /** Output rows of all quantised linear weights (one int8 scale each). */
    static long linearRows(LlamaConfig c) {
        long perLayer = c.qDim() + 2L * c.kvDim() + c.hiddenSize() + 2L * c.intermediateSize() + c.hiddenSize();
        return perLayer * c.numLayers();
    }

    /** Optimizer state bytes per trainable parameter whose dtype is {@code paramBytes}. */
    public static double optimizerBytes(Optimizer optim, int paramBytes) {
        return switch (optim) {
            case ADAMW -> 2.0 * paramBytes;            // m and v in the parameter's dtype (fp32: 8 B; bf16-pure: 4 B)
            case ADAMW8BIT -> 2.0 + 2 * 4.0 / OPTIM8_BLOCK; // two int8 states + an fp32 absmax per 2048-element block each
            case SGD -> paramBytes;                    // one momentum buffer
        };
    }

    static String optimizerFormula(Optimizer optim, int paramBytes) {
        return switch (optim) {
            case ADAMW -> "AdamW m, v: " + 2 * paramBytes + " B per trainable parameter";
            case ADAMW8BIT -> "8-bit AdamW: 2 B + fp32 absmax per 2048-element block, per trainable parameter";
            case SGD -> "SGD momentum: " + paramBytes + " B per trainable parameter";
        };
    }

    static String weightsFormula(PytorchOptions o, Counts n) {
        if (o.method() == Method.FULL) return n.total() + " params × " + (o.precision() == Precision.FP32 ? 4 : 2) + " B";
        if (o.baseDtype() == null) return "frozen base: " + n.total() + " params × " + o.precision().computeBytes() + " B";
        if (!o.baseDtype().quantised()) return "frozen base as loaded: " + n.total() + " params × " + o.baseDtype().floatBytes() + " B"
                + (o.zero() > 0 && o.sharding() == PytorchOptions.Sharding.DEEPSPEED && o.precision() != Precision.FP32
                ? " (DeepSpeed casts it to " + Technique.name(o.precision()) + ": " + o.precision().computeBytes() + " B)" : "");
        return "frozen base: " + n.linearWeights() + " linear weights in " + Technique.name(o.baseDtype())
                + (o.baseDtype() == Technique.BaseDtype.NF4 ? (o.doubleQuant() ? " (4.127 bits, double-quantised constants)" : " (4.5 bits)")
                : " (1 B + fp32 row scale)") + " + " + n.other() + " others";
    }

    static double shard(double bytes, boolean sharded, int workers) { return sharded ? Math.ceil(bytes / workers) : bytes; }

    static Component gpu(String name, Category cat, double bytes, String formula) {
        return place(name, Column.DEVICE, cat, bytes, formula);
    }

    static Component place(String name, Column column, Category cat, double bytes, String formula) {
        long b = Math.round(bytes);
        return new Component(name, column, cat, Accounting.TENSOR, new long[]{b, b, b, b}, formula);
    }

    static long[] phases(double forward, double backwardHead, double backward, double step) {
        return new long[]{Math.round(forward), Math.round(backwardHead), Math.round(backward), Math.round(step)};
    }
}
