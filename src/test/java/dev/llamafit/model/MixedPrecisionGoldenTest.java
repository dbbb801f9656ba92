// bf16/fp16 training step of the tiny fixtures against PyTorch autocast (scripts/make_autocast_fixtures.py) and against fp32.
package dev.llamafit.model;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;

import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

import com.fasterxml.jackson.databind.JsonNode;

import dev.llamafit.io.Json;
import dev.llamafit.io.ModelFolder;
import dev.llamafit.io.safetensors.SafetensorsFile;
import dev.llamafit.kernels.KernelBackends;
import dev.llamafit.kernels.Kernels;
import dev.llamafit.kernels.ScalarKernels;
import dev.llamafit.memory.Category;
import dev.llamafit.memory.MemoryLedger;
import dev.llamafit.model.Technique.Method;
import dev.llamafit.model.Technique.Optimizer;
import dev.llamafit.model.Technique.Precision;
import dev.llamafit.tensor.DType;
import dev.llamafit.tensor.Tensor;
import dev.llamafit.tensor.TensorSpec;
import dev.llamafit.testing.SharedData;

/**
 * The mixed-precision acceptance of issue 15 on the four tiny fixtures, each in bf16 and fp16.
 *
 * <p><b>Against the autocast reference</b> (autocast_bf16/fp16.safetensors: real torch.autocast for bf16, an explicit
 * emulation of the same roundings for fp16). The engine and the reference round the same tensors to 16 bits, so they
 * differ only where an fp32 sum, accumulated in another order, lands on the other side of a 16-bit rounding boundary:
 * one 16-bit ulp (2^-8 relative in bf16, 2^-11 in fp16) in a few elements, plus the reference's 16-bit weight gradients
 * (autograd rounds a weight's gradient before widening it; the engine keeps it fp32: 2^-9 / 2^-12 relative per
 * element). Those flips propagate through the later layers and backward, so the bound is a few ulps norm-wise:
 * every parameter's gradient satisfies ||g − g_ref|| / ||g_ref|| ≤ {@code REF_TOL} (1e-2 bf16, 2e-3 fp16), and the mean
 * loss |Δ| ≤ {@code LOSS_TOL} (2e-3 bf16, 3e-4 fp16; the bf16 loss itself moves by up to 5e-3 from fp32's).
 *
 * <p><b>Against fp32</b> (the float64 reference expected_grads.safetensors, which the fp32 engine matches within
 * 1e-4): the per-layer gradients (every parameter of block l concatenated; embeddings, final norm and head as one more
 * group) satisfy ||g − g_fp32|| / ||g_fp32|| ≤ {@code FP32_TOL} (5e-2 bf16, 1e-2 fp16). The reference itself sits at
 * 1.7e-2..3.5e-2 (bf16) and 1.8e-3..4.5e-3 (fp16) per parameter, the worst being small bias gradients; the bound leaves
 * the engine its own rounding on top. That error must also be above {@code 1e-4}: a step that silently computed in
 * fp32 would pass every tolerance above against fp32 but not this one, nor the autocast comparison.
 *
 * <p>TODO(logits): the acceptance also asks for the forward logits against the reference ("logits" [B, T, V] in the
 * autocast files). TrainingStep does not expose logits yet; when {@code TrainingStep.logits(int[][])} exists, compare
 * them norm-wise within REF_TOL here.
 */
class MixedPrecisionGoldenTest {

    record Tolerances(double ref, double loss, double fp32) {}

    static final Map<Precision, Tolerances> TOL = Map.of(
            Precision.BF16, new Tolerances(1e-2, 2e-3, 5e-2),
            Precision.FP16, new Tolerances(2e-3, 3e-4, 1e-2));

    @ParameterizedTest
    @CsvSource({
            "tiny-llama-gqa-tied, BF16", "tiny-llama3-untied, BF16", "tiny-qwen2, BF16", "tiny-mistral-window, BF16",
            "tiny-llama-gqa-tied, FP16", "tiny-llama3-untied, FP16", "tiny-qwen2, FP16", "tiny-mistral-window, FP16"})
    void lossAndGradientsMatchAutocastAndStayNearFp32(String name, Precision precision) {
        Path dir = SharedData.fixture(name);
        JsonNode expected = Json.read(dir.resolve("expected.json"));
        int[][] ids = SharedData.ints(expected.get("input_ids")), labels = SharedData.ints(expected.get("labels"));
        long counted = 0;
        for (int[] row : labels) for (int l : row) if (l != -100) counted++;
        Tolerances tol = TOL.get(precision);
        String file = "autocast_" + precision.name().toLowerCase(Locale.ROOT) + ".safetensors";
        Technique technique = new Technique(Method.FULL, null, precision, null, Optimizer.ADAMW, false, 1, 1);
        for (Kernels k : List.of(KernelBackends.get(), new ScalarKernels())) {
            String what = name + " " + precision + " " + k.name();
            MemoryLedger ledger = new MemoryLedger();
            try (ModelFolder folder = ModelFolder.open(dir, ledger, k);
                 SafetensorsFile ref = SafetensorsFile.open(dir.resolve(file), ledger);
                 SafetensorsFile fp32 = SafetensorsFile.open(dir.resolve("expected_grads.safetensors"), ledger)) {
                Map<String, Tensor> weights = TrainingStep.ownedCopy(folder.weights(), ledger);
                try (TrainingStep step = new TrainingStep(folder.config(), weights, k, ledger, ids.length, ids[0].length, technique, 7)) {
                    step.zeroGradients();
                    TrainingStep.Loss loss = step.forwardBackward(ids, labels, counted);
                    assertEquals(counted, loss.tokens());
                    double refLoss = ref.find("loss").orElseThrow().toFloatArray()[0];
                    double lossErr = Math.abs(loss.mean() - refLoss);
                    System.out.printf(Locale.ROOT, "%s: loss %.6f, autocast %.6f, |Δ| %.2e, fp32 %.6f%n",
                            what, loss.mean(), refLoss, lossErr, expected.get("loss").asDouble());
                    assertTrue(lossErr <= tol.loss(), what + " loss " + loss.mean() + " vs autocast " + refLoss);

                    Map<String, double[]> groups = new LinkedHashMap<>(); // group -> {Σ(g − g32)², Σ g32²}
                    double worstRef = 0, worstMax = 0;
                    int checked = 0;
                    for (TensorSpec spec : ParameterLayout.of(folder.config(), DType.F32).specs()) {
                        float[] got = step.gradients().get(spec.name()).toFloatArray();
                        float[] want = ref.find(spec.name()).orElseThrow().toFloatArray();
                        float[] want32 = fp32.find(spec.name()).orElseThrow().toFloatArray();
                        assertEquals(want.length, got.length, spec.name());
                        double[] e = errors(got, want);
                        worstRef = Math.max(worstRef, e[0]);
                        worstMax = Math.max(worstMax, e[1]);
                        assertTrue(e[0] <= tol.ref(), String.format(Locale.ROOT,
                                "%s d%s vs autocast: ||Δ||/||ref|| = %.3e > %.0e (max |Δ| %.3e)", what, spec.name(), e[0], tol.ref(), e[1]));
                        double[] acc = groups.computeIfAbsent(group(spec.name()), g -> new double[2]);
                        for (int i = 0; i < got.length; i++) {
                            double d = (double) got[i] - want32[i];
                            acc[0] += d * d;
                            acc[1] += (double) want32[i] * want32[i];
                        }
                        checked++;
                    }
                    assertEquals(ref.names().size() - 2, checked, "every reference gradient was compared"); // less logits, loss
                    System.out.printf(Locale.ROOT, "%s: vs autocast worst ||Δ||/||ref|| %.2e, worst max |Δ| %.2e%n", what, worstRef, worstMax);
                    for (Map.Entry<String, double[]> g : groups.entrySet()) {
                        double rel = Math.sqrt(g.getValue()[0] / g.getValue()[1]);
                        System.out.printf(Locale.ROOT, "%s: %s vs fp32 ||Δ||/||g32|| %.2e%n", what, g.getKey(), rel);
                        assertTrue(rel <= tol.fp32(), what + " " + g.getKey() + " gradients vs fp32: " + rel + " > " + tol.fp32());
                        assertTrue(rel > 1e-4, what + " " + g.getKey() + " gradients equal fp32's (" + rel + "): the step did not compute in 16 bits");
                    }
                } finally {
                    weights.values().forEach(Tensor::close);
                }
            }
            assertEquals(0, ledger.currentBytes(Category.GRADIENTS));
            assertEquals(0, ledger.currentBytes(Category.ACTIVATIONS));
        }
    }

    /** "layer l" for block parameters, else "embeddings/final norm/head". */
    static String group(String parameter) {
        String prefix = "model.layers.";
        if (!parameter.startsWith(prefix)) return "embeddings/final norm/head";
        return "layer " + parameter.substring(prefix.length(), parameter.indexOf('.', prefix.length()));
    }

    /** {norm-wise relative error, max absolute error} of got against want. */
    static double[] errors(float[] got, float[] want) {
        double num = 0, den = 0, max = 0;
        for (int i = 0; i < got.length; i++) {
            double d = (double) got[i] - want[i];
            num += d * d;
            den += (double) want[i] * want[i];
            max = Math.max(max, Math.abs(d));
        }
        assertTrue(den > 0, "zero reference gradient: the comparison would be vacuous");
        return new double[] {Math.sqrt(num / den), max};
    }
}
