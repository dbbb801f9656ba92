// The int8 GEMM (int32 accumulation): scalar, Vector API and oneDNN give exactly the same ints, on awkward shapes and strides.
package dev.llamafit.kernels;

import static dev.llamafit.kernels.ScalarKernels.I32_LE;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.SplittableRandom;

import org.junit.jupiter.api.Test;

class Int8GemmTest {
    static final Kernels SCALAR = new ScalarKernels();
    /** Awkward sizes (tails of 4-blocks and of vector lengths), the engine's (C=288, F=768), decode (m=1) and a long k. */
    static final int[][] SHAPES = {{1, 1, 1}, {3, 7, 13}, {5, 9, 17}, {13, 31, 70}, {31, 13, 207}, {64, 288, 288},
            {37, 768, 288}, {1, 768, 288}, {2, 5, 4099}, {130, 66, 1000}};

    @Test
    void vectorEqualsTheSpecificationExactly() {
        check(new VectorKernels());
    }

    @Test
    void oneDnnEqualsTheSpecificationExactly() {
        OneDnnKernels k = OneDnnKernelsTest.onednn();
        check(k);
        assertTrue(k.nativeI8(), "oneDNN's s8 matmul should be exact on a CPU with VNNI; this one fell back to the Vector path");
    }

    /** Random bytes over the full range (−128 included), at offsets and with row strides wider than k. */
    private static void check(Kernels k) {
        SplittableRandom rnd = new SplittableRandom(16);
        int cases = 0;
        try (Arena arena = Arena.ofShared()) {
            for (int[] s : SHAPES) for (boolean extreme : new boolean[] {false, true}) {
                int m = s[0], n = s[1], kk = s[2];
                int lda = kk + cases % 3, ldb = kk + 2 * (cases % 2), ldc = n + cases % 4;
                long aOff = cases % 5, bOff = cases % 7, cOff = cases % 3;
                MemorySegment a = bytes(arena, aOff + (long) m * lda, rnd, extreme), b = bytes(arena, bOff + (long) n * ldb, rnd, extreme);
                MemorySegment want = arena.allocate(4 * (cOff + (long) m * ldc)), got = arena.allocate(want.byteSize());
                want.fill((byte) 0x5A);
                got.fill((byte) 0x5A); // the gaps between rows of C must stay untouched
                SCALAR.gemmI8(m, n, kk, a, aOff, lda, b, bOff, ldb, want, cOff, ldc);
                k.gemmI8(m, n, kk, a, aOff, lda, b, bOff, ldb, got, cOff, ldc);
                assertEquals(-1, want.mismatch(got), k.name() + " differs from the specification at " + m + "x" + n + "x" + kk);
                cases++;
            }
            // A worked value: the extremes' products, exactly.
            MemorySegment a = arena.allocate(3), b = arena.allocate(3), c = arena.allocate(4);
            a.set(ValueLayout.JAVA_BYTE, 0, (byte) -128); a.set(ValueLayout.JAVA_BYTE, 1, (byte) 127); a.set(ValueLayout.JAVA_BYTE, 2, (byte) -1);
            b.set(ValueLayout.JAVA_BYTE, 0, (byte) -128); b.set(ValueLayout.JAVA_BYTE, 1, (byte) 127); b.set(ValueLayout.JAVA_BYTE, 2, (byte) 5);
            k.gemmI8(1, 1, 3, a, 0, 3, b, 0, 3, c, 0, 1);
            assertEquals(16384 + 16129 - 5, c.getAtIndex(I32_LE, 0));
        }
    }

    private static MemorySegment bytes(Arena arena, long n, SplittableRandom rnd, boolean extreme) {
        MemorySegment s = arena.allocate(Math.max(1, n));
        byte[] ext = {-128, -127, 127};
        for (long i = 0; i < n; i++) s.set(ValueLayout.JAVA_BYTE, i, extreme ? ext[rnd.nextInt(3)] : (byte) rnd.nextInt(256));
        return s;
    }

    @Test
    void aKThatCouldOverflowIsRefused() {
        try (Arena arena = Arena.ofShared()) {
            MemorySegment s = arena.allocate(1);
            for (Kernels k : new Kernels[] {SCALAR, new VectorKernels()}) {
                IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                        () -> k.gemmI8(1, 1, Kernels.MAX_I8_K + 1, s, 0, 1, s, 0, 1, s, 0, 1));
                assertTrue(e.getMessage().contains("overflow"), e.getMessage());
            }
        }
    }
}
