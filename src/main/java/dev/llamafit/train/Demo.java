// The built-in demo: build a tiny model, pretrain it on task A, fine-tune it (LoRA) on task B, and measure both.
package dev.llamafit.train;

import java.io.IOException;
import java.io.PrintStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.HashSet;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.SplittableRandom;
import java.util.stream.Stream;

import com.fasterxml.jackson.databind.JsonNode;

import dev.llamafit.io.Json;
import dev.llamafit.io.ModelFolder;
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
import dev.llamafit.model.Sampler;
import dev.llamafit.model.TrainingStep;
import dev.llamafit.train.SyntheticTasks.Task;

/**
 * What {@code llamafit demo} does, as a library call. Synthetic mode (no model given): write a tiny
 * character-level Llama with random weights, pretrain it with full fine-tuning on task A, then fine-tune it with
 * LoRA and gradient checkpointing on task B, and measure exact-match accuracy of greedy answers on held-out
 * prompts before and after. Real mode ({@code model} and {@code data} given): skip pretraining and report the
 * held-out loss before and after the LoRA fine-tune instead. Every phase goes through the ordinary
 * {@link Trainer}, so the demo shows what {@code train} does and nothing else.
 */
public final class Demo {
    /**
     * @param work               folder for everything the demo writes (kept for inspection)
     * @param seed               seeds data, weights and data order
     * @param stepsPretrain      optimizer steps on task A
     * @param stepsFinetune      optimizer steps on task B (or on the real data)
     * @param model              a real model folder to fine-tune instead of the synthetic one, or null
     * @param data               the real model's training data (with model), or null
     * @param evalExamples       held-out prompts per accuracy measurement
     * @param fullFinetunePhase2 TEMPORARY: if the Trainer rejects LoRA (UnsupportedOperationException or
     *                           IllegalStateException), run phase 2 as full fine-tuning instead of failing
     */
    public record Options(Path work, long seed, long stepsPretrain, long stepsFinetune, Path model, Path data,
                          int evalExamples, boolean fullFinetunePhase2) {
        public Options {
            if (work == null) throw new IllegalArgumentException("--work is required");
            if ((model == null) != (data == null)) throw new IllegalArgumentException("--model and --data go together (fine-tune a real model on a data file)");
            if (stepsPretrain < 1 && model == null) throw new IllegalArgumentException("--steps-pretrain must be >= 1, got " + stepsPretrain);
            if (stepsFinetune < 1) throw new IllegalArgumentException("--steps-finetune must be >= 1, got " + stepsFinetune);
            if (evalExamples < 1) throw new IllegalArgumentException("--eval-examples must be >= 1, got " + evalExamples);
        }

        public boolean synthetic() { return model == null; }
    }

    /** One training run of the demo. {@code method}: "full", "lora", or how phase 2 fell back. */
    public record Phase(String name, String method, String data, long steps, double seconds, double firstLoss, double lastLoss,
                        double evalLoss, List<Double> losses, Path lossPlot, Path output, Path finalModel) {}

    /** One greedy answer next to the expected one. */
    public record Sample(String prompt, String expected, String generated) {}

    /** Exact-match accuracy of greedy answers on held-out prompts. */
    public record Accuracy(String task, int correct, int total, List<Sample> samples) {
        public double fraction() { return total == 0 ? 0 : (double) correct / total; }
    }

    /**
     * Everything the demo measured. Accuracies are null in real mode, eval losses are NaN in synthetic mode;
     * {@code adapterBytes} is null while phase 2 writes no adapter/ folder.
     */
    public record Report(String mode, Path work, Path baseModel, LlamaConfig config, long parameters, List<Phase> phases,
                         Accuracy taskAAfterPretrain, Accuracy taskBBefore, Accuracy taskBAfter, Accuracy taskAAfterFinetune,
                         double evalLossBefore, double evalLossAfter, Long adapterBytes, Map<Category, Long> ledgerPeakBytes,
                         long ledgerTotalPeakBytes, Long peakRssBytes, double seconds, List<String> notes) {}

    // Shapes and hyper-parameters chosen by running the demo on the 2-core machines this project is built on.
    static final Task TASK_A = Task.REVERSE, TASK_B = Task.SORT;
    static final int MIN_LETTERS = 3, MAX_LETTERS = 6;
    static final int TRAIN_EXAMPLES = 20_000;
    static final int SEQ_LEN = 32, BATCH = 32;
    static final double LR_PRETRAIN = 3e-3, LR_LORA = 3e-3, LR_FULL_PHASE2 = 1e-3;
    static final int REAL_SEQ_LEN = 128, REAL_BATCH = 4;
    static final double REAL_LR_LORA = 1e-3, REAL_LR_FULL = 3e-4, REAL_EVAL_SPLIT = 0.1;
    static final LoraConfig LORA = new LoraConfig(8, 16, 0, LoraConfig.ALL_LINEAR, false);

    private final Options o;
    private final Kernels kernels;
    private final MemoryLedger ledger;
    private final PrintStream log;
    private final List<String> notes = new ArrayList<>();

    public Demo(Options options, Kernels kernels, MemoryLedger ledger, PrintStream log) {
        this.o = options;
        this.kernels = kernels;
        this.ledger = ledger;
        this.log = log;
    }

    public Report run() throws IOException {
        long t0 = System.nanoTime();
        Files.createDirectories(o.work());
        return o.synthetic() ? runSynthetic(t0) : runReal(t0);
    }

    private Report runSynthetic(long t0) throws IOException {
        Path work = o.work();
        SplittableRandom random = new SplittableRandom(o.seed());
        // Held-out prompts are drawn first and excluded from training, so accuracy is measured on unseen strings.
        Set<String> used = new HashSet<>();
        List<SyntheticTasks.Example> evalA = SyntheticTasks.generate(TASK_A, o.evalExamples(), MIN_LETTERS, MAX_LETTERS, random, used);
        List<SyntheticTasks.Example> evalB = SyntheticTasks.generate(TASK_B, o.evalExamples(), MIN_LETTERS, MAX_LETTERS, random, used);
        // One epoch at most: every training example is new to the model, and short runs (tests) stay fast.
        List<SyntheticTasks.Example> trainA = SyntheticTasks.generate(TASK_A, trainCount(o.stepsPretrain()), MIN_LETTERS, MAX_LETTERS, random, used);
        List<SyntheticTasks.Example> trainB = SyntheticTasks.generate(TASK_B, trainCount(o.stepsFinetune()), MIN_LETTERS, MAX_LETTERS, random, used);
        Path data = work.resolve("data");
        Files.createDirectories(data);
        Path fileA = data.resolve("task_a_" + TASK_A.word() + ".jsonl"), fileB = data.resolve("task_b_" + TASK_B.word() + ".jsonl");
        Path fileEvalA = data.resolve("task_a_" + TASK_A.word() + "_heldout.jsonl"), fileEvalB = data.resolve("task_b_" + TASK_B.word() + "_heldout.jsonl");
        SyntheticTasks.writeChatJsonl(fileA, trainA);
        SyntheticTasks.writeChatJsonl(fileB, trainB);
        SyntheticTasks.writeChatJsonl(fileEvalA, evalA);
        SyntheticTasks.writeChatJsonl(fileEvalB, evalB);

        LlamaConfig config = TinyBaseModel.config(128, 4, 4, 2, 344, 64);
        Path base = work.resolve("base");
        TinyBaseModel.write(base, config, o.seed(), ledger);
        log.printf("demo: tiny Llama (C %d, L %d, H %d, KvH %d, F %d, V %d, context %d; %,d parameters) in %s%n",
                config.hiddenSize(), config.numLayers(), config.numHeads(), config.numKvHeads(), config.intermediateSize(),
                config.vocabSize(), config.maxPositions(), parameters(config), base);

        log.printf("demo: phase 1, pretraining on task A (%s) with full fine-tuning%n", TASK_A.word());
        TrainOptions pre = options(base, fileA, work.resolve("pretrain"), o.stepsPretrain(), SEQ_LEN, BATCH, LR_PRETRAIN, fileEvalA, null);
        Phase p1 = phase("pretrain", "full", fileA, pre, new Trainer(pre, kernels, ledger, log).run());
        Accuracy aAfterPre = accuracy(p1.finalModel(), TASK_A, evalA);
        Accuracy bBefore = accuracy(p1.finalModel(), TASK_B, evalB);

        log.printf("demo: phase 2, fine-tuning on task B (%s) with LoRA r %d and gradient checkpointing%n", TASK_B.word(), LORA.rank());
        Phase p2 = finetune(p1.finalModel(), fileB, fileEvalB, SEQ_LEN, BATCH, LR_LORA, LR_FULL_PHASE2);
        Accuracy bAfter = accuracy(p2.finalModel(), TASK_B, evalB);
        Accuracy aAfterFt = accuracy(p2.finalModel(), TASK_A, evalA);
        return report("synthetic", base, config, List.of(p1, p2), aAfterPre, bBefore, bAfter, aAfterFt, Double.NaN, Double.NaN, t0);
    }

    private Report runReal(long t0) throws IOException {
        LlamaConfig config = ModelFolder.readConfig(o.model());
        int seqLen = Math.min(REAL_SEQ_LEN, config.maxPositions());
        double before = heldOutLoss(o.model(), o.data(), seqLen, REAL_BATCH);
        log.printf("demo: held-out loss of %s before fine-tuning: %.4f%n", o.model(), before);
        Phase p = finetune(o.model(), o.data(), null, seqLen, REAL_BATCH, REAL_LR_LORA, REAL_LR_FULL);
        return report("real", o.model(), config, List.of(p), null, null, null, null, before, p.evalLoss(), t0);
    }

    /**
     * Phase 2. LoRA with checkpointing is the point; the TEMPORARY {@code fullFinetunePhase2} flag lets the demo
     * finish while the Trainer cannot yet do LoRA, by falling back to full fine-tuning when it refuses.
     */
    private Phase finetune(Path base, Path data, Path evalData, int seqLen, int batch, double lrLora, double lrFull) throws IOException {
        Path out = o.work().resolve("finetune");
        TrainOptions lora = options(base, data, out, o.stepsFinetune(), seqLen, batch, lrLora, evalData, LORA);
        Trainer.Result r;
        String method = "lora";
        TrainOptions used = lora;
        try {
            r = new Trainer(lora, kernels, ledger, log).run();
        } catch (UnsupportedOperationException | IllegalStateException e) {
            if (!o.fullFinetunePhase2())
                throw new IllegalStateException("the LoRA phase failed: " + e.getMessage()
                        + " (while the Trainer lacks LoRA, --full-finetune-phase2 runs phase 2 as full fine-tuning)", e);
            notes.add("phase 2 fell back to full fine-tuning (--full-finetune-phase2): the Trainer refused LoRA: " + e.getMessage());
            deleteTree(out);
            used = options(base, data, out, o.stepsFinetune(), seqLen, batch, lrFull, evalData, null);
            method = "full (fallback)";
            r = new Trainer(used, kernels, ledger, log).run();
        }
        if (used.lora() != null && !Files.isDirectory(out.resolve("adapter"))) {
            // Until LoRA is wired in, the Trainer ignores the lora field and trains every weight: say so, not "lora".
            method = "full (Trainer ignored the LoRA settings)";
            notes.add("the Trainer wrote no adapter/ folder: it does not apply LoRA yet, so phase 2 trained all weights at the LoRA learning rate");
        }
        return phase("finetune", method, data, used, r);
    }

    private static int trainCount(long steps) {
        return (int) Math.min(TRAIN_EXAMPLES, Math.max(BATCH, steps * BATCH));
    }

    private static TrainOptions options(Path model, Path data, Path out, long steps, int seqLen, int batch, double lr, Path evalData, LoraConfig lora) {
        long warmup = Math.max(1, steps / 20);
        boolean real = evalData == null;
        return new TrainOptions(model, data, out, steps, 0, batch, 1, seqLen, lr, "cosine", warmup, 0.0, 1.0, "adamw",
                0, 0, null, 1234, evalData, real ? REAL_EVAL_SPLIT : 0, false, false,
                lora, null, lora != null, 1);
    }

    private Phase phase(String name, String method, Path data, TrainOptions opts, Trainer.Result r) throws IOException {
        return new Phase(name, method, data.getFileName().toString(), r.steps(), r.seconds(), r.firstLoss(), r.lastLoss(), r.evalLoss(),
                losses(opts.output().resolve(Metrics.FILE)), opts.output().resolve(Metrics.PLOT), opts.output(), r.finalModel());
    }

    /** Training loss per step, read back from the run's metrics.jsonl. */
    static List<Double> losses(Path metrics) throws IOException {
        List<Double> out = new ArrayList<>();
        for (String line : Files.readAllLines(metrics)) {
            if (line.isBlank()) continue;
            JsonNode n = Json.MAPPER.readTree(line);
            out.add(n.path("loss").asDouble(Double.NaN));
        }
        return out;
    }

    /** Greedy answers to held-out prompts, compared exactly: the answer's characters, then EOS. */
    Accuracy accuracy(Path modelDir, Task task, List<SyntheticTasks.Example> examples) {
        Tokenizer tok = Tokenizers.load(modelDir);
        int correct = 0;
        List<Sample> samples = new ArrayList<>();
        try (ModelFolder folder = ModelFolder.open(modelDir, ledger, kernels);
             LlamaModel model = folder.newModel(kernels, ledger)) {
            Set<Integer> eos = new HashSet<>(folder.config().eosTokenIds());
            eos.addAll(tok.eosIds());
            Generator gen = new Generator(model, new Sampler(0, 0, 1.0, 0), eos);
            for (SyntheticTasks.Example e : examples) {
                int[] prompt = tok.encode(SyntheticTasks.chatPrompt(e.prompt()), tok.addBosByDefault());
                List<Integer> ids = new ArrayList<>();
                gen.generate(prompt, e.answer().length() + 1, ids::add);
                boolean endedWithEos = !ids.isEmpty() && eos.contains(ids.getLast());
                String text = tok.decode(ids.stream().mapToInt(Integer::intValue).toArray());
                if (endedWithEos && text.equals(e.answer())) correct++;
                if (samples.size() < 3) samples.add(new Sample(e.prompt(), e.answer(), text));
            }
        }
        return new Accuracy(task.word(), correct, examples.size(), samples);
    }

    /** The base model's loss on the held-out split the Trainer will use (same fraction and seed). */
    private double heldOutLoss(Path model, Path data, int seqLen, int batch) {
        Tokenizer tok = Tokenizers.load(model);
        List<Example> all = Datasets.load(data, tok, model, new DataOptions(seqLen, false, false, null, Map.of())).examples();
        List<Example> eval = Batches.split(all, REAL_EVAL_SPLIT, 1234).eval();
        int padId = tok.eosId() >= 0 ? tok.eosId() : 0;
        try (ModelFolder folder = ModelFolder.open(model, ledger, kernels);
             TrainingStep step = new TrainingStep(folder.config(), folder.weights(), kernels, ledger, batch, seqLen)) {
            return Trainer.evaluate(step, eval, batch, seqLen, padId).mean();
        }
    }

    private Report report(String mode, Path base, LlamaConfig config, List<Phase> phases, Accuracy aPre, Accuracy bBefore,
                          Accuracy bAfter, Accuracy aAfterFt, double evalBefore, double evalAfter, long t0) throws IOException {
        Path adapter = phases.getLast().output().resolve("adapter");
        Long adapterBytes = Files.isDirectory(adapter) ? folderBytes(adapter) : null;
        MemoryLedger.Snapshot snap = ledger.snapshot();
        Map<Category, Long> peaks = new LinkedHashMap<>();
        for (Category c : Category.values()) peaks.put(c, snap.lines().get(c).peakBytes());
        var rss = ProcessMemory.peakRssBytes();
        return new Report(mode, o.work(), base, config, parameters(config), phases, aPre, bBefore, bAfter, aAfterFt,
                evalBefore, evalAfter, adapterBytes, peaks, snap.totalPeakBytes(), rss.isPresent() ? rss.getAsLong() : null,
                (System.nanoTime() - t0) / 1e9, List.copyOf(notes));
    }

    static long parameters(LlamaConfig config) {
        return dev.llamafit.model.ParameterLayout.of(config, dev.llamafit.tensor.DType.F32).specs().stream()
                .mapToLong(s -> s.shape().elements()).sum();
    }

    private static long folderBytes(Path dir) throws IOException {
        try (Stream<Path> files = Files.walk(dir)) {
            return files.filter(Files::isRegularFile).mapToLong(p -> {
                try {
                    return Files.size(p);
                } catch (IOException e) {
                    return 0;
                }
            }).sum();
        }
    }

    private static void deleteTree(Path dir) throws IOException {
        if (!Files.exists(dir)) return;
        try (Stream<Path> files = Files.walk(dir)) {
            for (Path p : files.sorted(Comparator.reverseOrder()).toList()) Files.delete(p);
        }
    }
}
