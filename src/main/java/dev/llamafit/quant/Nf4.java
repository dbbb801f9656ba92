// NF4 (4-bit NormalFloat, QLoRA) quantisation with double quantisation, producing bitsandbytes' serialised tensors.
package dev.llamafit.quant;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.math.BigDecimal;
import java.nio.charset.StandardCharsets;
import java.util.LinkedHashMap;
import java.util.Map;

import dev.llamafit.memory.Category;
import dev.llamafit.memory.MemoryLedger;
import dev.llamafit.tensor.DType;
import dev.llamafit.tensor.Shape;
import dev.llamafit.tensor.Tensor;

/**
 * Block-wise NF4 quantisation as QLoRA (Dettmers et al. 2023) defines it and bitsandbytes implements it
 * ({@code functional.quantize_4bit(quant_type="nf4", blocksize=64, compress_statistics=...)} and its PyTorch "default"
 * backend kernel): the weight, flattened row-major, is cut into blocks of {@link #BLOCK}; each block is scaled by the
 * reciprocal of its absolute maximum ({@code clamp(x · (1/absmax), −1, 1)} in fp32) and each scaled value becomes the
 * index of the nearest of the 16 {@link #levels() NormalFloat levels} (fp32 distance, the lower index on a tie). Two
 * codes share a byte, the first element in the high nibble; an odd count is padded with the code of 0.0 (7).
 *
 * <p>Double quantisation ({@code compress_statistics=True}) quantises the fp32 absmax values again: their mean (the
 * offset) is subtracted, and the centred values are quantised block-wise in blocks of {@link #NESTED_BLOCK} with the
 * signed 8-bit {@link DynamicMap} by the same absmax / reciprocal / nearest rule. The offset here is the mean summed in
 * double and rounded to fp32 (bitsandbytes takes a float32 {@code torch.mean}, whose summation order depends on the
 * device, so its last bit is not portable anyway). One deliberate difference: a block whose absmax is 0 codes every
 * element as 0.0, where bitsandbytes computes 0 · ∞ = NaN and stores code 0 (−1.0), which double quantisation would turn
 * into a non-zero value.
 *
 * <p>The output is the tensors transformers writes for a bitsandbytes {@code Linear4bit} (its
 * {@code QuantState.as_dict(packed=True)}), under the module prefix P; {@link Nf4Weight} reads them back. The reference
 * for all of this is scripts/make_nf4_fixtures.py; docs/QUANTISATION.md lists the layout.
 */
public final class Nf4 {
    /** Elements per absmax block (bitsandbytes' and transformers' default for 4-bit). */
    public static final int BLOCK = 64;
    /** Absmax values per block of the double quantisation. */
    public static final int NESTED_BLOCK = 256;
    /** Key suffix (after {@code P.weight}) of the JSON bytes with the non-tensor quantisation state. */
    public static final String QUANT_STATE = ".quant_state.bitsandbytes__nf4";

    /** QLoRA appendix E's NF4 levels, as bitsandbytes lists them (get_4bit_type("nf4")): ascending, 0.0 at index 7. */
    private static final float[] LEVELS = {
        -1.0f, -0.6961928009986877f, -0.5250730514526367f, -0.39491748809814453f, -0.28444138169288635f,
        -0.18477343022823334f, -0.09105003625154495f, 0.0f, 0.07958029955625534f, 0.16093020141124725f,
        0.24611230194568634f, 0.33791524171829224f, 0.44070982933044434f, 0.5626170039176941f,
        0.7229568362236023f, 1.0f,
    };

    private Nf4() {}

    /** The 16 NF4 levels, ascending. A fresh copy. */
    public static float[] levels() { return LEVELS.clone(); }

    /** The NF4 code of {@code x} in a block with absolute maximum {@code absmax}: the nearest level to x·(1/absmax). */
    public static int code(float x, float absmax) { return DynamicMap.nearest(LEVELS, scaled(x, absmax)); }

    /** x · (1/absmax) clamped to [−1, 1], in fp32 as bitsandbytes computes it; a zero block scales to 0. */
    static float scaled(float x, float absmax) {
        if (absmax == 0f) return 0f;
        float inv = 1f / absmax;
        return Math.max(-1f, Math.min(1f, x * inv));
    }

    /** Number of blocks of {@code size} covering n elements. */
    static long blocks(long n, int size) { return (n + size - 1) / size; }

    /**
     * Quantises {@code weight} (F32, BF16 or F16, any shape) to NF4 and returns bitsandbytes' tensors for module prefix
     * {@code prefix} (e.g. {@code model.layers.0.self_attn.q_proj}), in this order, allocated from {@code ledger} as
     * weights:
     * <ul>
     * <li>{@code P.weight} U8 [ceil(n/2), 1]: the packed codes;
     * <li>{@code P.weight.absmax}: F32 [blocks], or with double quantisation U8 [blocks] (8-bit codes);
     * <li>{@code P.weight.quant_map} F32 [16]: the NF4 levels;
     * <li>with double quantisation {@code P.weight.nested_absmax} F32 [ceil(blocks/256)] and
     *     {@code P.weight.nested_quant_map} F32 [256] (the signed dynamic map);
     * <li>{@code P.weight.quant_state.bitsandbytes__nf4} U8: Python's {@code json.dumps} of
     *     {quant_type, blocksize, dtype, shape} (+ {nested_blocksize, nested_dtype, nested_offset}).
     * </ul>
     * The caller owns (and closes) the tensors; {@code weight} is only read.
     *
     * @throws IllegalArgumentException for another dtype, an empty tensor or a non-finite value
     */
    public static Map<String, Tensor> quantize(Tensor weight, boolean doubleQuant, MemoryLedger ledger, String prefix) {
        String torchType = switch (weight.dtype()) {
            case F32 -> "float32";
            case BF16 -> "bfloat16";
            case F16 -> "float16";
            default -> throw new IllegalArgumentException("NF4 quantises F32, BF16 or F16 weights, not " + weight);
        };
        long n = weight.elements();
        if (n == 0) throw new IllegalArgumentException("cannot quantise the empty tensor " + weight);
        String key = prefix + ".weight";
        long nb = blocks(n, BLOCK);
        Map<String, Tensor> out = new LinkedHashMap<>();
        try {
            Tensor codes = put(out, Tensor.allocate(ledger, Category.WEIGHTS, key, DType.U8, Shape.of((n + 1) / 2, 1)));
            Tensor absmax = Tensor.allocate(ledger, doubleQuant ? Category.WORKSPACE : Category.WEIGHTS, key + ".absmax",
                    DType.F32, Shape.of(nb));
            try {
                quantizeCodes(weight, codes.segment(), absmax.segment());
                StringBuilder state = new StringBuilder("{\"quant_type\": \"nf4\", \"blocksize\": ").append(BLOCK)
                        .append(", \"dtype\": \"").append(torchType).append("\", \"shape\": [");
                long[] dims = weight.shape().dims();
                for (int d = 0; d < dims.length; d++) state.append(d == 0 ? "" : ", ").append(dims[d]);
                state.append(']');
                if (doubleQuant) {
                    float[] dyn = DynamicMap.signed();
                    Tensor codes2 = put(out, Tensor.allocate(ledger, Category.WEIGHTS, key + ".absmax", DType.U8, Shape.of(nb)));
                    put(out, floats(ledger, key + ".quant_map", LEVELS));
                    Tensor absmax2 = put(out, Tensor.allocate(ledger, Category.WEIGHTS, key + ".nested_absmax", DType.F32,
                            Shape.of(blocks(nb, NESTED_BLOCK))));
                    put(out, floats(ledger, key + ".nested_quant_map", dyn));
                    float offset = quantizeAbsmax(absmax.segment(), nb, dyn, codes2.segment(), absmax2.segment());
                    state.append(", \"nested_blocksize\": ").append(NESTED_BLOCK)
                            .append(", \"nested_dtype\": \"float32\", \"nested_offset\": ").append(pythonFloat(offset));
                } else {
                    put(out, absmax);
                    put(out, floats(ledger, key + ".quant_map", LEVELS));
                }
                state.append('}');
                byte[] json = state.toString().getBytes(StandardCharsets.UTF_8);
                Tensor qs = put(out, Tensor.allocate(ledger, Category.WEIGHTS, key + QUANT_STATE, DType.U8, Shape.of(json.length)));
                MemorySegment.copy(json, 0, qs.segment(), ValueLayout.JAVA_BYTE, 0, json.length);
            } finally {
                if (!out.containsValue(absmax)) absmax.close(); // the fp32 absmax of double quantisation is scratch
            }
        } catch (RuntimeException e) {
            out.values().forEach(Tensor::close);
            throw e;
        }
        return out;
    }

    private static Tensor put(Map<String, Tensor> out, Tensor t) {
        out.put(t.name(), t);
        return t;
    }

    private static Tensor floats(MemoryLedger ledger, String name, float[] values) {
        Tensor t = Tensor.allocate(ledger, Category.WEIGHTS, name, DType.F32, Shape.of(values.length));
        MemorySegment.copy(values, 0, t.segment(), Tensor.F32_LE, 0, values.length);
        return t;
    }

    /** Packed codes (high nibble first) and fp32 absmax per block of {@code w}. */
    private static void quantizeCodes(Tensor w, MemorySegment codes, MemorySegment absmax) {
        long n = w.elements();
        float[] x = new float[BLOCK];
        for (long b = 0, nb = blocks(n, BLOCK); b < nb; b++) {
            long from = b * BLOCK;
            int len = (int) Math.min(BLOCK, n - from);
            float amax = 0f;
            for (int i = 0; i < len; i++) {
                float v = w.getFloat(from + i);
                if (!Float.isFinite(v))
                    throw new IllegalArgumentException("cannot quantise " + w + ": element " + (from + i) + " is " + v);
                x[i] = v;
                amax = Math.max(amax, Math.abs(v));
            }
            absmax.setAtIndex(Tensor.F32_LE, b, amax);
            // Blocks hold an even count, so a byte never straddles two; an odd tail pads with the code of 0.0.
            for (int i = 0; i < len; i += 2) {
                int hi = code(x[i], amax);
                int lo = i + 1 < len ? code(x[i + 1], amax) : DynamicMap.nearest(LEVELS, 0f);
                codes.set(ValueLayout.JAVA_BYTE, (from + i) / 2, (byte) (hi << 4 | lo));
            }
        }
    }

    /**
     * Double quantisation of nb fp32 absmax values: subtracts their mean and quantises the rest block-wise (blocks of
     * {@link #NESTED_BLOCK}, the signed dynamic map {@code dyn}) into codes2 (U8) and absmax2 (F32). Returns the mean.
     */
    static float quantizeAbsmax(MemorySegment absmax, long nb, float[] dyn, MemorySegment codes2, MemorySegment absmax2) {
        double sum = 0;
        for (long b = 0; b < nb; b++) sum += absmax.getAtIndex(Tensor.F32_LE, b);
        float offset = (float) (sum / nb);
        for (long c = 0, nc = blocks(nb, NESTED_BLOCK); c < nc; c++) {
            long from = c * NESTED_BLOCK, to = Math.min(nb, from + NESTED_BLOCK);
            float amax = 0f;
            for (long b = from; b < to; b++) amax = Math.max(amax, Math.abs(absmax.getAtIndex(Tensor.F32_LE, b) - offset));
            absmax2.setAtIndex(Tensor.F32_LE, c, amax);
            for (long b = from; b < to; b++) {
                float centred = absmax.getAtIndex(Tensor.F32_LE, b) - offset;
                codes2.set(ValueLayout.JAVA_BYTE, b, (byte) DynamicMap.nearest(dyn, scaled(centred, amax)));
            }
        }
        return offset;
    }

    /**
     * A double as Python's {@code repr} (and so {@code json.dumps}) writes it: the shortest digits that read back to
     * the same double, positional from 1e-4 up to 1e16, else d.ddde±XX.
     */
    static String pythonFloat(double v) {
        if (Double.isNaN(v) || Double.isInfinite(v)) throw new IllegalArgumentException("no JSON number for " + v);
        if (v == 0) return 1 / v < 0 ? "-0.0" : "0.0";
        // Double.toString gives the shortest round-tripping digits (JDK 19+); only the layout differs from Python's.
        BigDecimal d = new BigDecimal(Double.toString(Math.abs(v))).stripTrailingZeros();
        String digits = d.unscaledValue().toString();
        int exp = digits.length() - 1 - d.scale(); // decimal exponent of the first digit
        StringBuilder s = new StringBuilder(v < 0 ? "-" : "");
        if (exp >= -4 && exp < 16) {
            if (exp < 0) {
                s.append("0.").append("0".repeat(-exp - 1)).append(digits);
            } else if (digits.length() <= exp + 1) {
                s.append(digits).append("0".repeat(exp + 1 - digits.length())).append(".0");
            } else {
                s.append(digits, 0, exp + 1).append('.').append(digits, exp + 1, digits.length());
            }
        } else {
            s.append(digits.charAt(0));
            if (digits.length() > 1) s.append('.').append(digits, 1, digits.length());
            s.append('e').append(exp < 0 ? '-' : '+');
            if (Math.abs(exp) < 10) s.append('0');
            s.append(Math.abs(exp));
        }
        return s.toString();
    }
}
