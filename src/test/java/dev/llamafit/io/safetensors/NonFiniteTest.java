// The vectorised NaN/Inf count agrees with Float.isFinite on every dtype, length (vector tails) and bit pattern.
package dev.llamafit.io.safetensors;

import static org.junit.jupiter.api.Assertions.assertEquals;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.SplittableRandom;

import org.junit.jupiter.api.Test;

import dev.llamafit.tensor.DType;

class NonFiniteTest {
    private static final ValueLayout.OfShort S = ValueLayout.JAVA_SHORT_UNALIGNED;
    private static final ValueLayout.OfInt I = ValueLayout.JAVA_INT_UNALIGNED;

    @Test
    void countsMatchAScalarReference() {
        SplittableRandom rnd = new SplittableRandom(19);
        try (Arena arena = Arena.ofConfined()) {
            for (int n : new int[] {0, 1, 2, 3, 7, 15, 16, 17, 33, 64, 1001, 4099}) {
                MemorySegment seg = arena.allocate(4L * n + 4);
                for (DType dt : new DType[] {DType.F32, DType.BF16, DType.F16}) {
                    long expected = 0;
                    for (int i = 0; i < n; i++) {
                        // Mostly ordinary values, with NaNs of any payload, ±Inf, and the largest finite values.
                        int kind = rnd.nextInt(6);
                        if (dt == DType.F32) {
                            int bits = switch (kind) {
                                case 0 -> 0x7F800000 | rnd.nextInt(1 << 23) | (rnd.nextBoolean() ? 0x80000000 : 0);
                                case 1 -> 0x7F7FFFFF;
                                default -> Float.floatToRawIntBits((float) rnd.nextGaussian());
                            };
                            seg.setAtIndex(I, i, bits);
                            if (!Float.isFinite(Float.intBitsToFloat(bits))) expected++;
                        } else {
                            int exp = dt == DType.BF16 ? 0x7F80 : 0x7C00;
                            int bits = kind == 0 ? exp | rnd.nextInt(exp ^ 0x7FFF) | (rnd.nextBoolean() ? 0x8000 : 0)
                                    : kind == 1 ? exp - 1 : rnd.nextInt(1 << 16) & ~(exp & ~(exp >> 1) & 0x4000);
                            seg.setAtIndex(S, i, (short) bits);
                            if ((bits & exp) == exp) expected++;
                        }
                    }
                    // Trailing garbage past n must not be counted.
                    seg.setAtIndex(I, dt == DType.F32 ? n : (n + 1) / 2, 0x7FC07FC0);
                    assertEquals(expected, NonFinite.count(seg, dt, n), dt + " n=" + n);
                }
            }
        }
    }

    @Test
    void halfPrecisionReferenceIsTheIeeeDefinition() {
        assertEquals(1, count16(DType.F16, (short) 0x7C00)); // +Inf
        assertEquals(1, count16(DType.F16, (short) 0xFE01)); // NaN
        assertEquals(0, count16(DType.F16, (short) 0x7BFF)); // 65504
        assertEquals(1, count16(DType.BF16, (short) 0xFF80)); // -Inf
        assertEquals(0, count16(DType.BF16, (short) 0x7F7F)); // max finite
    }

    private static long count16(DType dt, short bits) {
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment seg = arena.allocate(2);
            seg.set(S, 0, bits);
            return NonFinite.count(seg, dt, 1);
        }
    }
}
