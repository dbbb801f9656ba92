// The decode path's in-register widening of 16-bit weights: exact conversions, and agreement on awkward skinny shapes.
package dev.llamafit.kernels;

import static dev.llamafit.tensor.Tensor.I16_LE;
import static org.junit.jupiter.api.Assertions.assertEquals;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;

import dev.llamafit.tensor.DType;
import jdk.incubator.vector.FloatVector;
import org.junit.jupiter.api.Test;

class TypedDotsTest {
    private static final int L = FloatVector.SPECIES_PREFERRED.length();

    /** Every one of the 65536 bit patterns widens to the bits of the scalar conversion (NaN payloads, subnormals, -0). */
    @Test
    void everyHalfAndBfloat16PatternWidensExactly() {
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment s = arena.allocate(2L * 65536, 64);
            for (int i = 0; i < 65536; i++) s.setAtIndex(I16_LE, i, (short) i);
            float[] lanes = new float[L];
            for (int i = 0; i < 65536; i += L) {
                for (DType t : new DType[] {DType.BF16, DType.F16}) {
                    TypedDots.load(s, 2L * i, t == DType.BF16).intoArray(lanes, 0);
                    for (int q = 0; q < L; q++) {
                        short h = (short) (i + q);
                        float want = t == DType.BF16 ? ScalarKernels.bf16ToFloat(h) : Float.float16ToFloat(h);
                        assertEquals(Float.floatToRawIntBits(want), Float.floatToRawIntBits(lanes[q]),
                                t + " pattern 0x" + Integer.toHexString(i + q));
                    }
                }
            }
        }
    }

    /**
     * Decode-like shapes (m = 1..5; n not a multiple of 8 or of the vector length; k odd, below and above a vector):
     * fp32 A times F16 B stored [n, k] equals the fp32 GEMM on widened copies bit for bit; times BF16 B it equals
     * skinnyBf16's scalar order bit for bit and the exact product within fp32 summation error; both equal the
     * specification exactly on small-integer operands, in all four transposition variants (gemmCase).
     */
    @Test
    void skinnyTypedProductsAgreeOnAwkwardShapes() {
        long seed = 5000;
        int[] ks = {1, L - 1, L + 1, 2 * L + 3, 3 * L + 7, 289};
        int[] ns = {1, 3, 7, 9, 13, 37};
        for (DType b : new DType[] {DType.BF16, DType.F16}) {
            for (int m = 1; m <= 5; m++) {
                for (int n : ns) {
                    for (int k : ks) {
                        TypedGemmTest.gemmCase(DType.F32, b, m, n, k, seed++, false);
                        TypedGemmTest.gemmCase(DType.F32, b, m, n, k, seed++, true);
                    }
                }
            }
        }
    }

    /**
     * The bf16 decode product gives the same bits on every call, interpreted or compiled: 400 calls on one LM-head-like
     * shape (k a whole number of blocks plus an odd tail), each against the scalar order.
     */
    @Test
    void bf16DecodeProductKeepsItsBitsAcrossJitCompilation() {
        int m = 1, n = 203, k = 4 * L + 5;
        TypedGemmTest.Operand a = TypedGemmTest.operand(DType.F32, (long) m * k, 77, false);
        TypedGemmTest.Operand b = TypedGemmTest.operand(DType.BF16, (long) n * k, 78, false);
        MemorySegment want = TypedGemmTest.c(n, 79, false), exact = TypedGemmTest.copy(want);
        TypedGemmTest.pairOrderGemm(m, n, k, 1f, a.wide(), 0, k, b.wide(), 0, k, 0f, want, 0, n, exact);
        for (int run = 0; run < 400; run++) {
            MemorySegment got = TypedGemmTest.c(n, 79, false);
            TypedGemmTest.VECTOR.gemm(false, true, m, n, k, 1f, a.typed(), DType.F32, 0, k, b.typed(), DType.BF16, 0, k, 0f, got, 0, n);
            TypedGemmTest.assertSameBits(want, got, "bf16 decode product, call " + run);
        }
    }
}
