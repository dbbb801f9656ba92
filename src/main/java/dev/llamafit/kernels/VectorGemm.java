// Blocked, packed fp32 GEMM on the Vector API: the matrix multiply behind VectorKernels.gemm.
package dev.llamafit.kernels;

import static dev.llamafit.tensor.Tensor.F32_LE;
import static dev.llamafit.tensor.Tensor.I16_LE;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.nio.ByteOrder;
import java.util.Arrays;

import dev.llamafit.tensor.DType;
import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.IntVector;
import jdk.incubator.vector.ShortVector;
import jdk.incubator.vector.VectorOperators;
import jdk.incubator.vector.VectorShape;
import jdk.incubator.vector.VectorSpecies;

/**
 * SGEMM in the Goto/BLIS shape: for each column block of C (NC) and depth block (KC) pack op(B) into
 * KC×NR micro-panels; for each row block (MC) pack op(A) into MR×KC micro-panels; an MR×NR register
 * tile (6 rows × 4 vectors = 24 accumulators) then runs FMAs over the packed panels. Packing absorbs
 * all four transposition variants, the strides and offsets, so the micro-kernel sees one layout.
 * Threads split C into row stripes (or column stripes when C is wide), each with its own packing
 * buffers, so workers never share writable memory.
 *
 * <p>With few rows of C (decode: m = 1) and B stored [n, k], packing is skipped: outputs are dot products of
 * contiguous rows in 4×4 tiles, parallel over n, bound by reading the weights once.
 *
 * <p>Typed operands (BF16, F16: {@link Kernels#gemm(boolean, boolean, int, int, int, float, MemorySegment, DType, long,
 * int, MemorySegment, DType, long, int, float, MemorySegment, long, int)}) are widened to fp32 while packing, so the
 * micro-kernel is the fp32 one and the result equals the fp32 GEMM on widened copies bit for bit. The skinny path
 * (decode) reads 16-bit B in place and widens it in registers ({@link TypedDots}: its tiles mirror the fp32 ones bit
 * for bit, except bf16 decode's, which widen pairs in-lane and sum in their own order), and copies A (at most {@link #SKINNY_ROWS} rows)
 * once per task into a small per-thread scratch.
 */
final class VectorGemm {
    private static final VectorSpecies<Float> S = FloatVector.SPECIES_PREFERRED;
    private static final int L = S.length();
    private static final VectorSpecies<Integer> SI = VectorSpecies.of(int.class, VectorShape.forBitSize(L * 32));
    private static final VectorSpecies<Short> SS = VectorSpecies.of(short.class, VectorShape.forBitSize(L * 16));
    private static final ByteOrder LE = ByteOrder.LITTLE_ENDIAN;

    /**
     * Register tile: MR rows of C by NR columns (four vectors), 24 accumulators (see {@link #microKernel}). Sized for
     * AVX-512's 32 registers; with narrower vectors (16 registers on AVX2) the tile is still correct but spills.
     */
    static final int MR = 6;
    static final int NR = 4 * L;
    /*
     * Cache blocking, chosen by measurement at 2048³ and the model shapes on this machine's AVX-512 cores (2 threads):
     * KC 384 / MC 72 ran ~5-10% faster than 256 / 96 and than 128, 192 or 512 deep. A deeper KC halves how often
     * each C tile is read and written back and how often A and B are packed; MC then keeps the A block near 100 KiB.
     */
    /** Depth block: a KC×NR B micro-panel (96 KiB at 16 lanes) is reused by all MC/MR A micro-panels (9 KiB each). */
    static final int KC = 384;
    /** Row block (a multiple of MR): the packed MC×KC A block (108 KiB) lives in L2 while B micro-panels pass over it. */
    static final int MC = 72;
    /** Column block (a multiple of NR): the packed KC×NC B block (1.5 MiB) is streamed from L2/L3 once per row block. */
    static final int NC = 1024;
    /**
     * Up to this many rows of C, A·Bᵀ runs as unpacked dot-product tiles: packing B would cost as much as the
     * multiply. Measured at n = k = 4096 on 2 threads: m = 4/16/32 gave 30/70/87 GFLOPS unpacked against
     * 7/28/47 packed; from m = 64 packing wins (131 against 86 at n = k = 2048).
     */
    static final int SKINNY_ROWS = 32;
    /** Work below which splitting across threads costs more than it saves (flops). */
    private static final long MIN_FLOPS_PER_TASK = 1L << 21;
    /**
     * Skinny products (decode) are bound by reading B, not by FLOPs: a chunk that streams ~64 KiB of weights
     * already outweighs the pool's sub-microsecond handoff, and splitting every decode GEMV keeps all cores
     * reading (and the workers spinning instead of parking between kernels).
     */
    private static final long MIN_SKINNY_FLOPS_PER_TASK = 1L << 15;

    /** Per-thread packing buffers: packed A block, packed B block, rows awaiting transposition, one C tile. */
    private static final class Buffers {
        final float[] a = new float[MC * KC];
        final float[] b = new float[KC * NC];
        final float[] rows = new float[Math.max(MR, NR) * KC];
        final float[] tile = new float[MR * NR];
        /** Gather offsets {0, kc, 2·kc, ...}: lane col reads row col of {@link #rows}; rebuilt when kc changes. */
        final int[] rowStarts = new int[L];
        int rowStartsKc = -1;

        int[] rowStarts(int kc) {
            if (kc != rowStartsKc) {
                for (int i = 0; i < L; i++) rowStarts[i] = i * kc;
                rowStartsKc = kc;
            }
            return rowStarts;
        }
    }

    private static final ThreadLocal<Buffers> BUFFERS = ThreadLocal.withInitial(Buffers::new);

    /** Off-heap per-thread scratch for the skinny path's widened A (the dot tiles read segments), grown on demand. */
    private static final class Scratch {
        MemorySegment a = MemorySegment.NULL;
        /** Widened rows of a {@link PackSource} B ({@link #skinnySource}): written as floats, read as a segment. */
        MemorySegment b = MemorySegment.NULL;
        float[] rows = new float[0];

        static MemorySegment ensure(MemorySegment s, long floats) {
            return s.byteSize() >= floats * 4 ? s : Arena.ofAuto().allocate(floats * 4, 64);
        }
    }

    private static final ThreadLocal<Scratch> SCRATCH = ThreadLocal.withInitial(Scratch::new);

    private VectorGemm() {}

    /** The typed GEMM (see the class comment); with two F32 operands exactly {@link #gemm(boolean, boolean, int, int, int, float, MemorySegment, long, int, MemorySegment, long, int, float, MemorySegment, long, int)}. */
    static void gemm(boolean transA, boolean transB, int m, int n, int k, float alpha,
                     MemorySegment a, DType aType, long aOff, int lda,
                     MemorySegment b, DType bType, long bOff, int ldb,
                     float beta, MemorySegment c, long cOff, int ldc) {
        ScalarKernels.checkOperand(aType);
        ScalarKernels.checkOperand(bType);
        dispatch(transA, transB, m, n, k, alpha, a, aType, aOff, lda, b, bType, null, bOff, ldb, beta, c, cOff, ldc);
    }

    /**
     * The GEMM over a B read through {@code src} (see {@link PackSource}): the blocked path packs it as it packs a typed
     * B, so C equals the fp32 GEMM on B's widened values bit for bit. The skinny path (A·Bᵀ, few rows) widens 8 rows
     * of B at a time into per-thread scratch and runs {@link #skinnyNT} on them, in the tiles it would use on an fp32 B.
     */
    static void gemm(boolean transB, int m, int n, int k, float alpha, MemorySegment a, long aOff, int lda,
                     PackSource src, long bOff, int ldb, float beta, MemorySegment c, long cOff, int ldc) {
        dispatch(false, transB, m, n, k, alpha, a, DType.F32, aOff, lda, MemorySegment.NULL, DType.F32, src, bOff, ldb, beta, c, cOff, ldc);
    }

    /** Both GEMMs: the skinny path for a few rows of A·Bᵀ, else the blocked one, split over rows or columns (never k). */
    private static void dispatch(boolean transA, boolean transB, int m, int n, int k, float alpha,
                                 MemorySegment a, DType aType, long aOff, int lda,
                                 MemorySegment b, DType bType, PackSource bSrc, long bOff, int ldb,
                                 float beta, MemorySegment c, long cOff, int ldc) {
        if (m <= 0 || n <= 0) return;
        if (k <= 0 || alpha == 0f) {
            scaleC(m, n, beta, c, cOff, ldc);
            return;
        }
        long flops = 2L * m * n * k;
        if (m <= SKINNY_ROWS && !transA && transB) {
            int grain = (int) Math.max(1, MIN_SKINNY_FLOPS_PER_TASK / Math.max(1, 2L * m * k));
            if (bSrc != null)
                Parallel.forRange(n, grain, (j0, j1) -> skinnySource(j0, j1, m, k, alpha, a, aOff, lda, bSrc, bOff, ldb, beta, c, cOff, ldc));
            else if (aType == DType.F32 && bType == DType.F32)
                Parallel.forRange(n, grain, (j0, j1) -> skinnyNT(j0, j1, m, k, alpha, a, aOff, lda, b, bOff, ldb, beta, c, cOff, ldc,
                        BUFFERS.get().tile));
            else
                Parallel.forRange(n, grain, (j0, j1) -> skinnyTyped(j0, j1, m, k, alpha, a, aType, aOff, lda, b, bType, bOff, ldb,
                        beta, c, cOff, ldc));
            return;
        }
        if (m >= n) {
            int units = (m + MR - 1) / MR;
            int grain = (int) Math.max(1, MIN_FLOPS_PER_TASK / Math.max(1, flops / units));
            Parallel.forRange(units, grain, (u0, u1) -> blocked(transA, transB, u0 * MR, Math.min(m, u1 * MR), 0, n, k, alpha,
                    a, aType, aOff, lda, b, bType, bSrc, bOff, ldb, beta, c, cOff, ldc));
        } else {
            int units = (n + NR - 1) / NR;
            int grain = (int) Math.max(1, MIN_FLOPS_PER_TASK / Math.max(1, flops / units));
            Parallel.forRange(units, grain, (u0, u1) -> blocked(transA, transB, 0, m, u0 * NR, Math.min(n, u1 * NR), k, alpha,
                    a, aType, aOff, lda, b, bType, bSrc, bOff, ldb, beta, c, cOff, ldc));
        }
    }

    /**
     * The skinny path over typed operands, B's rows [j0, j1) read in place. BF16 B under {@link TypedDots#BF16_ROWS}
     * rows (decode): A rearranged once per task into scratch in {@link TypedDots#pairOrder} for
     * {@link TypedDots#skinnyBf16} (its own summation order). Otherwise A widened into scratch (unless F32), then
     * {@link TypedDots#skinny}, which tiles the rows as {@link #skinnyNT} and keeps its sums (F32 B: skinnyNT itself).
     */
    private static void skinnyTyped(int j0, int j1, int m, int k, float alpha,
                                    MemorySegment a, DType aType, long aOff, int lda,
                                    MemorySegment b, DType bType, long bOff, int ldb,
                                    float beta, MemorySegment c, long cOff, int ldc) {
        Scratch s = SCRATCH.get();
        Buffers buf = BUFFERS.get();
        if (bType == DType.BF16 && m < TypedDots.BF16_ROWS) {
            s.a = Scratch.ensure(s.a, (long) m * k);
            TypedDots.pairOrder(a, aType, aOff, lda, m, k, s.a);
            TypedDots.skinnyBf16(j0, j1, m, k, alpha, s.a, b, bOff, ldb, beta, c, cOff, ldc, buf.tile);
            return;
        }
        MemorySegment aw = a;
        long awOff = aOff;
        int awLd = lda;
        if (aType != DType.F32) {
            s.a = Scratch.ensure(s.a, (long) m * k);
            for (int i = 0; i < m; i++) widen(a, aType, aOff + (long) i * lda, s.a, (long) i * k, k);
            aw = s.a;
            awOff = 0;
            awLd = k;
        }
        if (bType == DType.F32) {
            skinnyNT(j0, j1, m, k, alpha, aw, awOff, awLd, b, bOff, ldb, beta, c, cOff, ldc, buf.tile);
            return;
        }
        TypedDots.skinny(j0, j1, m, k, alpha, aw, awOff, awLd, b, bType, bOff, ldb, beta, c, cOff, ldc, buf.tile);
    }

    /** Rows of B a skinny task over a {@link PackSource} widens at once: a multiple of 8 keeps {@link #skinnyNT}'s tiles. */
    private static final int SOURCE_ROWS = 8;

    /**
     * The skinny path over B read through {@code src}: rows [j0, j1) of B [n, k] widened {@link #SOURCE_ROWS} at a
     * time into a per-thread scratch, each group then {@link #skinnyNT} against A. Groups start at j0 and hold a multiple
     * of 8 rows (the last excepted), so every output is computed by the same tile as on an fp32 B.
     */
    private static void skinnySource(int j0, int j1, int m, int k, float alpha, MemorySegment a, long aOff, int lda,
                                     PackSource src, long bOff, int ldb, float beta, MemorySegment c, long cOff, int ldc) {
        Scratch s = SCRATCH.get();
        Buffers buf = BUFFERS.get();
        s.b = Scratch.ensure(s.b, (long) SOURCE_ROWS * k);
        if (s.rows.length < SOURCE_ROWS * k) s.rows = new float[SOURCE_ROWS * k];
        for (int j = j0; j < j1; j += SOURCE_ROWS) {
            int rows = Math.min(SOURCE_ROWS, j1 - j);
            for (int r = 0; r < rows; r++) src.read(bOff + (long) (j + r) * ldb, k, s.rows, r * k);
            // The dot tiles read segments (vector loads from heap segments need byte[] backing), hence the copy.
            MemorySegment.copy(s.rows, 0, s.b, F32_LE, 0, rows * k);
            skinnyNT(0, rows, m, k, alpha, a, aOff, lda, s.b, 0, k, beta, c, cOff + j, ldc, buf.tile);
        }
    }

    /** dst[dstIdx, +n) (fp32 segment) = src[srcIdx, +n) widened exactly from BF16 or F16. */
    private static void widen(MemorySegment src, DType type, long srcIdx, MemorySegment dst, long dstIdx, int n) {
        int i = 0;
        if (type == DType.BF16) {
            for (; i + L <= n; i += L) {
                IntVector w = (IntVector) ShortVector.fromMemorySegment(SS, src, (srcIdx + i) * 2, LE).convertShape(VectorOperators.S2I, SI, 0);
                w.lanewise(VectorOperators.LSHL, 16).reinterpretAsFloats().intoMemorySegment(dst, (dstIdx + i) * 4, LE);
            }
        }
        for (; i < n; i++) dst.setAtIndex(F32_LE, dstIdx + i, ScalarKernels.load(src, type, srcIdx + i));
    }

    /** dst[dstOff, +n) = src[srcIdx, +n) as floats, read through the operand's dtype (the copy of the fp32 path otherwise). */
    private static void widen(MemorySegment src, DType type, long srcIdx, float[] dst, int dstOff, int n) {
        if (type == DType.F32) {
            MemorySegment.copy(src, F32_LE, srcIdx * 4, dst, dstOff, n);
            return;
        }
        int i = 0;
        if (type == DType.BF16) {
            for (; i + L <= n; i += L) {
                IntVector w = (IntVector) ShortVector.fromMemorySegment(SS, src, (srcIdx + i) * 2, LE).convertShape(VectorOperators.S2I, SI, 0);
                w.lanewise(VectorOperators.LSHL, 16).reinterpretAsFloats().intoArray(dst, dstOff + i);
            }
            for (; i < n; i++) dst[dstOff + i] = ScalarKernels.bf16ToFloat(src.getAtIndex(I16_LE, srcIdx + i));
        } else {
            for (; i < n; i++) dst[dstOff + i] = Float.float16ToFloat(src.getAtIndex(I16_LE, srcIdx + i));
        }
    }

    /**
     * See {@link Kernels#gemm}; C is [m, n], op(A) [m, k], op(B) [k, n]. With k == 0 or alpha == 0, A and B are
     * not read and C = beta·C, as in BLAS and in {@link ScalarKernels}.
     */
    static void gemm(boolean transA, boolean transB, int m, int n, int k, float alpha,
                     MemorySegment a, long aOff, int lda,
                     MemorySegment b, long bOff, int ldb,
                     float beta, MemorySegment c, long cOff, int ldc) {
        dispatch(transA, transB, m, n, k, alpha, a, DType.F32, aOff, lda, b, DType.F32, null, bOff, ldb, beta, c, cOff, ldc);
    }

    /**
     * C[i0:i1, j0:j1] on the calling thread: the Goto loop nest. Per (NC column block, KC depth block) op(B) is
     * packed once; per MC row block op(A) is packed; then every NR-wide B micro-panel (jr, outer: it stays in L2,
     * mostly L1, while all the A micro-panels of the block pass over it) meets every MR-tall A micro-panel (ir).
     */
    private static void blocked(boolean transA, boolean transB, int i0, int i1, int j0, int j1, int k, float alpha,
                                MemorySegment a, DType aType, long aOff, int lda,
                                MemorySegment b, DType bType, PackSource bSrc, long bOff, int ldb,
                                float beta, MemorySegment c, long cOff, int ldc) {
        Buffers buf = BUFFERS.get();
        for (int jc = j0; jc < j1; jc += NC) {
            int nc = Math.min(NC, j1 - jc);
            for (int pc = 0; pc < k; pc += KC) {
                int kc = Math.min(KC, k - pc);
                // Only the first depth block applies beta; later blocks accumulate onto the partial result.
                float betaHere = pc == 0 ? beta : 1f;
                packB(transB, b, bType, bSrc, bOff, ldb, pc, kc, jc, nc, buf);
                for (int ic = i0; ic < i1; ic += MC) {
                    int mc = Math.min(MC, i1 - ic);
                    packA(transA, a, aType, aOff, lda, ic, mc, pc, kc, buf);
                    for (int jr = 0; jr < nc; jr += NR) {
                        int nr = Math.min(NR, nc - jr);
                        for (int ir = 0; ir < mc; ir += MR) {
                            int mr = Math.min(MR, mc - ir);
                            if (nr > NR / 2) microKernel(buf.a, ir * kc, buf.b, jr * kc, kc, buf.tile);
                            else microKernelHalf(buf.a, ir * kc, buf.b, jr * kc, kc, buf.tile);
                            writeBack(buf.tile, c, cOff + (long) (ic + ir) * ldc + jc + jr, ldc, alpha, betaHere, mr, nr);
                        }
                    }
                }
            }
        }
    }

    /**
     * The register tile: MR × NR = 6 rows × 4 vectors, 24 accumulators, over kc steps of one packed A panel
     * ([kc][MR]) and one packed B panel ([kc][NR]). Each step loads 4 B vectors and broadcasts 6 A values for 24
     * FMAs: 10 loads per 24 FMAs, where the old 8 × 2 tile needed 10 per 16 and was bound by the load ports, not
     * the FMA units. 24 accumulators + 4 B vectors + 1 broadcast = 29 of the 32 zmm registers.
     * Kept as one straight-line method on purpose: split into helpers taking vectors, C2 stops keeping the
     * accumulators in registers (DESIGN §4). Indices are computed from p inside the loop (not carried as extra
     * induction variables) so C2 can hoist the array bounds checks out of it.
     */
    private static void microKernel(float[] pa, int ai, float[] pb, int bi, int kc, float[] tile) {
        FloatVector c00 = FloatVector.zero(S), c01 = FloatVector.zero(S), c02 = FloatVector.zero(S), c03 = FloatVector.zero(S);
        FloatVector c10 = FloatVector.zero(S), c11 = FloatVector.zero(S), c12 = FloatVector.zero(S), c13 = FloatVector.zero(S);
        FloatVector c20 = FloatVector.zero(S), c21 = FloatVector.zero(S), c22 = FloatVector.zero(S), c23 = FloatVector.zero(S);
        FloatVector c30 = FloatVector.zero(S), c31 = FloatVector.zero(S), c32 = FloatVector.zero(S), c33 = FloatVector.zero(S);
        FloatVector c40 = FloatVector.zero(S), c41 = FloatVector.zero(S), c42 = FloatVector.zero(S), c43 = FloatVector.zero(S);
        FloatVector c50 = FloatVector.zero(S), c51 = FloatVector.zero(S), c52 = FloatVector.zero(S), c53 = FloatVector.zero(S);
        for (int p = 0; p < kc; p++) {
            int ap = ai + p * MR, bp = bi + p * NR;
            FloatVector b0 = FloatVector.fromArray(S, pb, bp);
            FloatVector b1 = FloatVector.fromArray(S, pb, bp + L);
            FloatVector b2 = FloatVector.fromArray(S, pb, bp + 2 * L);
            FloatVector b3 = FloatVector.fromArray(S, pb, bp + 3 * L);
            FloatVector x = FloatVector.broadcast(S, pa[ap]);
            c00 = x.fma(b0, c00); c01 = x.fma(b1, c01); c02 = x.fma(b2, c02); c03 = x.fma(b3, c03);
            x = FloatVector.broadcast(S, pa[ap + 1]);
            c10 = x.fma(b0, c10); c11 = x.fma(b1, c11); c12 = x.fma(b2, c12); c13 = x.fma(b3, c13);
            x = FloatVector.broadcast(S, pa[ap + 2]);
            c20 = x.fma(b0, c20); c21 = x.fma(b1, c21); c22 = x.fma(b2, c22); c23 = x.fma(b3, c23);
            x = FloatVector.broadcast(S, pa[ap + 3]);
            c30 = x.fma(b0, c30); c31 = x.fma(b1, c31); c32 = x.fma(b2, c32); c33 = x.fma(b3, c33);
            x = FloatVector.broadcast(S, pa[ap + 4]);
            c40 = x.fma(b0, c40); c41 = x.fma(b1, c41); c42 = x.fma(b2, c42); c43 = x.fma(b3, c43);
            x = FloatVector.broadcast(S, pa[ap + 5]);
            c50 = x.fma(b0, c50); c51 = x.fma(b1, c51); c52 = x.fma(b2, c52); c53 = x.fma(b3, c53);
        }
        c00.intoArray(tile, 0); c01.intoArray(tile, L); c02.intoArray(tile, 2 * L); c03.intoArray(tile, 3 * L);
        c10.intoArray(tile, NR); c11.intoArray(tile, NR + L); c12.intoArray(tile, NR + 2 * L); c13.intoArray(tile, NR + 3 * L);
        c20.intoArray(tile, 2 * NR); c21.intoArray(tile, 2 * NR + L); c22.intoArray(tile, 2 * NR + 2 * L); c23.intoArray(tile, 2 * NR + 3 * L);
        c30.intoArray(tile, 3 * NR); c31.intoArray(tile, 3 * NR + L); c32.intoArray(tile, 3 * NR + 2 * L); c33.intoArray(tile, 3 * NR + 3 * L);
        c40.intoArray(tile, 4 * NR); c41.intoArray(tile, 4 * NR + L); c42.intoArray(tile, 4 * NR + 2 * L); c43.intoArray(tile, 4 * NR + 3 * L);
        c50.intoArray(tile, 5 * NR); c51.intoArray(tile, 5 * NR + L); c52.intoArray(tile, 5 * NR + 2 * L); c53.intoArray(tile, 5 * NR + 3 * L);
    }

    /**
     * {@link #microKernel} for a last B panel at most half full (e.g. n = 288 = 4.5 panels): only its left two
     * vectors are multiplied, so the zero padding costs no FMAs. Same summation order per element.
     */
    private static void microKernelHalf(float[] pa, int ai, float[] pb, int bi, int kc, float[] tile) {
        FloatVector c00 = FloatVector.zero(S), c01 = FloatVector.zero(S);
        FloatVector c10 = FloatVector.zero(S), c11 = FloatVector.zero(S);
        FloatVector c20 = FloatVector.zero(S), c21 = FloatVector.zero(S);
        FloatVector c30 = FloatVector.zero(S), c31 = FloatVector.zero(S);
        FloatVector c40 = FloatVector.zero(S), c41 = FloatVector.zero(S);
        FloatVector c50 = FloatVector.zero(S), c51 = FloatVector.zero(S);
        for (int p = 0; p < kc; p++) {
            int ap = ai + p * MR, bp = bi + p * NR;
            FloatVector b0 = FloatVector.fromArray(S, pb, bp);
            FloatVector b1 = FloatVector.fromArray(S, pb, bp + L);
            FloatVector x = FloatVector.broadcast(S, pa[ap]);
            c00 = x.fma(b0, c00); c01 = x.fma(b1, c01);
            x = FloatVector.broadcast(S, pa[ap + 1]);
            c10 = x.fma(b0, c10); c11 = x.fma(b1, c11);
            x = FloatVector.broadcast(S, pa[ap + 2]);
            c20 = x.fma(b0, c20); c21 = x.fma(b1, c21);
            x = FloatVector.broadcast(S, pa[ap + 3]);
            c30 = x.fma(b0, c30); c31 = x.fma(b1, c31);
            x = FloatVector.broadcast(S, pa[ap + 4]);
            c40 = x.fma(b0, c40); c41 = x.fma(b1, c41);
            x = FloatVector.broadcast(S, pa[ap + 5]);
            c50 = x.fma(b0, c50); c51 = x.fma(b1, c51);
        }
        c00.intoArray(tile, 0); c01.intoArray(tile, L);
        c10.intoArray(tile, NR); c11.intoArray(tile, NR + L);
        c20.intoArray(tile, 2 * NR); c21.intoArray(tile, 2 * NR + L);
        c30.intoArray(tile, 3 * NR); c31.intoArray(tile, 3 * NR + L);
        c40.intoArray(tile, 4 * NR); c41.intoArray(tile, 4 * NR + L);
        c50.intoArray(tile, 5 * NR); c51.intoArray(tile, 5 * NR + L);
    }

    /** C[r, col] = alpha·tile[r, col] + beta·C[r, col] for the mr×nr valid part of the tile; beta == 0 never reads C. */
    private static void writeBack(float[] tile, MemorySegment c, long cIdx, int ldc, float alpha, float beta, int mr, int nr) {
        for (int r = 0; r < mr; r++) {
            long row = cIdx + (long) r * ldc;
            int col = 0;
            for (; col + L <= nr; col += L) {
                FloatVector v = FloatVector.fromArray(S, tile, r * NR + col).mul(alpha);
                long byteOff = (row + col) * 4;
                if (beta != 0f) v = FloatVector.fromMemorySegment(S, c, byteOff, LE).mul(beta).add(v);
                v.intoMemorySegment(c, byteOff, LE);
            }
            for (; col < nr; col++) {
                float v = alpha * tile[r * NR + col];
                if (beta != 0f) v += beta * c.getAtIndex(F32_LE, row + col);
                c.setAtIndex(F32_LE, row + col, v);
            }
        }
    }

    /**
     * Packs op(B)[pc:pc+kc, jc:jc+nc] as NR-wide micro-panels, each [kc][NR], zero-padding the last panel so
     * the micro-kernel needs no edge cases.
     */
    private static void packB(boolean transB, MemorySegment b, DType bType, PackSource bSrc, long bOff, int ldb,
                              int pc, int kc, int jc, int nc, Buffers buf) {
        float[] pb = buf.b;
        float[] rows = buf.rows;
        for (int jr = 0; jr < nc; jr += NR) {
            int nr = Math.min(NR, nc - jr);
            int base = jr * kc;
            // The missing columns of a narrow last panel are zeroed with Arrays.fill, not a loop: a loop the JIT had
            // never seen run compiles to a trap that deoptimised this method the first time a narrow panel appeared
            // (measured: a short benchmark at n = 288 ran at half speed).
            if (!transB) {
                // B stored [k, n]: depth step p holds the panel's nr columns contiguously.
                for (int p = 0; p < kc; p++) {
                    long src = bOff + (long) (pc + p) * ldb + jc + jr;
                    int dst = base + p * NR;
                    if (bSrc != null) bSrc.read(src, nr, pb, dst);
                    else widen(b, bType, src, pb, dst, nr);
                    Arrays.fill(pb, dst + nr, dst + NR, 0f);
                }
            } else {
                // B stored [n, k]: each column of op(B) is a contiguous row. Copy the panel's rows into a
                // [NR][kc] buffer, then write the packed panel in order, so the stores stream sequentially and the
                // strided reads hit L1/L2.
                for (int col = 0; col < nr; col++) {
                    long src = bOff + (long) (jc + jr + col) * ldb + pc;
                    if (bSrc != null) bSrc.read(src, kc, rows, col * kc);
                    else widen(b, bType, src, rows, col * kc, kc);
                }
                Arrays.fill(rows, nr * kc, NR * kc, 0f);
                // The transpose gathers L rows' p-th floats into one vector (vgatherdps) instead of copying floats one
                // by one: each thread packs all of B for only its share of the rows, so packing is a visible share of
                // the time at small m (measured: 96×2048×2048 115 → 130 GFLOPS, 1024³ on 2 threads 337 → 358).
                int[] starts = buf.rowStarts(kc);
                for (int p = 0; p < kc; p++) {
                    int dst = base + p * NR;
                    for (int v = 0; v < NR; v += L) FloatVector.fromArray(S, rows, p + v * kc, starts, 0).intoArray(pb, dst + v);
                }
            }
        }
    }

    /**
     * Packs op(A)[ic:ic+mc, pc:pc+kc] as MR-tall micro-panels, each [kc][MR], zero-padded (with Arrays.fill, for the
     * reason given in {@link #packB}).
     */
    private static void packA(boolean transA, MemorySegment a, DType aType, long aOff, int lda, int ic, int mc, int pc, int kc, Buffers buf) {
        float[] pa = buf.a;
        float[] rows = buf.rows;
        for (int ir = 0; ir < mc; ir += MR) {
            int mr = Math.min(MR, mc - ir);
            int base = ir * kc;
            if (!transA) {
                // A stored [m, k]: each row of op(A) is contiguous. Copy the panel's rows, then write the
                // packed panel in order (the same in-cache transpose as for B).
                for (int r = 0; r < mr; r++) {
                    widen(a, aType, aOff + (long) (ic + ir + r) * lda + pc, rows, r * kc, kc);
                }
                Arrays.fill(rows, mr * kc, MR * kc, 0f);
                for (int p = 0; p < kc; p++) {
                    int dst = base + p * MR;
                    for (int r = 0; r < MR; r++) pa[dst + r] = rows[r * kc + p];
                }
            } else {
                // A stored [k, m]: each depth step holds mr contiguous rows of op(A).
                for (int p = 0; p < kc; p++) {
                    int dst = base + p * MR;
                    widen(a, aType, aOff + (long) (pc + p) * lda + ic + ir, pa, dst, mr);
                    Arrays.fill(pa, dst + mr, dst + MR, 0f);
                }
            }
        }
    }

    /**
     * C[0:m, j0:j1] for few rows of A [m, k] and B stored [n, k], without packing: every output is a dot product
     * of two contiguous rows. Tiles of 4 rows of A × 4 rows of B keep 16 accumulators busy on 8 loads; each group
     * of 4 B rows (the weights) is read from memory once while all rows of A pass over it from cache.
     */
    private static void skinnyNT(int j0, int j1, int m, int k, float alpha,
                                 MemorySegment a, long aOff, int lda,
                                 MemorySegment b, long bOff, int ldb,
                                 float beta, MemorySegment c, long cOff, int ldc, float[] out) {
        int j = j0;
        if (m < 4) {
            for (; j + 8 <= j1; j += 8) {
                for (int i = 0; i < m; i++) {
                    dotTile1x8(a, aOff + (long) i * lda, b, bOff + (long) j * ldb, ldb, k, out);
                    storeDots(out, 1, 8, c, cOff + (long) i * ldc + j, ldc, alpha, beta);
                }
            }
        }
        for (; j + 4 <= j1; j += 4) {
            int i = 0;
            for (; i + 4 <= m; i += 4) {
                dotTile4x4(a, aOff + (long) i * lda, lda, b, bOff + (long) j * ldb, ldb, k, out);
                storeDots(out, 4, 4, c, cOff + (long) i * ldc + j, ldc, alpha, beta);
            }
            for (; i < m; i++) {
                dotTile1x4(a, aOff + (long) i * lda, b, bOff + (long) j * ldb, ldb, k, out);
                storeDots(out, 1, 4, c, cOff + (long) i * ldc + j, ldc, alpha, beta);
            }
        }
        for (; j < j1; j++) {
            for (int i = 0; i < m; i++) {
                out[0] = dot(a, aOff + (long) i * lda, b, bOff + (long) j * ldb, k);
                storeDots(out, 1, 1, c, cOff + (long) i * ldc + j, ldc, alpha, beta);
            }
        }
    }

    /** out[r·4 + q] = dot(A row r, B row q) for 4 rows of A (stride lda) and 4 rows of B (stride ldb), k long. */
    private static void dotTile4x4(MemorySegment a, long aIdx, int lda, MemorySegment b, long bIdx, int ldb, int k, float[] out) {
        FloatVector s00 = FloatVector.zero(S), s01 = FloatVector.zero(S), s02 = FloatVector.zero(S), s03 = FloatVector.zero(S);
        FloatVector s10 = FloatVector.zero(S), s11 = FloatVector.zero(S), s12 = FloatVector.zero(S), s13 = FloatVector.zero(S);
        FloatVector s20 = FloatVector.zero(S), s21 = FloatVector.zero(S), s22 = FloatVector.zero(S), s23 = FloatVector.zero(S);
        FloatVector s30 = FloatVector.zero(S), s31 = FloatVector.zero(S), s32 = FloatVector.zero(S), s33 = FloatVector.zero(S);
        long a0 = aIdx * 4, a1 = a0 + 4L * lda, a2 = a1 + 4L * lda, a3 = a2 + 4L * lda;
        long b0 = bIdx * 4, b1 = b0 + 4L * ldb, b2 = b1 + 4L * ldb, b3 = b2 + 4L * ldb;
        int p = 0;
        for (; p + L <= k; p += L) {
            long o = 4L * p;
            FloatVector y0 = FloatVector.fromMemorySegment(S, b, b0 + o, LE);
            FloatVector y1 = FloatVector.fromMemorySegment(S, b, b1 + o, LE);
            FloatVector y2 = FloatVector.fromMemorySegment(S, b, b2 + o, LE);
            FloatVector y3 = FloatVector.fromMemorySegment(S, b, b3 + o, LE);
            FloatVector x = FloatVector.fromMemorySegment(S, a, a0 + o, LE);
            s00 = x.fma(y0, s00); s01 = x.fma(y1, s01); s02 = x.fma(y2, s02); s03 = x.fma(y3, s03);
            x = FloatVector.fromMemorySegment(S, a, a1 + o, LE);
            s10 = x.fma(y0, s10); s11 = x.fma(y1, s11); s12 = x.fma(y2, s12); s13 = x.fma(y3, s13);
            x = FloatVector.fromMemorySegment(S, a, a2 + o, LE);
            s20 = x.fma(y0, s20); s21 = x.fma(y1, s21); s22 = x.fma(y2, s22); s23 = x.fma(y3, s23);
            x = FloatVector.fromMemorySegment(S, a, a3 + o, LE);
            s30 = x.fma(y0, s30); s31 = x.fma(y1, s31); s32 = x.fma(y2, s32); s33 = x.fma(y3, s33);
        }
        out[0] = VectorMath.sum(s00); out[1] = VectorMath.sum(s01);
        out[2] = VectorMath.sum(s02); out[3] = VectorMath.sum(s03);
        out[4] = VectorMath.sum(s10); out[5] = VectorMath.sum(s11);
        out[6] = VectorMath.sum(s12); out[7] = VectorMath.sum(s13);
        out[8] = VectorMath.sum(s20); out[9] = VectorMath.sum(s21);
        out[10] = VectorMath.sum(s22); out[11] = VectorMath.sum(s23);
        out[12] = VectorMath.sum(s30); out[13] = VectorMath.sum(s31);
        out[14] = VectorMath.sum(s32); out[15] = VectorMath.sum(s33);
        for (; p < k; p++) {
            for (int r = 0; r < 4; r++) {
                float x = a.getAtIndex(F32_LE, aIdx + (long) r * lda + p);
                for (int q = 0; q < 4; q++) out[r * 4 + q] += x * b.getAtIndex(F32_LE, bIdx + (long) q * ldb + p);
            }
        }
    }

    /** out[q] = dot(A row, B row q) for 4 rows of B: decode's matrix-vector product, four weight rows in flight. */
    private static void dotTile1x4(MemorySegment a, long aIdx, MemorySegment b, long bIdx, int ldb, int k, float[] out) {
        FloatVector s0 = FloatVector.zero(S), s1 = FloatVector.zero(S), s2 = FloatVector.zero(S), s3 = FloatVector.zero(S);
        FloatVector t0 = FloatVector.zero(S), t1 = FloatVector.zero(S), t2 = FloatVector.zero(S), t3 = FloatVector.zero(S);
        long a0 = aIdx * 4;
        long b0 = bIdx * 4, b1 = b0 + 4L * ldb, b2 = b1 + 4L * ldb, b3 = b2 + 4L * ldb;
        int p = 0;
        // Two accumulators per output so FMA latency does not serialise the loop.
        for (; p + 2 * L <= k; p += 2 * L) {
            long o = 4L * p, o2 = o + 4L * L;
            FloatVector x = FloatVector.fromMemorySegment(S, a, a0 + o, LE);
            FloatVector x2 = FloatVector.fromMemorySegment(S, a, a0 + o2, LE);
            s0 = x.fma(FloatVector.fromMemorySegment(S, b, b0 + o, LE), s0);
            s1 = x.fma(FloatVector.fromMemorySegment(S, b, b1 + o, LE), s1);
            s2 = x.fma(FloatVector.fromMemorySegment(S, b, b2 + o, LE), s2);
            s3 = x.fma(FloatVector.fromMemorySegment(S, b, b3 + o, LE), s3);
            t0 = x2.fma(FloatVector.fromMemorySegment(S, b, b0 + o2, LE), t0);
            t1 = x2.fma(FloatVector.fromMemorySegment(S, b, b1 + o2, LE), t1);
            t2 = x2.fma(FloatVector.fromMemorySegment(S, b, b2 + o2, LE), t2);
            t3 = x2.fma(FloatVector.fromMemorySegment(S, b, b3 + o2, LE), t3);
        }
        for (; p + L <= k; p += L) {
            long o = 4L * p;
            FloatVector x = FloatVector.fromMemorySegment(S, a, a0 + o, LE);
            s0 = x.fma(FloatVector.fromMemorySegment(S, b, b0 + o, LE), s0);
            s1 = x.fma(FloatVector.fromMemorySegment(S, b, b1 + o, LE), s1);
            s2 = x.fma(FloatVector.fromMemorySegment(S, b, b2 + o, LE), s2);
            s3 = x.fma(FloatVector.fromMemorySegment(S, b, b3 + o, LE), s3);
        }
        out[0] = VectorMath.sum(s0.add(t0));
        out[1] = VectorMath.sum(s1.add(t1));
        out[2] = VectorMath.sum(s2.add(t2));
        out[3] = VectorMath.sum(s3.add(t3));
        for (; p < k; p++) {
            float x = a.getAtIndex(F32_LE, aIdx + p);
            for (int q = 0; q < 4; q++) out[q] += x * b.getAtIndex(F32_LE, bIdx + (long) q * ldb + p);
        }
    }

    /** out[q] = dot(A row, B row q) for 8 rows of B: eight weight rows streaming at once keep more reads in flight. */
    private static void dotTile1x8(MemorySegment a, long aIdx, MemorySegment b, long bIdx, int ldb, int k, float[] out) {
        FloatVector s0 = FloatVector.zero(S), s1 = FloatVector.zero(S), s2 = FloatVector.zero(S), s3 = FloatVector.zero(S);
        FloatVector s4 = FloatVector.zero(S), s5 = FloatVector.zero(S), s6 = FloatVector.zero(S), s7 = FloatVector.zero(S);
        long a0 = aIdx * 4, ld = 4L * ldb;
        long b0 = bIdx * 4, b1 = b0 + ld, b2 = b1 + ld, b3 = b2 + ld, b4 = b3 + ld, b5 = b4 + ld, b6 = b5 + ld, b7 = b6 + ld;
        int p = 0;
        for (; p + L <= k; p += L) {
            long o = 4L * p;
            FloatVector x = FloatVector.fromMemorySegment(S, a, a0 + o, LE);
            s0 = x.fma(FloatVector.fromMemorySegment(S, b, b0 + o, LE), s0);
            s1 = x.fma(FloatVector.fromMemorySegment(S, b, b1 + o, LE), s1);
            s2 = x.fma(FloatVector.fromMemorySegment(S, b, b2 + o, LE), s2);
            s3 = x.fma(FloatVector.fromMemorySegment(S, b, b3 + o, LE), s3);
            s4 = x.fma(FloatVector.fromMemorySegment(S, b, b4 + o, LE), s4);
            s5 = x.fma(FloatVector.fromMemorySegment(S, b, b5 + o, LE), s5);
            s6 = x.fma(FloatVector.fromMemorySegment(S, b, b6 + o, LE), s6);
            s7 = x.fma(FloatVector.fromMemorySegment(S, b, b7 + o, LE), s7);
        }
        out[0] = VectorMath.sum(s0); out[1] = VectorMath.sum(s1);
        out[2] = VectorMath.sum(s2); out[3] = VectorMath.sum(s3);
        out[4] = VectorMath.sum(s4); out[5] = VectorMath.sum(s5);
        out[6] = VectorMath.sum(s6); out[7] = VectorMath.sum(s7);
        for (; p < k; p++) {
            float x = a.getAtIndex(F32_LE, aIdx + p);
            for (int q = 0; q < 8; q++) out[q] += x * b.getAtIndex(F32_LE, bIdx + (long) q * ldb + p);
        }
    }

    /** C[r, q] = alpha·out[r·cols + q] + beta·C[r, q] for a rows×cols block; beta == 0 never reads C. */
    static void storeDots(float[] out, int rows, int cols, MemorySegment c, long cIdx, int ldc, float alpha, float beta) {
        for (int r = 0; r < rows; r++) {
            for (int q = 0; q < cols; q++) {
                long ci = cIdx + (long) r * ldc + q;
                float old = beta == 0f ? 0f : beta * c.getAtIndex(F32_LE, ci);
                c.setAtIndex(F32_LE, ci, alpha * out[r * cols + q] + old);
            }
        }
    }

    /** Dot product of n floats with four independent accumulators to hide FMA latency. */
    static float dot(MemorySegment x, long xOff, MemorySegment y, long yOff, int n) {
        FloatVector s0 = FloatVector.zero(S), s1 = FloatVector.zero(S), s2 = FloatVector.zero(S), s3 = FloatVector.zero(S);
        long xb = xOff * 4, yb = yOff * 4;
        int i = 0;
        for (; i + 4 * L <= n; i += 4 * L) {
            long o = (long) i * 4;
            s0 = FloatVector.fromMemorySegment(S, x, xb + o, LE).fma(FloatVector.fromMemorySegment(S, y, yb + o, LE), s0);
            s1 = FloatVector.fromMemorySegment(S, x, xb + o + 4L * L, LE).fma(FloatVector.fromMemorySegment(S, y, yb + o + 4L * L, LE), s1);
            s2 = FloatVector.fromMemorySegment(S, x, xb + o + 8L * L, LE).fma(FloatVector.fromMemorySegment(S, y, yb + o + 8L * L, LE), s2);
            s3 = FloatVector.fromMemorySegment(S, x, xb + o + 12L * L, LE).fma(FloatVector.fromMemorySegment(S, y, yb + o + 12L * L, LE), s3);
        }
        for (; i + L <= n; i += L) {
            long o = (long) i * 4;
            s0 = FloatVector.fromMemorySegment(S, x, xb + o, LE).fma(FloatVector.fromMemorySegment(S, y, yb + o, LE), s0);
        }
        float sum = VectorMath.sum(s0.add(s1).add(s2.add(s3)));
        for (; i < n; i++) sum += x.getAtIndex(F32_LE, xOff + i) * y.getAtIndex(F32_LE, yOff + i);
        return sum;
    }

    /** C = beta·C for the degenerate cases (k == 0 or alpha == 0); beta == 0 writes zeros without reading. */
    private static void scaleC(int m, int n, float beta, MemorySegment c, long cOff, int ldc) {
        for (int i = 0; i < m; i++) {
            for (int j = 0; j < n; j++) {
                long ci = cOff + (long) i * ldc + j;
                c.setAtIndex(F32_LE, ci, beta == 0f ? 0f : beta * c.getAtIndex(F32_LE, ci));
            }
        }
    }
}
