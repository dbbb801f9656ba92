// One run's step loop: k micro-batches -> clip -> optimizer step -> metrics, evaluation and checkpoints on their cadence.
package dev.llamafit.train;

import java.io.IOException;
import java.io.PrintStream;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;

import dev.llamafit.io.data.Batches;
import dev.llamafit.memory.MemoryLedger;
import dev.llamafit.optim.GradClip;
import dev.llamafit.optim.LossScaler;
import dev.llamafit.optim.LrSchedule;
import dev.llamafit.optim.Optimizer;
import dev.llamafit.optim.Param;
import dev.llamafit.tensor.Tensor;

/**
 * The step loop of a set-up run, and what it has seen so far (the numbers a {@link Trainer.Result} reports).
 *
 * <p>With a {@link LossScaler} (fp16 runs) each step's loss gradient is multiplied by the scale, the gradients are
 * unscaled before clipping, and a step whose gradients overflowed is skipped: no clipping, no optimizer update, no
 * optimizer step counted; the data, the schedule and the step count still advance, as with GradScaler.
 */
final class TrainingLoop {
    /**
     * Skipped steps in a row after which an fp16 run stops. Each skip halves the scale, so after 64 the loss gradient
     * is multiplied by 2^16·2^-64 = 2^-48: an overflow that persists there is not a range problem loss scaling can fix
     * (the forward itself produces inf/NaN) and would skip every step from then on. A healthy run skips a handful in a
     * row at its start while the scale falls from 2^16 to what its gradients fit (and one now and then after a growth),
     * far fewer than 64. The scale is still a normal float at 2^-48, so unscaling stays exact up to the limit.
     */
    static final int MAX_CONSECUTIVE_SKIPS = 64;

    /**
     * The options the loop itself reads.
     *
     * @param batchSize   B, sequences per micro-batch
     * @param seqLen      T
     * @param gradAccum   k, micro-batches per optimizer step
     * @param maxGradNorm global-norm clipping threshold; 0 = off
     * @param evalEvery   evaluate every N steps (0 = only at the end)
     * @param saveEvery   checkpoint every N steps (0 = only at the end)
     * @param seed        recorded in checkpoints
     * @param output      the run folder checkpoints go under
     */
    record Settings(int batchSize, int seqLen, int gradAccum, double maxGradNorm, long evalEvery, long saveEvery, long seed,
                    Path output) {
        Settings {
            if (batchSize < 1 || seqLen < 2 || gradAccum < 1) throw new IllegalArgumentException("B >= 1, T >= 2 and k >= 1");
            if (evalEvery < 0 || saveEvery < 0) throw new IllegalArgumentException("eval and save intervals must be >= 0");
        }

        static Settings of(TrainOptions o) {
            return new Settings(o.batchSize(), o.seqLen(), o.gradAccum(), o.maxGradNorm(), o.evalEvery(), o.saveEvery(), o.seed(), o.output());
        }

        /** Sequence tokens per optimizer step, B·k·T (padding included: the throughput the hardware sees). */
        long tokensPerStep() { return (long) Math.multiplyExact(batchSize, gradAccum) * seqLen; }
    }

    final Settings settings;
    final TrainableModel model;
    final Optimizer optimizer;
    final Batches batches;
    final LrSchedule schedule;
    final Metrics metrics;
    final TrainingData data;
    final RunIdentity identity;
    final MemoryLedger ledger;
    final PrintStream log;
    final LossScaler scaler; // null unless --precision fp16
    final DataParallel dp; // the ranks of the job (one without mpirun); only its leader writes metrics and checkpoints
    final OptimizerShards shards; // ZeRO stages 1-3 over several ranks, else null
    final long t0 = System.nanoTime();
    double firstLoss = Double.NaN, lastLoss = Double.NaN, lastEval = Double.NaN;
    long tokensSeen;
    // Steps after this run's first (which also warms the JIT up): their seconds and the collectives' share, for `bench train --workers`.
    long warmSteps;
    double warmSeconds, warmCollectiveSeconds;

    TrainingLoop(Settings settings, TrainableModel model, Optimizer optimizer, Batches batches, LrSchedule schedule, Metrics metrics,
                 TrainingData data, RunIdentity identity, MemoryLedger ledger, PrintStream log, LossScaler scaler, DataParallel dp) {
        this.settings = settings;
        this.model = model;
        this.optimizer = optimizer;
        this.batches = batches;
        this.schedule = schedule;
        this.metrics = metrics;
        this.data = data;
        this.identity = identity;
        this.ledger = ledger;
        this.log = log;
        this.scaler = scaler;
        this.dp = dp;
        java.util.Map<String, Boolean> decay = new java.util.HashMap<>();
        for (Param p : model.params) decay.put(p.name(), p.decay());
        this.shards = dp.shardsOptimizer() ? new OptimizerShards(dp.collectives, model.zero, decay::get) : null;
    }

    void run(long startStep) throws IOException {
        steps(startStep);
    }

    /** The gradients clipping reads: every parameter's, or (ZeRO 2-3) this rank's shards, whose norm is summed across ranks. */
    private List<Tensor> gradients() {
        if (model.zero != null && dp.distributed()) return model.zero.gradientBuffers();
        List<Tensor> grads = new ArrayList<>(model.params.size());
        for (Param p : model.params) grads.add(p.grad());
        return grads;
    }

    /** The global norm of the gradients: over ZeRO 2-3's shards, the squares summed across ranks. */
    private double clip(List<Tensor> grads) {
        if (model.zero == null || model.zero.stage() < 2) return GradClip.clipGlobalNorm(grads, settings.maxGradNorm());
        double local = GradClip.globalNorm(grads);
        return GradClip.clip(grads, settings.maxGradNorm(), Math.sqrt(dp.sum(local * local)[0]));
    }

    private void steps(long startStep) throws IOException {
        long total = data.totalSteps();
        Progress progress = new Progress(log, startStep, total);
        for (long s = startStep; s < total; s++) {
            long stepStart = System.nanoTime();
            double collectivesBefore = dp.collectiveSeconds();
            double lossScale = scaler == null ? Double.NaN : scaler.scale();
            double loss = forwardBackward(scaler == null ? 1 : scaler.scale());
            List<Tensor> grads = gradients();
            // Unscale before clipping (GradScaler's order); a non-finite norm of the unscaled gradients is an overflow.
            double gradNorm = scaler == null ? Double.NaN : scaler.unscale(grads);
            boolean skipped = scaler != null && !Double.isFinite(gradNorm);
            double lr = schedule.lr(s);
            if (!skipped) {
                // unscale already summed the squares of the unscaled gradients: clip with that norm, not a second pass.
                gradNorm = scaler == null ? clip(grads) : GradClip.clip(grads, settings.maxGradNorm(), gradNorm);
                if (shards != null) shards.step(optimizer, lr);
                else optimizer.step(model.params, lr);
                model.step.syncWorkingCopies(); // mixed precision: the GEMMs' 16-bit copies follow the fp32 masters
            }
            if (scaler != null) scaler.update(skipped);
            long done = s + 1;
            double seconds = (System.nanoTime() - stepStart) / 1e9;
            if (s > startStep) {
                warmSteps++;
                warmSeconds += seconds;
                warmCollectiveSeconds += dp.collectiveSeconds() - collectivesBefore;
            }
            long stepSeqTokens = settings.tokensPerStep() * dp.size();
            tokensSeen += stepSeqTokens;
            double evalLoss = Double.NaN;
            boolean last = done == total;
            if (!data.eval().isEmpty() && (last || settings.evalEvery() > 0 && done % settings.evalEvery() == 0)) {
                evalLoss = (dp.distributed() ? Trainer.evaluate(model.step, data.eval(), settings.batchSize(), settings.seqLen(), data.padId(), dp)
                        : Trainer.evaluate(model.step, data.eval(), settings.batchSize(), settings.seqLen(), data.padId())).mean();
                lastEval = evalLoss;
            }
            if (Double.isNaN(firstLoss)) firstLoss = loss;
            lastLoss = loss;
            if (dp.leader()) metrics.record(new Metrics.Step(done, loss, lr, gradNorm, stepSeqTokens / seconds, evalLoss, lossScale, skipped));
            progress.update(done, loss, lr, gradNorm, stepSeqTokens / seconds, evalLoss, ledger.totalCurrentBytes(), lossScale, skipped);
            if (skipped && scaler.consecutiveSkips() >= MAX_CONSECUTIVE_SKIPS)
                throw new RunFailure("the fp16 gradients overflowed in " + scaler.consecutiveSkips() + " steps in a row up to step " + done
                        + " (loss scale now " + scaler.scale() + "); stopping (use --precision bf16, or a lower --lr)");
            // A skipped step changed no weight: its inf/NaN loss or gradients are the overflow the scaler handled.
            if (!skipped && !Double.isFinite(loss))
                throw new RunFailure("loss became " + loss + " at step " + done + "; stopping (lower --lr, or check the data)");
            // A finite loss with a non-finite gradient has already poisoned this step's update: stop before it is saved.
            if (!skipped && !Double.isFinite(gradNorm))
                throw new RunFailure("gradient norm became " + gradNorm + " at step " + done + "; stopping (lower --lr, or check the data)");
            if (last || settings.saveEvery() > 0 && done % settings.saveEvery() == 0) {
                if (shards == null) {
                    if (dp.leader()) save(done, new ArrayList<>(optimizer.state().values()));
                } else saveSharded(done);
            }
        }
        progress.close();
    }

    /**
     * One optimizer step's k micro-batches, with the loss normalised by the unmasked tokens of all of them and its
     * gradient multiplied by {@code lossScale} (1 without a scaler: the normaliser is then passed unchanged). Returns
     * the unscaled mean loss: the micro-batches' sums are token losses, whatever the normaliser.
     *
     * <p>Over several ranks each micro-batch is a global one, of which this rank trains its slice; the normaliser is the
     * global batch's tokens, the gradients are summed across ranks before anything reads them (so clipping and the fp16
     * overflow check see the global gradient), and so is the loss.
     */
    private double forwardBackward(float lossScale) {
        List<Batches.Batch> micro = new ArrayList<>(settings.gradAccum());
        long stepTokens = 0;
        for (int i = 0; i < settings.gradAccum(); i++) {
            Batches.Batch b = batches.next();
            micro.add(dp.distributed() ? dp.slice(b, settings.batchSize()) : b);
            stepTokens += b.tokens();
        }
        if (model.zero != null) model.zero.zeroGradients();
        else model.step.zeroGradients();
        double lossSum = 0;
        double normalizer = Math.max(1, stepTokens);
        // normalizer / scale: the step multiplies the loss gradient by 1/(normalizer/scale) = scale/normalizer.
        double scaledNormalizer = lossScale == 1 ? normalizer : normalizer / lossScale;
        for (Batches.Batch b : micro) lossSum += model.step.forwardBackward(b.inputIds(), b.labels(), scaledNormalizer).sum();
        if (dp.distributed()) {
            // Stages 2-3 reduce-scattered each unit inside the backward (ZeroState's hooks); 0-1 sum whole units here.
            if (model.zero == null) dp.sumGradients(model.params);
            else if (model.zero.stage() < 2) model.zero.allReduceGradients();
            lossSum = dp.sum(lossSum)[0];
        }
        return lossSum / normalizer;
    }

    private void save(long done, List<Tensor> optimizerState) throws IOException {
        model.requireFinite("the checkpoint of step " + done);
        Checkpoints.save(settings.output(), done, model.trainable(), optimizerState, trainerState(done).toJson());
        metrics.plot();
    }

    /**
     * ZeRO stage >= 1: every rank writes its own pieces of the optimizer state (no rank gathers the whole of it), rank 0
     * the consolidated weights and, after every rank's file is on disk, the marker. Collective.
     */
    private void saveSharded(long done) throws IOException {
        // ZeRO-3 holds shards of the weights too: every rank takes part in gathering them whole for rank 0's model file.
        model.withWhole(() -> {
            model.requireFinite("the checkpoint of step " + done);
            ShardedCheckpoint.save(dp.collectives, settings.output(), done, shards.layout(), optimizer.state(),
                    ShardedCheckpoint.replicated(model.trainable()), dp.leader() ? trainerState(done).toJson() : null);
            return null;
        });
        if (dp.leader()) metrics.plot();
    }

    private TrainerState trainerState(long done) {
        return new TrainerState(done, optimizer.steps(), batches.position(), settings.seed(), data.totalSteps(),
                model.step.dropoutCalls(), identity, model.checkpointExtras(), scaler == null ? null : scaler.state());
    }
}
