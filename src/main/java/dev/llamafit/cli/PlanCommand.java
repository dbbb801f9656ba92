// `llamafit plan`: the memory breakdown of a training run before it starts, max batch / length, advice, the seed formula.
package dev.llamafit.cli;

import java.io.PrintWriter;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.concurrent.Callable;
import java.util.function.BiFunction;

import dev.llamafit.io.ConfigJson;
import dev.llamafit.io.DidYouMean;
import dev.llamafit.io.InputException;
import dev.llamafit.io.Json;
import dev.llamafit.io.ModelFolder;
import dev.llamafit.io.ModelPresets;
import dev.llamafit.kernels.Parallel;
import dev.llamafit.memory.ByteSize;
import dev.llamafit.memory.ProcessMemory;
import dev.llamafit.model.LinearModule;
import dev.llamafit.model.LlamaConfig;
import dev.llamafit.model.Technique;
import dev.llamafit.quant.Quantization;
import dev.llamafit.plan.Column;
import dev.llamafit.plan.Component;
import dev.llamafit.plan.Device;
import dev.llamafit.plan.Devices;
import dev.llamafit.plan.InferencePlanner;
import dev.llamafit.plan.MemoryPlan;
import dev.llamafit.plan.Metric;
import dev.llamafit.plan.Phase;
import dev.llamafit.plan.Planner;
import dev.llamafit.plan.DiskOffloadPlan;
import dev.llamafit.plan.Recommender;
import dev.llamafit.plan.pytorch.FormulaSeed;
import dev.llamafit.plan.pytorch.GpuDevices;
import dev.llamafit.plan.pytorch.PytorchInference;
import dev.llamafit.plan.pytorch.PytorchOptions;
import dev.llamafit.plan.pytorch.PytorchProfile;
import dev.llamafit.plan.pytorch.PytorchRecommender;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;
import picocli.CommandLine.Spec;
import picocli.CommandLine.Model.CommandSpec;

@Command(name = "plan", mixinStandardHelpOptions = true, sortOptions = false,
        description = "Plan the memory of a training run (or of generation) in this engine (--runtime llamafit) or in PyTorch on CUDA GPUs (--runtime pytorch): breakdown by component and column, peak, headroom, max batch, advice.")
final class PlanCommand implements Callable<Integer> {
    @Spec CommandSpec spec;

    @Option(names = "--model", description = "Model folder, config.json, or preset (e.g. llama-3.1-8b; see --list-presets). Required unless --list-presets.") String model;
    @Option(names = "--list-presets", description = "List the model presets (parameters, fp32/bf16 size) and the device presets (memory), then exit.") boolean listPresets;
    @Mixin TechniqueOptions.Plan technique;
    @Option(names = "--precision", defaultValue = "fp32", description = "fp32, bf16, fp16 or bf16-pure (default: ${DEFAULT-VALUE}).") String precision;
    @Option(names = "--base-dtype", description = "Frozen LoRA base storage (pytorch runtime): fp32, bf16, fp16 (as loaded), int8 or nf4 (default: the compute dtype).") String baseDtype;
    @Option(names = "--zero", defaultValue = "0", description = "ZeRO stage 0..3 (pytorch runtime) (default: ${DEFAULT-VALUE}).") int zero;
    @Option(names = "--workers", defaultValue = "1", description = "Data-parallel workers / GPUs (pytorch runtime) (default: ${DEFAULT-VALUE}).") int workers;
    @Option(names = "--offload", defaultValue = "none", description = "none, disk (both runtimes; llamafit: the optimizer state, as train --offload disk), or cpu (pytorch runtime) (default: ${DEFAULT-VALUE}).") String offload;
    @Option(names = "--offload-window", defaultValue = "64MiB", description = "With --offload disk (llamafit runtime): optimizer state in memory at once, as train's (default: ${DEFAULT-VALUE}).") String offloadWindow;
    @Option(names = "--runtime", description = "llamafit (CPU) or pytorch (CUDA); default: pytorch for a GPU device, else llamafit.") String runtime;
    @Option(names = "--attention", description = "eager or flash (default: flash).") String attention;
    @Option(names = "--stack", defaultValue = "hf", description = "PyTorch stack conventions (pytorch runtime): hf or torchtune (default: ${DEFAULT-VALUE}).") String stack;
    @Option(names = "--sharding", description = "(pytorch runtime) With --zero: deepspeed (ZeRO) or fsdp (PyTorch FSDP); with --zero 0 and --workers > 1 also ddp (DistributedDataParallel, whose buckets copy the gradients) (default: ddp for --zero 0 with --workers > 1, what torchrun and accelerate launch run; otherwise deepspeed).") String sharding;
    @Option(names = "--shard-embeddings", description = "(pytorch runtime) With --sharding fsdp: wrap the embedding and LM head as units of their own (torchtune's custom_sharded_layers) instead of leaving them in the root unit, which stays gathered through forward and backward.") boolean shardEmbeddings;
    @Option(names = "--fsdp-wrap", description = "(pytorch runtime) With --sharding fsdp and adapters: adapters (each adapter an FSDP unit of its own, PEFT's fsdp_auto_wrap_policy) or blocks "
            + "(each decoder block one unit with its adapters, use_orig_params=True, as Lightning Fabric's FSDPStrategy(auto_wrap_policy={Block}) wraps: "
            + "the unit's gradient then covers its frozen weights too) (default: adapters).") String fsdpWrap;
    @Option(names = "--grad-accum", defaultValue = "1", description = "Micro-steps per optimizer step (gradient accumulation): from the second on, "
            + "forward and backward run beside the gradients summed so far (default: ${DEFAULT-VALUE}); the llamafit engine keeps its gradients "
            + "for the whole run, so there it changes no memory (both runtimes).") int gradAccum;
    @Option(names = "--activation-offload", description = "The tensors the forward saves go to pinned host memory and come back in backward "
            + "(torchtune's enable_activation_offloading); pytorch runtime.") boolean activationOffload;
    @Option(names = "--no-sync", description = "(pytorch runtime) With --sharding fsdp: gradient accumulation runs inside FSDP's no_sync() (Lightning Fabric's no_backward_sync, "
            + "accelerate without sync_each_batch), so between optimizer steps each worker holds unsharded gradients.") boolean noSync;
    @Option(names = "--optimizer-in-backward", description = "Step each parameter's optimizer as soon as its gradient is ready and free the gradient (torchtune's optimizer_in_bwd); pytorch runtime.") boolean optimizerInBackward;
    @Option(names = "--paged-optimizer", description = "Optimizer states in CUDA unified memory, evicted to the host under pressure (bitsandbytes Paged*); pytorch runtime.") boolean pagedOptimizer;
    @Option(names = "--optimizer-impl", description = "How torch.optim runs the AdamW step: fused (fused=True: the HF Trainer's default with torch >= 2.8, "
            + "torchtune's configs, DeepSpeed's FusedAdam) or foreach (torch.optim.AdamW's own default, the Trainer's adamw_torch: "
            + "its step holds one more state's worth of temporaries) (default: fused); pytorch runtime.") String optimizerImpl;
    @Option(names = "--keep-outputs", description = "(pytorch runtime) With --stack hf: the training loop holds the model's output (its logits) through backward, "
            + "as a hand-written 'out = model(...); out.loss.backward()' does; the HF Trainer returns the loss alone and frees them.") boolean keepOutputs;
    @Option(names = "--bitsandbytes", paramLabel = "VERSION", description = "(pytorch runtime) With --stack hf and --method qlora: the bitsandbytes release the run uses, when older "
            + "than " + PytorchOptions.PytorchSettings.BNB_FIXED_SAVED_INPUT + " (before July 2024 its 4-bit matmul kept every layer's input for backward; default: a current release).") String bitsandbytes;
    @Option(names = "--compile", description = "The decoder blocks run under torch.compile (torchtune's compile: True, the HF Trainer's torch_compile): "
            + "its partitioner recomputes silu(gate) and the norms' fp32 upcasts in backward and casts a shared input once; pytorch runtime.") boolean compile;
    @Option(names = "--loss", description = "(pytorch runtime) full (the whole logits at once) or chunked (torchtune's CEWithChunkedOutputLoss) (default: chunked for --stack torchtune, else full).") String loss;
    @Option(names = "--no-double-quant", description = "(pytorch runtime) NF4 without double quantisation of the block constants (bitsandbytes bnb_4bit_use_double_quant=False).") boolean noDoubleQuant;
    @Option(names = "--device", completionCandidates = DeviceNames.class, description = "Device preset: ${COMPLETION-CANDIDATES} (default: cpu).") String device;
    @Option(names = "--memory", description = "Memory per device instead of a preset, e.g. 24GiB.") String memory;
    @Option(names = "--inference", description = "Plan generation instead of training: --seq-len is the prompt, plus --max-new-tokens.") boolean inference;
    @Option(names = "--max-new-tokens", defaultValue = "256", description = "With --inference: tokens generated after the prompt (default: ${DEFAULT-VALUE}).") int maxNewTokens;
    @Option(names = "--max-batch", description = "Also report the largest micro-batch that fits.") boolean maxBatch;
    @Option(names = "--max-seq-len", description = "Also report the longest sequence that fits.") boolean maxSeqLen;
    @Option(names = "--recommend", description = "Search techniques for plans that fit, ranked by expected slowdown.") boolean recommend;
    @Option(names = "--formula", description = "Print a rule of thumb beside the component model: seed.") String formula;
    @Option(names = "--json", description = "Print one JSON object.") boolean json;

    /** Every --device name, for the help. */
    static final class DeviceNames implements Iterable<String> {
        @Override public java.util.Iterator<String> iterator() { return GpuDevices.deviceNames().iterator(); }
    }

    /**
     * What is planned, whichever runtime: the technique and micro-batch, and for PyTorch its options (null for the
     * engine). Printing and JSON read this, not the plan.
     */
    record Request(boolean pytorch, Technique technique, int batch, int seqLen, PytorchOptions options) {}

    /** A recommendation of either runtime's search, as printed. */
    record Advice(double slowdown, MemoryPlan plan, int gradAccum, List<String> steps) {}

    /** What one `plan` computes, before it is printed or turned into JSON. */
    record Outcome(Request req, MemoryPlan plan, Integer maxBatch, Integer maxSeqLen, List<Advice> recs, FormulaSeed seed) {}

    @Override
    public Integer call() {
        PrintWriter out = spec.commandLine().getOut();
        if (listPresets) {
            listPresets(out);
            return Main.OK;
        }
        if (json) out.println(Json.write(jsonObject(outcome())));
        else {
            Outcome o = outcome();
            print(out, o.req(), o.plan(), o.maxBatch(), o.maxSeqLen(), o.recs(), o.seed(), inference, recommend);
        }
        return Main.OK;
    }

    /**
     * The object `plan ARGS --json` prints, for {@code args} (--json itself may be left out): the one code path that
     * the CLI and `llamafit ui`'s /api/plan share. Bad flags throw {@link InputException} with the message the CLI
     * prints after "llamafit: error: ".
     */
    static Map<String, Object> json(List<String> args) {
        PlanCommand c = new PlanCommand();
        try {
            new picocli.CommandLine(c).parseArgs(args.toArray(String[]::new));
        } catch (picocli.CommandLine.ParameterException e) {
            throw new InputException(e.getMessage(), e);
        }
        if (c.listPresets) throw new InputException("--list-presets prints a table, not a plan");
        return c.jsonObject(c.outcome());
    }

    /** The JSON object of an outcome: the same for `plan --json` and the web page. */
    Map<String, Object> jsonObject(Outcome o) {
        Map<String, Object> j = toJson(o.req(), o.plan(), o.maxBatch(), o.maxSeqLen(), o.recs(), o.seed());
        j.put("mode", inference ? "inference" : "training");
        return j;
    }

    /** Checks the flags (all problems in one InputException) and plans. */
    Outcome outcome() {
        if (model == null) throw new InputException("plan needs --model (a model folder, config.json or preset; see --list-presets)");
        LlamaConfig config = resolveModel(model);
        Request req;
        BiFunction<Integer, Integer, MemoryPlan> planner;
        Technique.BaseDtype weightsDtype;
        // Everything the flags say is checked here, and all that is wrong is said in one message (exit 2).
        List<String> errors = new ArrayList<>();
        Device dev = Main.userInput(this::resolveDevice, errors);
        boolean pt = runtime != null ? Main.userInput(() -> Technique.parse(Runtime.class, "--runtime", runtime), errors) == Runtime.PYTORCH
                : dev != null && dev.gpu();
        weightsDtype = inference ? Main.userInput(this::parsedBaseDtype, errors) : null;
        if (inference) {
            List<String> training = new ArrayList<>();
            if (optimizerInBackward) training.add("--optimizer-in-backward");
            if (pagedOptimizer) training.add("--paged-optimizer");
            if (optimizerImpl != null) training.add("--optimizer-impl");
            if (keepOutputs) training.add("--keep-outputs");
            if (bitsandbytes != null) training.add("--bitsandbytes");
            if (compile) training.add("--compile");
            if (loss != null) training.add("--loss");
            if (shardEmbeddings) training.add("--shard-embeddings");
            if (fsdpWrap != null) training.add("--fsdp-wrap");
            if (noSync) training.add("--no-sync");
            if (gradAccum != 1) training.add("--grad-accum");
            if (activationOffload) training.add("--activation-offload");
            if (recommend) training.add("--recommend");
            if (formula != null) training.add("--formula");
            if (!training.isEmpty()) errors.add(String.join(", ", training) + " describe training, not --inference");
        }
        if (!pt) {
            // The engine: what it cannot run is named, all of it, with what to give instead.
            List<String> pytorchOnly = new ArrayList<>();
            Technique parsed = Main.userInput(() -> technique.technique(Main.userInput(() -> Technique.parse(Technique.Precision.class, "--precision", precision), null),
                    inference ? null : parsedBaseDtype(), 16, false, gradAccum).withAttention(AttentionOption.parse(attention)), errors);
            // The engine runs NF4 with or without double quantisation (its block constants are sized exactly either way).
            boolean engineNf4 = !inference && parsed != null && parsed.baseDtype() == Technique.BaseDtype.NF4;
            Technique t = engineNf4 && noDoubleQuant ? parsed.withQuantization(Quantization.nf4(false)) : parsed;
            if (t != null) pytorchOnly.addAll(inference ? t.notImplemented().stream().filter(x -> !x.startsWith("--base-dtype")).toList() : t.notImplemented());
            if (inference && weightsDtype != null && weightsDtype != Technique.BaseDtype.FP32) pytorchOnly.add("--base-dtype " + Technique.name(weightsDtype));
            if (zero != 0) pytorchOnly.add("--zero " + zero);
            if (workers != 1) pytorchOnly.add("--workers " + workers);
            // The engine offloads the optimizer state to disk (train --offload disk); cpu offload needs a GPU backend.
            boolean engineDisk = offload.equalsIgnoreCase("disk") && !inference;
            if (!offload.equalsIgnoreCase("none") && !engineDisk) pytorchOnly.add("--offload " + offload);
            if (optimizerInBackward) pytorchOnly.add("optimizer in backward");
            if (pagedOptimizer) pytorchOnly.add("paged optimizer states");
            if (activationOffload) pytorchOnly.add("activation offloading");
            if (optimizerImpl != null) pytorchOnly.add("--optimizer-impl");
            if (keepOutputs) pytorchOnly.add("--keep-outputs");
            if (bitsandbytes != null) pytorchOnly.add("--bitsandbytes");
            if (compile) pytorchOnly.add("--compile");
            if (!inference) {
                if (loss != null) pytorchOnly.add("--loss");
                if (shardEmbeddings) pytorchOnly.add("--shard-embeddings");
                if (fsdpWrap != null) pytorchOnly.add("--fsdp-wrap");
                if (noSync) pytorchOnly.add("--no-sync");
            }
            if (noDoubleQuant && !engineNf4) pytorchOnly.add("--no-double-quant");
            if (sharding != null) pytorchOnly.add("--sharding " + sharding);
            if (inference && t != null && (t.adapters() || t.gradientCheckpointing()))
                errors.add("--inference plans generation with one model: --method lora|qlora and --gradient-checkpointing are training techniques "
                        + "(merge an adapter first)");
            if (!pytorchOnly.isEmpty())
                errors.add(Planner.notImplementedMessage(pytorchOnly) + (dev != null && !dev.gpu() ? " and a GPU --device (" + String.join(", ", GpuDevices.names())
                        + ") or --memory SIZE" : ""));
            else if (dev != null && dev.gpu())
                errors.add("the llamafit runtime " + (inference ? "runs" : "trains") + " on the CPU; plan a GPU with --runtime pytorch, or use --device cpu / --memory SIZE");
            if (!errors.isEmpty() || t == null) throw new InputException(String.join("; ", errors));
            req = new Request(false, t, technique.batchSize, technique.seqLen, null);
            planner = inference ? (b, len) -> InferencePlanner.plan(config, b, len, maxNewTokens, dev, t.attention())
                    : engineDisk ? (b, len) -> DiskOffloadPlan.of(Planner.plan(config, t, b, len, dev), config, t, b, len, offloadWindowBytes())
                    : (b, len) -> Planner.plan(config, t, b, len, dev);
        } else {
            if (dev != null && !dev.gpu())
                errors.add("the pytorch runtime plans CUDA GPUs; pick a GPU --device (" + String.join(", ", GpuDevices.names()) + ") or --memory SIZE (or --runtime llamafit for the CPU)");
            PytorchOptions o = Main.userInput(() -> pytorchOptions(weightsDtype), errors);
            if (!errors.isEmpty() || o == null) throw new InputException(String.join("; ", errors));
            req = new Request(true, o.technique(), o.batchSize(), o.seqLen(), o);
            planner = inference ? (b, len) -> PytorchInference.plan(config, o.withBatch(b).withSeqLen(len), weightsDtype, maxNewTokens, dev)
                    : (b, len) -> PytorchProfile.plan(config, o.withBatch(b).withSeqLen(len), dev);
        }
        // Shapes the model cannot take (a rank above a matrix, a prompt past the context) are user input too.
        MemoryPlan plan = Main.userInput(() -> planner.apply(req.batch(), req.seqLen()));
        Integer mb = maxBatch ? maxFitting(config, req, planner, true) : null;
        Integer ml = maxSeqLen ? maxFitting(config, req, planner, false) : null;
        List<Advice> recs = !recommend ? List.of() : req.pytorch()
                ? PytorchRecommender.recommend(config, req.options(), dev, 8).stream().map(r -> new Advice(r.slowdown(), r.plan(), r.gradAccum(), r.steps())).toList()
                : Recommender.recommend(config, req.technique(), req.batch(), req.seqLen(), dev, 8).stream()
                .map(r -> new Advice(r.slowdown(), r.plan(), r.gradAccum(), r.steps())).toList();
        FormulaSeed seed = null;
        if (formula != null) {
            if (!formula.equals("seed")) throw new InputException("--formula must be seed, got '" + formula + "'");
            Technique t = req.technique();
            double bytes = t.baseDtype() == null ? t.precision().computeBytes() : t.baseDtype() == Technique.BaseDtype.INT8 ? 1
                    : t.baseDtype() == Technique.BaseDtype.NF4 ? 0.5 : t.baseDtype().floatBytes();
            seed = FormulaSeed.of(PytorchProfile.counts(config).total(), bytes, config, req.seqLen());
        }
        return new Outcome(req, plan, mb, ml, recs, seed);
    }

    private long offloadWindowBytes() {
        long w = Main.userInput(() -> dev.llamafit.memory.ByteSize.parse(offloadWindow));
        if (w < 1) throw new IllegalArgumentException("--offload-window must be > 0, got " + offloadWindow);
        return w;
    }

    /** The runtimes `plan` can plan for. */
    enum Runtime { LLAMAFIT, PYTORCH }

    /** --base-dtype parsed, or null. */
    Technique.BaseDtype parsedBaseDtype() {
        return baseDtype == null ? null : Technique.parse(Technique.BaseDtype.class, "--base-dtype", baseDtype);
    }

    /** The PyTorch options the flags describe; IllegalArgumentException for what does not go together. */
    PytorchOptions pytorchOptions(Technique.BaseDtype weightsDtype) {
        PytorchOptions.Attention att = attention != null ? Technique.parse(PytorchOptions.Attention.class, "--attention", attention) : PytorchOptions.Attention.FLASH;
        PytorchOptions.Stack st = Technique.parse(PytorchOptions.Stack.class, "--stack", stack);
        PytorchOptions.Sharding sh = sharding != null ? Technique.parse(PytorchOptions.Sharding.class, "--sharding", sharding)
                : PytorchOptions.Sharding.defaultFor(zero, workers);
        boolean blockUnits = fsdpWrap != null && switch (fsdpWrap.toLowerCase(Locale.ROOT)) {
            case "blocks" -> true;
            case "adapters" -> false;
            default -> throw new IllegalArgumentException("--fsdp-wrap must be adapters or blocks, got '" + fsdpWrap + "'");
        };
        if (shardEmbeddings && (sh != PytorchOptions.Sharding.FSDP || zero != 3))
            throw new IllegalArgumentException("--shard-embeddings wraps FSDP units: it needs --sharding fsdp --zero 3");
        Technique t = technique.technique(Technique.parse(Technique.Precision.class, "--precision", precision), inference ? null : parsedBaseDtype(),
                16, false, gradAccum);
        PytorchOptions o = new PytorchOptions(t, technique.batchSize, technique.seqLen, zero, workers,
                Technique.parse(PytorchOptions.Offload.class, "--offload", offload), att, st, sh,
                new PytorchOptions.PytorchSettings(optimizerInBackward, pagedOptimizer, !noDoubleQuant, shardEmbeddings,
                        loss == null ? null : Technique.parse(PytorchOptions.Loss.class, "--loss", loss),
                        optimizerImpl == null ? null : Technique.parse(PytorchOptions.OptimizerImpl.class, "--optimizer-impl", optimizerImpl),
                        keepOutputs, bitsandbytes != null && PytorchOptions.PytorchSettings.bnbSavesInputs(bitsandbytes), compile, blockUnits, noSync, activationOffload));
        if (bitsandbytes != null && (o.stack() != PytorchOptions.Stack.HF || o.baseDtype() != Technique.BaseDtype.NF4))
            throw new IllegalArgumentException("--bitsandbytes describes the 4-bit base of the HF stack: it needs --stack hf with --method qlora "
                    + "(torchtune quantises with torchao)");
        // The options resolve --method qlora to an NF4 base; inference carries the weights' dtype beside them.
        if (noDoubleQuant && (inference ? weightsDtype : o.baseDtype()) != Technique.BaseDtype.NF4)
            throw new IllegalArgumentException("--no-double-quant concerns NF4 block constants: it needs --method qlora or --base-dtype nf4");
        return o;
    }

    /** `plan --list-presets`: every model preset with its parameter count and size, every device with its memory. */
    static void listPresets(PrintWriter out) {
        out.printf("%-24s %14s %12s %12s%n", "model preset", "parameters", "fp32", "bf16");
        for (String name : ModelPresets.names()) {
            long n = PytorchProfile.counts(ModelPresets.load(name)).total();
            out.printf(Locale.ROOT, "%-24s %14s %12s %12s%n", name, String.format(Locale.ROOT, "%,d", n), ByteSize.format(4 * n), ByteSize.format(2 * n));
        }
        out.println();
        out.printf("%-24s %14s%n", "device", "memory");
        for (String name : GpuDevices.names()) out.printf("%-24s %14s%n", name, ByteSize.format(GpuDevices.gpu(name).memoryBytes()));
        out.printf("%-24s %14s  (this machine's RAM; llamafit runtime)%n", Devices.CPU, ByteSize.format(ProcessMemory.physicalRamBytes()));
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
            boolean gpu = device != null ? !device.equalsIgnoreCase(Devices.CPU) : runtime != null && runtime.equalsIgnoreCase("pytorch");
            return gpu ? GpuDevices.custom("custom", bytes) : Devices.cpu(bytes, Parallel.threads());
        }
        if (device == null || device.equalsIgnoreCase(Devices.CPU)) return Devices.cpu(ProcessMemory.physicalRamBytes(), Parallel.threads());
        if (!GpuDevices.isGpu(device))
            throw new InputException("unknown device '" + device + "'; did you mean " + String.join(", ", DidYouMean.nearest(device.toLowerCase(Locale.ROOT),
                    GpuDevices.deviceNames(), 3)) + "? (devices: " + String.join(", ", GpuDevices.deviceNames()) + ", or --memory SIZE)");
        return GpuDevices.gpu(device);
    }

    /** Largest batch (or sequence length) that fits: doubling, then bisection. 0 when even 1 does not fit. */
    static int maxFitting(LlamaConfig c, Request req, BiFunction<Integer, Integer, MemoryPlan> planner, boolean batch) {
        int limit = batch ? 1 << 16 : c.maxPositions();
        // A probe the planners refuse (more tokens than a micro-batch holds, bytes past a long) does not fit.
        java.util.function.IntPredicate fits = v -> {
            try {
                return planner.apply(batch ? v : req.batch(), batch ? req.seqLen() : v).fits();
            } catch (IllegalArgumentException tooLarge) {
                return false;
            }
        };
        if (!fits.test(1)) return 0;
        int lo = 1, hi = 2;
        while (hi <= limit && fits.test(hi)) { lo = hi; hi *= 2; }
        hi = Math.min(hi, limit + 1);
        while (hi - lo > 1) { int mid = (lo + hi) >>> 1; if (fits.test(mid)) lo = mid; else hi = mid; }
        return lo;
    }

    static Map<String, Object> toJson(Request req, MemoryPlan p, Integer mb, Integer ml, List<Advice> recs, FormulaSeed seed) {
        Map<String, Object> j = new LinkedHashMap<>();
        Map<String, Object> devj = new LinkedHashMap<>();
        devj.put("name", p.device().name());
        devj.put("memory_bytes", p.device().memoryBytes());
        devj.put("peak_bytes", p.devicePeakBytes());
        devj.put("headroom_bytes", p.headroomBytes());
        devj.put("peak_phase", p.peakPhase().key());
        if (req.pytorch()) {
            // The same peak as each PyTorch measurement reports it (peak_bytes is the nvidia-smi one).
            devj.put("max_memory_allocated_bytes", p.peak(Column.DEVICE, Metric.ALLOCATED));
            devj.put("max_memory_reserved_bytes", p.peak(Column.DEVICE, Metric.RESERVED));
            devj.put("nvidia_smi_bytes", p.peak(Column.DEVICE, Metric.NVIDIA_SMI));
        }
        j.put("device", devj);
        j.put("host", Map.of("peak_bytes", p.hostPeakBytes()));
        j.put("disk_bytes", p.diskBytes());
        j.put("fits", p.fits());
        j.put("runtime", req.pytorch() ? "pytorch" : "llamafit");
        PytorchOptions o = req.options();
        Map<String, Object> par = new LinkedHashMap<>();
        // The engine runs one worker without sharding (reported as PyTorch's defaults would read).
        par.put("workers", o == null ? 1 : o.workers());
        par.put("zero", o == null ? 0 : o.zero());
        par.put("sharding", o == null ? "deepspeed" : Technique.name(o.sharding()));
        par.put("offload", o == null ? "none" : Technique.name(o.offload()));
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
        for (Phase f : Phase.values()) phases.put(f.key(), p.bytes(Column.DEVICE, f, Metric.NVIDIA_SMI));
        j.put("device_bytes_by_phase", phases);
        if (mb != null) j.put("max_batch_size", mb);
        if (ml != null) j.put("max_seq_len", ml);
        if (!recs.isEmpty()) {
            List<Map<String, Object>> rs = new ArrayList<>();
            for (Advice r : recs)
                rs.add(Map.of("slowdown", r.slowdown(), "peak_bytes", r.plan().devicePeakBytes(), "grad_accum", r.gradAccum(), "steps", r.steps()));
            j.put("recommendations", rs);
        }
        if (seed != null) j.put("formula_seed", Map.of("fixed_gb", seed.fixedGb(), "per_sample_gb", seed.perSampleGb(),
                "weights_gb", seed.weightsGb(), "gradients_gb", seed.gradientsGb(), "optimizer_gb", seed.optimizerGb(), "overhead_gb", seed.overheadGb()));
        j.put("notes", p.notes());
        return j;
    }

    /** "full", or "lora r 8 on q_proj,v_proj" with the base's storage when it is not the compute dtype ("qlora r 64 on all-linear, nf4 base"). */
    static String method(Technique o) {
        if (!o.adapters()) return "full";
        List<String> all = LinearModule.keys();
        List<String> targets = o.lora().targets();
        String shown = targets.size() == all.size() && targets.containsAll(all) ? "all-linear" : String.join(",", targets);
        return Technique.name(o.method()) + " r " + o.lora().rank() + " on " + shown + (o.baseDtype() == null ? "" : ", " + Technique.name(o.baseDtype()) + " base");
    }

    /** ", 8 workers, ZeRO-3 (fsdp), offload cpu" for a run over several workers or with a ZeRO stage or offload; else "". */
    static String parallelism(PytorchOptions o) {
        if (o == null) return "";
        if (o.workers() == 1 && o.zero() == 0 && o.offload() == PytorchOptions.Offload.NONE) return "";
        String s = ", " + o.workers() + (o.workers() == 1 ? " worker" : " workers");
        if (o.zero() > 0) s += ", ZeRO-" + o.zero() + " (" + Technique.name(o.sharding()) + ")";
        else if (o.workers() > 1) s += " (" + (o.sharding() == PytorchOptions.Sharding.DDP ? "ddp" : Technique.name(o.sharding()) + ", no sharding") + ")";
        if (o.offload() != PytorchOptions.Offload.NONE) s += ", offload " + Technique.name(o.offload());
        return s;
    }

    static void print(PrintWriter out, Request req, MemoryPlan p, Integer mb, Integer ml, List<Advice> recs, FormulaSeed seed,
                      boolean inference, boolean searched) {
        Technique o = req.technique();
        String rt = req.pytorch() ? "pytorch" : "llamafit";
        if (inference) out.printf(Locale.ROOT, "plan: inference, %s, B=%d prompt %d, runtime %s, device %s (%s)%n", Technique.name(o.precision()),
                req.batch(), req.seqLen(), rt, p.device().name(), ByteSize.format(p.device().memoryBytes()));
        else out.printf(Locale.ROOT, "plan: %s, %s, %s, B=%d T=%d%s, runtime %s, device %s (%s)%n", method(o), Technique.name(o.precision()),
                Technique.name(o.optimizer()), req.batch(), req.seqLen(), (!o.gradientCheckpointing() ? "" : o.checkpointEvery() == 1 ? ", checkpointing" : ", checkpointing every " + o.checkpointEvery() + " blocks")
                        + parallelism(req.options()), rt, p.device().name(), ByteSize.format(p.device().memoryBytes()));
        out.printf("%-28s %12s %12s %12s  %s%n", "component", "device", "host", "disk", "category");
        for (Component comp : p.components()) {
            String[] cols = {"", "", ""};
            cols[comp.column().ordinal()] = ByteSize.format(comp.bytes());
            out.printf("%-28s %12s %12s %12s  %s%n", comp.name(), cols[0], cols[1], cols[2], comp.category().key());
        }
        if (!inference)
            for (Phase f : Phase.values())
                out.printf("  at %-16s %12s%n", f.key(), ByteSize.format(p.bytes(Column.DEVICE, f, Metric.NVIDIA_SMI)));
        out.printf("peak %s (%s), host %s, disk %s; headroom %s: %s%n", ByteSize.format(p.devicePeakBytes()), inference ? "prefill" : p.peakPhase().key(),
                ByteSize.format(p.hostPeakBytes()), ByteSize.format(p.diskBytes()), ByteSize.format(p.headroomBytes()), p.fits() ? "fits" : "DOES NOT FIT");
        if (mb != null) out.println("max batch size: " + mb);
        if (ml != null) out.println("max sequence length: " + ml);
        for (String n : p.notes()) out.println("note: " + n);
        if (seed != null) {
            out.printf(Locale.ROOT, "formula seed: %.1f + %.1f + %.1f + %.1f = %.1f GB fixed, %.2f GB per %d-token sample; batch %d on this device%n",
                    seed.weightsGb(), seed.gradientsGb(), seed.optimizerGb(), seed.overheadGb(), seed.fixedGb(), seed.perSampleGb(), req.seqLen(),
                    seed.batch(FormulaSeed.asRuleReadsIt(p.device().memoryBytes() / 1e9)));
            out.printf(Locale.ROOT, "component model: %.1f GB peak (%s)%n", p.devicePeakBytes() / 1e9, mb != null ? "max batch " + mb : "at B=" + req.batch());
            out.println(FormulaSeed.differences());
        }
        int i = 1;
        for (Advice r : recs) {
            out.printf(Locale.ROOT, "%d. ×%.2f time: %s%n", i++, r.slowdown(), String.join("; ", r.steps()));
        }
        if (!recs.isEmpty() || !p.fits()) { if (recs.isEmpty() && !p.fits()) out.println(searched ? "--recommend: no searched plan fits" + (!req.pytorch()
                ? " (the llamafit runtime trains fp32 full or LoRA): lower --seq-len, use a smaller model or more memory" : "")
                : inference ? "to fit: a shorter --seq-len or --max-new-tokens, a smaller --batch-size, --base-dtype int8|nf4, or a larger device"
                : "try --recommend for plans that fit"); }
    }
}
