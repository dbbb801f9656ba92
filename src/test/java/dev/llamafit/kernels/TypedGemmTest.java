// The typed GEMM (BF16/F16 operands widened exactly, fp32 sums) against widening first (bf16 skinny: its own scalar order) and the specification.
package dev.llamafit.kernels;

import static dev.llamafit.tensor.Tensor.F32_LE;
import static dev.llamafit.tensor.Tensor.I16_LE;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.util.SplittableRandom;

import dev.llamafit.tensor.DType;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.Test;

class TypedGemmTest {
    static final Kernels SCALAR = new ScalarKernels();
    static final Kernels VECTOR = new VectorKernels();
    static final Arena ARENA = Arena.ofShared();
    static final DType[][] PAIRS = {
            {DType.BF16, DType.BF16}, {DType.F32, DType.BF16}, {DType.BF16, DType.F32},
            {DType.F16, DType.F16}, {DType.F32, DType.F16}, {DType.F16, DType.BF16}};
    /**
     * Awkward shapes, among them skinny ones (m ≤ 32, decode) whose n crosses the skinny path's widening chunks
     * (k = 702: 16 rows a chunk; k = 31: 528 rows) and blocked ones crossing the KC/MC/NC blocks.
     */
    static final int[][] SHAPES = {{1, 1, 1}, {1, 207, 702}, {3, 1024, 31}, {7, 13, 207}, {13, 207, 31}, {31, 702, 13},
            {32, 207, 702}, {33, 207, 31}, {207, 31, 702}, {702, 13, 3}, {64, 1100, 300}, {130, 70, 260}};

    @AfterAll
    static void close() { ARENA.close(); }

    /** An operand as its typed bytes and as an fp32 segment holding exactly the widened values. */
    record Operand(MemorySegment typed, MemorySegment wide) {}

    static Operand operand(DType type, long n, long seed, boolean integers) {
        SplittableRandom r = new SplittableRandom(seed);
        MemorySegment typed = ARENA.allocate(Math.max(1, n) * type.bytes(), 64);
        MemorySegment wide = ARENA.allocate(Math.max(1, n) * 4, 64);
        for (long i = 0; i < n; i++) {
            float v = integers ? r.nextInt(-4, 5) : (float) (r.nextDouble() * 2 - 1);
            switch (type) {
                case F32 -> typed.setAtIndex(F32_LE, i, v);
                case BF16 -> typed.setAtIndex(I16_LE, i, ScalarKernels.floatToBf16(v));
                case F16 -> typed.setAtIndex(I16_LE, i, Float.floatToFloat16(v));
                default -> throw new AssertionError(type);
            }
            wide.setAtIndex(F32_LE, i, ScalarKernels.load(typed, type, i));
        }
        return new Operand(typed, wide);
    }

    static MemorySegment c(long n, long seed, boolean integers) {
        MemorySegment c = ARENA.allocate(n * 4, 64);
        SplittableRandom r = new SplittableRandom(seed);
        for (long i = 0; i < n; i++) c.setAtIndex(F32_LE, i, integers ? r.nextInt(-8, 9) : (float) r.nextDouble());
        return c;
    }

    static MemorySegment copy(MemorySegment s) {
        MemorySegment c = ARENA.allocate(s.byteSize(), 64);
        c.copyFrom(s);
        return c;
    }

    static void assertSameBits(MemorySegment x, MemorySegment y, String what) {
        for (long i = 0; i < x.byteSize() / 4; i++) {
            int a = Float.floatToRawIntBits(x.getAtIndex(F32_LE, i)), b = Float.floatToRawIntBits(y.getAtIndex(F32_LE, i));
            if (a != b) assertEquals(x.getAtIndex(F32_LE, i), y.getAtIndex(F32_LE, i), what + ": element " + i);
        }
    }

    static void assertSameValues(MemorySegment x, MemorySegment y, String what) {
        for (long i = 0; i < x.byteSize() / 4; i++) {
            float a = x.getAtIndex(F32_LE, i), b = y.getAtIndex(F32_LE, i);
            if (a != b) assertEquals(a, b, what + ": element " + i);
        }
    }

    /** Runs one case in all four transposition variants; returns the number of comparisons made. */
    static int gemmCase(DType aType, DType bType, int m, int n, int k, long seed, boolean integers) {
        int checks = 0;
        for (int variant = 0; variant < 4; variant++) {
            boolean transA = variant >= 2, transB = (variant & 1) == 1;
            int aRows = transA ? k : m, aCols = transA ? m : k, bRows = transB ? n : k, bCols = transB ? k : n;
            int lda = aCols + 3, ldb = bCols + 1, ldc = n + 2;
            long aOff = 5, bOff = 2, cOff = 3;
            Operand a = operand(aType, aOff + (long) aRows * lda, seed * 7 + variant, integers);
            Operand b = operand(bType, bOff + (long) bRows * ldb, seed * 7 + variant + 100, integers);
            MemorySegment c0 = c(cOff + (long) m * ldc, seed, integers);
            float alpha = variant % 2 == 0 ? 1f : -0.5f, beta = variant == 1 ? 0f : 0.5f;
            String what = aType + "x" + bType + " transA=" + transA + " transB=" + transB + " m=" + m + " n=" + n + " k=" + k;

            MemorySegment vTyped = copy(c0), vWide = copy(c0), sTyped = copy(c0), sWide = copy(c0);
            VECTOR.gemm(transA, transB, m, n, k, alpha, a.typed(), aType, aOff, lda, b.typed(), bType, bOff, ldb, beta, vTyped, cOff, ldc);
            VECTOR.gemm(transA, transB, m, n, k, alpha, a.wide(), aOff, lda, b.wide(), bOff, ldb, beta, vWide, cOff, ldc);
            SCALAR.gemm(transA, transB, m, n, k, alpha, a.typed(), aType, aOff, lda, b.typed(), bType, bOff, ldb, beta, sTyped, cOff, ldc);
            SCALAR.gemm(transA, transB, m, n, k, alpha, a.wide(), aOff, lda, b.wide(), bOff, ldb, beta, sWide, cOff, ldc);
            if (bType == DType.BF16 && !transA && transB && m < TypedDots.BF16_ROWS) {
                // bf16 weights under a few rows (decode) sum in TypedDots.skinnyBf16's own order: exactly that order (computed
                // here in scalar code, so neither the JIT nor the tiling can change it), and within fp32 summation
                // error of the exact product.
                MemorySegment want = copy(c0), exact = copy(c0);
                pairOrderGemm(m, n, k, alpha, a.wide(), aOff, lda, b.wide(), bOff, ldb, beta, want, cOff, ldc, exact);
                assertSameBits(want, vTyped, "vector bf16 skinny vs its scalar order " + what);
                assertWithinSummationError(exact, vTyped, m, n, k, alpha, a.wide(), aOff, lda, b.wide(), bOff, ldb, beta, c0, cOff, ldc, what);
            } else {
                // Converting while packing gives exactly what widening first and running the fp32 GEMM gives (C's padding included).
                assertSameBits(vWide, vTyped, "vector typed vs widened " + what);
            }
            assertSameBits(sWide, sTyped, "scalar typed vs widened " + what);
            // With small integers every product and sum is exact, so the order of the sums cannot matter: same bits as the spec.
            // (Zero's sign may differ: it depends on where the sums start, not on any rounding.)
            if (integers) assertSameValues(sTyped, vTyped, "vector vs scalar, exact operands, " + what);
            checks += 4;
        }
        return checks;
    }

    /**
     * TypedDots.skinnyBf16's documented order, in scalar code: per output, L lane sums from 0, each whole block of 2·L
     * at p adding fma(x[p+2q], w[p+2q]) then fma(x[p+2q+1], w[p+2q+1]) to lane q; lanes added left to right from 0; the
     * tail's products (rounded) added in index order; then alpha·sum + beta·C (beta == 0 never reads C). {@code exact}
     * gets the same outputs from double sums.
     */
    static void pairOrderGemm(int m, int n, int k, float alpha, MemorySegment a, long aOff, int lda,
                              MemorySegment b, long bOff, int ldb, float beta, MemorySegment c, long cOff, int ldc,
                              MemorySegment exact) {
        int lanes = jdk.incubator.vector.FloatVector.SPECIES_PREFERRED.length();
        int blocks = k - k % (2 * lanes);
        for (int i = 0; i < m; i++) {
            for (int j = 0; j < n; j++) {
                long ai = aOff + (long) i * lda, bj = bOff + (long) j * ldb;
                float[] acc = new float[lanes];
                for (int p = 0; p < blocks; p += 2 * lanes) {
                    for (int q = 0; q < lanes; q++) {
                        long e = p + 2L * q;
                        acc[q] = Math.fma(a.getAtIndex(F32_LE, ai + e), b.getAtIndex(F32_LE, bj + e), acc[q]);
                        acc[q] = Math.fma(a.getAtIndex(F32_LE, ai + e + 1), b.getAtIndex(F32_LE, bj + e + 1), acc[q]);
                    }
                }
                float sum = 0f;
                for (float v : acc) sum += v;
                for (int p = blocks; p < k; p++) sum += a.getAtIndex(F32_LE, ai + p) * b.getAtIndex(F32_LE, bj + p);
                double d = 0;
                for (int p = 0; p < k; p++) d += (double) a.getAtIndex(F32_LE, ai + p) * b.getAtIndex(F32_LE, bj + p);
                long ci = cOff + (long) i * ldc + j;
                float old = beta == 0f ? 0f : beta * c.getAtIndex(F32_LE, ci);
                exact.setAtIndex(F32_LE, ci, (float) (alpha * d + (beta == 0f ? 0 : (double) beta * c.getAtIndex(F32_LE, ci))));
                c.setAtIndex(F32_LE, ci, alpha * sum + old);
            }
        }
    }

    /** Each output within fp32 summation error of the exact one: (k + 2)·2⁻²³ of |alpha|·Σ|a·b| + |beta·C|. */
    static void assertWithinSummationError(MemorySegment exact, MemorySegment got, int m, int n, int k, float alpha,
                                           MemorySegment a, long aOff, int lda, MemorySegment b, long bOff, int ldb,
                                           float beta, MemorySegment c0, long cOff, int ldc, String what) {
        for (int i = 0; i < m; i++) {
            for (int j = 0; j < n; j++) {
                double mag = 0;
                for (int p = 0; p < k; p++)
                    mag += Math.abs((double) a.getAtIndex(F32_LE, aOff + (long) i * lda + p) * b.getAtIndex(F32_LE, bOff + (long) j * ldb + p));
                long ci = cOff + (long) i * ldc + j;
                double bound = (k + 2) * 0x1p-23 * (Math.abs(alpha) * mag + Math.abs(beta * c0.getAtIndex(F32_LE, ci))) + Float.MIN_NORMAL;
                assertEquals(exact.getAtIndex(F32_LE, ci), got.getAtIndex(F32_LE, ci), bound, what + ": C[" + i + ", " + j + "]");
            }
        }
    }

    @Test
    void typedOperandsEqualWideningFirstOnAwkwardShapes() {
        int checks = 0;
        long seed = 1;
        for (DType[] p : PAIRS) for (int[] s : SHAPES) checks += gemmCase(p[0], p[1], s[0], s[1], s[2], seed++, false);
        assertTrue(checks >= PAIRS.length * SHAPES.length * 16, "too few typed gemm checks: " + checks);
    }

    @Test
    void exactlyRepresentableOperandsGiveTheSpecificationsBits() {
        long seed = 1000;
        for (DType[] p : PAIRS) for (int[] s : SHAPES) gemmCase(p[0], p[1], s[0], s[1], s[2], seed++, true);
    }

    @Test
    void twoF32OperandsAreTheFp32Gemm() {
        Operand a = operand(DType.F32, 31 * 207, 5, false), b = operand(DType.F32, 207 * 13, 6, false);
        MemorySegment c1 = c(31 * 13, 7, false), c2 = copy(c1);
        VECTOR.gemm(false, false, 31, 13, 207, 1f, a.typed(), DType.F32, 0, 207, b.typed(), DType.F32, 0, 13, 0.5f, c1, 0, 13);
        VECTOR.gemm(false, false, 31, 13, 207, 1f, a.typed(), 0, 207, b.typed(), 0, 13, 0.5f, c2, 0, 13);
        assertSameBits(c2, c1, "F32xF32");
    }

    @Test
    void otherOperandTypesAreRefused() {
        MemorySegment s = ARENA.allocate(64);
        assertThrows(IllegalArgumentException.class,
                () -> VECTOR.gemm(false, true, 1, 1, 1, 1f, s, DType.I8, 0, 1, s, DType.F32, 0, 1, 0f, s, 0, 1));
        assertThrows(IllegalArgumentException.class,
                () -> SCALAR.gemm(false, true, 1, 1, 1, 1f, s, DType.F32, 0, 1, s, DType.I8, 0, 1, 0f, s, 0, 1));
    }
}
