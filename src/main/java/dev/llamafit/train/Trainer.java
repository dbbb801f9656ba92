// The training loop: batches -> forward/backward -> accumulate -> clip -> step, with checkpoints and exact resume.
package dev.llamafit.train;

import java.io.IOException;
import java.io.PrintStream;
import java.lang.foreign.MemorySegment;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

import com.fasterxml.jackson.databind.JsonNode;

import dev.llamafit.io.HfFolderWriter;
import dev.llamafit.io.InputException;
import dev.llamafit.io.ModelFolder;
import dev.llamafit.io.data.Batches;
import dev.llamafit.io.data.DataOptions;
import dev.llamafit.io.data.Datasets;
import dev.llamafit.io.data.Example;
import dev.llamafit.io.data.LoadedDataset;
import dev.llamafit.io.safetensors.SafetensorsFile;
import dev.llamafit.io.tokenizer.Tokenizer;
import dev.llamafit.io.tokenizer.Tokenizers;
import dev.llamafit.kernels.Kernels;
import dev.llamafit.memory.Category;
import dev.llamafit.memory.MemoryLedger;
import dev.llamafit.model.LlamaConfig;
import dev.llamafit.model.ParameterLayout;
import dev.llamafit.model.Technique;
import dev.llamafit.model.TrainingStep;
import dev.llamafit.optim.AdamW;
import dev.llamafit.optim.GradClip;
import dev.llamafit.optim.LrSchedule;
import dev.llamafit.optim.Optimizer;
import dev.llamafit.optim.Param;
import dev.llamafit.optim.Sgd;
import dev.llamafit.tensor.DType;
import dev.llamafit.tensor.Tensor;
import dev.llamafit.tensor.TensorSpec;

/**
 * Full fine-tuning of a LLaMA-family model. One optimizer step takes {@code gradAccum} micro-batches; the loss
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

    public Trainer(TrainOptions options, Kernels kernels, MemoryLedger ledger, PrintStream log) {
        this.o = options;
        this.kernels = kernels;
        this.ledger = ledger;
        this.log = log;
    }

    public Result run() throws IOException {
        Tokenizer tokenizer = Tokenizers.load(o.model());
        LlamaConfig config = ModelFolder.readConfig(o.model());
        if (o.seqLen() > config.maxPositions())
            throw InputException.at(o.model().resolve("config.json"), "--seq-len " + o.seqLen()
                    + " exceeds the model's max_position_embeddings " + config.maxPositions());

        DataOptions dataOptions = new DataOptions(o.seqLen(), o.trainOnPrompt(), o.skipBadRecords(), null, Map.of());
        LoadedDataset train = Datasets.load(o.data(), tokenizer, o.model(), dataOptions);
        report(train, o.data());
        List<Example> trainExamples = train.examples();
        List<Example> evalExamples = List.of();
        if (o.evalData() != null) {
            LoadedDataset ev = Datasets.load(o.evalData(), tokenizer, o.model(), dataOptions);
            report(ev, o.evalData());
            evalExamples = ev.examples();
        } else if (o.evalSplit() > 0) {
            Batches.Split split = Batches.split(trainExamples, o.evalSplit(), o.seed());
            trainExamples = split.train();
            evalExamples = split.eval();
        }
        if (trainExamples.size() < o.batchSize())
            throw InputException.at(o.data(), "only " + trainExamples.size() + " training sequences, fewer than --batch-size "
                    + o.batchSize() + " (lower --batch-size or --seq-len, or add data)");
        int padId = tokenizer.eosId() >= 0 ? tokenizer.eosId() : 0;
        long batchesPerEpoch = trainExamples.size() / o.batchSize();
        long totalSteps = o.steps() > 0 ? o.steps() : Math.max(1, (long) Math.ceil(o.epochs() * batchesPerEpoch / o.gradAccum()));

        Files.createDirectories(o.output());
        Path resumeFrom = o.resume() == null ? null : Checkpoints.resolve(o.resume());
        JsonNode resumeState = resumeFrom == null ? null : Checkpoints.readState(resumeFrom);
        long startStep = resumeState == null ? 0 : resumeState.get("step").asLong();

        boolean lora = o.lora() != null;
        // LoRA leaves the base frozen: it is read in place (memory-mapped F32, or converted once), never copied.
        ModelFolder frozenBase = lora ? ModelFolder.open(o.model(), ledger, kernels) : null;
        Map<String, Tensor> weights = lora ? frozenBase.weights() : loadWeights(config, resumeFrom);
        List<Tensor> weightList = lora ? List.of() : new ArrayList<>(weights.values());
        TrainingStep.Options stepOptions = new TrainingStep.Options(o.lora(), o.technique().gradientCheckpointing(), o.technique().checkpointEvery(), o.seed());
        try (TrainingStep step = new TrainingStep(config, weights, kernels, ledger, o.batchSize(), o.seqLen(), stepOptions);
             Optimizer optimizer = o.technique().optimizer() == Technique.Optimizer.ADAMW
                     ? new AdamW(0.9, 0.999, 1e-8, o.weightDecay(), ledger)
                     : new Sgd(0.9, o.weightDecay(), ledger)) {
            List<Param> params = new ArrayList<>();
            if (lora) {
                if (o.adapter() != null && resumeFrom == null) loadAdapterFolder(step, config);
                for (Map.Entry<String, Tensor> e : step.adapterWeights().entrySet())
                    params.add(new Param(e.getKey(), e.getValue(), step.adapterGradients().get(e.getKey()), true));
            } else {
                for (TensorSpec spec : ParameterLayout.of(config, DType.F32).specs()) {
                    boolean decay = !spec.component().equals("norm") && !spec.name().endsWith(".bias");
                    params.add(new Param(spec.name(), weights.get(spec.name()), step.gradients().get(spec.name()), decay));
                }
            }
            List<Tensor> trainable = params.stream().map(Param::value).toList();
            if (lora && resumeFrom != null) {
                try (SafetensorsFile f = SafetensorsFile.open(resumeFrom.resolve(Checkpoints.MODEL), ledger)) {
                    Map<String, Tensor> saved = new LinkedHashMap<>();
                    for (String name : f.names()) saved.put(name, f.find(name).orElseThrow());
                    step.loadAdapter(saved);
                }
            }
            if (resumeState != null) step.setDropoutCalls(resumeState.path("dropout_calls").asLong(0));
            Batches batches = new Batches(trainExamples, o.batchSize(), o.seqLen(), padId, o.seed(), true);
            if (resumeState != null) {
                try (SafetensorsFile f = SafetensorsFile.open(resumeFrom.resolve(Checkpoints.OPTIMIZER), ledger)) {
                    Map<String, Tensor> state = new LinkedHashMap<>();
                    for (String name : f.names()) state.put(name, f.find(name).orElseThrow());
                    optimizer.loadState(state, resumeState.get("optimizer_steps").asLong());
                }
                batches.seek(new Batches.Position(resumeState.get("data_epoch").asLong(), resumeState.get("data_batch").asLong()));
                log.printf("resuming from %s at step %d%n", resumeFrom, startStep);
                long plannedTotal = resumeState.path("total_steps").asLong(totalSteps);
                if (plannedTotal != totalSteps)
                    log.printf("note: the run was planned for %d steps and now has %d; the %s schedule follows the new length%n",
                            plannedTotal, totalSteps, o.schedule());
            }
            LrSchedule schedule = LrSchedule.parse(o.schedule(), o.lr(), o.warmup(), totalSteps);
            Metrics metrics = new Metrics(o.output(), resumeState == null ? -1 : startStep);
            Progress progress = new Progress(log, startStep, totalSteps);
            double firstLoss = Double.NaN, lastLoss = Double.NaN, lastEval = Double.NaN;
            long tokensSeen = 0;
            long t0 = System.nanoTime();
            for (long s = startStep; s < totalSteps; s++) {
                long stepStart = System.nanoTime();
                List<Batches.Batch> micro = new ArrayList<>(o.gradAccum());
                long stepTokens = 0;
                for (int i = 0; i < o.gradAccum(); i++) {
                    Batches.Batch b = batches.next();
                    micro.add(b);
                    stepTokens += b.tokens();
                }
                step.zeroGradients();
                double lossSum = 0;
                double normalizer = Math.max(1, stepTokens);
                for (Batches.Batch b : micro) lossSum += step.forwardBackward(b.inputIds(), b.labels(), normalizer).sum();
                double loss = lossSum / normalizer;
                List<Tensor> grads = new ArrayList<>(params.size());
                for (Param p : params) grads.add(p.grad());
                double gradNorm = GradClip.clipGlobalNorm(grads, o.maxGradNorm());
                double lr = schedule.lr(s);
                optimizer.step(params, lr);
                long done = s + 1;
                double seconds = (System.nanoTime() - stepStart) / 1e9;
                long stepSeqTokens = (long) o.effectiveBatch() * o.seqLen();
                tokensSeen += stepSeqTokens;
                double evalLoss = Double.NaN;
                boolean last = done == totalSteps;
                if (!evalExamples.isEmpty() && (last || o.evalEvery() > 0 && done % o.evalEvery() == 0)) {
                    evalLoss = evaluate(step, evalExamples, o.batchSize(), o.seqLen(), padId).mean();
                    lastEval = evalLoss;
                }
                if (Double.isNaN(firstLoss)) firstLoss = loss;
                lastLoss = loss;
                metrics.record(new Metrics.Step(done, loss, lr, gradNorm, stepSeqTokens / seconds, evalLoss));
                progress.update(done, loss, lr, gradNorm, stepSeqTokens / seconds, evalLoss, ledger.totalCurrentBytes());
                if (!Double.isFinite(loss)) throw new IllegalStateException("loss became " + loss + " at step " + done + "; stopping");
                if (last || o.saveEvery() > 0 && done % o.saveEvery() == 0) {
                    Batches.Position pos = batches.position();
                    Map<String, Object> state = new LinkedHashMap<>();
                    state.put("format", 1);
                    state.put("step", done);
                    state.put("optimizer_steps", optimizer.steps());
                    state.put("data_epoch", pos.epoch());
                    state.put("data_batch", pos.batch());
                    state.put("seed", o.seed());
                    state.put("total_steps", totalSteps);
                    state.put("model", o.model().toString());
                    state.put("data", o.data().toString());
                    state.put("dropout_calls", step.dropoutCalls());
                    if (lora) state.put("lora", dev.llamafit.io.PeftAdapters.configToJson(o.lora(), o.model().toString()));
                    Checkpoints.save(o.output(), done, trainable, new ArrayList<>(optimizer.state().values()), state);
                    metrics.plot();
                }
            }
            progress.close();
            Path finalDir;
            if (lora) {
                // A LoRA run's product is the adapter, in PEFT's format; `llamafit merge` makes a full model of it.
                finalDir = o.output().resolve("adapter");
                dev.llamafit.io.PeftAdapters.write(finalDir, o.lora(), step.adapterWeights(), o.model().toString());
            } else {
                finalDir = o.output().resolve("final");
                List<Tensor> toWrite = new ArrayList<>();
                for (TensorSpec spec : ParameterLayout.of(config, DType.F32).specs()) toWrite.add(weights.get(spec.name()));
                HfFolderWriter.write(finalDir, config, toWrite, o.model());
            }
            metrics.plot();
            double secs = (System.nanoTime() - t0) / 1e9;
            return new Result(totalSteps - startStep, firstLoss, lastLoss, lastEval, tokensSeen, secs, finalDir, ledger.snapshot());
        } finally {
            weightList.forEach(Tensor::close);
            if (frozenBase != null) frozenBase.close();
        }
    }

    /** Starts LoRA training from an existing PEFT adapter, which must match --lora-r and --lora-targets. */
    private void loadAdapterFolder(TrainingStep step, LlamaConfig config) {
        try (dev.llamafit.io.PeftAdapters.Adapter a = dev.llamafit.io.PeftAdapters.read(o.adapter(), config, ledger)) {
            if (a.config().rank() != o.lora().rank() || !a.config().targets().equals(o.lora().targets()))
                throw InputException.at(o.adapter().resolve(dev.llamafit.io.PeftAdapters.CONFIG_FILE), "adapter has r " + a.config().rank()
                        + " and targets " + a.config().targets() + ", but this run asks for r " + o.lora().rank() + " and " + o.lora().targets());
            step.loadAdapter(a.weights());
        }
    }

    /**
     * Mean loss per unmasked token over {@code examples}, in order, in batches of the training shape; the last
     * batch is filled with fully masked rows, which add no loss and no tokens.
     */
    public static TrainingStep.Loss evaluate(TrainingStep step, List<Example> examples, int batch, int seqLen, int padId) {
        double sum = 0;
        long tokens = 0;
        for (int start = 0; start < examples.size(); start += batch) {
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

    /** Owned, writable fp32 copies of the base model's weights (or of a checkpoint's), filed under weights. */
    private Map<String, Tensor> loadWeights(LlamaConfig config, Path checkpoint) {
        Map<String, Tensor> out = new LinkedHashMap<>();
        try (ModelFolder base = checkpoint == null ? ModelFolder.open(o.model(), ledger, kernels) : null;
             SafetensorsFile ck = checkpoint == null ? null : SafetensorsFile.open(checkpoint.resolve(Checkpoints.MODEL), ledger)) {
            for (TensorSpec spec : ParameterLayout.of(config, DType.F32).specs()) {
                Tensor src = base != null ? base.weights().get(spec.name())
                        : ck.find(spec.name()).orElseThrow(() -> InputException.at(checkpoint.resolve(Checkpoints.MODEL),
                                "checkpoint lacks tensor " + spec.name()));
                if (!src.shape().equals(spec.shape()) || src.dtype() != DType.F32)
                    throw InputException.at(checkpoint, "tensor " + spec.name() + " is " + src.dtype() + src.shape()
                            + ", expected F32" + spec.shape());
                Tensor t = Tensor.allocate(ledger, Category.WEIGHTS, spec.name(), DType.F32, spec.shape());
                MemorySegment.copy(src.segment(), 0, t.segment(), 0, t.bytes());
                out.put(spec.name(), t);
            }
        } catch (RuntimeException e) {
            out.values().forEach(Tensor::close);
            throw e;
        }
        return out;
    }

    private void report(LoadedDataset d, Path file) {
        log.printf("data %s: %s, %d sequences, %,d tokens (%,d trained)%s%s%n", file.getFileName(), d.format(),
                d.examples().size(), d.tokens(), d.trainedTokens(),
                d.badRecords() > 0 ? ", skipped " + d.badRecords() + " bad records (first: " + d.badReasons().getFirst() + ")" : "",
                d.truncated() > 0 ? ", truncated " + d.truncated() + " to --seq-len" : "");
    }
}
