package dev.llamafit.model;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.file.Path;
import java.util.List;

import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

import com.fasterxml.jackson.databind.JsonNode;

import dev.llamafit.io.Json;
import dev.llamafit.io.ModelFolder;
import dev.llamafit.io.safetensors.SafetensorsFile;
import dev.llamafit.kernels.KernelBackends;
import dev.llamafit.kernels.Kernels;
import dev.llamafit.kernels.ScalarKernels;
import dev.llamafit.memory.MemoryLedger;
import dev.llamafit.testing.SharedData;

/** Logits of tiny random models against the independent PyTorch reference (scripts/make_fixtures.py). */
class GoldenLogitsTest {
    static final List<String> FIXTURES = List.of("tiny-llama-gqa-tied", "tiny-llama3-untied", "tiny-qwen2", "tiny-mistral-window");

    static float[] expectedLogits(Path dir, MemoryLedger ledger) {
        try (SafetensorsFile f = SafetensorsFile.open(dir.resolve("expected.safetensors"), ledger)) {
            return f.find("logits").orElseThrow().toFloatArray();
        }
    }

    @ParameterizedTest
    @ValueSource(strings = {"tiny-llama-gqa-tied", "tiny-llama3-untied", "tiny-qwen2", "tiny-mistral-window"})
    void fullSequenceLogitsMatchPyTorch(String name) {
        for (Kernels k : List.of(KernelBackends.get(), new ScalarKernels())) {
            Path dir = SharedData.fixture(name);
            MemoryLedger ledger = new MemoryLedger();
            try (ModelFolder folder = ModelFolder.open(dir, ledger, k); LlamaModel model = folder.newModel(k, ledger)) {
                float[] expected = expectedLogits(dir, ledger);
                float[] got = model.forward(SharedData.inputIds(dir), null, LlamaModel.Logits.ALL).toFloatArray();
                assertEquals(expected.length, got.length);
                double maxAbs = SharedData.maxAbsDiff(expected, got);
                assertTrue(maxAbs < 1e-4, name + " with " + k.name() + ": max |Δlogit| = " + maxAbs);
            }
        }
    }

    @ParameterizedTest
    @ValueSource(strings = {"tiny-llama-gqa-tied", "tiny-llama3-untied", "tiny-qwen2", "tiny-mistral-window"})
    void kvCacheDecodeEqualsFullSequence(String name) {
        Path dir = SharedData.fixture(name);
        MemoryLedger ledger = new MemoryLedger();
        Kernels k = KernelBackends.get();
        try (ModelFolder folder = ModelFolder.open(dir, ledger, k); LlamaModel model = folder.newModel(k, ledger)) {
            int[][] ids = SharedData.inputIds(dir);
            int b = ids.length, t = ids[0].length, v = folder.config().vocabSize();
            float[] full = model.forward(ids, null, LlamaModel.Logits.ALL).toFloatArray();
            // Prefill 3 tokens, then decode one at a time: every step's logits equal the full pass's.
            try (KvCache cache = model.newCache(b, t)) {
                int prefill = 3;
                int[][] head = new int[b][];
                for (int i = 0; i < b; i++) head[i] = java.util.Arrays.copyOf(ids[i], prefill);
                float[] got = model.forward(head, cache, LlamaModel.Logits.ALL).toFloatArray();
                for (int i = 0; i < b; i++)
                    for (int p = 0; p < prefill; p++) compareRow(full, (i * t + p) * v, got, (i * prefill + p) * v, v, name + " prefill");
                for (int p = prefill; p < t; p++) {
                    int[][] step = new int[b][1];
                    for (int i = 0; i < b; i++) step[i][0] = ids[i][p];
                    float[] one = model.forward(step, cache, LlamaModel.Logits.LAST).toFloatArray();
                    for (int i = 0; i < b; i++) compareRow(full, (i * t + p) * v, one, i * v, v, name + " decode pos " + p);
                }
                assertEquals(t, cache.length());
            }
        }
    }

    private static void compareRow(float[] a, int aOff, float[] b, int bOff, int n, String what) {
        for (int i = 0; i < n; i++)
            assertEquals(a[aOff + i], b[bOff + i], 2e-5, what + " logit " + i);
    }

    @org.junit.jupiter.api.Test
    void tinystoriesGreedyContinuationMatchesPyTorch() {
        Path dir = SharedData.require("models/tinystories-656k");
        JsonNode ref = Json.read(SharedData.fixture("tinystories-656k-greedy.json"));
        int[] prompt = {ref.get("prompt_ids").get(0).asInt()};
        int[] expected = new int[ref.get("generated_ids").size()];
        for (int i = 0; i < expected.length; i++) expected[i] = ref.get("generated_ids").get(i).asInt();
        MemoryLedger ledger = new MemoryLedger();
        Kernels k = KernelBackends.get();
        try (ModelFolder folder = ModelFolder.open(dir, ledger, k); LlamaModel model = folder.newModel(k, ledger)) {
            java.util.List<Integer> got = new java.util.ArrayList<>();
            new Generator(model, new Sampler(0, 0, 1, 0), java.util.Set.of()).generate(prompt, expected.length, got::add);
            assertArrayEquals(expected, got.stream().mapToInt(Integer::intValue).toArray());
        }
    }

    @org.junit.jupiter.api.Test
    void ledgerRecordsWeightsActivationsAndCache() {
        Path dir = SharedData.fixture("tiny-llama-gqa-tied");
        MemoryLedger ledger = new MemoryLedger();
        Kernels k = KernelBackends.get();
        try (ModelFolder folder = ModelFolder.open(dir, ledger, k); LlamaModel model = folder.newModel(k, ledger)) {
            assertTrue(ledger.mappedBytes(dev.llamafit.memory.Category.WEIGHTS) > 0, "mapped weights are recorded");
            LlamaConfig c = folder.config();
            try (KvCache cache = model.newCache(2, 16)) {
                assertEquals(KvCache.bytes(c, 2, 16), ledger.currentBytes(dev.llamafit.memory.Category.KV_CACHE));
                model.forward(new int[][] {{1, 2}, {3, 4}}, cache, LlamaModel.Logits.LAST);
                ActivationLayout layout = new ActivationLayout(c, 2, 2, 16, 2, dev.llamafit.kernels.Parallel.threads());
                assertEquals(layout.bytes(dev.llamafit.memory.Category.ACTIVATIONS),
                        ledger.currentBytes(dev.llamafit.memory.Category.ACTIVATIONS), "activations equal the layout");
            }
            assertEquals(0, ledger.currentBytes(dev.llamafit.memory.Category.KV_CACHE));
        }
    }
}
