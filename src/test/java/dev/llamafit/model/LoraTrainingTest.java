// LoRA training step: init == base, PyTorch reference gradients, accumulation, ledger == layout, adapter loading errors.
package dev.llamafit.model;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.file.Path;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.SplittableRandom;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

import com.fasterxml.jackson.databind.JsonNode;

import dev.llamafit.io.Json;
import dev.llamafit.io.ModelFolder;
import dev.llamafit.io.safetensors.SafetensorsFile;
import dev.llamafit.kernels.KernelBackends;
import dev.llamafit.kernels.Kernels;
import dev.llamafit.kernels.ScalarKernels;
import dev.llamafit.memory.Category;
import dev.llamafit.memory.MemoryLedger;
import dev.llamafit.tensor.DType;
import dev.llamafit.tensor.Tensor;
import dev.llamafit.tensor.TensorSpec;
import dev.llamafit.testing.SharedData;

class LoraTrainingTest {
    static final LoraConfig QV = new LoraConfig(2, 4, 0, List.of("q_proj", "v_proj"), false);
    static final LoraConfig ALL = new LoraConfig(3, 6, 0, LinearModule.keys(), false);

    static Technique lora(LoraConfig c) { return Technique.lora(c); }

    /** Random non-zero values for every adapter (PEFT's B = 0 would make dA vanish). */
    static void randomizeAdapters(TrainingStep step, long seed) {
        SplittableRandom r = new SplittableRandom(seed);
        for (Tensor t : step.adapterWeights().values())
            for (long i = 0; i < t.elements(); i++) t.setFloat(i, (float) ((r.nextDouble() * 2 - 1) * 0.3));
    }

    static double maxAbs(float[] a) {
        double e = 0;
        for (float v : a) e = Math.max(e, Math.abs(v));
        return e;
    }

    @Test
    void atInitialisationLoraIsExactlyTheBaseModel() {
        for (boolean tied : new boolean[] {true, false}) {
            LlamaConfig c = TrainingStepTest.tiny(tied);
            MemoryLedger ledger = new MemoryLedger();
            Map<String, Tensor> w = RandomModels.weights(c, ledger, 5, 0.2);
            int[][] ids = TrainingStepTest.randomIds(2, 9, c.vocabSize(), 1, false), labels = TrainingStepTest.randomIds(2, 9, c.vocabSize(), 2, true);
            try (TrainingStep full = new TrainingStep(c, w, KernelBackends.get(), ledger, 2, 9);
                 TrainingStep adapted = new TrainingStep(c, w, KernelBackends.get(), ledger, 2, 9, lora(ALL), 11)) {
                for (Map.Entry<String, Tensor> e : adapted.adapterWeights().entrySet()) {
                    double m = maxAbs(e.getValue().toFloatArray());
                    if (e.getKey().contains("lora_B")) assertEquals(0, m, e.getKey() + " starts at zero");
                    else {
                        double bound = 1 / Math.sqrt(e.getValue().shape().dim(1));
                        assertTrue(m > 0.5 * bound && m <= bound, e.getKey() + ": Kaiming-uniform(a=√5) bound " + bound + ", max " + m);
                    }
                }
                assertEquals(full.forwardLoss(ids, labels).sum(), adapted.forwardLoss(ids, labels).sum(), 0.0, "tied=" + tied);
                assertEquals(full.forwardBackward(ids, labels, 7).sum(), adapted.forwardBackward(ids, labels, 7).sum(), 0.0);
                // With B = 0 only the B gradients can be non-zero (dA = duᵀ·x with du = scale·dY·B = 0).
                for (Map.Entry<String, Tensor> e : adapted.gradients().entrySet())
                    assertEquals(e.getKey().contains("lora_B"), maxAbs(e.getValue().toFloatArray()) > 0, e.getKey());
            } finally {
                w.values().forEach(Tensor::close);
            }
        }
    }

    @ParameterizedTest
    @ValueSource(strings = {"tiny-llama-gqa-tied", "tiny-llama3-untied", "tiny-qwen2", "tiny-mistral-window"})
    void adapterGradientsMatchPyTorch(String name) {
        Path dir = SharedData.fixture(name);
        JsonNode base = Json.read(dir.resolve("expected.json")), expected = Json.read(dir.resolve("lora_grads/expected.json"));
        int[][] ids = SharedData.ints(base.get("input_ids")), labels = SharedData.ints(base.get("labels"));
        long counted = Arrays.stream(labels).flatMapToInt(Arrays::stream).filter(l -> l != -100).count();
        List<String> targets = new java.util.ArrayList<>();
        expected.get("target_modules").forEach(t -> targets.add(t.asText()));
        LoraConfig lc = new LoraConfig(expected.get("r").asInt(), expected.get("lora_alpha").asDouble(), 0, targets, false);
        for (Kernels k : List.of(KernelBackends.get(), new ScalarKernels()))
            for (boolean ckpt : new boolean[] {false, true}) {
                MemoryLedger ledger = new MemoryLedger();
                try (ModelFolder folder = ModelFolder.open(dir, ledger, k);
                     SafetensorsFile adapter = SafetensorsFile.open(dir.resolve("lora_grads/adapter.safetensors"), ledger);
                     SafetensorsFile grads = SafetensorsFile.open(dir.resolve("lora_grads/expected_grads.safetensors"), ledger);
                     TrainingStep step = new TrainingStep(folder.config(), folder.weights(), k, ledger, ids.length, ids[0].length,
                             Technique.of(lc).withGradientCheckpointing(ckpt, 1), 3)) {
                    Map<String, Tensor> given = new LinkedHashMap<>();
                    for (String n : adapter.names()) given.put(n, adapter.find(n).orElseThrow());
                    step.loadAdapter(given);
                    step.zeroGradients();
                    TrainingStep.Loss loss = step.forwardBackward(ids, labels, counted);
                    String what = name + " " + k.name() + (ckpt ? " checkpointed" : "");
                    assertEquals(expected.get("loss").asDouble(), loss.mean(), 1e-5, what + " loss");
                    assertEquals(grads.names(), step.gradients().keySet(), "gradients are the adapters' only");
                    for (String n : grads.names()) {
                        float[] want = grads.find(n).orElseThrow().toFloatArray(), got = step.gradients().get(n).toFloatArray();
                        double err = SharedData.maxAbsDiff(want, got);
                        assertTrue(maxAbs(want) > 0, n + ": vacuous reference");
                        assertTrue(err < 1e-4, what + " d" + n + ": max |Δ| = " + err + " (max |grad| " + maxAbs(want) + ")");
                    }
                }
                assertEquals(0, ledger.currentBytes(Category.GRADIENTS));
                assertEquals(0, ledger.currentBytes(Category.ACTIVATIONS));
            }
    }

    @Test
    void fourMicroBatchesOfTwoEqualOneBatchOfEight() {
        LlamaConfig c = TrainingStepTest.tiny(true);
        MemoryLedger ledger = new MemoryLedger();
        Map<String, Tensor> w = RandomModels.weights(c, ledger, 7, 0.2);
        int t = 12;
        int[][] ids = TrainingStepTest.randomIds(8, t, c.vocabSize(), 1, false), labels = TrainingStepTest.randomIds(8, t, c.vocabSize(), 2, true);
        long counted = Arrays.stream(labels).flatMapToInt(Arrays::stream).filter(l -> l != -100).count();
        try (TrainingStep big = new TrainingStep(c, w, KernelBackends.get(), ledger, 8, t, lora(ALL), 11);
             TrainingStep small = new TrainingStep(c, w, KernelBackends.get(), ledger, 2, t, lora(ALL), 11)) {
            randomizeAdapters(big, 5);
            small.loadAdapter(big.adapterWeights());
            TrainingStep.Loss whole = big.forwardBackward(ids, labels, counted);
            double sum = 0;
            for (int m = 0; m < 4; m++)
                sum += small.forwardBackward(Arrays.copyOfRange(ids, 2 * m, 2 * m + 2), Arrays.copyOfRange(labels, 2 * m, 2 * m + 2), counted).sum();
            assertEquals(whole.sum(), sum, 1e-4 * Math.abs(whole.sum()));
            for (String n : big.gradients().keySet()) {
                float[] a = big.gradients().get(n).toFloatArray(), b = small.gradients().get(n).toFloatArray();
                double scale = maxAbs(a), err = SharedData.maxAbsDiff(a, b);
                assertTrue(scale > 0, n);
                assertTrue(err <= 1e-5 * scale + 1e-9, n + ": accumulated micro-batches differ by " + err + " (scale " + scale + ")");
            }
        } finally {
            w.values().forEach(Tensor::close);
        }
    }

    @Test
    void ledgerHoldsExactlyTheLayoutAndOnlyAdapterGradients() {
        for (LoraConfig lc : List.of(QV, ALL, new LoraConfig(4, 8, 0.1, List.of("o_proj", "down_proj", "gate_proj"), true)))
            for (int every : new int[] {0, 1, 2})
                for (boolean tied : new boolean[] {true, false}) {
                    LlamaConfig c = TrainingStepTest.tiny(tied);
                    MemoryLedger ledger = new MemoryLedger();
                    Map<String, Tensor> w = RandomModels.weights(c, ledger, 1, 0.1);
                    long baseWeights = ledger.currentBytes(Category.WEIGHTS);
                    TrainingLayout layout = TrainingLayout.of(c, 3, 7, Technique.of(lc).withGradientCheckpointing(every > 0, Math.max(every, 1)));
                    String what = lc.targets() + " p=" + lc.dropout() + " every=" + every + " tied=" + tied;
                    try (TrainingStep step = new TrainingStep(c, w, KernelBackends.get(), ledger, 3, 7, Technique.of(lc).withGradientCheckpointing(every > 0, Math.max(every, 1)), 9)) {
                        long adapterBytes = 0;
                        for (TensorSpec s : layout.adapterSpecs()) adapterBytes += s.bytes();
                        assertEquals(adapterBytes, ledger.currentBytes(Category.GRADIENTS), what + ": gradients == adapter parameter bytes");
                        assertEquals(layout.bytes(Category.GRADIENTS), ledger.currentBytes(Category.GRADIENTS), what);
                        assertEquals(baseWeights + layout.bytes(Category.WEIGHTS), ledger.currentBytes(Category.WEIGHTS), what);
                        assertEquals(layout.bytes(Category.ACTIVATIONS), ledger.currentBytes(Category.ACTIVATIONS), what);
                        assertEquals(layout.bytes(Category.WORKSPACE) + layout.ropeTableBytes(), ledger.currentBytes(Category.WORKSPACE), what);
                        step.forwardBackward(TrainingStepTest.randomIds(3, 7, c.vocabSize(), 1, false), TrainingStepTest.randomIds(3, 7, c.vocabSize(), 2, true), 10);
                        assertEquals(layout.bytes(Category.ACTIVATIONS), ledger.peakBytes(Category.ACTIVATIONS), what + ": nothing allocated during the step");
                        assertEquals(step.adapterWeights().keySet(), step.gradients().keySet());
                        assertEquals(step.adapterGradients(), step.gradients());
                        assertEquals(2 * c.numLayers() * lc.targets().size(), step.gradients().size());
                        for (String n : step.gradients().keySet()) assertTrue(n.startsWith("base_model.model.model.layers."), n);
                    } finally {
                        w.values().forEach(Tensor::close);
                    }
                    assertEquals(0, ledger.currentBytes(Category.GRADIENTS));
                    assertEquals(0, ledger.currentBytes(Category.ACTIVATIONS));
                    assertEquals(0, ledger.currentBytes(Category.WEIGHTS));
                }
    }

    @Test
    void loadAdapterNamesWhatIsWrong() {
        LlamaConfig c = TrainingStepTest.tiny(true);
        MemoryLedger ledger = new MemoryLedger();
        Map<String, Tensor> w = RandomModels.weights(c, ledger, 1, 0.1);
        try (TrainingStep step = new TrainingStep(c, w, KernelBackends.get(), ledger, 1, 4, lora(QV), 11);
             TrainingStep full = new TrainingStep(c, w, KernelBackends.get(), ledger, 1, 4)) {
            Map<String, Tensor> given = new LinkedHashMap<>(step.adapterWeights());
            String a0 = LinearModule.Q.peftKey(0, 'A');
            assertEquals("base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight", a0);
            given.remove(a0);
            assertTrue(assertThrows(IllegalArgumentException.class, () -> step.loadAdapter(given)).getMessage().contains("missing adapter tensor " + a0));
            given.put(a0, Tensor.allocate(ledger, Category.WEIGHTS, a0, DType.F32, dev.llamafit.tensor.Shape.of(3, c.hiddenSize())));
            String msg = assertThrows(IllegalArgumentException.class, () -> step.loadAdapter(given)).getMessage();
            assertTrue(msg.contains(a0) && msg.contains("expected [2, 24]"), msg);
            given.get(a0).close();
            given.put(a0, step.adapterWeights().get(a0));
            given.put("base_model.model.model.layers.0.self_attn.k_proj.lora_A.weight", step.adapterWeights().get(a0));
            assertTrue(assertThrows(IllegalArgumentException.class, () -> step.loadAdapter(given)).getMessage().contains("unexpected adapter tensor"));
            assertThrows(IllegalStateException.class, () -> full.loadAdapter(given));
            assertTrue(full.adapterWeights().isEmpty() && full.adapterGradients().isEmpty());
        } finally {
            w.values().forEach(Tensor::close);
        }
    }
}
