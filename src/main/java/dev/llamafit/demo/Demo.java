// The built-in demo: build a tiny model, pretrain it on task A, fine-tune it (LoRA) on task B, and measure both.
package dev.llamafit.demo;

import java.io.IOException;
import java.io.PrintStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.SplittableRandom;


import dev.llamafit.io.ModelFolder;
import dev.llamafit.io.PeftAdapters;
import dev.llamafit.io.data.Batches;
import dev.llamafit.io.data.DataOptions;
import dev.llamafit.io.data.Datasets;
import dev.llamafit.io.data.Example;
import dev.llamafit.io.tokenizer.Tokenizer;
import dev.llamafit.io.tokenizer.Tokenizers;
import dev.llamafit.kernels.Kernels;
import dev.llamafit.memory.Category;
import dev.llamafit.memory.MemoryLedger;
import dev.llamafit.memory.ProcessMemory;
import dev.llamafit.model.Generator;
import dev.llamafit.model.LlamaConfig;
import dev.llamafit.model.LlamaModel;
import dev.llamafit.model.LoraConfig;
import dev.llamafit.model.ParameterLayout;
import dev.llamafit.model.Sampler;
import dev.llamafit.model.Technique;
import dev.llamafit.model.TrainingLayout;
import dev.llamafit.model.TrainingStep;
import dev.llamafit.peft.MergedFolders;
import dev.llamafit.tensor.DType;
import dev.llamafit.train.Metrics;
import dev.llamafit.train.TrainOptions;
import dev.llamafit.train.Trainer;
import dev.llamafit.demo.SyntheticTasks.Task;

/**
 * What {@code llamafit demo} does, as a library call. Synthetic mode (no model given): write a tiny
 * character-level Llama with random weights, pretrain it with full fine-tuning on task A, then fine-tune it with
 * LoRA and gradient checkpointing on task B, and measure exact-match accuracy of greedy answers on held-out
 * prompts before and after, the adapter (a PEFT folder, evaluated merged into the base) and the memory of each
 * phase. Real mode ({@code model} and {@code data} given): skip pretraining and report the held-out loss before
 * and after the LoRA fine-tune instead. Every phase goes through the ordinary {@link Trainer}, so the demo shows
 * what {@code train} does and nothing else.
 */
public final class Demo {
    /**
     * @param work          folder for everything the demo writes (kept for inspection)
     * @param seed          seeds data, weights and data order
     * @param stepsPretrain optimizer steps on task A
     * @param stepsFinetune optimizer steps on task B (or on the real data)
     * @param model         a real model folder to fine-tune instead of the synthetic one, or null
     * @param data          the real model's training data (with model), or null
     * @param evalExamples  held-out prompts per accuracy measurement
     */
    public record Options(Path work, long seed, long stepsPretrain, long stepsFinetune, Path model, Path data, int evalExamples) {
        public Options {
            if (work == null) throw new IllegalArgumentException("--work is required");
            if ((model == null) != (data == null)) throw new IllegalArgumentException("--model and --data go together (fine-tune a real model on a data file)");
            if (stepsPretrain < 1 && model == null) throw new IllegalArgumentException("--steps-pretrain must be >= 1, got " + stepsPretrain);
            if (stepsFinetune < 1) throw new IllegalArgumentException("--steps-finetune must be >= 1, got " + stepsFinetune);
            if (evalExamples < 1) throw new IllegalArgumentException("--eval-examples must be >= 1, got " + evalExamples);
        }

        public boolean synthetic() { return model == null; }
    }

    /**
     * One training run of the demo. {@code product} is what the run wrote: final/ (full) or adapter/ (LoRA).
     * The ledger peaks cover this run only (the ledger's peaks are reset before it); {@code peakRssBytes} is
     * the process's high-water mark when the run ended, which never goes down.
     */
    public record Phase(String name, String method, String data, long steps, double seconds, double firstLoss, double lastLoss,
                        double evalLoss, List<Double> losses, Path lossPlot, Path output, Path product, long trainableParameters,
                        Map<Category, Long> ledgerPeakBytes, long ledgerTotalPeakBytes, Long peakRssBytes) {}

    /** One greedy answer next to the expected one. */
    public record Sample(String prompt, String expected, String generated) {}

    /** Exact-match accuracy of greedy answers on held-out prompts. */
    public record Accuracy(String task, int correct, int total, List<Sample> samples) {
        public double fraction() { return total == 0 ? 0 : (double) correct / total; }
    }

    /**
     * Everything the demo measured. Accuracies are null in real mode, eval losses are NaN in synthetic mode.
     * {@code wallSeconds} is wall time per part of the run (setup, each training phase, each evaluation) in order.
     */
    public record Report(String mode, Path work, Path baseModel, LlamaConfig config, long parameters, List<Phase> phases,
                         Accuracy taskAAfterPretrain, Accuracy taskBBefore, Accuracy taskBAfter, Accuracy taskAAfterFinetune,
                         double evalLossBefore, double evalLossAfter, Path adapter, long adapterBytes, long trainableParameters,
                         Long peakRssBytes, Map<String, Double> wallSeconds, double seconds, List<String> notes) {}

    // Shapes and hyper-parameters chosen by running the demo on the 2-core machines this project is built on
    // (seeds and accuracies in README.md). One question per sequence: packing 2-3 questions into 64-token
    // conversations plateaued at a loss near 2 on reversal, where single questions reach ~0 in 200 steps,
    // plausibly because letters repeated across turns mislead the attention that finds the letter to copy.
    // Two layers learn reversal as well as four at half the step time.
    static final Task TASK_A = Task.REVERSE, TASK_B = Task.COPY;
    static final int MIN_LETTERS = 3, MAX_LETTERS = 4;
    static final int TRAIN_EXAMPLES = 20_000;
    static final int SEQ_LEN = 32, BATCH = 32;
    static final double LR_PRETRAIN = 3e-3, LR_LORA = 6e-3;
    static final int REAL_SEQ_LEN = 128, REAL_BATCH = 4;
    static final double REAL_LR_LORA = 1e-3, REAL_EVAL_SPLIT = 0.1;
    static final LoraConfig LORA = new LoraConfig(16, 32, 0, dev.llamafit.model.LinearModule.keys(), false);

    private final Options o;
    private final Kernels kernels;
    private final MemoryLedger ledger;
    private final PrintStream log;
    private final List<String> notes = new ArrayList<>();
    private final Map<String, Double> wall = new LinkedHashMap<>();
    private long lap;

    public Demo(Options options, Kernels kernels, MemoryLedger ledger, PrintStream log) {
        this.o = options;
        this.kernels = kernels;
        this.ledger = ledger;
        this.log = log;
    }

    public Report run() throws IOException {
        long t0 = System.nanoTime();
        lap = t0;
        Files.createDirectories(o.work());
        return o.synthetic() ? runSynthetic(t0) : runReal(t0);
    }

    private Report runSynthetic(long t0) throws IOException {
        Path work = o.work();
        SplittableRandom random = new SplittableRandom(o.seed());
        // Held-out prompts are drawn first and excluded from training, so accuracy is measured on unseen strings.
        Set<String> used = new HashSet<>();
        List<SyntheticTasks.Example> evalA = draw(TASK_A, o.evalExamples(), random, used);
        List<SyntheticTasks.Example> evalB = draw(TASK_B, o.evalExamples(), random, used);
        // One epoch at most: every training example is new to the model, and short runs (tests) stay fast.
        List<SyntheticTasks.Example> trainA = draw(TASK_A, trainCount(o.stepsPretrain()), random, used);
        List<SyntheticTasks.Example> trainB = draw(TASK_B, trainCount(o.stepsFinetune()), random, used);
        Path data = work.resolve("data");
        Files.createDirectories(data);
        Path fileA = data.resolve("task_a_" + TASK_A.word() + ".jsonl"), fileB = data.resolve("task_b_" + TASK_B.word() + ".jsonl");
        Path fileEvalA = data.resolve("task_a_" + TASK_A.word() + "_heldout.jsonl"), fileEvalB = data.resolve("task_b_" + TASK_B.word() + "_heldout.jsonl");
        SyntheticTasks.writeChatJsonl(fileA, trainA);
        SyntheticTasks.writeChatJsonl(fileB, trainB);
        SyntheticTasks.writeChatJsonl(fileEvalA, evalA);
        SyntheticTasks.writeChatJsonl(fileEvalB, evalB);

        LlamaConfig config = TinyBaseModel.config(128, 2, 4, 2, 344, 64);
        Path base = work.resolve("base");
        TinyBaseModel.write(base, config, o.seed(), ledger);
        log.printf("demo: tiny Llama (C %d, L %d, H %d, KvH %d, F %d, V %d, context %d; %,d parameters) in %s%n",
                config.hiddenSize(), config.numLayers(), config.numHeads(), config.numKvHeads(), config.intermediateSize(),
                config.vocabSize(), config.maxPositions(), parameters(config), base);
        lap("setup");

        log.printf("demo: phase 1, pretraining on task A (%s) with full fine-tuning on %d questions%n", TASK_A.word(), trainA.size());
        TrainOptions pre = options(base, fileA, work.resolve("pretrain"), o.stepsPretrain(), SEQ_LEN, BATCH, LR_PRETRAIN, fileEvalA, null);
        Phase p1 = train("pretrain", "full", pre, parameters(config));
        lap("pretrain");
        Accuracy aAfterPre, bBefore;
        try (Evaluator ev = new Evaluator(base, p1.product(), null)) {
            aAfterPre = ev.accuracy(TASK_A, evalA);
            bBefore = ev.accuracy(TASK_B, evalB);
        }
        lap("eval_after_pretrain");

        log.printf("demo: phase 2, fine-tuning on task B (%s) with LoRA (r %d, alpha %.0f, %s) and gradient checkpointing%n",
                TASK_B.word(), LORA.rank(), LORA.alpha(), String.join(",", LORA.targets()));
        TrainOptions ft = options(p1.product(), fileB, work.resolve("finetune"), o.stepsFinetune(), SEQ_LEN, BATCH, LR_LORA, fileEvalB, LORA);
        Phase p2 = train("finetune", "lora", ft, loraParameters(config));
        lap("finetune");
        Accuracy bAfter, aAfterFt;
        // The adapter alone is the product: evaluate it as a user would, merged into the pretrained base it was trained on.
        try (Evaluator ev = new Evaluator(base, p1.product(), p2.product())) {
            bAfter = ev.accuracy(TASK_B, evalB);
            aAfterFt = ev.accuracy(TASK_A, evalA);
        }
        lap("eval_after_finetune");
        return report("synthetic", base, config, List.of(p1, p2), aAfterPre, bBefore, bAfter, aAfterFt, Double.NaN, Double.NaN, t0);
    }

    private Report runReal(long t0) throws IOException {
        LlamaConfig config = ModelFolder.readConfig(o.model());
        int seqLen = Math.min(REAL_SEQ_LEN, config.maxPositions());
        double before;
        try (ModelFolder folder = ModelFolder.open(o.model(), ledger, kernels)) {
            before = heldOutLoss(folder, o.model(), seqLen, REAL_BATCH);
        }
        log.printf("demo: held-out loss of %s before fine-tuning: %.4f%n", o.model(), before);
        lap("eval_before");
        TrainOptions ft = options(o.model(), o.data(), o.work().resolve("finetune"), o.stepsFinetune(), seqLen, REAL_BATCH, REAL_LR_LORA, null, LORA);
        Phase p = train("finetune", "lora", ft, loraParameters(config));
        lap("finetune");
        // Measured again from the written adapter merged into the base, so the number belongs to the files on disk.
        double after;
        try (ModelFolder merged = MergedFolders.open(o.model(), p.product(), ledger, kernels)) {
            after = heldOutLoss(merged, o.model(), seqLen, REAL_BATCH);
        }
        lap("eval_after");
        return report("real", o.model(), config, List.of(p), null, null, null, null, before, after, t0);
    }

    private List<SyntheticTasks.Example> draw(Task task, int count, SplittableRandom random, Set<String> used) {
        return SyntheticTasks.generate(task, count, MIN_LETTERS, MAX_LETTERS, random, used);
    }

    private static int trainCount(long steps) {
        return (int) Math.min(TRAIN_EXAMPLES, Math.max(BATCH, steps * BATCH));
    }

    private static TrainOptions options(Path model, Path data, Path out, long steps, int seqLen, int batch, double lr, Path evalData, LoraConfig lora) {
        long warmup = Math.max(1, steps / 10);
        boolean real = evalData == null;
        Technique technique = lora == null ? Technique.FULL : Technique.lora(lora).withGradientCheckpointing(true, 1);
        return new TrainOptions(model, data, out, steps, 0, batch, seqLen, lr, "cosine", warmup, 0.0, 1.0,
                0, 0, null, 1234, evalData, real ? REAL_EVAL_SPLIT : 0, false, false, technique, null, false, null);
    }

    /** Runs the Trainer with the ledger's peaks reset first, so the phase's peaks are its own. */
    private Phase train(String name, String method, TrainOptions opts, long trainable) throws IOException {
        ledger.resetPeaks();
        Trainer.Result r = new Trainer(opts, kernels, ledger, log).run();
        MemoryLedger.Snapshot snap = r.memory();
        Map<Category, Long> peaks = new LinkedHashMap<>();
        for (Category c : Category.values()) peaks.put(c, snap.lines().get(c).peakBytes());
        return new Phase(name, method, opts.data().getFileName().toString(), r.steps(), r.seconds(), r.firstLoss(), r.lastLoss(), r.evalLoss(),
                losses(opts.output()), opts.output().resolve(Metrics.PLOT), opts.output(), r.finalModel(), trainable,
                peaks, snap.totalPeakBytes(), rss());
    }

    private void lap(String part) {
        long now = System.nanoTime();
        wall.put(part, (now - lap) / 1e9);
        lap = now;
    }

    /** Training loss per step, read back from the run's metrics.jsonl (event records skipped). */
    static List<Double> losses(Path runDir) throws IOException {
        return Metrics.read(runDir).stream().map(Metrics.Step::loss).toList();
    }

    /**
     * A model loaded once for greedy answers: the pretrained weights, or those plus a LoRA adapter merged in. The
     * tokenizer always comes from the demo's base folder (training runs copy it, adapters do not carry one).
     */
    private final class Evaluator implements AutoCloseable {
        private final Tokenizer tok;
        private final ModelFolder folder;
        private final LlamaModel model;
        private final Generator gen;
        private final Set<Integer> eos;

        Evaluator(Path tokenizerDir, Path modelDir, Path adapterDir) {
            tok = Tokenizers.load(tokenizerDir);
            folder = adapterDir == null ? ModelFolder.open(modelDir, ledger, kernels) : MergedFolders.open(modelDir, adapterDir, ledger, kernels);
            model = folder.newModel(kernels, ledger);
            eos = new HashSet<>(folder.config().eosTokenIds());
            eos.addAll(tok.eosIds());
            gen = new Generator(model, new Sampler(0, 0, 1.0, 0), eos);
        }

        /** Greedy answers to held-out prompts, compared exactly: the answer's characters, then EOS. */
        Accuracy accuracy(Task task, List<SyntheticTasks.Example> examples) {
            int correct = 0;
            List<Sample> samples = new ArrayList<>();
            for (SyntheticTasks.Example e : examples) {
                int[] prompt = tok.encode(SyntheticTasks.chatPrompt(e.prompt()), tok.addBosByDefault());
                List<Integer> ids = new ArrayList<>();
                gen.generate(prompt, e.answer().length() + 1, ids::add);
                boolean endedWithEos = !ids.isEmpty() && eos.contains(ids.getLast());
                if (endedWithEos) ids.removeLast();
                String text = tok.decode(ids.stream().mapToInt(Integer::intValue).toArray());
                if (endedWithEos && text.equals(e.answer())) correct++;
                if (samples.size() < 3) samples.add(new Sample(e.prompt(), e.answer(), text));
            }
            return new Accuracy(task.word(), correct, examples.size(), samples);
        }

        @Override
        public void close() {
            model.close();
            folder.close();
        }
    }

    /** A model's loss on the held-out split the Trainer uses (same fraction and seed). */
    private double heldOutLoss(ModelFolder folder, Path tokenizerDir, int seqLen, int batch) {
        Tokenizer tok = Tokenizers.load(tokenizerDir);
        List<Example> all = Datasets.load(o.data(), tok, tokenizerDir, new DataOptions(seqLen, false, false, null, Map.of())).examples();
        List<Example> eval = Batches.split(all, REAL_EVAL_SPLIT, 1234).eval();
        int padId = tok.eosId() >= 0 ? tok.eosId() : 0;
        try (TrainingStep step = new TrainingStep(folder.config(), folder.weights(), kernels, ledger, batch, seqLen)) {
            return Trainer.evaluate(step, eval, batch, seqLen, padId).mean();
        }
    }

    private Report report(String mode, Path base, LlamaConfig config, List<Phase> phases, Accuracy aPre, Accuracy bBefore,
                          Accuracy bAfter, Accuracy aAfterFt, double evalBefore, double evalAfter, long t0) throws IOException {
        Phase last = phases.getLast();
        Path adapter = last.product();
        long adapterBytes = Files.size(adapter.resolve(PeftAdapters.CONFIG_FILE)) + Files.size(adapter.resolve("adapter_model.safetensors"));
        wall.put("total", (System.nanoTime() - t0) / 1e9);
        return new Report(mode, o.work(), base, config, parameters(config), phases, aPre, bBefore, bAfter, aAfterFt,
                evalBefore, evalAfter, adapter, adapterBytes, last.trainableParameters(), rss(), java.util.Collections.unmodifiableMap(new LinkedHashMap<>(wall)),
                (System.nanoTime() - t0) / 1e9, List.copyOf(notes));
    }

    private static Long rss() {
        var rss = ProcessMemory.peakRssBytes();
        return rss.isPresent() ? rss.getAsLong() : null;
    }

    static long parameters(LlamaConfig config) {
        return ParameterLayout.of(config, DType.F32).specs().stream().mapToLong(s -> s.shape().elements()).sum();
    }

    /** LoRA's trainable parameters: A [r, in] and B [out, r] for every targeted module of every layer. */
    static long loraParameters(LlamaConfig config) {
        return TrainingLayout.of(config, 1, 2, Technique.lora(LORA)).adapterSpecs().stream().mapToLong(s -> s.shape().elements()).sum();
    }
}
