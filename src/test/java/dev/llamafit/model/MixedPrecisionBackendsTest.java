// A bf16 mixed-precision step on both kernel paths: the Vector API's fp32 GEMMs and oneDNN's native bf16 matmul agree.
package dev.llamafit.model;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

import java.util.List;
import java.util.Map;

import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

import dev.llamafit.kernels.Kernels;
import dev.llamafit.kernels.OneDnnKernels;
import dev.llamafit.kernels.VectorKernels;
import dev.llamafit.memory.MemoryLedger;
import dev.llamafit.tensor.DType;
import dev.llamafit.tensor.Tensor;

/**
 * Explicit instances, independent of -Dllamafit.kernels: {@code new VectorKernels()} and the onednn provider (skipped
 * with the reason when libdnnl2 is missing, failing under CI=true, which installs it). Every GEMM operand of a mixed
 * step holds bf16 values, so oneDNN's matmul computes the same products; only the summation order differs, so losses
 * and gradients agree to fp32 rounding of sums (far inside bf16's own error, which MixedPrecisionStepTest bounds).
 */
class MixedPrecisionBackendsTest {
    /**
     * Norm-wise relative difference allowed between the two paths. A different summation order moves a GEMM's output by
     * an fp32 ulp or so, which flips the bf16 rounding of a few downstream values by a bf16 ulp (2^-8): measured here
     * up to 9e-4 (the embedding's gradient, which sums them all). bf16 against fp32 differs by ~3e-2, and a wrong product
     * by O(1), so 5e-3 still separates "same products" from anything else.
     */
    private static final double TOLERANCE = 5e-3;

    private static OneDnnKernels onednn() {
        String why = OneDnnKernels.unavailableReason();
        if (why != null) {
            if ("true".equals(System.getenv("CI"))) fail(why + "; CI must have libdnnl2 installed");
            Assumptions.abort(why);
        }
        return OneDnnKernels.create();
    }

    @ParameterizedTest(name = "lora={0}")
    @ValueSource(booleans = {false, true})
    void bf16StepsAgreeOnTheVectorAndOneDnnPaths(boolean lora) {
        OneDnnKernels dnnl = onednn();
        // Large enough that the projections, attention and LM head pass the view's size threshold (rows 256, C 64).
        LlamaConfig c = new LlamaConfig("llama", 64, 160, 2, 4, 2, 16, 300, 128, 1e-5, 10000.0, new RopeScaling.None(), !lora,
                true, false, false, 5, 1, List.of(2));
        Technique t = lora ? Technique.lora(new LoraConfig(16, 32, 0.0, List.of("q_proj", "v_proj", "down_proj"), false))
                : Technique.FULL;
        t = new Technique(t.method(), t.lora(), Technique.Precision.BF16, lora ? Technique.BaseDtype.FP32 : null, t.optimizer(), false, 1, 1);
        MemoryLedger ledger = new MemoryLedger();
        Map<String, Tensor> w = RandomModels.weights(c, ledger, 11, 0.2);
        int b = 4, seq = 64;
        int[][] ids = TrainingStepTest.randomIds(b, seq, c.vocabSize(), 1, false), labels = TrainingStepTest.randomIds(b, seq, c.vocabSize(), 2, true);
        Kernels vector = new VectorKernels();
        try (TrainingStep ref = new TrainingStep(c, w, vector, ledger, b, seq, t, 5);
             TrainingStep step = new TrainingStep(c, w, dnnl, ledger, b, seq, t, 5)) {
            if (lora) { // B starts at zero (A would get no gradient): the same nonzero B in both steps
                Map<String, Tensor> adapters = ref.adapterWeights();
                for (Tensor a : adapters.values())
                    if (a.name().contains("lora_B")) for (long i = 0; i < a.elements(); i++) a.setFloat(i, (float) Math.sin(i + 1) * 0.3f);
                ref.syncWorkingCopies();
                step.loadAdapter(adapters);
            }
            TrainingStep.Loss want = ref.forwardBackward(ids, labels, 100);
            TrainingStep.Loss got = step.forwardBackward(ids, labels, 100);
            OneDnnKernels view = assertInstanceOf(OneDnnKernels.class, step.kernels());
            assertTrue(view.nativeBf16Gemms() > 0, "the step's GEMMs ran on oneDNN's bf16 matmul: " + view.name());
            assertEquals(want.tokens(), got.tokens());
            assertEquals(want.sum(), got.sum(), TOLERANCE / 10 * Math.abs(want.sum()), "loss");
            for (String name : ref.gradients().keySet()) {
                float[] g1 = ref.gradients().get(name).toFloatArray(), g2 = step.gradients().get(name).toFloatArray();
                double num = 0, den = 0;
                for (int i = 0; i < g1.length; i++) {
                    num += (g2[i] - g1[i]) * (double) (g2[i] - g1[i]);
                    den += g1[i] * (double) g1[i];
                }
                assertTrue(den > 0, name + " has a zero gradient");
                assertTrue(Math.sqrt(num / den) <= TOLERANCE, name + ": relative difference " + Math.sqrt(num / den));
            }
        } finally {
            w.values().forEach(Tensor::close);
        }
    }
}
