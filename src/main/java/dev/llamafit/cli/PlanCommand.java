// `llamafit plan`: the memory breakdown of a training run before it starts, max batch / length, advice, the seed formula.
package dev.llamafit.cli;

import java.io.IOException;
import java.io.PrintWriter;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.concurrent.Callable;

import dev.llamafit.io.ConfigJson;
import dev.llamafit.io.InputException;
import dev.llamafit.io.Json;
import dev.llamafit.io.ModelFolder;
import dev.llamafit.io.ModelPresets;
import dev.llamafit.memory.ByteSize;
import dev.llamafit.model.LlamaConfig;
import dev.llamafit.plan.Column;
import dev.llamafit.plan.Component;
import dev.llamafit.plan.Device;
import dev.llamafit.plan.Devices;
import dev.llamafit.plan.FormulaSeed;
import dev.llamafit.plan.InferencePlanner;
import dev.llamafit.plan.MemoryPlan;
import dev.llamafit.plan.Metric;
import dev.llamafit.plan.Phase;
import dev.llamafit.plan.PlanOptions;
import dev.llamafit.plan.Planner;
import dev.llamafit.plan.PytorchProfile;
import dev.llamafit.plan.Recommender;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;
import picocli.CommandLine.Spec;
import picocli.CommandLine.Model.CommandSpec;

@Command(name = "plan", mixinStandardHelpOptions = true, sortOptions = false,
        description = "Plan the memory of a training run: breakdown by component and column, peak, headroom, max batch, advice.")
final class PlanCommand implements Callable<Integer> {
    @Spec CommandSpec spec;

    @Option(names = "--model", required = true, description = "Model folder, config.json, or preset (" + "e.g. llama-3.1-8b; see --list-presets).") String model;
    @Mixin TechniqueOptions technique;
    @Option(names = "--runtime", description = "llamafit (CPU) or pytorch (CUDA); default: pytorch for a GPU device, else llamafit.") String runtime;
    @Option(names = "--attention", description = "eager or flash (default: flash for pytorch, eager for llamafit).") String attention;
    @Option(names = "--stack", defaultValue = "hf", description = "PyTorch stack conventions: hf or torchtune (default: ${DEFAULT-VALUE}).") String stack;
    @Option(names = "--sharding", description = "With --zero: deepspeed (ZeRO) or fsdp (PyTorch FSDP); with --zero 0 and --workers > 1 also ddp (DistributedDataParallel, whose buckets copy the gradients) (default: ddp for --zero 0 with --workers > 1, what torchrun and accelerate launch run; otherwise deepspeed).") String sharding;
    @Option(names = "--shard-embeddings", description = "With --sharding fsdp: wrap the embedding and LM head as units of their own (torchtune's custom_sharded_layers) instead of leaving them in the root unit, which stays gathered through forward and backward.") boolean shardEmbeddings;
    @Option(names = "--fsdp-wrap", description = "With --sharding fsdp and adapters: adapters (each adapter an FSDP unit of its own, PEFT's fsdp_auto_wrap_policy) or blocks "
            + "(each decoder block one unit with its adapters, use_orig_params=True, as Lightning Fabric's FSDPStrategy(auto_wrap_policy={Block}) wraps: "
            + "the unit's gradient then covers its frozen weights too) (default: adapters).") String fsdpWrap;
    @Option(names = "--grad-accum", defaultValue = "1", description = "Micro-steps per optimizer step (gradient accumulation): from the second on, "
            + "forward and backward run beside the gradients summed so far (default: ${DEFAULT-VALUE}); the llamafit engine keeps its gradients "
            + "for the whole run, so there it changes nothing.") int gradAccum;
    @Option(names = "--activation-offload", description = "The tensors the forward saves go to pinned host memory and come back in backward "
            + "(torchtune's enable_activation_offloading); pytorch runtime.") boolean activationOffload;
    @Option(names = "--no-sync", description = "With --sharding fsdp: gradient accumulation runs inside FSDP's no_sync() (Lightning Fabric's no_backward_sync, "
            + "accelerate without sync_each_batch), so between optimizer steps each worker holds unsharded gradients.") boolean noSync;
    @Option(names = "--optimizer-in-backward", description = "Step each parameter's optimizer as soon as its gradient is ready and free the gradient (torchtune's optimizer_in_bwd); pytorch runtime.") boolean optimizerInBackward;
    @Option(names = "--paged-optimizer", description = "Optimizer states in CUDA unified memory, evicted to the host under pressure (bitsandbytes Paged*); pytorch runtime.") boolean pagedOptimizer;
    @Option(names = "--optimizer-impl", description = "How torch.optim runs the AdamW step: fused (fused=True: the HF Trainer's default with torch >= 2.8, "
            + "torchtune's configs, DeepSpeed's FusedAdam) or foreach (torch.optim.AdamW's own default, the Trainer's adamw_torch: "
            + "its step holds one more state's worth of temporaries) (default: fused); pytorch runtime.") String optimizerImpl;
    @Option(names = "--keep-outputs", description = "With --stack hf: the training loop holds the model's output (its logits) through backward, "
            + "as a hand-written 'out = model(...); out.loss.backward()' does; the HF Trainer returns the loss alone and frees them.") boolean keepOutputs;
    @Option(names = "--bitsandbytes", paramLabel = "VERSION", description = "With --stack hf and --method qlora: the bitsandbytes release the run uses, when older "
            + "than " + PlanOptions.PytorchSettings.BNB_FIXED_SAVED_INPUT + " (before July 2024 its 4-bit matmul kept every layer's input for backward; default: a current release).") String bitsandbytes;
    @Option(names = "--compile", description = "The decoder blocks run under torch.compile (torchtune's compile: True, the HF Trainer's torch_compile): "
            + "its partitioner recomputes silu(gate) and the norms' fp32 upcasts in backward and casts a shared input once; pytorch runtime.") boolean compile;
    @Option(names = "--loss", description = "full (the whole logits at once) or chunked (torchtune's CEWithChunkedOutputLoss) (default: chunked for --stack torchtune, else full).") String loss;
    @Option(names = "--no-double-quant", description = "NF4 without double quantisation of the block constants (bitsandbytes bnb_4bit_use_double_quant=False).") boolean noDoubleQuant;
    @Option(names = "--device", description = "Device preset: " + "a10g, a100-40gb, a100-80gb, h100-80gb, h200, l4, l40s, rtx-a6000, rtx3090, rtx4090, t4, v100-16gb, v100-32gb, cpu (default: cpu).") String device;
    @Option(names = "--memory", description = "Memory per device instead of a preset, e.g. 24GiB.") String memory;
    @Option(names = "--inference", description = "Plan generation instead of training: --seq-len is the prompt, plus --max-new-tokens.") boolean inference;
    @Option(names = "--max-new-tokens", defaultValue = "256", description = "With --inference: tokens generated after the prompt (default: ${DEFAULT-VALUE}).") int maxNewTokens;
    @Option(names = "--max-batch", description = "Also report the largest micro-batch that fits.") boolean maxBatch;
    @Option(names = "--max-seq-len", description = "Also report the longest sequence that fits.") boolean maxSeqLen;
    @Option(names = "--recommend", description = "Search techniques for plans that fit, ranked by expected slowdown.") boolean recommend;
    @Option(names = "--formula", description = "Print a rule of thumb beside the component model: seed.") String formula;
    @Option(names = "--json", description = "Print one JSON object.") boolean json;

    @Override
    public Integer call() {
        LlamaConfig config = resolveModel(model);
        Device dev = resolveDevice();
        PlanOptions.Runtime rt = runtime != null ? PlanOptions.parse(PlanOptions.Runtime.class, "--runtime", runtime)
                : dev.gpu() ? PlanOptions.Runtime.PYTORCH : PlanOptions.Runtime.LLAMAFIT;
        PlanOptions.Attention att = attention != null ? PlanOptions.parse(PlanOptions.Attention.class, "--attention", attention)
                : rt == PlanOptions.Runtime.PYTORCH ? PlanOptions.Attention.FLASH : PlanOptions.Attention.EAGER;
        PlanOptions.Stack st = PlanOptions.parse(PlanOptions.Stack.class, "--stack", stack);
        PlanOptions.Sharding sh = sharding != null ? PlanOptions.parse(PlanOptions.Sharding.class, "--sharding", sharding)
                : PlanOptions.Sharding.defaultFor(technique.zero, technique.workers);
        PlanOptions.BaseDtype weightsDtype = inference ? technique.parsedBaseDtype() : null;
        if (inference && (optimizerInBackward || pagedOptimizer || loss != null || shardEmbeddings || optimizerImpl != null || keepOutputs || bitsandbytes != null || compile
                || fsdpWrap != null || noSync || gradAccum != 1 || activationOffload))
            throw new IllegalArgumentException("--optimizer-in-backward, --paged-optimizer, --optimizer-impl, --keep-outputs, --bitsandbytes, --compile, --loss, --shard-embeddings, "
                    + "--fsdp-wrap, --no-sync, --grad-accum and --activation-offload describe training, not --inference");
        boolean blockUnits = fsdpWrap != null && switch (fsdpWrap.toLowerCase(Locale.ROOT)) {
            case "blocks" -> true;
            case "adapters" -> false;
            default -> throw new IllegalArgumentException("--fsdp-wrap must be adapters or blocks, got '" + fsdpWrap + "'");
        };
        if ((optimizerImpl != null || keepOutputs || bitsandbytes != null || compile) && rt != PlanOptions.Runtime.PYTORCH)
            throw new IllegalArgumentException("--optimizer-impl, --keep-outputs, --bitsandbytes and --compile describe a PyTorch training loop: they need --runtime pytorch");
        if (shardEmbeddings && (sh != PlanOptions.Sharding.FSDP || technique.zero != 3))
            throw new IllegalArgumentException("--shard-embeddings wraps FSDP units: it needs --sharding fsdp --zero 3");
        PlanOptions o = (inference ? technique.toPlanOptions(rt, att, st, sh, null) : technique.toPlanOptions(rt, att, st, sh))
                .withPytorch(new PlanOptions.PytorchSettings(optimizerInBackward, pagedOptimizer, !noDoubleQuant, shardEmbeddings,
                        loss == null ? null : PlanOptions.parse(PlanOptions.Loss.class, "--loss", loss),
                        optimizerImpl == null ? null : PlanOptions.parse(PlanOptions.OptimizerImpl.class, "--optimizer-impl", optimizerImpl),
                        keepOutputs, bitsandbytes != null && PlanOptions.PytorchSettings.bnbSavesInputs(bitsandbytes), compile, blockUnits, noSync, gradAccum, activationOffload));
        if (bitsandbytes != null && (o.stack() != PlanOptions.Stack.HF || o.baseDtype() != PlanOptions.BaseDtype.NF4))
            throw new IllegalArgumentException("--bitsandbytes describes the 4-bit base of the HF stack: it needs --stack hf with --method qlora "
                    + "(torchtune quantises with torchao)");
        // The options resolve --method qlora to an NF4 base; inference carries the weights' dtype beside them.
        if (noDoubleQuant && (inference ? weightsDtype : o.baseDtype()) != PlanOptions.BaseDtype.NF4)
            throw new IllegalArgumentException("--no-double-quant concerns NF4 block constants: it needs --method qlora or --base-dtype nf4");
        if (inference && (recommend || formula != null)) throw new IllegalArgumentException("--recommend and --formula plan training, not --inference");
        java.util.function.Function<PlanOptions, MemoryPlan> planner = inference
                ? x -> InferencePlanner.plan(config, x, weightsDtype, maxNewTokens, dev)
                : x -> Planner.plan(config, x, dev);
        MemoryPlan plan = planner.apply(o);
        Integer mb = maxBatch ? maxFitting(config, o, planner, true) : null;
        Integer ml = maxSeqLen ? maxFitting(config, o, planner, false) : null;
        List<Recommender.Recommendation> recs = recommend ? Recommender.recommend(config, o, dev, 8) : List.of();
        FormulaSeed seed = null;
        if (formula != null) {
            if (!formula.equals("seed")) throw new IllegalArgumentException("--formula must be seed, got '" + formula + "'");
            double bytes = o.baseDtype() == null ? o.precision().computeBytes() : o.baseDtype() == PlanOptions.BaseDtype.INT8 ? 1
                    : o.baseDtype() == PlanOptions.BaseDtype.NF4 ? 0.5 : o.baseDtype().floatBytes();
            seed = FormulaSeed.of(PytorchProfile.counts(config).total(), bytes, config, o.seqLen());
        }
        PrintWriter out = spec.commandLine().getOut();
        if (json) {
            Map<String, Object> j = toJson(plan, mb, ml, recs, seed);
            j.put("mode", inference ? "inference" : "training");
            out.println(Json.write(j));
        } else print(out, config, plan, mb, ml, recs, seed, inference, recommend);
        return Main.OK;
    }

    static LlamaConfig resolveModel(String model) {
        Path p = Path.of(model);
        if (Files.isDirectory(p)) return ModelFolder.readConfig(p);
        if (Files.isRegularFile(p)) return ConfigJson.read(p);
        if (model.contains("/") || model.endsWith(".json")) throw InputException.at(p, "no such model folder or config.json");
        return ModelPresets.load(model);
    }

    Device resolveDevice() {
        if (memory != null) {
            long bytes = ByteSize.parse(memory);
            if (bytes <= 0) throw new IllegalArgumentException("--memory must be > 0, got " + memory);
            boolean gpu = device != null ? !device.equals("cpu") : runtime != null && runtime.equals("pytorch");
            return gpu ? Device.gpu("custom", bytes) : Devices.cpu(bytes, dev.llamafit.kernels.Parallel.threads());
        }
        if (device == null || device.equalsIgnoreCase("cpu")) return Devices.cpu(dev.llamafit.memory.ProcessMemory.physicalRamBytes(), dev.llamafit.kernels.Parallel.threads());
        return Devices.gpu(device);
    }

    /** Largest batch (or sequence length) that fits: doubling, then bisection. 0 when even 1 does not fit. */
    static int maxFitting(LlamaConfig c, PlanOptions o, java.util.function.Function<PlanOptions, MemoryPlan> planner, boolean batch) {
        int limit = batch ? 1 << 16 : c.maxPositions();
        java.util.function.IntPredicate fits = v -> planner.apply(batch ? o.withBatch(v) : o.withSeqLen(v)).fits();
        if (!fits.test(1)) return 0;
        int lo = 1, hi = 2;
        while (hi <= limit && fits.test(hi)) { lo = hi; hi *= 2; }
        hi = Math.min(hi, limit + 1);
        while (hi - lo > 1) { int mid = (lo + hi) >>> 1; if (fits.test(mid)) lo = mid; else hi = mid; }
        return lo;
    }

    static Map<String, Object> toJson(MemoryPlan p, Integer mb, Integer ml, List<Recommender.Recommendation> recs, FormulaSeed seed) {
        Map<String, Object> j = new LinkedHashMap<>();
        Map<String, Object> devj = new LinkedHashMap<>();
        devj.put("name", p.device().name());
        devj.put("memory_bytes", p.device().memoryBytes());
        devj.put("peak_bytes", p.devicePeakBytes());
        devj.put("headroom_bytes", p.headroomBytes());
        devj.put("peak_phase", p.peakPhase().key());
        if (p.options().runtime() == PlanOptions.Runtime.PYTORCH) {
            // The same peak as each PyTorch measurement reports it (peak_bytes is the nvidia-smi one).
            devj.put("max_memory_allocated_bytes", p.peak(Column.DEVICE, Metric.ALLOCATED));
            devj.put("max_memory_reserved_bytes", p.peak(Column.DEVICE, Metric.RESERVED));
            devj.put("nvidia_smi_bytes", p.peak(Column.DEVICE, Metric.NVIDIA_SMI));
        }
        j.put("device", devj);
        j.put("host", Map.of("peak_bytes", p.hostPeakBytes()));
        j.put("disk_bytes", p.diskBytes());
        j.put("fits", p.fits());
        j.put("runtime", PlanOptions.name(p.options().runtime()));
        PlanOptions o = p.options();
        Map<String, Object> par = new LinkedHashMap<>();
        par.put("workers", o.workers());
        par.put("zero", o.zero());
        par.put("sharding", PlanOptions.name(o.sharding()));
        par.put("offload", PlanOptions.name(o.offload()));
        j.put("parallelism", par);
        List<Map<String, Object>> comps = new ArrayList<>();
        for (Component c : p.components()) {
            Map<String, Object> m = new LinkedHashMap<>();
            m.put("name", c.name());
            m.put("column", c.column().key());
            m.put("category", c.category().key());
            m.put("bytes", c.bytes());
            Map<String, Long> ph = new LinkedHashMap<>();
            for (Phase f : Phase.values()) ph.put(f.key(), c.bytes(f));
            m.put("bytes_by_phase", ph);
            m.put("formula", c.formula());
            comps.add(m);
        }
        j.put("components", comps);
        Map<String, Long> phases = new LinkedHashMap<>();
        for (Phase f : Phase.values()) phases.put(f.key(), p.bytes(Column.DEVICE, f, dev.llamafit.plan.Metric.NVIDIA_SMI));
        j.put("device_bytes_by_phase", phases);
        if (mb != null) j.put("max_batch_size", mb);
        if (ml != null) j.put("max_seq_len", ml);
        if (!recs.isEmpty()) {
            List<Map<String, Object>> rs = new ArrayList<>();
            for (Recommender.Recommendation r : recs)
                rs.add(Map.of("slowdown", r.slowdown(), "peak_bytes", r.plan().devicePeakBytes(), "grad_accum", r.gradAccum(), "steps", r.steps()));
            j.put("recommendations", rs);
        }
        if (seed != null) j.put("formula_seed", Map.of("fixed_gb", seed.fixedGb(), "per_sample_gb", seed.perSampleGb(),
                "weights_gb", seed.weightsGb(), "gradients_gb", seed.gradientsGb(), "optimizer_gb", seed.optimizerGb(), "overhead_gb", seed.overheadGb()));
        j.put("notes", p.notes());
        return j;
    }

    /** "full", or "lora r 8 on q_proj,v_proj" with the base's storage when it is not the compute dtype ("qlora r 64 on all-linear, nf4 base"). */
    static String method(PlanOptions o) {
        if (o.method() == PlanOptions.Method.FULL) return "full";
        List<String> all = dev.llamafit.model.LoraConfig.parseTargets("all-linear");
        String targets = o.loraTargets().size() == all.size() && o.loraTargets().containsAll(all) ? "all-linear" : String.join(",", o.loraTargets());
        return PlanOptions.name(o.method()) + " r " + o.loraRank() + " on " + targets + (o.baseDtype() == null ? "" : ", " + PlanOptions.name(o.baseDtype()) + " base");
    }

    /** ", 8 workers, ZeRO-3 (fsdp), offload cpu" for a run over several workers or with a ZeRO stage or offload; else "". */
    static String parallelism(PlanOptions o) {
        if (o.workers() == 1 && o.zero() == 0 && o.offload() == PlanOptions.Offload.NONE) return "";
        String s = ", " + o.workers() + (o.workers() == 1 ? " worker" : " workers");
        if (o.zero() > 0) s += ", ZeRO-" + o.zero() + " (" + PlanOptions.name(o.sharding()) + ")";
        else if (o.workers() > 1) s += " (" + (o.sharding() == PlanOptions.Sharding.DDP ? "ddp" : PlanOptions.name(o.sharding()) + ", no sharding") + ")";
        if (o.offload() != PlanOptions.Offload.NONE) s += ", offload " + PlanOptions.name(o.offload());
        return s;
    }

    static void print(PrintWriter out, LlamaConfig c, MemoryPlan p, Integer mb, Integer ml, List<Recommender.Recommendation> recs, FormulaSeed seed,
                      boolean inference, boolean searched) {
        PlanOptions o = p.options();
        if (inference) out.printf(Locale.ROOT, "plan: inference, %s, B=%d prompt %d, runtime %s, device %s (%s)%n", PlanOptions.name(o.precision()),
                o.batchSize(), o.seqLen(), PlanOptions.name(o.runtime()), p.device().name(), ByteSize.format(p.device().memoryBytes()));
        else out.printf(Locale.ROOT, "plan: %s, %s, %s, B=%d T=%d%s, runtime %s, device %s (%s)%n", method(o), PlanOptions.name(o.precision()),
                PlanOptions.name(o.optimizer()), o.batchSize(), o.seqLen(), (!o.gradientCheckpointing() ? "" : o.checkpointEvery() == 1 ? ", checkpointing" : ", checkpointing every " + o.checkpointEvery() + " blocks")
                        + parallelism(o), PlanOptions.name(o.runtime()), p.device().name(), ByteSize.format(p.device().memoryBytes()));
        out.printf("%-28s %12s %12s %12s  %s%n", "component", "device", "host", "disk", "category");
        for (Component comp : p.components()) {
            String[] cols = {"", "", ""};
            cols[comp.column().ordinal()] = ByteSize.format(comp.bytes());
            out.printf("%-28s %12s %12s %12s  %s%n", comp.name(), cols[0], cols[1], cols[2], comp.category().key());
        }
        if (!inference)
            for (Phase f : Phase.values())
                out.printf("  at %-16s %12s%n", f.key(), ByteSize.format(p.bytes(Column.DEVICE, f, dev.llamafit.plan.Metric.NVIDIA_SMI)));
        out.printf("peak %s (%s), host %s, disk %s; headroom %s: %s%n", ByteSize.format(p.devicePeakBytes()), inference ? "prefill" : p.peakPhase().key(),
                ByteSize.format(p.hostPeakBytes()), ByteSize.format(p.diskBytes()), ByteSize.format(p.headroomBytes()), p.fits() ? "fits" : "DOES NOT FIT");
        if (mb != null) out.println("max batch size: " + mb);
        if (ml != null) out.println("max sequence length: " + ml);
        for (String n : p.notes()) out.println("note: " + n);
        if (seed != null) {
            out.printf(Locale.ROOT, "formula seed: %.1f + %.1f + %.1f + %.1f = %.1f GB fixed, %.2f GB per %d-token sample; batch %d on this device%n",
                    seed.weightsGb(), seed.gradientsGb(), seed.optimizerGb(), seed.overheadGb(), seed.fixedGb(), seed.perSampleGb(), o.seqLen(),
                    seed.batch(FormulaSeed.asRuleReadsIt(p.device().memoryBytes() / 1e9)));
            out.printf(Locale.ROOT, "component model: %.1f GB peak (%s)%n", p.devicePeakBytes() / 1e9, mb != null ? "max batch " + mb : "at B=" + o.batchSize());
            out.println(FormulaSeed.differences());
        }
        int i = 1;
        for (Recommender.Recommendation r : recs) {
            out.printf(Locale.ROOT, "%d. ×%.2f time: %s%n", i++, r.slowdown(), String.join("; ", r.steps()));
        }
        if (!recs.isEmpty() || !p.fits()) { if (recs.isEmpty() && !p.fits()) out.println(searched ? "--recommend: no searched plan fits" + (o.runtime() == PlanOptions.Runtime.LLAMAFIT
                ? " (the llamafit runtime trains fp32 full or LoRA): lower --seq-len, use a smaller model or more memory" : "")
                : inference ? "to fit: a shorter --seq-len or --max-new-tokens, a smaller --batch-size, --base-dtype int8|nf4, or a larger device"
                : "try --recommend for plans that fit"); }
    }
}
