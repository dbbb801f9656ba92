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
 * The mixed-precision acceptance of issue 15 on the four tiny fixtures, each in bf16 and fp16. Tolerances are in units
 * of the 16-bit unit roundoff u (half the spacing of the numbers at 1): 2^-8 for bf16 (8 significant bits), 2^-11 for
 * fp16 (11).
 *
 * <p><b>Against the autocast reference</b> (autocast_bf16/fp16.safetensors: real torch.autocast for bf16, an explicit
 * emulation of the same roundings for fp16; scripts/make_autocast_fixtures.py). Autocast fixes which tensors are 16-bit,
 * not every rounding: it rounds q/k before RoPE and again after, scales the scores after rounding q·kᵀ, rounds biases
 * and weight gradients, where the engine rounds RoPE's output once, folds 1/√D into the GEMM, keeps biases and weight
 * gradients fp32. Each such difference is an independent rounding error, so engine and reference differ by about as
 * much as either differs from exact arithmetic, not by a few flipped ulps. Measured with an emulation that rounds where
 * the engine does: loss within 1.3u (bf16) / 2.3u (fp16) of the reference, every gradient within 6u norm-wise. Bounds,
 * twice that: |loss − loss_ref| ≤ 5u; ||g − g_ref|| / ||g_ref|| ≤ 12u for every parameter, or 3× the reference's own
 * distance from exact arithmetic (||g_ref − g_fp64|| / ||g_ref||) where that is larger: a nearly cancelling gradient such
 * as k's bias (softmax ignores a per-row constant; only RoPE breaks it) sits at 9u from exact even in the reference.
 *
 * <p><b>Against fp32</b> (the float64 reference expected_grads.safetensors, which the fp32 engine matches within
 * 1e-4): the per-layer gradients (every parameter of block l concatenated; embeddings, final norm and head as one more
 * group) must differ from fp32 by ||g − g_fp32|| / ||g_fp32|| in [1u, 8u]. The autocast reference itself sits at
 * 1.9u..3.6u in every layer of every fixture in both precisions (and the engine-like emulation at 1.9u..3.8u). The lower
 * bound is what makes this test fail for an engine that ignores the precision (fp32: ~0) or uses fp16 when asked for
 * bf16 (~0.4u of bf16); the upper one fails for bf16 when asked for fp16 (~25u of fp16) and for real errors.
 *
 * <p><b>Logits</b> ({@link TrainingStep#logits}, the LM head's 16-bit output) against the reference's: norm-wise within
 * 12u (an emulation rounding where the engine does sits at 1.6u..2.1u of the reference).
 */
class MixedPrecisionGoldenTest {

    /** Unit roundoff of the precision's 16-bit type. */
    static double unitRoundoff(Precision p) {
        return switch (p) {
            case BF16 -> 0x1p-8;
            case FP16 -> 0x1p-11;
            default -> throw new IllegalArgumentException(p.toString());
        };
    }

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
        double u = unitRoundoff(precision);
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
                    float[] logits = step.logits(ids), refLogits = ref.find("logits").orElseThrow().toFloatArray();
                    assertEquals(refLogits.length, logits.length, what + " logits");
                    double logitErr = errors(logits, refLogits)[0];
                    System.out.printf(Locale.ROOT, "%s: logits vs autocast ||Δ||/||ref|| %.2e (%.1fu)%n", what, logitErr, logitErr / u);
                    assertTrue(logitErr <= 12 * u, String.format(Locale.ROOT, "%s logits vs autocast: %.3e = %.1fu > 12u", what, logitErr, logitErr / u));
                    step.zeroGradients();
                    TrainingStep.Loss loss = step.forwardBackward(ids, labels, counted);
                    assertEquals(counted, loss.tokens());
                    double refLoss = ref.find("loss").orElseThrow().toFloatArray()[0];
                    double lossErr = Math.abs(loss.mean() - refLoss);
                    System.out.printf(Locale.ROOT, "%s: loss %.6f, autocast %.6f, |Δ| %.2e, fp32 %.6f%n",
                            what, loss.mean(), refLoss, lossErr, expected.get("loss").asDouble());
                    assertTrue(lossErr <= 5 * u, what + " loss " + loss.mean() + " vs autocast " + refLoss);

                    Map<String, double[]> groups = new LinkedHashMap<>(); // group -> {Σ(g − g32)², Σ g32²}
                    double worstRef = 0, worstMax = 0;
                    String worstName = "";
                    int checked = 0;
                    for (TensorSpec spec : ParameterLayout.of(folder.config(), DType.F32).specs()) {
                        float[] got = step.gradients().get(spec.name()).toFloatArray();
                        float[] want = ref.find(spec.name()).orElseThrow().toFloatArray();
                        float[] want32 = fp32.find(spec.name()).orElseThrow().toFloatArray();
                        assertEquals(want.length, got.length, spec.name());
                        double[] e = errors(got, want);
                        // A gradient that nearly cancels (k's bias: softmax ignores a per-row constant, only RoPE breaks
                        // that) is noisier than its norm: the reference is then itself far from exact, so allow 3× that.
                        double bound = Math.max(12 * u, 3 * errors(want32, want)[0]);
                        if (e[0] / bound > worstRef) { worstRef = e[0] / bound; worstName = spec.name() + String.format(Locale.ROOT, " %.1fu", e[0] / u); }
                        worstMax = Math.max(worstMax, e[1]);
                        assertTrue(e[0] <= bound, String.format(Locale.ROOT,
                                "%s d%s vs autocast: ||Δ||/||ref|| = %.3e = %.1fu > %.1fu (max |Δ| %.3e)", what, spec.name(), e[0], e[0] / u, bound / u, e[1]));
                        double[] acc = groups.computeIfAbsent(group(spec.name()), g -> new double[2]);
                        for (int i = 0; i < got.length; i++) {
                            double d = (double) got[i] - want32[i];
                            acc[0] += d * d;
                            acc[1] += (double) want32[i] * want32[i];
                        }
                        checked++;
                    }
                    assertEquals(ref.names().size() - 2, checked, "every reference gradient was compared"); // less logits, loss
                    System.out.printf(Locale.ROOT, "%s: vs autocast worst d%s (%.2f of its bound), worst max |Δ| %.2e%n", what, worstName, worstRef, worstMax);
                    for (Map.Entry<String, double[]> g : groups.entrySet()) {
                        double rel = Math.sqrt(g.getValue()[0] / g.getValue()[1]);
                        System.out.printf(Locale.ROOT, "%s: %s vs fp32 ||Δ||/||g32|| %.2e (%.1fu)%n", what, g.getKey(), rel, rel / u);
                        assertTrue(rel <= 8 * u, String.format(Locale.ROOT, "%s %s gradients vs fp32: %.3e = %.1fu > 8u", what, g.getKey(), rel, rel / u));
                        assertTrue(rel >= u, String.format(Locale.ROOT,
                                "%s %s gradients vs fp32: %.3e = %.2fu < 1u: the step did not round to %s", what, g.getKey(), rel, rel / u, precision));
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
