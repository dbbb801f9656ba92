// The training loop: batches -> forward/backward -> accumulate -> clip -> step, with checkpoints and exact resume.
package dev.llamafit.train;

import java.io.IOException;
import java.io.PrintStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

import dev.llamafit.dist.Collectives;
import dev.llamafit.dist.SingleProcess;
import dev.llamafit.io.InputException;
import dev.llamafit.io.ModelFolder;
import dev.llamafit.io.OutputFolder;
import dev.llamafit.io.OutputWriteException;
import dev.llamafit.io.data.Batches;
import dev.llamafit.io.data.Example;
import dev.llamafit.io.safetensors.SafetensorsFile;
import dev.llamafit.io.tokenizer.Tokenizer;
import dev.llamafit.io.tokenizer.Tokenizers;
import dev.llamafit.kernels.Kernels;
import dev.llamafit.memory.MemoryLedger;
import dev.llamafit.model.LlamaConfig;
import dev.llamafit.model.Technique;
import dev.llamafit.model.TrainingStep;
import dev.llamafit.optim.AdamW;
import dev.llamafit.optim.AdamW8bit;
import dev.llamafit.optim.LossScaler;
import dev.llamafit.optim.LrSchedule;
import dev.llamafit.optim.OffloadedOptimizer;
import dev.llamafit.optim.Optimizer;
import dev.llamafit.optim.Sgd;
import dev.llamafit.tensor.Tensor;

/**
 * Fine-tuning of a LLaMA-family model (all weights, or LoRA adapters on a frozen base). One optimizer step takes {@code gradAccum} micro-batches; the loss
 * is normalised by the unmasked tokens of the whole step, so accumulation equals a bigger batch. Checkpoints
 * hold everything the next step depends on (weights, optimizer state, step, data position), so a resumed run
 * continues bit for bit.
 */
public final class Trainer {
    /** What a finished run reports. */
    public record Result(long steps, double firstLoss, double lastLoss, double evalLoss, long tokens, double seconds,
                         Path finalModel, MemoryLedger.Snapshot memory) {}

    private final TrainOptions o;
    private final Kernels kernels;
    private final MemoryLedger ledger;
    private final PrintStream log;
    private final DataParallel dp;
    private double collectiveSeconds;
    private long collectiveCalls;
    private long warmSteps;
    private double warmSeconds, warmCollectiveSeconds;

    /**
     * After {@link #run}: seconds this rank's training thread spent in collectives (gradient sums and reduce-scatters,
     * weight gathers, waits for ZeRO-3's prefetched gathers, loss sums); 0 on one rank. For `bench train`.
     */
    public double collectiveSeconds() { return collectiveSeconds; }

    /** After {@link #run}: the collective calls {@link #collectiveSeconds} counts. */
    public long collectiveCalls() { return collectiveCalls; }

    /** The system property that turns ZeRO-3's prefetch off when "false" (for `bench train --workers`). */
    public static final String ZERO3_PREFETCH_PROPERTY = DataParallel.PREFETCH_PROPERTY;

    /** After {@link #run}: the steps after this run's first one (which warms the JIT up), timed below. */
    public long warmSteps() { return warmSteps; }

    /** After {@link #run}: this rank's seconds in those steps (forward, backward, clipping, optimizer; not evals or saves). */
    public double warmStepSeconds() { return warmSeconds; }

    /** After {@link #run}: of {@link #warmStepSeconds}, the seconds spent in collectives. */
    public double warmCollectiveSeconds() { return warmCollectiveSeconds; }
    private DiskOffload offload; // --offload disk, or null: the optimizer state in memory

    /** --offload disk: the optimizer state in files under {@code dir} (DIR/rank-NNNNN), at most {@code windowBytes} in memory. */
    public record DiskOffload(Path dir, long windowBytes) {
        public DiskOffload {
            if (dir == null) throw new IllegalArgumentException("--offload disk needs --offload-dir DIR");
            if (windowBytes < 1) throw new IllegalArgumentException("--offload-window must be > 0, got " + windowBytes);
        }
    }

    /**
     * This run's optimizer state lives on disk ({@link OffloadedOptimizer}); fp32 AdamW or SGD state only (under mixed
     * precision the fp32 master weights stay in memory). Returns this trainer.
     */
    public Trainer withDiskOffload(DiskOffload offload) {
        if (offload != null && o.technique().optimizer() == Technique.Optimizer.ADAMW8BIT)
            throw new InputException("--offload disk streams fp32 optimizer state; --optimizer adamw8bit keeps 8-bit blocks in memory: use --optimizer adamw or sgd");
        if (offload != null && o.technique().precision() == Technique.Precision.BF16_PURE)
            throw new InputException("--offload disk streams fp32 optimizer state; --precision bf16-pure keeps bf16 state: use --precision bf16 or fp32");
        this.offload = offload;
        return this;
    }

    /** A run in this process alone. */
    public Trainer(TrainOptions options, Kernels kernels, MemoryLedger ledger, PrintStream log) {
        this(options, kernels, ledger, log, new SingleProcess(), 0);
    }

    /**
     * A run on rank {@code ranks.rank()} of a data-parallel job (ZeRO stage 0): --batch-size rows per rank, gradients and
     * losses summed across ranks, replicated optimizer steps. Only rank 0 locks and writes the run folder (checkpoints,
     * metrics.jsonl, final/ or adapter/); the caller gives the other ranks a quiet {@code log}.
     */
    public Trainer(TrainOptions options, Kernels kernels, MemoryLedger ledger, PrintStream log, Collectives ranks, int zero) {
        this.o = options;
        this.kernels = kernels;
        this.ledger = ledger;
        this.log = log;
        this.dp = new DataParallel(ranks, zero);
        if (dp.distributed() && options.technique().precision() == Technique.Precision.BF16_PURE)
            throw new InputException("--precision bf16-pure keeps bf16 gradients, which data-parallel training over several ranks does "
                    + "not sum yet; use --precision bf16 (fp32 master weights and gradients) or run on one rank");
        if (dp.distributed() && zero >= 2 && options.technique().precision() == Technique.Precision.FP16)
            throw new InputException("--zero " + zero + " with --precision fp16 is not implemented (the loss scaler checks whole gradients, "
                    + "which stages 2-3 shard): use --precision bf16, or --zero 1");
        if (dp.distributed() && zero >= 3 && options.technique().precision().mixed())
            throw new InputException("--zero 3 with --precision " + (options.technique().precision() == Technique.Precision.FP16 ? "fp16" : "bf16")
                    + " is not implemented (the 16-bit working copies of gathered weights are not sharded yet): use --zero 2, or --precision fp32");
        if (dp.shardsOptimizer() && options.technique().optimizer() == Technique.Optimizer.ADAMW8BIT)
            throw new InputException("--zero " + zero + " shards fp32 optimizer state element by element; --optimizer adamw8bit quantises it in blocks, "
                    + "which are not sharded yet: use --optimizer adamw, or --zero 0");
    }

    /**
     * Runs the whole training under the output folder's lock (a second run on it stops with bad input naming this
     * one). A failed write (disk full, I/O error) is an {@link OutputWriteException} that also says which checkpoint
     * is still intact.
     */
    public Result run() throws IOException {
        if (!dp.leader()) return runLocked(); // rank 0 holds the lock and is the only writer of the run folder
        try (OutputFolder.Lock lock = OutputFolder.lock(o.output(), "--output", log)) {
            Checkpoints.removeStaleTemporaries(lock);
            return runLocked();
        } catch (OutputWriteException e) {
            throw e.withNote(Checkpoints.intactNote(o.output()));
        }
    }

    private Result runLocked() throws IOException {
        Tokenizer tokenizer = Tokenizers.load(o.model());
        LlamaConfig config = ModelFolder.readConfig(o.model());
        TrainingData data = TrainingData.load(o, dp.size(), tokenizer, config, log);
        RunIdentity identity = RunIdentity.of(o, dp.size());
        // Before anything is written or summed: ranks given other model, data or options stop here, named (exit 2).
        StartupCheck.verify(dp.collectives, StartupCheck.fields(identity, o, dp.zero));
        if (dp.leader()) Files.createDirectories(o.output());
        Path resumeFrom = o.resume() == null ? null : Checkpoints.resolve(o.resume());
        TrainerState resumed = resumeFrom == null ? null : TrainerState.read(resumeFrom);
        Map<String, Object> accepted = resumed == null ? Map.of() : checkResume(resumeFrom, resumed, identity);
        long startStep = resumed == null ? 0 : resumed.step();

        try (TrainableModel model = TrainableModel.open(o, config, resumeFrom, kernels, ledger, dp);
             Optimizer optimizer = optimizer()) {
            model.loadAdapters(resumeFrom);
            // Every rank draws the global batch (size × --batch-size rows) and trains its slice of it.
            Batches batches = new Batches(data.train(), Math.multiplyExact(o.batchSize(), dp.size()), o.seqLen(), data.padId(), o.seed(), true);
            if (resumed != null) restore(resumeFrom, resumed, model, optimizer, batches, data.totalSteps());
            LrSchedule schedule = LrSchedule.parse(o.schedule(), o.lr(), o.warmup(), data.totalSteps());
            Metrics metrics = dp.leader() ? new Metrics(o.output(), resumed == null ? -1 : startStep) : null;
            if (dp.leader()) Metrics.writeRunInfo(o, identity, startStep, data.totalSteps(), dp.size()); // for `llamafit ui`
            if (!accepted.isEmpty() && dp.leader()) metrics.record(new Metrics.Event("resume_mismatch_accepted", startStep, accepted));
            TrainingLoop loop = new TrainingLoop(TrainingLoop.Settings.of(o), model, optimizer, batches, schedule, metrics, data,
                    identity, ledger, log, scaler(resumed), dp);
            loop.run(startStep);
            warmSteps = loop.warmSteps;
            warmSeconds = loop.warmSeconds;
            warmCollectiveSeconds = loop.warmCollectiveSeconds;
            Path finalDir = model.writeFinal(); // collective under ZeRO-3; rank 0 writes, the others get null
            if (dp.leader()) metrics.plot();
            // The job ends when rank 0 has written everything: no rank leaves while the run folder is incomplete.
            if (dp.distributed()) dp.collectives.barrier();
            double secs = (System.nanoTime() - loop.t0) / 1e9;
            collectiveSeconds = dp.collectiveSeconds();
            collectiveCalls = dp.collectiveCalls();
            return new Result(data.totalSteps() - startStep, loop.firstLoss, loop.lastLoss, loop.lastEval, loop.tokensSeen, secs,
                    finalDir, ledger.snapshot());
        }
    }

    /**
     * The fp16 run's loss scaler, continuing the checkpoint's state where it has one (a checkpoint of another precision,
     * resumed with --resume-anyway, starts a fresh one); null for fp32 and bf16, whose range needs no scaling.
     */
    private LossScaler scaler(TrainerState resumed) {
        if (o.technique().precision() != Technique.Precision.FP16) return null;
        return resumed == null || resumed.scaler() == null ? new LossScaler() : new LossScaler(resumed.scaler());
    }

    private Optimizer optimizer() {
        if (offload != null) {
            Path dir = OffloadedOptimizer.rankDir(offload.dir(), dp.rank());
            return switch (o.technique().optimizer()) {
                case ADAMW -> OffloadedOptimizer.adamW(new AdamW.Config(0.9, 0.999, 1e-8, o.weightDecay()), dir, offload.windowBytes(), ledger);
                case SGD -> OffloadedOptimizer.sgd(new Sgd.Config(0.9, o.weightDecay(), 0, false), dir, offload.windowBytes(), ledger);
                case ADAMW8BIT -> throw new IllegalStateException("refused in withDiskOffload");
            };
        }
        return switch (o.technique().optimizer()) {
            case ADAMW -> new AdamW(0.9, 0.999, 1e-8, o.weightDecay(), ledger);
            case ADAMW8BIT -> new AdamW8bit(0.9, 0.999, 1e-8, o.weightDecay(), ledger);
            case SGD -> new Sgd(0.9, o.weightDecay(), ledger);
        };
    }

    /**
     * Compares the checkpoint's run with the one asked for. Differences stop the run (bad input, every differing
     * field in one message) unless --resume-anyway; then they are returned, field to {old, new}, for metrics.jsonl.
     */
    private Map<String, Object> checkResume(Path checkpoint, TrainerState saved, RunIdentity asked) {
        List<String> unchecked = saved.identity().unchecked(asked);
        if (!unchecked.isEmpty())
            log.printf("note: %s predates the resume checks; not compared: %s%n", checkpoint, String.join(", ", unchecked));
        List<RunIdentity.Difference> diffs = saved.identity().differences(asked);
        if (diffs.isEmpty()) return Map.of();
        List<String> lines = diffs.stream().map(RunIdentity.Difference::toString).toList();
        // One line (the CLI prints bad input as one line), every differing field in it.
        if (!o.resumeAnyway())
            throw InputException.at(checkpoint.resolve(Checkpoints.STATE), "--resume: this checkpoint was made with other settings: "
                    + String.join("; ", lines) + ". Run with the checkpoint's settings, or add --resume-anyway to continue with the new ones");
        log.printf("warning: --resume-anyway: continuing %s with other settings: %s%n", checkpoint, String.join("; ", lines));
        Map<String, Object> out = new LinkedHashMap<>();
        for (RunIdentity.Difference d : diffs) out.put(d.field(), Map.of("checkpoint", d.saved(), "now", d.asked()));
        return out;
    }

    /** Puts the optimizer state, data position and dropout stream back where the checkpoint left them. */
    private void restore(Path checkpoint, TrainerState state, TrainableModel model, Optimizer optimizer, Batches batches,
                         long totalSteps) {
        model.step.setDropoutCalls(state.dropoutCalls());
        if (dp.shardsOptimizer() || ShardedCheckpoint.isSharded(checkpoint)) restoreRepartitioned(checkpoint, state, model, optimizer);
        else try (SafetensorsFile f = Checkpoints.openFinite(checkpoint.resolve(Checkpoints.OPTIMIZER), ledger)) {
            Map<String, Tensor> saved = new LinkedHashMap<>();
            for (String name : f.names()) saved.put(name, f.find(name).orElseThrow());
            try {
                optimizer.loadState(saved, state.optimizerSteps());
            } catch (IllegalArgumentException e) { // names, shapes, dtypes and values the optimizer cannot hold
                throw InputException.at(f.file(), e.getMessage());
            }
        }
        if (state.data().batch() >= batches.batchesPerEpoch())
            throw InputException.at(checkpoint.resolve(Checkpoints.STATE), "'data_batch' = " + state.data().batch()
                    + " is past the " + batches.batchesPerEpoch() + " batches of an epoch of this data");
        batches.seek(state.data());
        log.printf("resuming from %s at step %d%n", checkpoint, state.step());
        if (state.totalSteps() >= 0 && state.totalSteps() != totalSteps)
            log.printf("note: the run was planned for %d steps and now has %d; the %s schedule follows the new length%n",
                    state.totalSteps(), totalSteps, o.schedule());
    }

    /**
     * The optimizer state of a sharded checkpoint, or for a sharded run, re-partitioned onto this job: this rank's pieces
     * (ZeRO stage >= 1) or the whole state (one process, stage 0), whatever the number of ranks that wrote it.
     */
    private void restoreRepartitioned(Path checkpoint, TrainerState state, TrainableModel model, Optimizer optimizer) {
        if (o.technique().optimizer() == Technique.Optimizer.ADAMW8BIT)
            throw InputException.at(checkpoint, "--optimizer adamw8bit keeps block-quantised state, which is not re-partitioned across "
                    + "ranks: resume with --optimizer adamw8bit on one process from a whole checkpoint, or use --optimizer adamw");
        boolean flat = dp.shardsOptimizer();
        var layout = ShardedCheckpoint.layoutOf(model.params, flat ? dp.size() : 1);
        Map<String, Tensor> saved = ShardedCheckpoint.load(checkpoint, layout, flat ? dp.rank() : 0, flat, ledger);
        try {
            optimizer.loadState(saved, state.optimizerSteps());
        } catch (IllegalArgumentException e) {
            throw InputException.at(checkpoint, e.getMessage());
        } finally {
            saved.values().forEach(Tensor::close);
        }
    }

    /**
     * {@link #evaluate(TrainingStep, List, int, int, int)} over the ranks of a job: the examples in global batches of
     * size × {@code batch}, this rank's rows of each, and the loss sums and tokens summed across ranks.
     */
    static TrainingStep.Loss evaluate(TrainingStep step, List<Example> examples, int batch, int seqLen, int padId, DataParallel dp) {
        int global = Math.multiplyExact(batch, dp.size());
        List<Example> mine = new java.util.ArrayList<>();
        for (int start = 0; start < examples.size(); start += global)
            for (int i = start + dp.rank() * batch; i < Math.min(examples.size(), start + (dp.rank() + 1) * batch); i++) mine.add(examples.get(i));
        // A rank whose share is empty still takes part in the sums below. Under ZeRO-3 every forward gathers weights
        // (collectives), so every rank runs as many batches as the fullest; the extra ones are masked and add nothing.
        int batches = dp.zero >= 3 ? (examples.size() + global - 1) / global : -1;
        TrainingStep.Loss local = mine.isEmpty() && batches <= 0 ? new TrainingStep.Loss(0, 0) : evaluate(step, mine, batch, seqLen, padId, batches);
        double[] sums = dp.sum(local.sum(), local.tokens());
        return new TrainingStep.Loss(sums[0], (long) sums[1]);
    }

    /**
     * Mean loss per unmasked token over {@code examples}, in order, in batches of the training shape; the last
     * batch is filled with fully masked rows, which add no loss and no tokens.
     */
    public static TrainingStep.Loss evaluate(TrainingStep step, List<Example> examples, int batch, int seqLen, int padId) {
        return evaluate(step, examples, batch, seqLen, padId, -1);
    }

    /** As above in exactly {@code batches} batches (masked past the examples), or as many as needed when negative. */
    private static TrainingStep.Loss evaluate(TrainingStep step, List<Example> examples, int batch, int seqLen, int padId, int batches) {
        double sum = 0;
        long tokens = 0;
        int end = batches < 0 ? examples.size() : Math.multiplyExact(batches, batch);
        for (int start = 0; start < end; start += batch) {
            int[][] ids = new int[batch][seqLen], labels = new int[batch][seqLen];
            for (int r = 0; r < batch; r++) {
                java.util.Arrays.fill(ids[r], padId);
                java.util.Arrays.fill(labels[r], -100);
                if (start + r < examples.size()) {
                    Example e = examples.get(start + r);
                    System.arraycopy(e.inputIds(), 0, ids[r], 0, e.inputIds().length);
                    System.arraycopy(e.labels(), 0, labels[r], 0, e.labels().length);
                }
            }
            TrainingStep.Loss l = step.forwardLoss(ids, labels);
            sum += l.sum();
            tokens += l.tokens();
        }
        return new TrainingStep.Loss(sum, tokens);
    }
}
