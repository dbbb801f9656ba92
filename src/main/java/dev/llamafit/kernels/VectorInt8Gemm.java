// The Vector API int8 GEMM (C int32 = A·Bᵀ over signed bytes): the fallback where oneDNN's VNNI matmul is not available.
package dev.llamafit.kernels;

import static dev.llamafit.kernels.ScalarKernels.I32_LE;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;

import jdk.incubator.vector.ByteVector;
import jdk.incubator.vector.IntVector;
import jdk.incubator.vector.VectorOperators;
import jdk.incubator.vector.VectorShape;
import jdk.incubator.vector.VectorSpecies;

/**
 * {@link Kernels#gemmI8} on the Vector API. Both operands are read in place: in the A·Bᵀ layout every C[i, j] is the dot
 * product of two contiguous byte rows, so no packing is needed. A 4×4 block of C keeps 16 int accumulators; each step
 * loads L bytes of 4 rows of A and 4 rows of B, widens them to int once (B2I) and does 16 multiply-adds, so each widened
 * vector is used 4 times. The Java Vector API has no byte dot-product instruction (VNNI's vpdpbusd), which is why this
 * runs at about the fp32 rate and oneDNN is preferred. Integer sums are exact, so the order does not matter: the bits equal
 * the scalar specification's.
 */
final class VectorInt8Gemm {
    private static final VectorSpecies<Integer> SI = IntVector.SPECIES_PREFERRED;
    private static final int L = SI.length();
    private static final VectorSpecies<Byte> SB = VectorSpecies.of(byte.class, VectorShape.forBitSize(L * 8));
    private static final ByteOrder LE = ByteOrder.LITTLE_ENDIAN;
    /** Multiply-adds per task below which the product is not split over the pool. */
    private static final long MIN_WORK_PER_TASK = 1L << 20;

    private VectorInt8Gemm() {}

    static void gemm(int m, int n, int k, MemorySegment a, long aOff, int lda, MemorySegment b, long bOff, int ldb,
                     MemorySegment c, long cOff, int ldc) {
        Kernels.checkGemmI8(m, n, k);
        if (m == 0 || n == 0) return;
        // Split the longer side of C in blocks of 4 over the pool; the split depends on the shape and thread count only.
        long work = (long) m * n * Math.max(k, 1);
        int tasks = (int) Math.max(1, Math.min(Parallel.threads(), work / MIN_WORK_PER_TASK));
        if (m >= n) {
            int blocks = (m + 3) / 4;
            Parallel.forRange(blocks, Math.max(1, blocks / tasks), (f, t) ->
                    block(4 * f, Math.min(4 * t, m), 0, n, k, a, aOff, lda, b, bOff, ldb, c, cOff, ldc));
        } else {
            int blocks = (n + 3) / 4;
            Parallel.forRange(blocks, Math.max(1, blocks / tasks), (f, t) ->
                    block(0, m, 4 * f, Math.min(4 * t, n), k, a, aOff, lda, b, bOff, ldb, c, cOff, ldc));
        }
    }

    /** C rows [i0, i1) × columns [j0, j1). */
    private static void block(int i0, int i1, int j0, int j1, int k, MemorySegment a, long aOff, int lda,
                              MemorySegment b, long bOff, int ldb, MemorySegment c, long cOff, int ldc) {
        for (int i = i0; i < i1; i += 4) {
            for (int j = j0; j < j1; j += 4) {
                if (i + 4 <= i1 && j + 4 <= j1) tile4x4(i, j, k, a, aOff, lda, b, bOff, ldb, c, cOff, ldc);
                else {
                    for (int ii = i; ii < Math.min(i + 4, i1); ii++)
                        for (int jj = j; jj < Math.min(j + 4, j1); jj++)
                            c.setAtIndex(I32_LE, cOff + (long) ii * ldc + jj,
                                    dot(k, a, aOff + (long) ii * lda, b, bOff + (long) jj * ldb));
                }
            }
        }
    }

    private static IntVector load(MemorySegment s, long off) {
        return (IntVector) ByteVector.fromMemorySegment(SB, s, off, LE).convertShape(VectorOperators.B2I, SI, 0);
    }

    private static void tile4x4(int i, int j, int k, MemorySegment a, long aOff, int lda,
                                MemorySegment b, long bOff, int ldb, MemorySegment c, long cOff, int ldc) {
        long a0 = aOff + (long) i * lda, a1 = a0 + lda, a2 = a1 + lda, a3 = a2 + lda;
        long b0 = bOff + (long) j * ldb, b1 = b0 + ldb, b2 = b1 + ldb, b3 = b2 + ldb;
        IntVector c00 = IntVector.zero(SI), c01 = c00, c02 = c00, c03 = c00, c10 = c00, c11 = c00, c12 = c00, c13 = c00,
                c20 = c00, c21 = c00, c22 = c00, c23 = c00, c30 = c00, c31 = c00, c32 = c00, c33 = c00;
        int p = 0;
        for (; p + L <= k; p += L) {
            IntVector x0 = load(a, a0 + p), x1 = load(a, a1 + p), x2 = load(a, a2 + p), x3 = load(a, a3 + p);
            IntVector w = load(b, b0 + p);
            c00 = c00.add(x0.mul(w)); c10 = c10.add(x1.mul(w)); c20 = c20.add(x2.mul(w)); c30 = c30.add(x3.mul(w));
            w = load(b, b1 + p);
            c01 = c01.add(x0.mul(w)); c11 = c11.add(x1.mul(w)); c21 = c21.add(x2.mul(w)); c31 = c31.add(x3.mul(w));
            w = load(b, b2 + p);
            c02 = c02.add(x0.mul(w)); c12 = c12.add(x1.mul(w)); c22 = c22.add(x2.mul(w)); c32 = c32.add(x3.mul(w));
            w = load(b, b3 + p);
            c03 = c03.add(x0.mul(w)); c13 = c13.add(x1.mul(w)); c23 = c23.add(x2.mul(w)); c33 = c33.add(x3.mul(w));
        }
        IntVector[] acc = {c00, c01, c02, c03, c10, c11, c12, c13, c20, c21, c22, c23, c30, c31, c32, c33};
        long[] as = {a0, a1, a2, a3}, bs = {b0, b1, b2, b3};
        for (int r = 0; r < 4; r++) {
            for (int q = 0; q < 4; q++) {
                int sum = acc[4 * r + q].reduceLanes(VectorOperators.ADD) + tail(p, k, a, as[r], b, bs[q]);
                c.setAtIndex(I32_LE, cOff + (long) (i + r) * ldc + j + q, sum);
            }
        }
    }

    /** One C element: the dot product of k bytes at aRow and bRow. */
    private static int dot(int k, MemorySegment a, long aRow, MemorySegment b, long bRow) {
        IntVector acc = IntVector.zero(SI);
        int p = 0;
        for (; p + L <= k; p += L) acc = acc.add(load(a, aRow + p).mul(load(b, bRow + p)));
        return acc.reduceLanes(VectorOperators.ADD) + tail(p, k, a, aRow, b, bRow);
    }

    private static int tail(int p, int k, MemorySegment a, long aRow, MemorySegment b, long bRow) {
        int sum = 0;
        for (; p < k; p++) sum += a.get(ValueLayout.JAVA_BYTE, aRow + p) * b.get(ValueLayout.JAVA_BYTE, bRow + p);
        return sum;
    }
}
