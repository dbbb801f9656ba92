// `llamafit train`: full fine-tuning with checkpoints, exact resume, metrics and a final Hugging Face folder.
package dev.llamafit.cli;

import java.io.OutputStream;
import java.io.PrintStream;
import java.io.PrintWriter;
import java.io.Writer;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.OptionalLong;
import java.util.concurrent.Callable;

import dev.llamafit.dist.Collectives;
import dev.llamafit.model.Sharding;
import dev.llamafit.io.AtomicFiles;
import dev.llamafit.io.InputException;
import dev.llamafit.io.Json;
import dev.llamafit.io.ModelFolder;
import dev.llamafit.io.OutputFolder;
import dev.llamafit.io.data.Datasets;
import dev.llamafit.kernels.KernelBackends;
import dev.llamafit.kernels.Parallel;
import dev.llamafit.memory.ByteSize;
import dev.llamafit.memory.Category;
import dev.llamafit.memory.MemoryLedger;
import dev.llamafit.memory.ProcessMemory;
import dev.llamafit.model.LlamaConfig;
import dev.llamafit.model.LoraConfig;
import dev.llamafit.model.Technique;
import dev.llamafit.quant.Quantization;
import dev.llamafit.plan.Device;
import dev.llamafit.plan.Devices;
import dev.llamafit.plan.DiskOffloadPlan;
import dev.llamafit.plan.MemoryPlan;
import dev.llamafit.plan.Planner;
import dev.llamafit.plan.Recommender;
import dev.llamafit.tensor.DType;
import dev.llamafit.train.TrainOptions;
import dev.llamafit.train.Trainer;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;
import picocli.CommandLine.Spec;
import picocli.CommandLine.Model.CommandSpec;

@Command(name = "train", mixinStandardHelpOptions = true, sortOptions = false,
        description = "Fine-tune a model (full or LoRA, fp32, optional gradient checkpointing) on text, Alpaca or chat data.")
final class TrainCommand implements Callable<Integer> {
    enum ScheduleName { constant, linear, cosine }

    @Spec CommandSpec spec;

    @Mixin TechniqueOptions.Train technique;
    @Option(names = "--model", required = true, description = "Hugging Face model folder to start from.") Path model;
    @Option(names = "--data", required = true, description = "Training data: .txt, Alpaca .json/.jsonl, or chat .jsonl.") Path data;
    @Option(names = "--output", required = true, description = "Run folder: checkpoints/, metrics.jsonl, loss.png, final/.") Path output;
    @Option(names = "--steps", defaultValue = "0", description = "Optimizer steps in the whole run (counted from its start).") long steps;
    @Option(names = "--epochs", defaultValue = "0", description = "Passes over the data, when --steps is not given.") double epochs;
    @Option(names = "--grad-accum", defaultValue = "1", description = "Micro-batches per optimizer step (default: ${DEFAULT-VALUE}).") int gradAccum;
    @Option(names = "--lr", defaultValue = "3e-4", description = "Peak learning rate (default: ${DEFAULT-VALUE}).") double lr;
    @Option(names = "--schedule", defaultValue = "cosine", description = "constant, linear or cosine, all with warmup (default: ${DEFAULT-VALUE}).") ScheduleName schedule;
    @Option(names = "--warmup", defaultValue = "0", description = "Warmup steps (default: ${DEFAULT-VALUE}).") long warmup;
    @Option(names = "--weight-decay", defaultValue = "0", description = "Weight decay, not applied to norms and biases (default: ${DEFAULT-VALUE}).") double weightDecay;
    @Option(names = "--max-grad-norm", defaultValue = "1.0", description = "Global gradient-norm clipping; 0 = off (default: ${DEFAULT-VALUE}).") double maxGradNorm;
    @Option(names = "--eval-every", defaultValue = "0", description = "Evaluate every N steps; 0 = at the end only (default: ${DEFAULT-VALUE}).") long evalEvery;
    @Option(names = "--save-every", defaultValue = "0", description = "Checkpoint every N steps; 0 = at the end only (default: ${DEFAULT-VALUE}).") long saveEvery;
    @Option(names = "--resume", description = "Continue from a run folder (its newest checkpoint) or a checkpoint folder.") Path resume;
    @Option(names = "--resume-anyway", description = "With --resume: continue although the checkpoint was made with other settings (recorded in metrics.jsonl).") boolean resumeAnyway;
    @Option(names = "--seed", defaultValue = "42", description = "Seed for data order, the eval split, adapter initialisation and dropout (default: ${DEFAULT-VALUE}).") long seed;
    @Option(names = "--eval-data", description = "Separate evaluation data file.") Path evalData;
    @Option(names = "--eval-split", defaultValue = "0", description = "Fraction of the data held out for evaluation, e.g. 0.05.") double evalSplit;
    @Option(names = "--train-on-prompt", description = "Also train on prompt tokens of instruction and chat data.") boolean trainOnPrompt;
    @Option(names = "--skip-bad-records", description = "Skip malformed records (and report how many) instead of stopping.") boolean skipBadRecords;
    @Option(names = "--max-record-bytes", defaultValue = "1048576", description = "Longest JSONL record (line) read; a longer one is a bad record (default: ${DEFAULT-VALUE}).") long maxRecordBytes;
    @Option(names = "--lora-alpha", defaultValue = "16", description = "LoRA alpha; scale = alpha/r (default: ${DEFAULT-VALUE}).") double loraAlpha;
    @Option(names = "--use-rslora", description = "Scale adapters by alpha/√r (rsLoRA) instead of alpha/r.") boolean useRslora;
    @Option(names = "--adapter", description = "Start LoRA training from this PEFT adapter folder.") Path adapter;
    @Option(names = "--dtype", paramLabel = "fp32|bf16|fp16", description = "With LoRA: the frozen base's dtype in memory, converted on load "
            + "(default: the checkpoint's own; a bf16/fp16 checkpoint is memory-mapped and used in place). Full fine-tuning trains fp32 (master) weights.")
    WeightDtype dtype;
    @Option(names = "--save-dtype", paramLabel = "fp32|bf16|fp16", description = "Full fine-tuning: dtype of final/ "
            + "(default: the base checkpoint's own; the weights train in fp32).")
    WeightDtype saveDtype;
    @Option(names = "--max-memory", description = "Stop before allocating if the plan exceeds this (default: physical RAM less 10%%), e.g. 8GiB.") String maxMemory;
    @Option(names = "--force", description = "Train even when the plan exceeds --max-memory.") boolean force;
    @Option(names = "--zero", defaultValue = "0", description = "ZeRO stage of a data-parallel run under mpirun: 0 (plain data parallelism: "
            + "replicated weights and optimizer, gradients summed across ranks) or 1 (each rank keeps the optimizer state of its shard "
            + "of the weights only), 2 (gradients reduce-scattered into shards too) or 3 (weights sharded too, each block gathered "
            + "before its forward and backward, the next one prefetched) (default: ${DEFAULT-VALUE}).") int zero;

    @Option(names = "--offload", defaultValue = "none", paramLabel = "none|disk", description = "disk: keep the optimizer state in files under "
            + "--offload-dir (one per rank), streamed through a window of --offload-window bytes each step (ZeRO-Infinity's NVMe tier); "
            + "cpu means something only with a GPU backend and is refused (default: ${DEFAULT-VALUE}).") String offload;
    @Option(names = "--offload-dir", paramLabel = "DIR", description = "With --offload disk: where the state files go (DIR/rank-00000/...; a fast local disk).") Path offloadDir;
    @Option(names = "--offload-window", defaultValue = "64MiB", description = "With --offload disk: optimizer state in memory at once (default: ${DEFAULT-VALUE}).") String offloadWindow;

    @Option(names = "--workers", paramLabel = "N", description = "Start N data-parallel ranks on this machine: runs mpirun -np N with this "
            + "command (Open MPI; --batch-size is per rank). Under mpirun, leave it out.") Integer workers;

    @picocli.CommandLine.Mixin NonFiniteOption nonFinite;
    @picocli.CommandLine.Mixin QuantizeOptions quantize;

    @Override
    public Integer call() throws Exception {
        return nonFinite.around(spec, this::run);
    }

    private Integer run() throws Exception {
        if (zero < 0 || zero > 3) throw new InputException("--zero must be 0, 1, 2 or 3, got " + zero);
        diskOffload = diskOffload();
        int launch = Workers.toLaunch(workers, System.getenv("OMPI_COMM_WORLD_SIZE"));
        if (launch > 0) return Workers.launch(launch, spec.root().commandLine().getParseResult().originalArgs());
        // Under mpirun each rank runs this command; without it this is the single process and nothing changes.
        try (Collectives ranks = Collectives.open()) {
            return ranks.abortOnFailure(() -> run(ranks));
        }
    }

    private Trainer.DiskOffload diskOffload;

    /** --offload, --offload-dir and --offload-window checked together; null without --offload disk. */
    private Trainer.DiskOffload diskOffload() {
        String kind = offload.toLowerCase(Locale.ROOT);
        if (kind.equals("cpu"))
            throw new InputException("--offload cpu moves state from a GPU to host memory, and llamafit trains on the CPU already: use --offload disk "
                    + "--offload-dir DIR to keep the optimizer state on disk (plan --runtime pytorch still plans --offload cpu)");
        if (!kind.equals("none") && !kind.equals("disk")) throw new InputException("--offload must be none or disk, got '" + offload + "'");
        if (kind.equals("none")) {
            if (offloadDir != null) throw new InputException("--offload-dir is where --offload disk keeps the optimizer state: add --offload disk");
            return null;
        }
        if (offloadDir == null) throw new InputException("--offload disk needs --offload-dir DIR (a directory on a fast local disk)");
        long window = Main.userInput(() -> ByteSize.parse(offloadWindow));
        if (window < 1) throw new InputException("--offload-window must be > 0, got " + offloadWindow);
        return new Trainer.DiskOffload(offloadDir, window);
    }

    private Integer run(Collectives ranks) throws Exception {
        // Flags become records here: what they cannot describe, or what the engine does not run, is bad input (exit 2).
        Quantization q = quantization();
        Technique.BaseDtype base = q != null ? null : baseDtype();
        Technique unquantised = Main.userInput(() -> technique.technique(technique.precision(), base, loraAlpha, useRslora, gradAccum)
                .withAttention(AttentionOption.parse(technique.attention)));
        Technique t = q == null ? unquantised : Main.userInput(() -> unquantised.withQuantization(q));
        if (!t.notImplemented().isEmpty()) throw new InputException(Planner.notImplementedMessage(t.notImplemented()));
        LoraConfig lora = t.lora();
        TrainOptions o = Main.userInput(() -> new TrainOptions(model, data, output, steps, epochs, technique.batchSize, technique.seqLen, lr, schedule.name(),
                warmup, weightDecay, maxGradNorm, evalEvery, saveEvery, resume, seed, evalData, evalSplit,
                trainOnPrompt, skipBadRecords, t, adapter, resumeAnyway, WeightDtype.of(saveDtype), maxRecordBytes));
        // Ranks other than 0 print nothing and leave the run folder to rank 0.
        if (ranks.rank() != 0) return train(o, t, lora, ranks);
        // The output folder is checked and locked before anything is loaded, and stays locked until memory.json is written.
        try (OutputFolder.Lock lock = OutputFolder.lock(o.output(), "--output", System.out)) {
            return train(o, t, lora, ranks);
        }
    }

    private Integer train(TrainOptions o, Technique t, LoraConfig lora, Collectives ranks) throws Exception {
        boolean leader = ranks.rank() == 0;
        PrintWriter out = leader ? spec.commandLine().getOut() : new PrintWriter(Writer.nullWriter());
        PrintStream log = leader ? System.out : new PrintStream(OutputStream.nullOutputStream());
        if (ranks.size() > 1)
            out.printf("data-parallel: %d ranks (ZeRO stage %d), global batch %d × %d × %d = %d sequences per step (%s)%n", ranks.size(), zero,
                    ranks.size(), o.batchSize(), o.gradAccum(), (long) ranks.size() * o.effectiveBatch(), ranks.describe());
        long data = dataBytes(o, ModelFolder.readConfig(o.model()));
        MemoryPlan plan = gate(o, t, data, out, new Sharding(ranks.size(), ranks.rank(), zero));
        // The plan beside the run from its start, for readers of a run in progress (llamafit ui); memory.json adds the measured peaks at the end.
        if (leader) {
            Map<String, Long> planned = new LinkedHashMap<>();
            for (Category c : Category.values()) if (plan.categoryPeak(c) > 0) planned.put(c.key(), plan.categoryPeak(c));
            AtomicFiles.writeString(o.output().resolve(PLAN_REPORT), Json.write(Map.of("planned_bytes", planned,
                    "planned_total_bytes", plan.devicePeakBytes())) + "\n");
        }
        MemoryLedger ledger = MemoryLedger.global();
        Trainer trainer = new Trainer(o, KernelBackends.get(), ledger, log, ranks, zero).withDiskOffload(diskOffload);
        Trainer.Result r = trainer.run();
        // ZeRO's saving is per rank, and rank 1 and up print nothing on stdout: each rank states its own plan and ledger on stderr.
        if (ranks.size() > 1) {
            // One write for the whole report, so that mpirun does not interleave another rank's lines into the middle of a line.
            StringBuilder rep = new StringBuilder();
            String who = "rank " + ranks.rank() + " of " + ranks.size() + ": ";
            if (zero >= 1)
                rep.append(who).append(String.format("optimizer state peak %d bytes (ZeRO stage %d: this rank's shard)%n",
                        r.memory().lines().get(Category.OPTIMIZER).peakBytes(), zero));
            for (Category c : Category.values()) {
                long peak = r.memory().lines().get(c).peakBytes(), planned = plan.categoryPeak(c);
                if (peak > 0 || planned > 0) rep.append(who).append(String.format("memory %s planned %d measured %d bytes%n", c.key(), planned, peak));
            }
            rep.append(who).append(String.format("memory total planned %d measured %d bytes%n", plan.devicePeakBytes(), r.memory().totalPeakBytes()));
            rep.append(who).append(String.format(Locale.ROOT, "collectives %.3f s in %d calls%n", trainer.collectiveSeconds(), trainer.collectiveCalls()));
            // For `bench train --workers`: the steps after the first (which warms the JIT up), and the collectives within them.
            rep.append(who).append(String.format(Locale.ROOT, "after the first step: %d steps in %.6f s, collectives %.6f s%n",
                    trainer.warmSteps(), trainer.warmStepSeconds(), trainer.warmCollectiveSeconds()));
            System.err.print(rep);
            System.err.flush();
        }
        if (!leader) return Main.OK;
        out.printf(Locale.ROOT, "trained %d steps in %.1f s (%,d tokens): loss %.4f -> %.4f%s%n", r.steps(), r.seconds(), r.tokens(),
                r.firstLoss(), r.lastLoss(), Double.isNaN(r.evalLoss()) ? "" : String.format(Locale.ROOT, ", eval loss %.4f", r.evalLoss()));
        out.printf("%s: %s%n", lora == null ? "final model" : "adapter", r.finalModel());
        out.println("memory: planned vs measured (ledger peak by category)");
        out.printf("  %-14s %12s %12s%n", "category", "planned", "measured");
        Map<String, Long> plannedBy = new LinkedHashMap<>(), measuredBy = new LinkedHashMap<>();
        for (Category c : Category.values()) {
            long peak = r.memory().lines().get(c).peakBytes();
            long planned = c == Category.OFFLOADED_DISK ? plan.diskBytes() : plan.categoryPeak(c);
            if (peak > 0 || planned > 0) {
                out.printf("  %-14s %12s %12s%n", c.key(), ByteSize.format(planned), ByteSize.format(peak));
                plannedBy.put(c.key(), planned);
                measuredBy.put(c.key(), peak);
            }
        }
        out.printf("  %-14s %12s %12s%n", "total", ByteSize.format(plan.devicePeakBytes()), ByteSize.format(r.memory().totalPeakBytes()));
        long baseline = jvmBaseline();
        OptionalLong rss = ProcessMemory.peakRssBytes();
        rss.ifPresent(b -> out.printf("  %-14s %12s %12s  (planned total + %s JVM baseline%s)%n", "process RSS",
                ByteSize.format(plan.devicePeakBytes() + baseline + data), ByteSize.format(b), ByteSize.format(baseline),
                data > 0 ? " + " + ByteSize.format(data) + " data" : ""));
        if (o.lora() == null)
            out.println("  (full fine-tuning copies the weights while loading, so the measured weights peak includes the file mapping once)");
        // The same comparison for programs (and the RSS test): OUTPUT/memory.json, written atomically.
        Map<String, Object> j = new LinkedHashMap<>();
        j.put("planned_bytes", plannedBy);
        j.put("measured_peak_bytes", measuredBy);
        j.put("planned_total_bytes", plan.devicePeakBytes());
        j.put("measured_total_peak_bytes", r.memory().totalPeakBytes());
        j.put("jvm_baseline_bytes", baseline);
        j.put("planned_data_bytes", data);
        if (rss.isPresent()) j.put("peak_rss_bytes", rss.getAsLong());
        AtomicFiles.writeString(o.output().resolve(MEMORY_REPORT), Json.write(j) + "\n");
        return Main.OK;
    }

    /** Most micro-batches per optimizer step (--grad-accum): the step keeps each one's ids until its backward. */
    static final int MAX_GRAD_ACCUM = 1 << 16;
    /** Most tokens per optimizer step (B × T × k): their ids and labels take 8 B each, 1 GiB at this bound. */
    static final long MAX_STEP_TOKENS = 1L << 27;

    /** Planned vs measured memory of the run, in the run folder. */
    static final String MEMORY_REPORT = "memory.json";

    /** The run's plan by category, written when it starts (memory.json repeats it with the measured peaks at the end). */
    static final String PLAN_REPORT = "plan.json";

    /**
     * What the JVM itself holds beyond the ledger (heap, code, metadata, the tokenizer and data), with the launcher's
     * flags (serial GC, default heap sizing): peak RSS minus the planned total (and oneDNN's 12 MiB) measured 232-284 MiB,
     * median 248, over ProcessRssTest's 24 runs on JDK 25 (2 cores, 24 GiB), once the quantisation and collectives code
     * joined the jar (216-236 MiB before). The default heap grows with the machine's RAM, so larger hosts run a little higher.
     */
    static final long JVM_BASELINE_BYTES = 248L << 20;

    /** The baseline of this process: the JVM's, plus the native code the kernel backend loaded (oneDNN's). */
    static long jvmBaseline() { return JVM_BASELINE_BYTES + KernelBackends.get().nativeResidentBytes(); }

    /**
     * Plans the run with the same layouts the engine allocates from, and stops (exit 2) with the cheapest plans that
     * would fit when the plan exceeds --max-memory, unless --force. {@code data} is the planned token storage
     * ({@link #dataBytes}), which shares the memory limit with the JVM's baseline.
     */
    private MemoryPlan gate(TrainOptions o, Technique t, long data, PrintWriter out, Sharding sharding) {
        LlamaConfig config = ModelFolder.readConfig(o.model());
        if (o.seqLen() > config.maxPositions())
            throw InputException.at(o.model().resolve("config.json"), "--seq-len " + o.seqLen()
                    + " exceeds the model's max_position_embeddings " + config.maxPositions());
        long limit = maxMemory != null ? Main.userInput(() -> ByteSize.parse(maxMemory)) : ProcessMemory.physicalRamBytes() / 10 * 9;
        if (limit <= 0) throw new InputException("--max-memory must be > 0, got " + maxMemory);
        // A limit at or below the JVM's own baseline leaves the tensors nothing (one byte, so that nothing fits).
        // The tokenised corpus is heap, beside the JVM's own baseline: the device gets what both leave.
        Device device = Devices.cpu(Math.max(1, limit - jvmBaseline() - data), Parallel.threads());
        // The model's own limits (a rank above a matrix) are input errors too.
        MemoryPlan planned = Main.userInput(() -> Planner.plan(config, t, o.batchSize(), o.seqLen(), device, sharding));
        MemoryPlan plan = diskOffload == null ? planned
                : Main.userInput(() -> DiskOffloadPlan.of(planned, config, t, o.batchSize(), o.seqLen(), diskOffload.windowBytes(), sharding));
        out.printf("plan: %s peak (+ %s JVM baseline%s) against --max-memory %s%n", ByteSize.format(plan.devicePeakBytes()),
                ByteSize.format(jvmBaseline()), data > 0 ? " + " + ByteSize.format(data) + " data" : "", ByteSize.format(limit));
        if (!plan.fits() && !force) {
            StringBuilder sb = new StringBuilder("the run needs " + ByteSize.format(plan.devicePeakBytes() + JVM_BASELINE_BYTES + data)
                    + " but --max-memory is " + ByteSize.format(limit)
                    + (limit <= JVM_BASELINE_BYTES ? ", less than the JVM alone takes (" + ByteSize.format(JVM_BASELINE_BYTES) + ")" : "")
                    + " (use --force to try anyway)");
            List<Recommender.Recommendation> recs = Recommender.recommend(config, t, o.batchSize(), o.seqLen(), device, 3);
            for (Recommender.Recommendation rec : recs)
                sb.append("; try: ").append(String.join(", ", rec.steps())).append(" -> ").append(ByteSize.format(rec.plan().devicePeakBytes()));
            if (recs.isEmpty()) sb.append("; no plan the llamafit runtime implements fits: lower --seq-len or use a smaller model");
            throw new InputException(sb.toString());
        }
        // An optimizer step holds the ids and labels of its k micro-batches at once (8 B per token, outside the plan):
        // bounded so that they stay small beside it.
        long microTokens = (long) o.batchSize() * o.seqLen();
        if (t.gradAccum() > MAX_GRAD_ACCUM || microTokens > MAX_STEP_TOKENS / t.gradAccum())
            throw new InputException(String.format(Locale.ROOT, "--grad-accum %d × --batch-size %d × --seq-len %d does not fit: an optimizer step "
                    + "holds its micro-batches' tokens at once, at most %,d micro-batches and %,d tokens (lower --grad-accum)",
                    t.gradAccum(), o.batchSize(), o.seqLen(), MAX_GRAD_ACCUM, MAX_STEP_TOKENS));
        return plan;
    }

    /** Planned bytes of the tokenised training and eval data (an upper bound from the files' sizes; see Datasets.plannedBytes). */
    static long dataBytes(TrainOptions o, LlamaConfig config) {
        long d = Datasets.plannedBytes(o.data(), config.vocabSize(), null);
        return o.evalData() == null ? d : Math.addExact(d, Datasets.plannedBytes(o.evalData(), config.vocabSize(), null));
    }

    /**
     * The frozen base's storage for the technique (and so the plan): --dtype, or with LoRA and no --dtype the dtype the
     * checkpoint stores (a 16-bit one is used in place); null for full fine-tuning, or a model folder that cannot be read
     * (reported where the run opens it).
     */
    /**
     * The base's quantisation: --base-dtype (or --method qlora: nf4), else a bitsandbytes folder's own; null when the
     * base is not quantised. Adapters only: a quantised matrix cannot be trained.
     */
    private Quantization quantization() {
        Technique.Method method = Main.userInput(() -> technique.method());
        Quantization q = Main.userInput(() -> quantize.quantization(method == Technique.Method.QLORA && quantize.baseDtype == null ? "nf4" : quantize.baseDtype));
        Quantization stored = null;
        try {
            stored = ModelFolder.readConfig(model).quantization();
        } catch (InputException e) {
            // a bad model folder is reported where the run opens it, after the flags are checked
        }
        if (q == null) q = stored;
        if (q == null) return null;
        if (method == Technique.Method.FULL)
            throw new InputException((stored != null ? "the model folder is quantised (" + stored.describe() + "), so its"
                    : "--base-dtype " + q.kind().name().toLowerCase(Locale.ROOT) + " makes the") + " block linear layers frozen:"
                    + " train adapters on it (--method lora or qlora); full fine-tuning needs the unquantised model");
        if (dtype != null)
            throw new InputException("--dtype sets an unquantised base's dtype; a quantised base keeps its embeddings and LM head in"
                    + " the compute dtype (--precision)");
        return q;
    }

    private Technique.BaseDtype baseDtype() {
        boolean lora = Main.userInput(() -> technique.method()) != Technique.Method.FULL;
        if (dtype != null && !lora) {
            if (dtype == WeightDtype.fp32) return null;
            throw new InputException("--dtype " + dtype + " applies to a LoRA run's frozen base (--lora-r); full fine-tuning trains fp32 "
                    + "master weights (for 16-bit compute use --precision " + (dtype == WeightDtype.fp16 ? "fp16" : "bf16") + ")");
        }
        if (!lora) return null;
        DType d = dtype != null ? dtype.dtype() : null;
        if (d == null) {
            try {
                d = ModelFolder.storedDtype(model, KernelBackends.get());
            } catch (InputException e) {
                return null; // a bad model folder is reported where the run opens it, after the flags are checked
            }
        }
        return switch (d) {
            case F32 -> Technique.BaseDtype.FP32;
            case BF16 -> Technique.BaseDtype.BF16;
            case F16 -> Technique.BaseDtype.FP16;
            default -> throw new InputException("unsupported base dtype " + d);
        };
    }
}
