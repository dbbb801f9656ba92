// LLM.int8() quantisation: per-output-channel absmax codes of a weight (bitsandbytes' CB and SCB) and per-row codes of activations.
package dev.llamafit.quant;

import static dev.llamafit.tensor.Tensor.F32_LE;
import static dev.llamafit.tensor.Tensor.I16_LE;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import java.util.LinkedHashMap;
import java.util.Map;

import dev.llamafit.kernels.Parallel;
import dev.llamafit.memory.Category;
import dev.llamafit.memory.MemoryLedger;
import dev.llamafit.tensor.DType;
import dev.llamafit.tensor.Shape;
import dev.llamafit.tensor.Tensor;
import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.VectorOperators;
import jdk.incubator.vector.VectorShape;
import jdk.incubator.vector.VectorSpecies;

/**
 * Vector-wise int8 quantisation as in LLM.int8() (Dettmers et al. 2022) and bitsandbytes' {@code Linear8bitLt}.
 *
 * <p>Weights, per output channel (row i of W [out, in]): bitsandbytes casts the weight to fp16 first
 * ({@code Int8Params._quantize}), so each value is rounded to fp16 (nearest even) and widened back; then
 * {@code SCB[i] = max_j |w[i, j]|} (fp32) and {@code CB[i, j] = round(w[i, j] · scale)} with
 * {@code scale = fl(fl(1/SCB[i]) · 127)}: bitsandbytes' CPU path (its default backend's {@code int8_vectorwise_quant}) writes
 * {@code 127.0 / row_stats}, which PyTorch evaluates as {@code row_stats.reciprocal() * 127} (two fp32 roundings, not one
 * division); the product is fp32 and the rounding to nearest, ties to even (torch.round). Codes lie in [−127, 127].
 * (Its CUDA kernel uses the approximate {@code __fdividef(127, absmax)}, which can differ by one code on rare values.) A row of zeros gets SCB 0 and codes 0 (bitsandbytes
 * would divide by zero). Dequantised, {@code w = (CB · SCB) · (1/127)}, as its {@code int8_vectorwise_dequant}.
 *
 * <p>In memory and on disk the codes are the module's {@code weight} (I8 [out, in], row-major), the scales its {@code SCB}
 * (F32 [out]) and {@code weight_format} a U8 scalar 0 ("row"), which bitsandbytes writes for backward compatibility and
 * transformers drops on load: exactly the keys of Linear8bitLt's state dict (docs/QUANTISATION.md).
 *
 * <p>Activations, per row (token), are quantised the same way at run time by {@link #quantizeRows}, leaving out the outlier
 * columns (see there).
 */
public final class Int8 {
    /** Suffixes of a quantised module P's keys: {@code P.weight}, {@code P.SCB}, {@code P.weight_format}. */
    public static final String WEIGHT = "weight", SCB = "SCB", WEIGHT_FORMAT = "weight_format";
    /** bitsandbytes' {@code weight_format} value for row-major codes, the only one it still writes or reads. */
    public static final byte FORMAT_ROW = 0;
    /** 1/127 in fp32: the dequantisation factor. */
    public static final float INV127 = 1f / 127f;

    private Int8() {}

    /** The module prefix of a weight key: "model.layers.0.mlp.up_proj" for "model.layers.0.mlp.up_proj.weight". */
    public static String modulePrefix(String weightKey) {
        if (!weightKey.endsWith("." + WEIGHT)) throw new IllegalArgumentException("not a weight key: " + weightKey);
        return weightKey.substring(0, weightKey.length() - WEIGHT.length() - 1);
    }

    /**
     * Quantises {@code weight} (F32, BF16 or F16 [out, in]) to the three tensors bitsandbytes stores for module
     * {@code prefix}: {@code prefix.weight} I8 [out, in], {@code prefix.SCB} F32 [out] and {@code prefix.weight_format} U8 []
     * (value 0), all allocated as WEIGHTS through {@code ledger}. The float weight is left for the caller to close.
     *
     * @throws IllegalArgumentException for another dtype or rank, or a value that is not finite in fp16 (|w| ≥ 65520, NaN):
     *                                  bitsandbytes quantises through fp16, where such a row has no scale
     */
    public static Map<String, Tensor> quantize(Tensor weight, MemoryLedger ledger, String prefix) {
        DType t = weight.dtype();
        if ((t != DType.F32 && t != DType.BF16 && t != DType.F16) || weight.shape().rank() != 2)
            throw new IllegalArgumentException("int8 quantisation needs an F32, BF16 or F16 [out, in] weight, got " + weight);
        int out = Math.toIntExact(weight.shape().dim(0)), in = Math.toIntExact(weight.shape().dim(1));
        Tensor codes = Tensor.allocate(ledger, Category.WEIGHTS, prefix + "." + WEIGHT, DType.I8, Shape.of(out, in));
        Tensor scb = Tensor.allocate(ledger, Category.WEIGHTS, prefix + "." + SCB, DType.F32, Shape.of(out));
        Tensor format = Tensor.allocate(ledger, Category.WEIGHTS, prefix + "." + WEIGHT_FORMAT, DType.U8, Shape.of());
        format.segment().set(ValueLayout.JAVA_BYTE, 0, FORMAT_ROW);
        try {
            MemorySegment src = weight.segment(), dst = codes.segment(), s = scb.segment();
            Parallel.forRange(out, Math.max(1, (1 << 16) / Math.max(1, in)), (from, to) -> {
                float[] row = new float[in];
                for (int i = from; i < to; i++) {
                    readFp16Rounded(src, t, (long) i * in, row, weight, i);
                    s.setAtIndex(F32_LE, i, quantizeRow(row, in, dst, (long) i * in));
                }
            });
        } catch (RuntimeException e) {
            codes.close();
            scb.close();
            format.close();
            throw e;
        }
        Map<String, Tensor> m = new LinkedHashMap<>();
        m.put(codes.name(), codes);
        m.put(scb.name(), scb);
        m.put(format.name(), format);
        return m;
    }

    /** Row i of the weight as fp32 values rounded to fp16 and back (bitsandbytes' cast), checked finite. */
    private static void readFp16Rounded(MemorySegment src, DType t, long off, float[] row, Tensor weight, int i) {
        for (int j = 0; j < row.length; j++) {
            float v = switch (t) {
                case F32 -> src.getAtIndex(F32_LE, off + j);
                case BF16 -> Float.intBitsToFloat((src.getAtIndex(I16_LE, off + j) & 0xFFFF) << 16);
                default -> Float.float16ToFloat(src.getAtIndex(I16_LE, off + j));
            };
            float h = Float.float16ToFloat(Float.floatToFloat16(v));
            if (!Float.isFinite(h))
                throw new IllegalArgumentException("weight " + weight.name() + " row " + i + " column " + j + " holds " + v
                        + ", which is not finite in fp16; bitsandbytes' int8 quantisation goes through fp16");
            row[j] = h;
        }
    }

    /**
     * Quantises {@code n} finite values to codes at {@code dst[off..]} (I8): absmax scaling to ±127, round half to even.
     * Returns the absmax (0 for a row of zeros, whose codes are 0).
     */
    static float quantizeRow(float[] row, int n, MemorySegment dst, long off) {
        float absmax = 0f;
        for (int j = 0; j < n; j++) absmax = Math.max(absmax, Math.abs(row[j]));
        float scale = absmax == 0f ? 0f : scale(absmax);
        for (int j = 0; j < n; j++) dst.set(ValueLayout.JAVA_BYTE, off + j, (byte) Math.rint(row[j] * scale));
        return absmax;
    }

    /** The quantisation scale for a positive finite absmax: {@code fl(fl(1/absmax)·127)}, bitsandbytes' CPU rule (above). */
    static float scale(float absmax) { return (1f / absmax) * 127f; }

    /**
     * An activation's code: rounded, ties to even, and clamped to ±127, since a subnormal absmax makes the scale infinite
     * (NaN, from 0·∞, becomes 0).
     */
    private static byte code(float scaled) { return (byte) Math.max(-127, Math.min(127, Math.rint(scaled))); }

    /** One dequantised weight value: {@code (code · scb) · (1/127)}. */
    public static float dequantize(byte code, float scb) { return code * scb * INV127; }

    /**
     * Dequantises columns [c0, c1) of rows [r0, r1) of the codes {@code cb} (I8 [out, in], row stride {@code in}) with
     * their scales {@code scb} (F32 [out]) into {@code dst}, row-major [r1 − r0, c1 − c0] with row stride {@code ldd}.
     * The backward pass and the outlier columns use it a block at a time, so a whole fp32 W never exists.
     */
    public static void dequantizeBlock(MemorySegment cb, MemorySegment scb, int in, int r0, int r1, int c0, int c1,
                                       MemorySegment dst, long dstOff, int ldd) {
        for (int r = r0; r < r1; r++) {
            float s = scb.getAtIndex(F32_LE, r);
            long src = (long) r * in, d = dstOff + (long) (r - r0) * ldd;
            for (int c = c0; c < c1; c++) dst.setAtIndex(F32_LE, d + c - c0, dequantize(cb.get(ValueLayout.JAVA_BYTE, src + c), s));
        }
    }

    /**
     * The columns of activations X [rows, cols] (fp32, contiguous rows) holding some |x| ≥ {@code threshold}: LLM.int8()'s
     * outlier features, computed in fp32 instead of int8. Marks them in {@code outlier} and returns how many there are;
     * none when the threshold is off ({@link #thresholdOn}). NaN is no outlier (it reaches the output through the row's
     * scale instead).
     */
    public static int outlierColumns(MemorySegment x, long xOff, int rows, int cols, float threshold, boolean[] outlier) {
        java.util.Arrays.fill(outlier, 0, cols, false);
        if (!thresholdOn(threshold)) return 0;
        int count = 0;
        for (int r = 0; r < rows; r++) {
            long row = xOff + (long) r * cols;
            for (int c = 0; c < cols; c++) {
                if (!outlier[c] && Math.abs(x.getAtIndex(F32_LE, row + c)) >= threshold) {
                    outlier[c] = true;
                    count++;
                }
            }
        }
        return count;
    }

    /**
     * Whether a threshold decomposes outliers: finite and positive. 0 (or below) and +∞ mean plain vector-wise int8, as
     * bitsandbytes' threshold 0.0 does.
     *
     * @throws IllegalArgumentException for NaN
     */
    public static boolean thresholdOn(float threshold) {
        if (Float.isNaN(threshold)) throw new IllegalArgumentException("the int8 outlier threshold is NaN");
        return threshold > 0f && threshold != Float.POSITIVE_INFINITY;
    }

    /**
     * Per-row (token) quantisation of activations X [rows, cols] to I8 codes [rows, cols] at {@code codes}, skipping the
     * {@code outlier} columns (their codes are 0, so an int8 GEMM over all columns leaves them out). Each row's absmax is
     * taken over its non-outlier columns, the matrix actually quantised (the paper's definition; bitsandbytes takes it over
     * the elements below the threshold, which also counts the small values of outlier columns), and written to
     * {@code absmax[r]}. The rounding is the weights' (round(x · scale), ties to even). A NaN makes the row's absmax
     * NaN, and ±∞ in a quantised column makes it ∞, so the product's output is NaN rather than silently finite.
     */
    public static void quantizeRows(MemorySegment x, long xOff, int rows, int cols, boolean[] outlier,
                                    MemorySegment codes, long codesOff, float[] absmax) {
        boolean any = false;
        for (int c = 0; c < cols; c++) any |= outlier[c];
        if (!any) { // no outlier column (the common case): whole rows, vectorised, split over the pool
            Parallel.forRange(rows, Math.max(1, (1 << 14) / Math.max(1, cols)), (r0, r1) -> {
                for (int r = r0; r < r1; r++)
                    absmax[r] = quantizeRow(x, (xOff + (long) r * cols) * 4, cols, codes, codesOff + (long) r * cols);
            });
            return;
        }
        for (int r = 0; r < rows; r++) {
            long row = xOff + (long) r * cols, dst = codesOff + (long) r * cols;
            float max = 0f;
            for (int c = 0; c < cols; c++) if (!outlier[c]) max = Math.max(max, Math.abs(x.getAtIndex(F32_LE, row + c)));
            float scale = max == 0f || !Float.isFinite(max) ? 0f : scale(max);
            for (int c = 0; c < cols; c++)
                codes.set(ValueLayout.JAVA_BYTE, dst + c, outlier[c] ? 0 : code(x.getAtIndex(F32_LE, row + c) * scale));
            absmax[r] = max;
        }
    }

    private static final VectorSpecies<Float> SF = FloatVector.SPECIES_PREFERRED;
    private static final VectorSpecies<Byte> SB = VectorSpecies.of(byte.class, VectorShape.forBitSize(SF.length() * 8));
    /** 1.5·2^23: adding and subtracting it rounds an fp32 of magnitude below 2^22 to an integer, ties to even (as rint). */
    private static final float RINT = 0x1.8p23f;

    /**
     * One row of {@link #quantizeRows} without outlier columns: its absmax (NaN and ∞ propagate, as Math.max does) and
     * codes, the same values as the scalar loop gives (clamping to ±127 before rounding equals rounding before it).
     */
    private static float quantizeRow(MemorySegment x, long x0, int cols, MemorySegment codes, long d0) {
        int bound = SF.loopBound(cols), c = 0;
        FloatVector mv = FloatVector.zero(SF);
        for (; c < bound; c += SF.length())
            mv = mv.max(FloatVector.fromMemorySegment(SF, x, x0 + 4L * c, ByteOrder.LITTLE_ENDIAN).abs());
        float max = mv.reduceLanes(VectorOperators.MAX);
        for (; c < cols; c++) max = Math.max(max, Math.abs(x.get(F32_LE, x0 + 4L * c)));
        float scale = max == 0f || !Float.isFinite(max) ? 0f : scale(max);
        c = 0;
        for (; c < bound; c += SF.length()) {
            FloatVector v = FloatVector.fromMemorySegment(SF, x, x0 + 4L * c, ByteOrder.LITTLE_ENDIAN).mul(scale).max(-127f).min(127f);
            v.add(RINT).sub(RINT).convertShape(VectorOperators.F2B, SB, 0).intoMemorySegment(codes, d0 + c, ByteOrder.LITTLE_ENDIAN);
        }
        for (; c < cols; c++) codes.set(ValueLayout.JAVA_BYTE, d0 + c, code(x.get(F32_LE, x0 + 4L * c) * scale));
        return max;
    }
}
