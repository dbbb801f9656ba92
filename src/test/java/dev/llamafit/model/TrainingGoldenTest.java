// Whole-model loss and gradients of the tiny fixtures against PyTorch float64 autograd (scripts/make_fixtures.py).
package dev.llamafit.model;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.file.Path;
import java.util.List;
import java.util.Map;

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
import dev.llamafit.tensor.Tensor;
import dev.llamafit.tensor.TensorSpec;
import dev.llamafit.testing.SharedData;

class TrainingGoldenTest {

    @ParameterizedTest
    @ValueSource(strings = {"tiny-llama-gqa-tied", "tiny-llama3-untied", "tiny-qwen2", "tiny-mistral-window"})
    void lossAndEveryGradientMatchPyTorch(String name) {
        Path dir = SharedData.fixture(name);
        JsonNode expected = Json.read(dir.resolve("expected.json"));
        int[][] ids = SharedData.ints(expected.get("input_ids")), labels = SharedData.ints(expected.get("labels"));
        long counted = 0;
        for (int[] row : labels) for (int l : row) if (l != -100) counted++;
        for (Kernels k : List.of(KernelBackends.get(), new ScalarKernels())) {
            MemoryLedger ledger = new MemoryLedger();
            try (ModelFolder folder = ModelFolder.open(dir, ledger, k);
                 SafetensorsFile grads = SafetensorsFile.open(dir.resolve("expected_grads.safetensors"), ledger)) {
                Map<String, Tensor> weights = TrainingStep.ownedCopy(folder.weights(), ledger);
                try (TrainingStep step = new TrainingStep(folder.config(), weights, k, ledger, ids.length, ids[0].length)) {
                    step.zeroGradients();
                    TrainingStep.Loss loss = step.forwardBackward(ids, labels, counted);
                    assertEquals(counted, loss.tokens());
                    assertEquals(expected.get("loss").asDouble(), loss.mean(), 1e-5, name + " " + k.name() + " loss");
                    int checked = 0;
                    for (TensorSpec spec : ParameterLayout.of(folder.config(), dev.llamafit.tensor.DType.F32).specs()) {
                        float[] want = grads.find(spec.name()).orElseThrow().toFloatArray();
                        float[] got = step.gradients().get(spec.name()).toFloatArray();
                        assertEquals(want.length, got.length, spec.name());
                        double maxAbs = 0, scale = 0;
                        for (int i = 0; i < want.length; i++) {
                            maxAbs = Math.max(maxAbs, Math.abs((double) want[i] - got[i]));
                            scale = Math.max(scale, Math.abs(want[i]));
                        }
                        assertTrue(maxAbs < 1e-4, name + " " + k.name() + " d" + spec.name() + ": max |Δ| = " + maxAbs + " (max |grad| " + scale + ")");
                        assertTrue(scale > 0, spec.name() + " has a zero reference gradient: the check would be vacuous");
                        checked++;
                    }
                    assertEquals(grads.names().size(), checked, "every reference gradient was compared");
                } finally {
                    weights.values().forEach(Tensor::close);
                }
            }
            assertEquals(0, ledger.currentBytes(Category.GRADIENTS));
            assertEquals(0, ledger.currentBytes(Category.ACTIVATIONS));
        }
    }
}
