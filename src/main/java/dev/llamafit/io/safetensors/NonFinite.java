// Counts NaN/Inf values in stored tensor bytes (F32, BF16, F16), vectorised so that loading checks at the read rate.
package dev.llamafit.io.safetensors;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;

import dev.llamafit.tensor.DType;
import jdk.incubator.vector.IntVector;
import jdk.incubator.vector.VectorMask;
import jdk.incubator.vector.VectorOperators;
import jdk.incubator.vector.VectorSpecies;

/**
 * A value is non-finite (NaN or ±Inf) exactly when all its exponent bits are set, whatever its mantissa: F32
 * 0x7F800000, BF16 0x7F80, F16 0x7C00. So the count needs no float arithmetic: the bytes are read as 32-bit lanes
 * (two 16-bit values per lane for BF16/F16) and each value's exponent field is compared with the all-ones pattern.
 * Counts accumulate per lane and are summed once at the end, so the loop is loads, ANDs and compares only.
 */
public final class NonFinite {
    private static final VectorSpecies<Integer> S = IntVector.SPECIES_PREFERRED;
    private static final ValueLayout.OfInt INT = ValueLayout.JAVA_INT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    private static final ValueLayout.OfShort SHORT = ValueLayout.JAVA_SHORT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);

    private NonFinite() {}

    /** Whether {@code dtype} is one this counts (other dtypes hold no floats and count 0). */
    public static boolean applies(DType dtype) {
        return dtype == DType.F32 || dtype == DType.BF16 || dtype == DType.F16;
    }

    /** The number of NaN/Inf among the {@code elements} values of {@code dtype} at the start of {@code seg}. */
    public static long count(MemorySegment seg, DType dtype, long elements) {
        return switch (dtype) {
            case F32 -> count32(seg, elements);
            case BF16 -> count16(seg, elements, 0x7F80);
            case F16 -> count16(seg, elements, 0x7C00);
            default -> 0;
        };
    }

    private static long count32(MemorySegment seg, long n) {
        final int exp = 0x7F800000;
        long lanes = S.length(), vectorEnd = n - n % lanes, count = 0;
        IntVector acc = IntVector.zero(S);
        long i = 0;
        while (i < vectorEnd) {
            // Per-lane int counters: flush before any lane could pass 2^31.
            long stop = Math.min(vectorEnd, i + lanes * (1L << 30));
            for (; i < stop; i += lanes) {
                IntVector v = IntVector.fromMemorySegment(S, seg, i * 4, ByteOrder.LITTLE_ENDIAN);
                VectorMask<Integer> bad = v.and(exp).compare(VectorOperators.EQ, exp);
                acc = acc.add(1, bad);
            }
            count += acc.reduceLanesToLong(VectorOperators.ADD);
            acc = IntVector.zero(S);
        }
        for (; i < n; i++) if ((seg.get(INT, i * 4) & exp) == exp) count++;
        return count;
    }

    /** 16-bit values, two per lane: the low half is the first (little-endian), the high half the second. */
    private static long count16(MemorySegment seg, long n, int exp) {
        final int lowExp = exp, highExp = exp << 16;
        long pairs = n / 2, lanes = S.length(), vectorEnd = pairs - pairs % lanes, count = 0;
        IntVector acc = IntVector.zero(S);
        long i = 0;
        while (i < vectorEnd) {
            long stop = Math.min(vectorEnd, i + lanes * (1L << 29));
            for (; i < stop; i += lanes) {
                IntVector v = IntVector.fromMemorySegment(S, seg, i * 4, ByteOrder.LITTLE_ENDIAN);
                acc = acc.add(1, v.and(lowExp).compare(VectorOperators.EQ, lowExp));
                acc = acc.add(1, v.and(highExp).compare(VectorOperators.EQ, highExp));
            }
            count += acc.reduceLanesToLong(VectorOperators.ADD);
            acc = IntVector.zero(S);
        }
        for (long e = i * 2; e < n; e++) if ((seg.get(SHORT, e * 2) & exp) == exp) count++;
        return count;
    }
}
