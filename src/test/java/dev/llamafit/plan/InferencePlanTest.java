// Inference plans: the llamafit runtime's plan equals the ledger of a real generation; the PyTorch terms scale as stated.
package dev.llamafit.plan;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.file.Path;
import java.util.List;
import java.util.Set;

import org.junit.jupiter.api.Test;

import com.fasterxml.jackson.databind.JsonNode;

import dev.llamafit.model.Technique;
import dev.llamafit.plan.pytorch.GpuDevices;
import dev.llamafit.plan.pytorch.PytorchOptions;
import dev.llamafit.plan.pytorch.PytorchInference;
import dev.llamafit.io.ModelFolder;
import dev.llamafit.io.ModelPresets;
import dev.llamafit.kernels.KernelBackends;
import dev.llamafit.kernels.Kernels;
import dev.llamafit.kernels.Parallel;
import dev.llamafit.memory.Category;
import dev.llamafit.memory.MemoryLedger;
import dev.llamafit.model.Generator;
import dev.llamafit.model.LlamaConfig;
import dev.llamafit.model.LlamaModel;
import dev.llamafit.model.Sampler;
import dev.llamafit.testing.SharedData;

class InferencePlanTest {
    static PytorchOptions inference(int batch, int prompt, Technique.Precision p) {
        return PytorchOptions.of(Technique.Method.FULL, 0, List.of(), 0, p, null, Technique.Optimizer.ADAMW, false, 1, batch, prompt, 0, 1,
                PytorchOptions.Offload.NONE, PytorchOptions.Attention.FLASH, PytorchOptions.Stack.HF, PytorchOptions.Sharding.DEEPSPEED, PytorchOptions.PytorchSettings.DEFAULTS);
    }

    @Test
    void llamafitPlanEqualsTheLedgerOfAGeneration() {
        Path dir = SharedData.require("models/tinystories-656k");
        for (int[] shape : new int[][]{{7, 20}, {33, 1}, {12, 60}}) {
            int prompt = shape[0], newTokens = shape[1];
            MemoryLedger ledger = new MemoryLedger();
            Kernels kernels = KernelBackends.get();
            try (ModelFolder folder = ModelFolder.open(dir, ledger, kernels); LlamaModel model = folder.newModel(kernels, ledger)) {
                int[] ids = new int[prompt];
                for (int i = 0; i < prompt; i++) ids[i] = 1 + (i * 37) % 400;
                // No EOS: generate exactly newTokens, so the cache fills as planned.
                new Generator(model, new Sampler(0, 0, 1, 1), Set.of()).generate(ids, newTokens, id -> {});
                MemoryPlan plan = InferencePlanner.plan(folder.config(), 1, prompt, newTokens, Devices.cpu(24L << 30, Parallel.threads()));
                for (Category c : List.of(Category.WEIGHTS, Category.KV_CACHE, Category.ACTIVATIONS, Category.WORKSPACE))
                    assertEquals(ledger.peakBytes(c), plan.categoryPeak(c), c.key() + " at prompt " + prompt + " + " + newTokens);
                assertEquals(ledger.totalPeakBytes(), plan.peak(Column.DEVICE, Metric.ALLOCATED), "total");
            }
        }
    }

    @Test
    void pytorchKvCacheAndQuantisedWeightsScaleAsStated() throws Exception {
        LlamaConfig c = ModelPresets.load("llama-3.1-8b");
        Device h100 = GpuDevices.gpu("h100-80gb");
        MemoryPlan bf16 = PytorchInference.plan(c, inference(4, 4096, Technique.Precision.BF16), null, 4096, h100);
        // KV cache: 2 × 32 layers × 4 sequences × 1024 (8 KV heads × 128) × 8192 positions × 2 B = 4 GiB.
        assertEquals(4L << 30, bf16.categoryPeak(Category.KV_CACHE));
        MemoryPlan nf4 = PytorchInference.plan(c, inference(4, 4096, Technique.Precision.BF16),
                Technique.BaseDtype.NF4, 4096, h100);
        double ratio = (double) nf4.categoryPeak(Category.WEIGHTS) / bf16.categoryPeak(Category.WEIGHTS);
        assertTrue(ratio > 0.25 && ratio < 0.45, "NF4 base + bf16 embeddings vs bf16: " + ratio);
        PlanCommandTest.Run r = PlanCommandTest.run("plan", "--model", "llama-3.1-8b", "--inference", "--precision", "bf16", "--device", "l4",
                "--seq-len", "2048", "--max-new-tokens", "2048", "--max-batch", "--json");
        assertEquals(0, r.code(), r.err());
        JsonNode j = dev.llamafit.io.Json.MAPPER.readTree(r.out());
        assertEquals("inference", j.path("mode").asText());
        assertTrue(j.path("max_batch_size").asInt() >= 1, r.out());
        PlanCommandTest.Run bad = PlanCommandTest.run("plan", "--model", "llama-3.1-8b", "--inference", "--method", "lora", "--device", "l4");
        assertEquals(2, bad.code());
    }
}
