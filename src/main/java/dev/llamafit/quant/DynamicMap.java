// bitsandbytes' dynamic 8-bit data type (signed and unsigned maps) and block-wise quantisation with it.
package dev.llamafit.quant;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.Arrays;

import dev.llamafit.tensor.Tensor;

/**
 * The dynamic 8-bit data type of Dettmers (2015, "8-Bit Approximations for Parallelism in Deep Learning") as
 * bitsandbytes builds it in {@code functional.create_dynamic_map(signed, max_exponent_bits=7, total_bits=8)}, and
 * bitsandbytes' block-wise quantisation with it ({@code quantize_blockwise}: each block is scaled by its absolute
 * maximum, each scaled value becomes the index of the nearest map value).
 *
 * <p>The map: for exponent i = 0..6, fraction boundaries {@code linspace(0.1, 1, k_i)} (float32), the midpoints of
 * neighbouring boundaries, each times 10^(i−6); signed: k_i = 2^i + 1 and each midpoint also negated; unsigned:
 * k_i = 2^(i+1) + 1. Then 0 and 1 are added and the 256 values sorted. Signed holds 127 negative values, 0, and 128
 * positive ones (the largest 1), so −1 is not representable (the most negative value is −0.99297); unsigned holds 0,
 * 254 values in (0, 1) and 1. The arithmetic follows PyTorch's float32 steps: linspace's step (end − start)/(k − 1)
 * with the first half counted from start and the second half back from end, the midpoint sum halved in float32, and
 * the power of ten rounded to float32 before the product (a Python float times a float32 tensor stays float32).
 * Caveat: PyTorch's vectorised CPU linspace (AVX2/AVX-512) computes runs of boundaries as base + i·step instead, so a
 * map built by bitsandbytes on such a CPU can differ from this one in the last bit of some values (26 to 54 of the
 * 256, depending on the vector width). A folder or checkpoint that stores its map (bitsandbytes' quant_map and
 * nested_quant_map) should be decoded with the stored map, not with this one.
 */
public final class DynamicMap {
    /** bitsandbytes' block size for 8-bit optimizer states. */
    public static final int OPTIMIZER_BLOCK = 2048;

    private static final int MAX_EXPONENT_BITS = 7;
    private static final float[] SIGNED = build(true);
    private static final float[] UNSIGNED = build(false);

    private DynamicMap() {}

    /** The signed map: 256 ascending values in [−0.99297, 1], including 0 and 1. A fresh copy. */
    public static float[] signed() { return SIGNED.clone(); }

    /** The unsigned map: 256 ascending values in [0, 1], including 0 and 1. A fresh copy. */
    public static float[] unsigned() { return UNSIGNED.clone(); }

    private static float[] build(boolean signed) {
        float[] data = new float[256];
        int n = 0;
        for (int i = 0; i < MAX_EXPONENT_BITS; i++) {
            int fractionItems = signed ? (1 << i) + 1 : (1 << (i + 1)) + 1;
            float[] b = linspace(0.1f, 1f, fractionItems);
            float scale = (float) Double.parseDouble("1e" + (i - (MAX_EXPONENT_BITS - 1)));
            for (int j = 0; j + 1 < b.length; j++) {
                float mean = (b[j] + b[j + 1]) / 2f;
                data[n++] = scale * mean;
                if (signed) data[n++] = -scale * mean;
            }
        }
        // 7 exponents leave no "additional items" (2^(7 − 7) − 1 = 0) in either map.
        data[n++] = 0f;
        data[n++] = 1f;
        if (n != 256) throw new AssertionError("dynamic map has " + n + " values");
        Arrays.sort(data);
        return data;
    }

    /** torch.linspace in float32, element by element (its scalar formula). */
    static float[] linspace(float start, float end, int steps) {
        float[] out = new float[steps];
        float step = (end - start) / (float) (steps - 1);
        int halfway = steps / 2;
        for (int idx = 0; idx < steps; idx++)
            out[idx] = idx < halfway ? start + step * idx : end - step * (steps - idx - 1);
        return out;
    }

    /**
     * The index of the map value nearest to {@code x}, by float32 distance |x − map[i]|. A tie goes to the lower
     * index (the first minimum, as torch.argmin picks it); values beyond the ends go to the end values.
     * {@code map} must be strictly ascending (both dynamic maps and the NF4 levels are).
     *
     * @throws IllegalArgumentException for NaN (it has no nearest value)
     */
    public static int nearest(float[] map, float x) {
        if (Float.isNaN(x)) throw new IllegalArgumentException("cannot quantise NaN");
        // First index whose value is >= x: the nearest value is there or just below it.
        int lo = 0, hi = map.length;
        while (lo < hi) {
            int mid = (lo + hi) >>> 1;
            if (map[mid] < x) lo = mid + 1;
            else hi = mid;
        }
        if (lo == 0) return 0;
        if (lo == map.length) return map.length - 1;
        float below = Math.abs(x - map[lo - 1]);
        float above = Math.abs(x - map[lo]);
        return above < below ? lo : lo - 1;
    }

    /** Number of blocks of {@code blockSize} covering {@code n} elements (the last may be short). */
    public static long blocks(long n, int blockSize) {
        if (n < 0 || blockSize <= 0) throw new IllegalArgumentException("blocks of " + blockSize + " over " + n + " elements");
        return (n + blockSize - 1) / blockSize;
    }

    /**
     * Block-wise quantisation of {@code n} F32 values of {@code x} (little-endian): for each block of
     * {@code blockSize}, absmax = max|x| is written to {@code absmax} (F32, one per block) and each value's code,
     * {@link #nearest}(map, x/absmax), to {@code codes} (one byte per value). An all-zero block has absmax 0 and
     * every code is the index of the map's 0 (bitsandbytes would divide by zero there).
     *
     * @throws IllegalArgumentException for a non-finite value, or segments of the wrong size
     */
    public static void quantizeBlockwise(float[] map, int blockSize, MemorySegment x, long n, MemorySegment codes, MemorySegment absmax) {
        long nb = blocks(n, blockSize);
        checkSizes(n, nb, x, codes, absmax);
        for (long b = 0; b < nb; b++) {
            long from = b * blockSize, to = Math.min(n, from + blockSize);
            float amax = 0f;
            for (long i = from; i < to; i++) {
                float v = x.getAtIndex(Tensor.F32_LE, i);
                if (!Float.isFinite(v)) throw new IllegalArgumentException("cannot quantise non-finite value " + v + " at element " + i);
                amax = Math.max(amax, Math.abs(v));
            }
            absmax.setAtIndex(Tensor.F32_LE, b, amax);
            for (long i = from; i < to; i++)
                codes.set(ValueLayout.JAVA_BYTE, i, (byte) code(map, x.getAtIndex(Tensor.F32_LE, i), amax));
        }
    }

    /** The code of {@code v} in a block whose absolute maximum is {@code amax} (a zero block codes as 0.0). */
    public static int code(float[] map, float v, float amax) {
        return nearest(map, amax == 0f ? 0f : v / amax);
    }

    /** The inverse of {@link #quantizeBlockwise}: {@code x[i] = map[codes[i]] · absmax[block of i]} in float32. */
    public static void dequantizeBlockwise(float[] map, int blockSize, MemorySegment codes, MemorySegment absmax, long n, MemorySegment x) {
        long nb = blocks(n, blockSize);
        checkSizes(n, nb, x, codes, absmax);
        for (long b = 0; b < nb; b++) {
            long from = b * blockSize, to = Math.min(n, from + blockSize);
            float amax = absmax.getAtIndex(Tensor.F32_LE, b);
            for (long i = from; i < to; i++)
                x.setAtIndex(Tensor.F32_LE, i, map[codes.get(ValueLayout.JAVA_BYTE, i) & 0xFF] * amax);
        }
    }

    private static void checkSizes(long n, long nb, MemorySegment x, MemorySegment codes, MemorySegment absmax) {
        if (x.byteSize() < 4 * n || codes.byteSize() < n || absmax.byteSize() < 4 * nb)
            throw new IllegalArgumentException("block-wise quantisation of " + n + " values needs " + 4 * n + " value bytes, "
                    + n + " code bytes and " + 4 * nb + " absmax bytes; got " + x.byteSize() + ", " + codes.byteSize()
                    + " and " + absmax.byteSize());
    }
}
