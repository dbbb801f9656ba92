// LLM.int8()'s outlier experiment on a synthetic layer: relative errors of bf16, int8 with decomposition, and plain int8.
package dev.llamafit.nn;

import static dev.llamafit.tensor.Tensor.F32_LE;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.util.Locale;
import java.util.Map;
import java.util.SplittableRandom;

import dev.llamafit.kernels.Kernels;
import dev.llamafit.memory.MemoryLedger;
import dev.llamafit.quant.Int8;
import dev.llamafit.tensor.DType;
import dev.llamafit.tensor.Shape;
import dev.llamafit.tensor.Tensor;

/**
 * A layer y = X·Wᵀ with W [out, in] ~ N(0, 0.02²) and activations X [rows, in] ~ N(0, 1) in which a few feature columns
 * carry systematic outliers of magnitude 20-60 in every row, as the LLM.int8() paper finds in large models. Each result
 * is the relative error ‖y − y_exact‖_F / ‖y_exact‖_F against the product summed in double:
 * <ul>
 * <li>bf16: W and X rounded to bf16, fp32 accumulation (a bf16 matmul);
 * <li>int8 with decomposition: {@link Int8Linear} at the given threshold over W quantised by {@link Int8#quantize};
 * <li>plain vector-wise int8: the same with the threshold off;
 * <li>int8 weights only: X (fp32) times W dequantised, fp32 GEMM: the error 8-bit per-channel weights alone cause, which
 *     no treatment of the activations can go below.
 * </ul>
 * Used by Int8OutlierTest and {@code llamafit bench gemm --dtype int8}; deterministic for a seed.
 */
public final class Int8OutlierExperiment {
    /** The errors, and how many outlier features were injected. */
    public record Result(int rows, int in, int out, int outlierFeatures, float threshold,
                         double bf16, double int8WeightsOnly, double int8Decomposed, double int8Plain) {
        public String summary() {
            return String.format(Locale.ROOT, "int8 outliers (%dx%d·%dx%dᵀ, %d outlier features of |x| 20-60, threshold %.1f):"
                            + " relative error bf16 %.5f, int8 with decomposition %.5f (%.2fx bf16), plain int8 %.5f (%.1fx bf16);"
                            + " int8 weights with exact activations %.5f (%.2fx bf16), the floor 8-bit weights set",
                    rows, in, out, in, outlierFeatures, threshold, bf16, int8Decomposed, int8Decomposed / bf16, int8Plain, int8Plain / bf16,
                    int8WeightsOnly, int8WeightsOnly / bf16);
        }
    }

    private Int8OutlierExperiment() {}

    public static Result run(Kernels k, int rows, int in, int out, int outlierFeatures, float threshold, long seed) {
        SplittableRandom rnd = new SplittableRandom(seed);
        MemoryLedger ledger = new MemoryLedger();
        try (Arena arena = Arena.ofShared()) {
            MemorySegment w = arena.allocate(4L * out * in), x = arena.allocate(4L * rows * in);
            for (long i = 0; i < (long) out * in; i++) w.setAtIndex(F32_LE, i, (float) (0.02 * rnd.nextGaussian()));
            for (long i = 0; i < (long) rows * in; i++) x.setAtIndex(F32_LE, i, (float) rnd.nextGaussian());
            for (int f = 0; f < outlierFeatures; f++) {
                int c = rnd.nextInt(in);
                double sign = rnd.nextBoolean() ? 1 : -1;
                for (int r = 0; r < rows; r++) x.setAtIndex(F32_LE, (long) r * in + c, (float) (sign * (20 + 40 * rnd.nextDouble())));
            }
            double[] exact = new double[rows * out];
            for (int r = 0; r < rows; r++)
                for (int j = 0; j < out; j++) {
                    double s = 0;
                    for (int p = 0; p < in; p++) s += (double) x.getAtIndex(F32_LE, (long) r * in + p) * w.getAtIndex(F32_LE, (long) j * in + p);
                    exact[r * out + j] = s;
                }
            MemorySegment y = arena.allocate(4L * rows * out);
            // bf16: both operands rounded, then the fp32 GEMM.
            MemorySegment wb = arena.allocate(w.byteSize()), xb = arena.allocate(x.byteSize());
            wb.copyFrom(w);
            xb.copyFrom(x);
            k.round16(wb, 0, (long) out * in, DType.BF16);
            k.round16(xb, 0, (long) rows * in, DType.BF16);
            k.gemm(false, true, rows, out, in, 1f, xb, 0, in, wb, 0, in, 0f, y, 0, out);
            double bf16 = relativeError(y, exact);

            Map<String, Tensor> q = Int8.quantize(new Tensor("w", DType.F32, Shape.of(out, in), w), ledger, "layer");
            try {
                Int8Linear.of(q, "layer.weight", threshold).forward(k, x, 0, rows, y, 0);
                double decomposed = relativeError(y, exact);
                Int8Linear.of(q, "layer.weight", 0f).forward(k, x, 0, rows, y, 0);
                double plain = relativeError(y, exact);
                MemorySegment wd = arena.allocate(w.byteSize());
                Int8.dequantizeBlock(q.get("layer.weight").segment(), q.get("layer.SCB").segment(), in, 0, out, 0, in, wd, 0, in);
                k.gemm(false, true, rows, out, in, 1f, x, 0, in, wd, 0, in, 0f, y, 0, out);
                double weightsOnly = relativeError(y, exact);
                return new Result(rows, in, out, outlierFeatures, threshold, bf16, weightsOnly, decomposed, plain);
            } finally {
                q.values().forEach(Tensor::close);
            }
        }
    }

    private static double relativeError(MemorySegment y, double[] exact) {
        double num = 0, den = 0;
        for (int i = 0; i < exact.length; i++) {
            double d = y.getAtIndex(F32_LE, i) - exact[i];
            num += d * d;
            den += exact[i] * exact[i];
        }
        return Math.sqrt(num / den);
    }
}
