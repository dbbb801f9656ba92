package dev.llamafit.train;

import static org.junit.jupiter.api.Assertions.assertEquals;

import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;

import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

import com.fasterxml.jackson.databind.JsonNode;

import dev.llamafit.io.Json;
import dev.llamafit.io.ModelFolder;
import dev.llamafit.kernels.KernelBackends;
import dev.llamafit.kernels.Kernels;
import dev.llamafit.memory.MemoryLedger;
import dev.llamafit.model.ParameterLayout;
import dev.llamafit.model.TrainingStep;
import dev.llamafit.optim.AdamW;
import dev.llamafit.optim.GradClip;
import dev.llamafit.optim.LrSchedule;
import dev.llamafit.optim.Param;
import dev.llamafit.tensor.DType;
import dev.llamafit.tensor.Tensor;
import dev.llamafit.tensor.TensorSpec;
import dev.llamafit.testing.SharedData;

/** Ten AdamW steps with warmup, cosine decay and clipping reproduce torch.optim.AdamW (scripts/make_fixtures.py). */
class TrainingRunGoldenTest {

    @ParameterizedTest
    @ValueSource(strings = {"tiny-llama-gqa-tied", "tiny-llama3-untied", "tiny-qwen2", "tiny-mistral-window"})
    void tenAdamWStepsMatchPyTorch(String name) {
        Path dir = SharedData.fixture(name);
        JsonNode run = Json.read(dir.resolve("train_run.json"));
        JsonNode exp = Json.read(dir.resolve("expected.json"));
        int[][] ids = SharedData.ints(exp.get("input_ids")), labels = SharedData.ints(exp.get("labels"));
        long tokens = 0;
        for (int[] row : labels) for (int l : row) if (l != -100) tokens++;
        MemoryLedger ledger = new MemoryLedger();
        Kernels k = KernelBackends.get();
        try (ModelFolder folder = ModelFolder.open(dir, ledger, k)) {
            Map<String, Tensor> w = TrainingStep.ownedCopy(folder.weights(), ledger);
            try (TrainingStep step = new TrainingStep(folder.config(), w, k, ledger, ids.length, ids[0].length);
                 AdamW opt = new AdamW(run.get("betas").get(0).asDouble(), run.get("betas").get(1).asDouble(),
                         run.get("eps").asDouble(), run.get("weight_decay").asDouble(), ledger)) {
                List<Param> params = new ArrayList<>();
                for (TensorSpec s : ParameterLayout.of(folder.config(), DType.F32).specs()) {
                    boolean decay = !s.name().contains("norm") && !s.name().endsWith(".bias");
                    params.add(new Param(s.name(), w.get(s.name()), step.gradients().get(s.name()), decay));
                }
                int steps = run.get("steps").asInt();
                LrSchedule schedule = LrSchedule.parse(run.get("schedule").asText(), run.get("lr").asDouble(),
                        run.get("warmup").asLong(), steps);
                for (int s = 0; s < steps; s++) {
                    step.zeroGradients();
                    double loss = step.forwardBackward(ids, labels, tokens).mean();
                    List<Tensor> grads = params.stream().map(Param::grad).toList();
                    double norm = GradClip.clipGlobalNorm(grads, run.get("max_grad_norm").asDouble());
                    double lr = schedule.lr(s);
                    opt.step(params, lr);
                    assertEquals(run.get("lrs").get(s).asDouble(), lr, 1e-12, name + " lr at step " + (s + 1));
                    assertEquals(run.get("grad_norms").get(s).asDouble(), norm, 1e-4 * Math.max(1, norm), name + " grad norm at step " + (s + 1));
                    assertEquals(run.get("losses").get(s).asDouble(), loss, 1e-4, name + " loss at step " + (s + 1));
                }
            } finally {
                w.values().forEach(Tensor::close);
            }
        }
    }
}
