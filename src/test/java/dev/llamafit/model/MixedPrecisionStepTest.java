// Mixed-precision training steps (bf16, fp16): gradients against fp32, 16-bit storage, ledger == layout, working copies.
package dev.llamafit.model;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.List;
import java.util.Map;

import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

import dev.llamafit.kernels.KernelBackends;
import dev.llamafit.kernels.Kernels;
import dev.llamafit.memory.Category;
import dev.llamafit.memory.MemoryLedger;
import dev.llamafit.tensor.DType;
import dev.llamafit.tensor.Tensor;

class MixedPrecisionStepTest {
    /**
     * Norm-wise relative error of each parameter's gradient against the fp32 step. bf16 keeps 8 significant bits
     * (relative rounding 2^-9 ≈ 0.2%), fp16 11 (2^-12 ≈ 0.024%); a gradient passes through a few dozen roundings.
     * Measured here (worst parameter): bf16 0.032 full / 0.025 LoRA, fp16 0.0042 full / 0.0060 LoRA. The bounds are
     * 2.5× and 1.7× above that and still catch a tensor computed wrongly (a missing or misplaced term is an O(1) error).
     */
    private static double tolerance(Technique.Precision p) { return p == Technique.Precision.BF16 ? 0.08 : 0.01; }

    private static Technique technique(Technique.Precision p, boolean lora, boolean checkpointing) {
        Technique t = lora ? Technique.lora(new LoraConfig(4, 8, 0.0, List.of("q_proj", "v_proj", "down_proj"), false))
                : Technique.FULL;
        t = new Technique(t.method(), t.lora(), p, null, t.optimizer(), false, 1, 1);
        return t.withGradientCheckpointing(checkpointing, 1);
    }

    @ParameterizedTest(name = "{0} lora={1} checkpointing={2}")
    @CsvSource({"BF16,false,false", "BF16,false,true", "BF16,true,false", "BF16,true,true",
            "FP16,false,false", "FP16,true,true"})
    void gradientsMatchFp32AndTheLedgerMatchesTheLayout(Technique.Precision p, boolean lora, boolean checkpointing) {
        LlamaConfig c = TrainingStepTest.tiny(!lora);
        Kernels k = KernelBackends.get();
        MemoryLedger ledger = new MemoryLedger();
        Map<String, Tensor> w = RandomModels.weights(c, ledger, 11, 0.2);
        int b = 2, t = 12;
        int[][] ids = TrainingStepTest.randomIds(b, t, c.vocabSize(), 1, false), labels = TrainingStepTest.randomIds(b, t, c.vocabSize(), 2, true);
        Technique fp32 = technique(Technique.Precision.FP32, lora, false), mixed = technique(p, lora, checkpointing);
        try (TrainingStep ref = new TrainingStep(c, w, k, ledger, b, t, fp32, 5)) {
            TrainingStep.Loss refLoss = ref.forwardBackward(ids, labels, 20);
            // LoRA's B starts at zero, so its A gets no gradient: give B values, the same in both steps.
            Map<String, Tensor> adapters = ref.adapterWeights();
            for (Tensor a : adapters.values())
                if (a.name().contains("lora_B")) for (long i = 0; i < a.elements(); i++) a.setFloat(i, (float) Math.sin(i + 1) * 0.3f);
            if (lora) {
                ref.zeroGradients();
                refLoss = ref.forwardBackward(ids, labels, 20);
            }
            long before = ledger.currentBytes(Category.WEIGHTS), beforeMaster = ledger.currentBytes(Category.MASTER_WEIGHTS);
            long actBefore = ledger.currentBytes(Category.ACTIVATIONS);
            try (TrainingStep step = new TrainingStep(c, w, k, ledger, b, t, mixed, 5)) {
                TrainingLayout layout = step.layout();
                if (lora) step.loadAdapter(adapters);
                assertEquals(layout.bytes(Category.WEIGHTS), ledger.currentBytes(Category.WEIGHTS) - before, "working copies (+ nothing else)");
                assertEquals(layout.bytes(Category.MASTER_WEIGHTS), ledger.currentBytes(Category.MASTER_WEIGHTS) - beforeMaster, "fp32 adapters");
                assertEquals(layout.bytes(Category.ACTIVATIONS), ledger.currentBytes(Category.ACTIVATIONS) - actBefore);
                DType half = p == Technique.Precision.BF16 ? DType.BF16 : DType.F16;
                if (!checkpointing) {
                    // q is saved in 16 bits, x_mid in fp32
                    assertEquals(half, layout.blockSlots(0).stream().filter(s -> s.spec().name().equals("layers.0.q")).findFirst().orElseThrow().spec().dtype());
                    assertEquals(DType.F32, layout.blockSlots(0).stream().filter(s -> s.spec().name().equals("layers.0.x_mid")).findFirst().orElseThrow().spec().dtype());
                }
                TrainingStep.Loss loss = step.forwardBackward(ids, labels, 20);
                assertEquals(layout.bytes(Category.ACTIVATIONS), ledger.peakBytes(Category.ACTIVATIONS) - actBefore, "nothing allocated during the step");
                assertEquals(refLoss.tokens(), loss.tokens());
                assertEquals(refLoss.sum(), loss.sum(), tolerance(p) / 4 * Math.abs(refLoss.sum()), "loss");
                for (String name : ref.gradients().keySet()) {
                    float[] g32 = ref.gradients().get(name).toFloatArray(), g16 = step.gradients().get(name).toFloatArray();
                    double num = 0, den = 0;
                    for (int i = 0; i < g32.length; i++) {
                        num += (g16[i] - g32[i]) * (double) (g16[i] - g32[i]);
                        den += g32[i] * (double) g32[i];
                    }
                    assertTrue(den > 0, name + " has a zero fp32 gradient");
                    double rel = Math.sqrt(num / den);
                    assertTrue(rel < tolerance(p), name + ": " + p + " gradient differs from fp32 by " + rel + " (norm-wise)");
                    assertTrue(rel > 0 || g32.length < 8, name + ": identical to fp32, so nothing was rounded");
                }
            }
        } finally {
            w.values().forEach(Tensor::close);
        }
    }
}
