// llamafit runtime: the plan equals the ledger's peaks of a real training step, per category, over a matrix of configs.
package dev.llamafit.plan;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.SplittableRandom;

import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.MethodSource;

import dev.llamafit.model.Technique;
import dev.llamafit.io.ConfigJson;
import dev.llamafit.io.HfFolderWriter;
import dev.llamafit.io.ModelFolder;
import dev.llamafit.quant.Quantization;
import dev.llamafit.kernels.KernelBackends;
import dev.llamafit.kernels.Parallel;
import dev.llamafit.memory.Category;
import dev.llamafit.memory.MemoryLedger;
import dev.llamafit.model.LinearModule;
import dev.llamafit.model.LlamaConfig;
import dev.llamafit.model.LoraConfig;
import dev.llamafit.model.ParameterLayout;
import dev.llamafit.model.RandomModels;
import dev.llamafit.model.TrainingStep;
import dev.llamafit.optim.AdamW;
import dev.llamafit.optim.Optimizer;
import dev.llamafit.optim.Param;
import dev.llamafit.optim.Sgd;
import dev.llamafit.tensor.DType;
import dev.llamafit.tensor.Tensor;
import dev.llamafit.tensor.TensorSpec;

/** Full / LoRA × checkpointing off/on × B ∈ {1, 2, 3} × two shapes (tiny GQA fixture, stories15M-like), SGD, and --checkpoint-every N > 1. */
class LedgerMatchTest {
    static final int T = 16;


    static List<Arguments> matrix() {
        List<Arguments> a = new ArrayList<>();
        for (String shape : List.of("tiny", "stories15M"))
            for (boolean lora : List.of(false, true))
                for (boolean gc : List.of(false, true))
                    for (int b : List.of(1, 2, 3)) a.add(Arguments.of(shape, lora, gc, 1, b, "adamw", 0.0));
        a.add(Arguments.of("tiny", false, false, 1, 2, "sgd", 0.0));
        a.add(Arguments.of("tiny", true, true, 1, 2, "sgd", 0.0));
        // --checkpoint-every N > 1: every N-th block keeps only its input, the others save everything.
        a.add(Arguments.of("stories15M", false, true, 2, 2, "adamw", 0.0));
        a.add(Arguments.of("stories15M", true, true, 4, 1, "adamw", 0.0));
        a.add(Arguments.of("tiny", false, true, 2, 3, "adamw", 0.0));
        // LoRA dropout keeps dropout(input) per adapter (the mask is regenerated from a seed).
        a.add(Arguments.of("stories15M", true, false, 1, 2, "adamw", 0.1));
        a.add(Arguments.of("tiny", true, true, 1, 3, "adamw", 0.1));
        return a;
    }

    /** Mixed precision: fp32 masters, 16-bit working copies and 16-bit saved activations, full and LoRA, with and without checkpointing. */
    static List<Arguments> mixed() {
        List<Arguments> a = new ArrayList<>();
        for (String shape : List.of("tiny", "stories15M"))
            for (boolean lora : List.of(false, true))
                for (boolean gc : List.of(false, true)) a.add(Arguments.of(shape, lora, gc, 2, "bf16", 0.0, "eager"));
        a.add(Arguments.of("tiny", false, false, 3, "fp16", 0.0, "eager"));
        a.add(Arguments.of("tiny", true, true, 1, "fp16", 0.1, "eager"));
        a.add(Arguments.of("stories15M", true, false, 2, "bf16", 0.1, "eager"));
        // Flash attention: lse instead of probs, tiles instead of the T² scratch, in fp32 and bf16.
        for (String shape : List.of("tiny", "stories15M"))
            for (boolean lora : List.of(false, true))
                for (boolean gc : List.of(false, true)) a.add(Arguments.of(shape, lora, gc, 2, "fp32", 0.0, "flash"));
        a.add(Arguments.of("stories15M", false, false, 1, "bf16", 0.0, "flash"));
        a.add(Arguments.of("tiny", true, true, 3, "bf16", 0.1, "flash"));
        return a;
    }

    @ParameterizedTest(name = "{0} lora={1} gc={2} B={3} {4} dropout={5} {6}")
    @MethodSource("mixed")
    void planEqualsLedgerInMixedPrecision(String shapeName, boolean lora, boolean gc, int batch, String precision, double dropout,
                                          String attention) {
        LlamaConfig c = shape(shapeName);
        LoraConfig adapters = lora ? new LoraConfig(4, 16, dropout, List.of("q_proj", "v_proj", "down_proj"), false) : null;
        Technique technique = new Technique(lora ? Technique.Method.LORA : Technique.Method.FULL, adapters,
                Technique.parse(Technique.Precision.class, "--precision", precision), lora ? Technique.BaseDtype.FP32 : null,
                Technique.Optimizer.ADAMW, gc, 1, 1, Technique.parse(Technique.Attention.class, "--attention", attention));
        MemoryPlan plan = Planner.plan(c, technique, batch, T, Devices.cpu(64L << 30, Parallel.threads()));

        // The fp32 weights: the masters of full fine-tuning (as Trainer files them), or an fp32 base (LoRA).
        MemoryLedger ledger = new MemoryLedger(), scratch = new MemoryLedger();
        Map<String, Tensor> random = RandomModels.weights(c, scratch, 5, 0.05), w = new java.util.LinkedHashMap<>();
        for (Map.Entry<String, Tensor> e : random.entrySet()) {
            Tensor t = Tensor.allocate(ledger, lora || !technique.precision().mixed() ? Category.WEIGHTS : Category.MASTER_WEIGHTS,
                    e.getKey(), DType.F32, e.getValue().shape());
            java.lang.foreign.MemorySegment.copy(e.getValue().segment(), 0, t.segment(), 0, t.bytes());
            w.put(e.getKey(), t);
        }
        random.values().forEach(Tensor::close);
        try {
            trainTwoStepsAndCompare(c, technique, w, ledger, plan, batch);
        } finally {
            w.values().forEach(Tensor::close);
        }
    }

    /** bf16-pure: BF16 trainable matrices, gradients and AdamW states, no masters; full and LoRA, with and without checkpointing. */
    static List<Arguments> pure() {
        List<Arguments> a = new ArrayList<>();
        for (String shape : List.of("tiny", "stories15M"))
            for (boolean lora : List.of(false, true))
                for (boolean gc : List.of(false, true)) a.add(Arguments.of(shape, lora, gc, 2, 0.0));
        a.add(Arguments.of("tiny", true, true, 1, 0.1));
        return a;
    }

    @ParameterizedTest(name = "{0} lora={1} gc={2} B={3} dropout={4}")
    @MethodSource("pure")
    void planEqualsLedgerInBf16Pure(String shapeName, boolean lora, boolean gc, int batch, double dropout) {
        LlamaConfig c = shape(shapeName);
        LoraConfig adapters = lora ? new LoraConfig(4, 16, dropout, List.of("q_proj", "v_proj", "down_proj"), false) : null;
        Technique technique = new Technique(lora ? Technique.Method.LORA : Technique.Method.FULL, adapters,
                Technique.Precision.BF16_PURE, lora ? Technique.BaseDtype.FP32 : null, Technique.Optimizer.ADAMW, gc, 1, 1);
        MemoryPlan plan = Planner.plan(c, technique, batch, T, Devices.cpu(64L << 30, Parallel.threads()));

        // Full fine-tuning: owned BF16 matrices and fp32 vectors, as Trainer makes them; LoRA: an fp32 base.
        MemoryLedger ledger = new MemoryLedger(), scratch = new MemoryLedger();
        Map<String, Tensor> random = RandomModels.weights(c, scratch, 5, 0.05), w = new java.util.LinkedHashMap<>();
        for (Map.Entry<String, Tensor> e : random.entrySet()) {
            Tensor src = e.getValue();
            DType d = !lora && src.shape().rank() == 2 ? DType.BF16 : DType.F32;
            Tensor t = Tensor.allocate(ledger, Category.WEIGHTS, e.getKey(), d, src.shape());
            if (d == DType.BF16) KernelBackends.get().f32ToBf16(src.segment(), 0, t.segment(), 0, t.elements());
            else java.lang.foreign.MemorySegment.copy(src.segment(), 0, t.segment(), 0, t.bytes());
            w.put(e.getKey(), t);
        }
        random.values().forEach(Tensor::close);
        try {
            trainTwoStepsAndCompare(c, technique, w, ledger, plan, batch);
            assertEquals(0, ledger.peakBytes(Category.MASTER_WEIGHTS), "bf16-pure has no fp32 masters");
        } finally {
            w.values().forEach(Tensor::close);
        }
    }

    /**
     * Builds the step on {@code w} (the weights the caller made, as Trainer makes them), trains two AdamW steps, and
     * compares every category's and the total peak of the ledger with the plan.
     */
    private static void trainTwoStepsAndCompare(LlamaConfig c, Technique technique, Map<String, Tensor> w, MemoryLedger ledger,
                                                MemoryPlan plan, int batch) {
        try (TrainingStep step = new TrainingStep(c, w, KernelBackends.get(), ledger, batch, T, technique, 3);
             Optimizer opt = new AdamW(0.9, 0.999, 1e-8, 0, ledger)) {
            List<Param> params = new ArrayList<>();
            if (technique.adapters()) step.adapterWeights().forEach((n, v) -> params.add(new Param(n, v, step.adapterGradients().get(n), true)));
            else for (TensorSpec s : ParameterLayout.of(c, DType.F32).specs())
                params.add(new Param(s.name(), w.get(s.name()), step.gradients().get(s.name()), true));
            runTwoSteps(c, step, opt, params, batch);
            for (Category cat : List.of(Category.WEIGHTS, Category.MASTER_WEIGHTS, Category.GRADIENTS, Category.OPTIMIZER,
                    Category.ACTIVATIONS, Category.WORKSPACE))
                assertEquals(ledger.peakBytes(cat), plan.categoryPeak(cat), cat.key() + " planned vs ledger peak");
            assertEquals(ledger.totalPeakBytes(), plan.peak(Column.DEVICE, Metric.ALLOCATED), "total planned vs ledger peak");
        }
    }

    private static void runTwoSteps(LlamaConfig c, TrainingStep step, Optimizer opt, List<Param> params, int batch) {
        SplittableRandom r = new SplittableRandom(1);
        int[][] ids = new int[batch][T], labels = new int[batch][T];
        for (int i = 0; i < batch; i++)
            for (int t = 0; t < T; t++) { ids[i][t] = r.nextInt(c.vocabSize()); labels[i][t] = r.nextInt(c.vocabSize()); }
        for (int i = 0; i < 2; i++) {
            step.zeroGradients();
            step.forwardBackward(ids, labels, batch * T);
            opt.step(params, 1e-3);
                step.syncWorkingCopies();
            step.syncWorkingCopies();
        }
    }

    /** LoRA on a 16-bit checkpoint used in place (--base-dtype bf16|fp16), with and without checkpointing. */
    static List<Arguments> sixteenBitBase() {
        List<Arguments> a = new ArrayList<>();
        for (String shape : List.of("tiny", "stories15M"))
            for (String dtype : List.of("bf16", "fp16")) a.add(Arguments.of(shape, dtype, shape.equals("tiny"), 2, "fp32"));
        a.add(Arguments.of("tiny", "bf16", false, 1, "fp32"));
        // Mixed precision on a base in the compute dtype (used in place, no working copy) and in the other 16-bit type.
        a.add(Arguments.of("stories15M", "bf16", false, 2, "bf16"));
        a.add(Arguments.of("tiny", "fp16", true, 2, "fp16"));
        a.add(Arguments.of("tiny", "bf16", false, 1, "fp16"));
        return a;
    }

    @ParameterizedTest(name = "{0} base={1} gc={2} B={3} {4}")
    @MethodSource("sixteenBitBase")
    void planEqualsLedgerForASixteenBitLoraBase(String shapeName, String dtype, boolean gc, int batch, String precision, @TempDir Path tmp) throws IOException {
        LlamaConfig c = shape(shapeName);
        DType d = dtype.equals("bf16") ? DType.BF16 : DType.F16;
        Path dir = tmp.resolve("base");
        MemoryLedger writing = new MemoryLedger();
        Map<String, Tensor> w = RandomModels.weights(c, writing, 5, 0.05);
        try {
            List<Tensor> ordered = new ArrayList<>();
            for (TensorSpec s : ParameterLayout.of(c, DType.F32).specs()) ordered.add(w.get(s.name()));
            HfFolderWriter.write(dir, c, ordered, null, d, writing, KernelBackends.get());
        } finally {
            w.values().forEach(Tensor::close);
        }
        LoraConfig adapters = new LoraConfig(4, 16, 0.0, List.of("q_proj", "v_proj", "down_proj"), false);
        Technique technique = new Technique(Technique.Method.LORA, adapters, Technique.parse(Technique.Precision.class, "--precision", precision),
                d == DType.BF16 ? Technique.BaseDtype.BF16 : Technique.BaseDtype.FP16, Technique.Optimizer.ADAMW, gc, 1, 1);
        MemoryPlan plan = Planner.plan(c, technique, batch, T, Devices.cpu(64L << 30, Parallel.threads()));

        MemoryLedger ledger = new MemoryLedger();
        try (ModelFolder base = ModelFolder.open(dir, ledger, KernelBackends.get(), null);
             TrainingStep step = new TrainingStep(c, base.weights(), KernelBackends.get(), ledger, batch, T, technique, 3);
             Optimizer opt = new AdamW(0.9, 0.999, 1e-8, 0, ledger)) {
            assertEquals(d, base.weights().get(ParameterLayout.EMBED).dtype(), "the base is used in place");
            SplittableRandom r = new SplittableRandom(1);
            int[][] ids = new int[batch][T], labels = new int[batch][T];
            for (int i = 0; i < batch; i++)
                for (int t = 0; t < T; t++) { ids[i][t] = r.nextInt(c.vocabSize()); labels[i][t] = r.nextInt(c.vocabSize()); }
            List<Param> params = new ArrayList<>();
            step.adapterWeights().forEach((n, v) -> params.add(new Param(n, v, step.adapterGradients().get(n), true)));
            for (int i = 0; i < 2; i++) {
                step.zeroGradients();
                step.forwardBackward(ids, labels, batch * T);
                opt.step(params, 1e-3);
            }
            for (Category cat : List.of(Category.WEIGHTS, Category.MASTER_WEIGHTS, Category.GRADIENTS, Category.OPTIMIZER,
                    Category.ACTIVATIONS, Category.WORKSPACE))
                assertEquals(ledger.peakBytes(cat), plan.categoryPeak(cat), cat.key() + " planned vs ledger peak");
            assertEquals(ledger.totalPeakBytes(), plan.peak(Column.DEVICE, Metric.ALLOCATED), "total planned vs ledger peak");
        }
    }


    static List<Arguments> quantisedBase() {
        return List.of(
                Arguments.of("tiny", "int8", false, 2, "fp32"),
                Arguments.of("tiny", "nf4", true, 2, "fp32"),
                Arguments.of("tiny", "nf4-no-dq", false, 1, "bf16"),
                Arguments.of("tiny", "int8", true, 1, "bf16"),
                Arguments.of("stories15M", "nf4", true, 1, "bf16"),
                Arguments.of("stories15M", "int8", false, 1, "fp32"));
    }

    @ParameterizedTest(name = "{0} base={1} gc={2} B={3} {4}")
    @MethodSource("quantisedBase")
    void planEqualsLedgerForAQuantisedLoraBase(String shapeName, String base, boolean gc, int batch, String precision, @TempDir Path tmp) throws IOException {
        LlamaConfig c = shape(shapeName);
        Path dir = tmp.resolve("base");
        MemoryLedger writing = new MemoryLedger();
        Map<String, Tensor> w = RandomModels.weights(c, writing, 5, 0.05);
        try {
            List<Tensor> ordered = new ArrayList<>();
            for (TensorSpec s : ParameterLayout.of(c, DType.F32).specs()) ordered.add(w.get(s.name()));
            HfFolderWriter.write(dir, c, ordered, null);
        } finally {
            w.values().forEach(Tensor::close);
        }
        Quantization q = base.equals("int8") ? Quantization.int8(6.0) : Quantization.nf4(!base.endsWith("no-dq"));
        LoraConfig adapters = new LoraConfig(4, 16, 0.0, List.of("q_proj", "v_proj", "down_proj"), false);
        Technique.Precision p = Technique.parse(Technique.Precision.class, "--precision", precision);
        Technique technique = new Technique(Technique.Method.LORA, adapters, p, null, Technique.Optimizer.ADAMW, gc, 1, 1).withQuantization(q);
        MemoryPlan plan = Planner.plan(c, technique, batch, T, Devices.cpu(64L << 30, Parallel.threads()));

        MemoryLedger ledger = new MemoryLedger();
        DType matrices = p == Technique.Precision.FP32 ? DType.F32 : DType.BF16;
        try (ModelFolder folder = ModelFolder.open(dir, ledger, KernelBackends.get(), matrices, q)) {
            // Quantising reads the mapped checkpoint, which is released once loaded: from then on the ledger is the plan's.
            assertEquals(0, ledger.mappedBytes(Category.WEIGHTS), "the mapping is released");
            ledger.resetPeaks();
            try (TrainingStep step = new TrainingStep(folder.config(), folder.weights(), KernelBackends.get(), ledger, batch, T, technique, 3);
                 Optimizer opt = new AdamW(0.9, 0.999, 1e-8, 0, ledger)) {
                List<Param> params = new ArrayList<>();
                step.adapterWeights().forEach((n, v) -> params.add(new Param(n, v, step.adapterGradients().get(n), true)));
                runTwoSteps(c, step, opt, params, batch);
                for (Category cat : List.of(Category.WEIGHTS, Category.MASTER_WEIGHTS, Category.GRADIENTS, Category.OPTIMIZER,
                        Category.ACTIVATIONS, Category.WORKSPACE))
                    assertEquals(ledger.peakBytes(cat), plan.categoryPeak(cat), cat.key() + " planned vs ledger peak");
                assertEquals(ledger.totalPeakBytes(), plan.peak(Column.DEVICE, Metric.ALLOCATED), "total planned vs ledger peak");
            }
            // The block linear layers' bytes against fp32's: int8 about a quarter, NF4 about an eighth (on a model-sized shape;
            // the tiny test model's 32-wide matrices are dominated by the per-module maps and scales).
            long quantised = 0, fp32 = 0;
            for (TensorSpec s : ParameterLayout.of(c, DType.F32).specs())
                if (ParameterLayout.isQuantizable(s)) {
                    fp32 += s.bytes();
                    String prefix = s.name().substring(0, s.name().length() - ".weight".length());
                    for (TensorSpec qs : dev.llamafit.quant.QuantizedWeights.specs(q, prefix, s.shape().dim(0), s.shape().dim(1)))
                        quantised += folder.weights().get(qs.name()).bytes();
                }
            double ratio = (double) quantised / fp32;
            if (shapeName.equals("stories15M")) assertTrue(ratio <= (q.kind() == Quantization.Kind.INT8 ? 0.27 : q.doubleQuant() ? 0.15 : 0.16), base + ": " + ratio);
        }
    }

    static LlamaConfig shape(String name) {
        return name.equals("tiny") ? ConfigJson.read(Path.of("src/test/resources/fixtures/tiny-llama-gqa-tied/config.json"))
                : RandomModels.stories15M();
    }

    @ParameterizedTest(name = "{0} lora={1} gc={2} every={3} B={4} {5} dropout={6}")
    @MethodSource("matrix")
    void planEqualsLedger(String shapeName, boolean lora, boolean gc, int every, int batch, String optimizer, double dropout) {
        LlamaConfig c = shape(shapeName);
        LoraConfig adapters = lora ? new LoraConfig(4, 16, dropout, List.of(LinearModule.Q, LinearModule.K, LinearModule.V, LinearModule.O, LinearModule.DOWN)
                .stream().map(LinearModule::key).toList(), false) : null;
        Technique technique = new Technique(lora ? Technique.Method.LORA : Technique.Method.FULL, adapters, Technique.Precision.FP32, null,
                optimizer.equals("sgd") ? Technique.Optimizer.SGD : Technique.Optimizer.ADAMW, gc, every, 1);
        MemoryPlan plan = Planner.plan(c, technique, batch, T, Devices.cpu(64L << 30, Parallel.threads()));

        MemoryLedger ledger = new MemoryLedger();
        Map<String, Tensor> w = RandomModels.weights(c, ledger, 5, 0.05);
        try (TrainingStep step = new TrainingStep(c, w, KernelBackends.get(), ledger, batch, T, technique, 3);
             Optimizer opt = optimizer.equals("sgd") ? new Sgd(0.9, 0, ledger) : new AdamW(0.9, 0.999, 1e-8, 0, ledger)) {
            SplittableRandom r = new SplittableRandom(1);
            int[][] ids = new int[batch][T], labels = new int[batch][T];
            for (int i = 0; i < batch; i++)
                for (int t = 0; t < T; t++) { ids[i][t] = r.nextInt(c.vocabSize()); labels[i][t] = r.nextInt(c.vocabSize()); }
            List<Param> params = new ArrayList<>();
            if (lora) step.adapterWeights().forEach((n, v) -> params.add(new Param(n, v, step.adapterGradients().get(n), true)));
            else for (TensorSpec s : ParameterLayout.of(c, DType.F32).specs())
                params.add(new Param(s.name(), w.get(s.name()), step.gradients().get(s.name()), true));
            for (int i = 0; i < 2; i++) {
                step.zeroGradients();
                step.forwardBackward(ids, labels, batch * T);
                opt.step(params, 1e-3);
            }
            for (Category cat : List.of(Category.WEIGHTS, Category.GRADIENTS, Category.OPTIMIZER, Category.ACTIVATIONS, Category.WORKSPACE))
                assertEquals(ledger.peakBytes(cat), plan.categoryPeak(cat), cat.key() + " planned vs ledger peak");
            assertEquals(ledger.totalPeakBytes(), plan.peak(Column.DEVICE, Metric.ALLOCATED), "total planned vs ledger peak");
        } finally {
            w.values().forEach(Tensor::close);
        }
    }
}
