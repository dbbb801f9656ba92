// Builds models with random weights in memory, for benchmarks and memory experiments on realistic shapes.
package dev.llamafit.model;

import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.SplittableRandom;

import dev.llamafit.memory.Category;
import dev.llamafit.memory.MemoryLedger;
import dev.llamafit.tensor.DType;
import dev.llamafit.tensor.Tensor;
import dev.llamafit.tensor.TensorSpec;

/** Random-weight models shaped like known checkpoints (e.g. llama2.c's stories15M). */
public final class RandomModels {
    private RandomModels() {}

    /** stories15M's shape: dim 288, 6 layers, 6 heads, F 768, Llama 2 vocabulary (32000), context 256, tied. */
    public static LlamaConfig stories15M() {
        return new LlamaConfig("llama", 288, 768, 6, 6, 6, 48, 32000, 256, 1e-5, 10000.0,
                new RopeScaling.None(), true, false, false, false, 0, 1, List.of(2));
    }

    /** stories42M's shape: dim 512, 8 layers, 8 heads, F 1376, vocabulary 32000, context 1024, tied. */
    public static LlamaConfig stories42M() {
        return new LlamaConfig("llama", 512, 1376, 8, 8, 8, 64, 32000, 1024, 1e-5, 10000.0,
                new RopeScaling.None(), true, false, false, false, 0, 1, List.of(2));
    }

    /** A shape by name: stories15M or stories42M. */
    public static LlamaConfig byName(String shape) {
        return switch (shape) {
            case "stories15M" -> stories15M();
            case "stories42M" -> stories42M();
            default -> throw new IllegalArgumentException("unknown --shape '" + shape + "' (stories15M, stories42M)");
        };
    }

    /**
     * fp32 weights for {@code config}: norms 1, everything else N(0, std²), filed under {@code weights}.
     * The caller closes the tensors.
     */
    public static Map<String, Tensor> weights(LlamaConfig config, MemoryLedger ledger, long seed, double std) {
        return weights(config, ledger, seed, std, DType.F32);
    }

    /**
     * As {@link #weights(LlamaConfig, MemoryLedger, long, double)} with the matrices drawn straight into {@code matrices}
     * (F32, BF16 or F16, rounded to nearest even: a 16-bit checkpoint's layout, without an fp32 copy at any time);
     * vectors stay F32, as a model folder hands them out.
     */
    public static Map<String, Tensor> weights(LlamaConfig config, MemoryLedger ledger, long seed, double std, DType matrices) {
        SplittableRandom random = new SplittableRandom(seed);
        Map<String, Tensor> w = new LinkedHashMap<>();
        for (TensorSpec spec : ParameterLayout.of(config, DType.F32).specs()) {
            DType type = spec.shape().rank() == 2 ? matrices : DType.F32;
            Tensor t = Tensor.allocate(ledger, Category.WEIGHTS, spec.name(), type, spec.shape());
            boolean norm = spec.component().equals("norm");
            for (long i = 0; i < t.elements(); i++) {
                float v = norm ? 1f : (float) (gaussian(random) * std);
                switch (type) {
                    case F32 -> t.setFloat(i, v);
                    case BF16 -> t.segment().setAtIndex(Tensor.I16_LE, i, dev.llamafit.kernels.ScalarKernels.floatToBf16(v));
                    case F16 -> t.segment().setAtIndex(Tensor.I16_LE, i, Float.floatToFloat16(v));
                    default -> throw new IllegalArgumentException("random weights in F32, BF16 or F16, not " + type);
                }
            }
            w.put(spec.name(), t);
        }
        return w;
    }

    private static double gaussian(SplittableRandom r) {
        // Box-Muller: SplittableRandom has no nextGaussian in every JDK version's interface.
        double u = 1 - r.nextDouble(), v = r.nextDouble();
        return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v);
    }
}
