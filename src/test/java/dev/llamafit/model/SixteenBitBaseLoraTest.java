// LoRA over a bf16/f16 base used in place gives the bits of LoRA over the same base widened to fp32; full fine-tuning refuses it.
package dev.llamafit.model;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;

import java.io.IOException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.SplittableRandom;

import dev.llamafit.io.ConfigJson;
import dev.llamafit.io.HfFolderWriter;
import dev.llamafit.io.ModelFolder;
import dev.llamafit.kernels.KernelBackends;
import dev.llamafit.kernels.Kernels;
import dev.llamafit.memory.MemoryLedger;
import dev.llamafit.tensor.DType;
import dev.llamafit.tensor.Tensor;
import dev.llamafit.tensor.TensorSpec;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

class SixteenBitBaseLoraTest {
    static final int B = 2, T = 12;

    @ParameterizedTest
    @ValueSource(strings = {"BF16", "F16"})
    void adapterGradientsEqualThoseOverTheWidenedBase(String dtypeName, @TempDir Path tmp) throws IOException {
        DType d = DType.valueOf(dtypeName);
        LlamaConfig c = ConfigJson.read(Path.of("src/test/resources/fixtures/tiny-llama-gqa-tied/config.json"));
        Kernels k = KernelBackends.get();
        Path dir = tmp.resolve("base");
        MemoryLedger writing = new MemoryLedger();
        Map<String, Tensor> w = RandomModels.weights(c, writing, 11, 0.05);
        try {
            List<Tensor> ordered = new ArrayList<>();
            for (TensorSpec s : ParameterLayout.of(c, DType.F32).specs()) ordered.add(w.get(s.name()));
            HfFolderWriter.write(dir, c, ordered, null, d, writing, k);
        } finally {
            w.values().forEach(Tensor::close);
        }
        LoraConfig lora = new LoraConfig(4, 8, 0.1, List.of("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"), false);
        Technique t = new Technique(Technique.Method.LORA, lora, Technique.Precision.FP32, null, Technique.Optimizer.ADAMW, true, 1, 1);
        SplittableRandom r = new SplittableRandom(2);
        int[][] ids = new int[B][T], labels = new int[B][T];
        for (int i = 0; i < B; i++) for (int j = 0; j < T; j++) { ids[i][j] = r.nextInt(c.vocabSize()); labels[i][j] = r.nextInt(c.vocabSize()); }

        MemoryLedger ledger = new MemoryLedger();
        try (ModelFolder half = ModelFolder.open(dir, ledger, k, null);
             ModelFolder wide = ModelFolder.open(dir, ledger, k, DType.F32);
             TrainingStep s16 = new TrainingStep(c, half.weights(), k, ledger, B, T, t, 5);
             TrainingStep s32 = new TrainingStep(c, wide.weights(), k, ledger, B, T, t, 5)) {
            assertEquals(d, half.weights().get(ParameterLayout.EMBED).dtype());
            // Two steps with B ≠ 0 after the first, so the adapters' products reach every gradient.
            for (int step = 0; step < 2; step++) {
                s16.zeroGradients();
                s32.zeroGradients();
                TrainingStep.Loss l16 = s16.forwardBackward(ids, labels, B * T), l32 = s32.forwardBackward(ids, labels, B * T);
                assertEquals(l32.sum(), l16.sum(), "loss, step " + step);
                for (String name : s32.adapterGradients().keySet()) {
                    Tensor g16 = s16.adapterGradients().get(name), g32 = s32.adapterGradients().get(name);
                    for (long i = 0; i < g32.elements(); i++)
                        assertEquals(Float.floatToRawIntBits(g32.getFloat(i)), Float.floatToRawIntBits(g16.getFloat(i)), name + " at " + i);
                }
                for (String name : s32.adapterWeights().keySet()) {
                    Tensor a16 = s16.adapterWeights().get(name), a32 = s32.adapterWeights().get(name), g = s32.adapterGradients().get(name);
                    for (long i = 0; i < a32.elements(); i++) {
                        float v = a32.getFloat(i) - 0.5f * g.getFloat(i);
                        a32.setFloat(i, v);
                        a16.setFloat(i, v);
                    }
                }
            }
            // Full fine-tuning updates weights: a 16-bit base needs an owned fp32 copy first.
            try (TrainingStep full = new TrainingStep(c, half.weights(), k, ledger, B, T)) {
                assertThrows(IllegalStateException.class, () -> full.forwardBackward(ids, labels, B * T));
                assertEquals(s32.forwardLoss(ids, labels).sum(), s16.forwardLoss(ids, labels).sum(), "forward-only loss");
                full.forwardLoss(ids, labels); // evaluation over a 16-bit base is allowed
            }
        }
    }
}
