// Decode's typed matrix-vector products: fp32 rows of A against BF16/F16 weight rows widened in registers.
package dev.llamafit.kernels;

import static dev.llamafit.tensor.Tensor.F32_LE;
import static jdk.incubator.vector.VectorOperators.LSHL;
import static jdk.incubator.vector.VectorOperators.S2I;

import java.lang.foreign.MemorySegment;
import java.nio.ByteOrder;

import dev.llamafit.tensor.DType;
import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.IntVector;
import jdk.incubator.vector.ShortVector;
import jdk.incubator.vector.VectorMask;
import jdk.incubator.vector.VectorOperators;
import jdk.incubator.vector.VectorShape;
import jdk.incubator.vector.VectorSpecies;

/**
 * VectorGemm's skinny path (few rows of fp32 A times B stored [n, k]) for 16-bit B, reading the weights straight from
 * their segment and widening them in registers, so a decode step reads half the bytes of fp32 and writes nothing back.
 *
 * <p>BF16 with fewer than {@link #BF16_ROWS} rows of A (decode; {@link #skinnyBf16}): each pair of weights is loaded as one int and widened by in-lane ALU ops (a shift for
 * the even element, a mask for the odd one) against A rearranged once per task into even/odd halves
 * ({@link #pairOrder}). A cross-lane short→int convert per vector made the first version compute-bound (bf16 decode
 * read its weights at 35% of the bandwidth probe, fp32 at 54%). Its sums are in its own fixed order, within fp32
 * summation error of the fp32 path on widened copies, not bit for bit.
 *
 * <p>F16, and BF16 from {@link #BF16_ROWS} rows ({@link #skinny}): L halves loaded as shorts and sign-extended, then
 * shifted (bf16) or rebiased ({@link #f16}); every tile mirrors
 * the fp32 tile of the same name in VectorGemm lane for lane and sum for sum, so the result equals the fp32 path on
 * widened copies bit for bit.
 */
final class TypedDots {
    private static final VectorSpecies<Float> S = FloatVector.SPECIES_PREFERRED;
    private static final int L = S.length();
    private static final VectorSpecies<Integer> SI = VectorSpecies.of(int.class, VectorShape.forBitSize(L * 32));
    private static final VectorSpecies<Short> SS = VectorSpecies.of(short.class, VectorShape.forBitSize(L * 16));
    private static final ByteOrder LE = ByteOrder.LITTLE_ENDIAN;
    private static final int HIGH = 0xFFFF0000;
    /**
     * bf16 weights take {@link #skinnyBf16} below this many rows of A (decode: one row per sequence); from 4 rows the
     * fp32-mirrored tiles, whose 4×4 tile already widens each weight once for four rows, keep the widened copy's bits
     * (so LoRA over a bf16 base trains exactly as over its widened copy: SixteenBitBaseLoraTest).
     */
    static final int BF16_ROWS = 4;

    private TypedDots() {}

    /**
     * C[0:m, j0:j1] = alpha·A·Bᵀ + beta·C for fp32 A [m, k] and B (F16, or BF16 with at least {@link #BF16_ROWS}
     * rows of A) stored [n, k]; offsets and strides in each operand's elements. The tiling of VectorGemm.skinnyNT
     * (1×8 tiles while m &lt; 4, then 4×4 and 1×4, then single dot products) and its tiles' sums, so the result is
     * the fp32 path's on widened copies bit for bit.
     */
    static void skinny(int j0, int j1, int m, int k, float alpha,
                       MemorySegment a, long aOff, int lda,
                       MemorySegment b, DType bType, long bOff, int ldb,
                       float beta, MemorySegment c, long cOff, int ldc, float[] out) {
        boolean bf16 = switch (bType) {
            case BF16 -> true;
            case F16 -> false;
            default -> throw new IllegalArgumentException("typed dot products take BF16 or F16 weights, not " + bType);
        };
        if (bf16 && m < BF16_ROWS) throw new IllegalArgumentException("bf16 weights under " + BF16_ROWS + " rows take skinnyBf16");
        int j = j0;
        if (m < 4) {
            for (; j + 8 <= j1; j += 8) {
                for (int i = 0; i < m; i++) {
                    tile1x8F16(a, aOff + (long) i * lda, b, bOff + (long) j * ldb, ldb, k, out);
                    VectorGemm.storeDots(out, 1, 8, c, cOff + (long) i * ldc + j, ldc, alpha, beta);
                }
            }
        }
        for (; j + 4 <= j1; j += 4) {
            int i = 0;
            for (; i + 4 <= m; i += 4) {
                tile4x4(a, aOff + (long) i * lda, lda, b, bf16, bOff + (long) j * ldb, ldb, k, out);
                VectorGemm.storeDots(out, 4, 4, c, cOff + (long) i * ldc + j, ldc, alpha, beta);
            }
            for (; i < m; i++) {
                tile1x4(a, aOff + (long) i * lda, b, bf16, bOff + (long) j * ldb, ldb, k, out);
                VectorGemm.storeDots(out, 1, 4, c, cOff + (long) i * ldc + j, ldc, alpha, beta);
            }
        }
        for (; j < j1; j++) {
            for (int i = 0; i < m; i++) {
                out[0] = dot(a, aOff + (long) i * lda, b, bf16, bOff + (long) j * ldb, k);
                VectorGemm.storeDots(out, 1, 1, c, cOff + (long) i * ldc + j, ldc, alpha, beta);
            }
        }
    }

    /** L 16-bit elements at byte offset {@code at}, widened exactly to fp32. */
    static FloatVector load(MemorySegment b, long at, boolean bf16) {
        return bf16 ? bf16(b, at) : f16(b, at);
    }

    /** L bfloat16 elements at byte offset {@code at} as floats: each is the upper half of its fp32. */
    static FloatVector bf16(MemorySegment b, long at) {
        return shorts(b, at).lanewise(VectorOperators.LSHL, 16).reinterpretAsFloats();
    }

    /** L IEEE half elements at byte offset {@code at} as floats (see {@link #f16(IntVector)}). */
    static FloatVector f16(MemorySegment b, long at) {
        return f16(shorts(b, at));
    }

    /** L 16-bit elements at byte offset {@code at}, sign-extended into ints. */
    private static IntVector shorts(MemorySegment b, long at) {
        return (IntVector) ShortVector.fromMemorySegment(SS, b, at, LE).convertShape(VectorOperators.S2I, SI, 0);
    }

    /**
     * IEEE half to fp32, exactly as {@link Float#float16ToFloat}, from halves sign-extended into ints. Exponent and
     * mantissa shifted into fp32's places read as a float 2^-112 times the value (subnormal halves land on fp32
     * subnormals with the same digits), so one multiply by 2^112 rebiases normals and subnormals alike, exactly;
     * Inf and NaN (exponent 31) take fp32's all-ones exponent with their mantissa instead (NaN made quiet); the sign goes
     * back last.
     */
    static FloatVector f16(IntVector x) {
        IntVector magnitude = x.and(0x7fff);
        IntVector shifted = magnitude.lanewise(VectorOperators.LSHL, 13);
        IntVector finite = shifted.reinterpretAsFloats().mul(0x1p112f).reinterpretAsInts();
        VectorMask<Integer> special = magnitude.compare(VectorOperators.GE, 0x7c00);
        IntVector bits = finite.blend(shifted.or(0x7f800000), special);
        // A NaN comes back quiet, as from Float.float16ToFloat (vcvtph2ps): the top mantissa bit set.
        bits = bits.blend(bits.or(0x00400000), magnitude.compare(VectorOperators.GT, 0x7c00));
        return bits.or(x.and(0x8000).lanewise(VectorOperators.LSHL, 16)).reinterpretAsFloats();
    }

    private static float at(MemorySegment b, boolean bf16, long i) {
        return ScalarKernels.load(b, bf16 ? DType.BF16 : DType.F16, i);
    }

    /** VectorGemm.dotTile4x4 with B widened in registers. */
    private static void tile4x4(MemorySegment a, long aIdx, int lda, MemorySegment b, boolean bf16, long bIdx, int ldb, int k, float[] out) {
        FloatVector s00 = FloatVector.zero(S), s01 = FloatVector.zero(S), s02 = FloatVector.zero(S), s03 = FloatVector.zero(S);
        FloatVector s10 = FloatVector.zero(S), s11 = FloatVector.zero(S), s12 = FloatVector.zero(S), s13 = FloatVector.zero(S);
        FloatVector s20 = FloatVector.zero(S), s21 = FloatVector.zero(S), s22 = FloatVector.zero(S), s23 = FloatVector.zero(S);
        FloatVector s30 = FloatVector.zero(S), s31 = FloatVector.zero(S), s32 = FloatVector.zero(S), s33 = FloatVector.zero(S);
        long a0 = aIdx * 4, a1 = a0 + 4L * lda, a2 = a1 + 4L * lda, a3 = a2 + 4L * lda;
        long b0 = bIdx * 2, b1 = b0 + 2L * ldb, b2 = b1 + 2L * ldb, b3 = b2 + 2L * ldb;
        int p = 0;
        for (; p + L <= k; p += L) {
            long o = 4L * p, h = 2L * p;
            FloatVector y0 = load(b, b0 + h, bf16);
            FloatVector y1 = load(b, b1 + h, bf16);
            FloatVector y2 = load(b, b2 + h, bf16);
            FloatVector y3 = load(b, b3 + h, bf16);
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
                for (int q = 0; q < 4; q++) out[r * 4 + q] += x * at(b, bf16, bIdx + (long) q * ldb + p);
            }
        }
    }

    /** VectorGemm.dotTile1x4 with B widened in registers. */
    private static void tile1x4(MemorySegment a, long aIdx, MemorySegment b, boolean bf16, long bIdx, int ldb, int k, float[] out) {
        FloatVector s0 = FloatVector.zero(S), s1 = FloatVector.zero(S), s2 = FloatVector.zero(S), s3 = FloatVector.zero(S);
        FloatVector t0 = FloatVector.zero(S), t1 = FloatVector.zero(S), t2 = FloatVector.zero(S), t3 = FloatVector.zero(S);
        long a0 = aIdx * 4;
        long b0 = bIdx * 2, b1 = b0 + 2L * ldb, b2 = b1 + 2L * ldb, b3 = b2 + 2L * ldb;
        int p = 0;
        for (; p + 2 * L <= k; p += 2 * L) {
            long o = 4L * p, o2 = o + 4L * L, h = 2L * p, h2 = h + 2L * L;
            FloatVector x = FloatVector.fromMemorySegment(S, a, a0 + o, LE);
            FloatVector x2 = FloatVector.fromMemorySegment(S, a, a0 + o2, LE);
            s0 = x.fma(load(b, b0 + h, bf16), s0);
            s1 = x.fma(load(b, b1 + h, bf16), s1);
            s2 = x.fma(load(b, b2 + h, bf16), s2);
            s3 = x.fma(load(b, b3 + h, bf16), s3);
            t0 = x2.fma(load(b, b0 + h2, bf16), t0);
            t1 = x2.fma(load(b, b1 + h2, bf16), t1);
            t2 = x2.fma(load(b, b2 + h2, bf16), t2);
            t3 = x2.fma(load(b, b3 + h2, bf16), t3);
        }
        for (; p + L <= k; p += L) {
            long o = 4L * p, h = 2L * p;
            FloatVector x = FloatVector.fromMemorySegment(S, a, a0 + o, LE);
            s0 = x.fma(load(b, b0 + h, bf16), s0);
            s1 = x.fma(load(b, b1 + h, bf16), s1);
            s2 = x.fma(load(b, b2 + h, bf16), s2);
            s3 = x.fma(load(b, b3 + h, bf16), s3);
        }
        out[0] = VectorMath.sum(s0.add(t0));
        out[1] = VectorMath.sum(s1.add(t1));
        out[2] = VectorMath.sum(s2.add(t2));
        out[3] = VectorMath.sum(s3.add(t3));
        for (; p < k; p++) {
            float x = a.getAtIndex(F32_LE, aIdx + p);
            for (int q = 0; q < 4; q++) out[q] += x * at(b, bf16, bIdx + (long) q * ldb + p);
        }
    }

    /**
     * dst[r·k + ...] = row r of fp32 A in the pair order of the bf16 tiles, for r &lt; m: within each whole block of 2·L
     * elements its L even-indexed elements, then its L odd-indexed ones; the last k mod 2·L elements stay in place.
     * Decode's A is one row of activations, so this costs k moves against the n·k weights read.
     */
    static void pairOrder(MemorySegment a, DType aType, long aOff, int lda, int m, int k, MemorySegment dst) {
        int blocks = k - k % (2 * L);
        for (int r = 0; r < m; r++) {
            long src = aOff + (long) r * lda, d = (long) r * k;
            for (int p = 0; p < blocks; p += 2 * L) {
                for (int q = 0; q < L; q++) {
                    dst.setAtIndex(F32_LE, d + p + q, ScalarKernels.load(a, aType, src + p + 2 * q));
                    dst.setAtIndex(F32_LE, d + p + L + q, ScalarKernels.load(a, aType, src + p + 2 * q + 1));
                }
            }
            for (int p = blocks; p < k; p++) dst.setAtIndex(F32_LE, d + p, ScalarKernels.load(a, aType, src + p));
        }
    }

    /**
     * The bf16 decode product over A in {@link #pairOrder} ([m, k], stride k, m &lt; {@link #BF16_ROWS}):
     * C[0:m, j0:j1] = alpha·A·Bᵀ + beta·C.
     * Each pair of bf16 weights is loaded as one int and widened in-lane (even element: {@code bits << 16}; odd:
     * {@code bits & 0xFFFF0000}), no cross-lane convert. Every output, whatever tile computes it, is this scalar order
     * (so it does not depend on n, the split, the tiling or the JIT): L lane sums start at 0; for each whole block of
     * 2·L elements at p, lane q does acc = fma(x[p+2q+1], w[p+2q+1], fma(x[p+2q], w[p+2q], acc)); the lanes are then
     * added left to right from 0, then the tail's products (x·w rounded, then added) in index order; C gets
     * alpha·sum + beta·C as in {@link VectorGemm#storeDots}. Only the order differs from the fp32 tiles on widened
     * copies (within fp32 summation error of them).
     */
    static void skinnyBf16(int j0, int j1, int m, int k, float alpha, MemorySegment a,
                           MemorySegment b, long bOff, int ldb,
                           float beta, MemorySegment c, long cOff, int ldc, float[] out) {
        if (m >= BF16_ROWS) throw new IllegalArgumentException("skinnyBf16 takes fewer than " + BF16_ROWS + " rows, not " + m);
        int j = j0;
        for (; j + 4 <= j1; j += 4) {
            for (int i = 0; i < m; i++) {
                tile1x4Bf16(a, (long) i * k, b, bOff + (long) j * ldb, ldb, k, out);
                VectorGemm.storeDots(out, 1, 4, c, cOff + (long) i * ldc + j, ldc, alpha, beta);
            }
        }
        for (; j < j1; j++) {
            for (int i = 0; i < m; i++) {
                out[0] = dotBf16(a, (long) i * k, b, bOff + (long) j * ldb, k);
                VectorGemm.storeDots(out, 1, 1, c, cOff + (long) i * ldc + j, ldc, alpha, beta);
            }
        }
    }

    /** The even bf16 of each int pair (the low half, little-endian) as floats. */
    private static FloatVector even(IntVector w) {
        return w.lanewise(LSHL, 16).reinterpretAsFloats();
    }

    /** The odd bf16 of each int pair (the high half) as floats. */
    private static FloatVector odd(IntVector w) {
        return w.and(HIGH).reinterpretAsFloats();
    }

    /** {@link #skinnyBf16}'s tail: out[r·cols + q] += x·w over [from, k) for rows·cols outputs, in index order. */
    private static void tail(MemorySegment a, long aIdx, int lda, int rows, MemorySegment b, long bIdx, int ldb, int cols,
                             int from, int k, float[] out) {
        for (int p = from; p < k; p++) {
            for (int r = 0; r < rows; r++) {
                float x = a.getAtIndex(F32_LE, aIdx + (long) r * lda + p);
                for (int q = 0; q < cols; q++) out[r * cols + q] += x * at(b, true, bIdx + (long) q * ldb + p);
            }
        }
    }

    /**
     * Decode's GEMV for bf16 weights: one row of A in pair order against four weight rows. Four, not eight as in the
     * fp32 tile: with eight rows (16 FMAs, 16 widenings a step) C2 gave up on the loop's vector intrinsics and it ran
     * 7× slower (9.6 against 68 GB/s in a single-thread micro-benchmark of the LM head).
     */
    private static void tile1x4Bf16(MemorySegment a, long aIdx, MemorySegment b, long bIdx, int ldb, int k, float[] out) {
        FloatVector s0 = FloatVector.zero(S), s1 = FloatVector.zero(S), s2 = FloatVector.zero(S), s3 = FloatVector.zero(S);
        long a0 = aIdx * 4, ld = 2L * ldb;
        long b0 = bIdx * 2, b1 = b0 + ld, b2 = b1 + ld, b3 = b2 + ld;
        int p = 0;
        for (; p + 2 * L <= k; p += 2 * L) {
            long o = 4L * p, h = 2L * p;
            FloatVector xe = FloatVector.fromMemorySegment(S, a, a0 + o, LE);
            FloatVector xo = FloatVector.fromMemorySegment(S, a, a0 + o + 4L * L, LE);
            IntVector w0 = IntVector.fromMemorySegment(SI, b, b0 + h, LE);
            IntVector w1 = IntVector.fromMemorySegment(SI, b, b1 + h, LE);
            IntVector w2 = IntVector.fromMemorySegment(SI, b, b2 + h, LE);
            IntVector w3 = IntVector.fromMemorySegment(SI, b, b3 + h, LE);
            s0 = xo.fma(odd(w0), xe.fma(even(w0), s0));
            s1 = xo.fma(odd(w1), xe.fma(even(w1), s1));
            s2 = xo.fma(odd(w2), xe.fma(even(w2), s2));
            s3 = xo.fma(odd(w3), xe.fma(even(w3), s3));
        }
        out[0] = VectorMath.sum(s0); out[1] = VectorMath.sum(s1);
        out[2] = VectorMath.sum(s2); out[3] = VectorMath.sum(s3);
        tail(a, aIdx, 0, 1, b, bIdx, ldb, 4, p, k, out);
    }

    /** One row of A in pair order against one bf16 weight row (the few columns left over by the tiles). */
    private static float dotBf16(MemorySegment a, long aIdx, MemorySegment b, long bIdx, int k) {
        FloatVector s = FloatVector.zero(S);
        long a0 = aIdx * 4, b0 = bIdx * 2;
        int p = 0;
        for (; p + 2 * L <= k; p += 2 * L) {
            IntVector w = IntVector.fromMemorySegment(SI, b, b0 + 2L * p, LE);
            FloatVector xe = FloatVector.fromMemorySegment(S, a, a0 + 4L * p, LE);
            FloatVector xo = FloatVector.fromMemorySegment(S, a, a0 + 4L * p + 4L * L, LE);
            s = xo.fma(odd(w), xe.fma(even(w), s));
        }
        float[] out = {VectorMath.sum(s)};
        tail(a, aIdx, 0, 1, b, bIdx, 0, 1, p, k, out);
        return out[0];
    }

    /**
     * VectorGemm.dotTile1x8 for IEEE half, the conversion written inline, on purpose: through a tile taking the dtype
     * and calling the shared {@link #load}, C2 stopped inlining in this 8-row loop ("callee is too large", node-count
     * cutoff) and decode ran 4× slower than fp32; the two small tiles above are fine shared.
     */
    private static void tile1x8F16(MemorySegment a, long aIdx, MemorySegment b, long bIdx, int ldb, int k, float[] out) {
        FloatVector s0 = FloatVector.zero(S), s1 = FloatVector.zero(S), s2 = FloatVector.zero(S), s3 = FloatVector.zero(S);
        FloatVector s4 = FloatVector.zero(S), s5 = FloatVector.zero(S), s6 = FloatVector.zero(S), s7 = FloatVector.zero(S);
        long a0 = aIdx * 4, ld = 2L * ldb;
        long b0 = bIdx * 2, b1 = b0 + ld, b2 = b1 + ld, b3 = b2 + ld, b4 = b3 + ld, b5 = b4 + ld, b6 = b5 + ld, b7 = b6 + ld;
        int p = 0;
        for (; p + L <= k; p += L) {
            long o = 4L * p, h = 2L * p;
            FloatVector x = FloatVector.fromMemorySegment(S, a, a0 + o, LE);
            IntVector w0 = (IntVector) ShortVector.fromMemorySegment(SS, b, b0 + h, LE).convertShape(S2I, SI, 0);
            IntVector w1 = (IntVector) ShortVector.fromMemorySegment(SS, b, b1 + h, LE).convertShape(S2I, SI, 0);
            IntVector w2 = (IntVector) ShortVector.fromMemorySegment(SS, b, b2 + h, LE).convertShape(S2I, SI, 0);
            IntVector w3 = (IntVector) ShortVector.fromMemorySegment(SS, b, b3 + h, LE).convertShape(S2I, SI, 0);
            IntVector w4 = (IntVector) ShortVector.fromMemorySegment(SS, b, b4 + h, LE).convertShape(S2I, SI, 0);
            IntVector w5 = (IntVector) ShortVector.fromMemorySegment(SS, b, b5 + h, LE).convertShape(S2I, SI, 0);
            IntVector w6 = (IntVector) ShortVector.fromMemorySegment(SS, b, b6 + h, LE).convertShape(S2I, SI, 0);
            IntVector w7 = (IntVector) ShortVector.fromMemorySegment(SS, b, b7 + h, LE).convertShape(S2I, SI, 0);
            s0 = x.fma(f16(w0), s0);
            s1 = x.fma(f16(w1), s1);
            s2 = x.fma(f16(w2), s2);
            s3 = x.fma(f16(w3), s3);
            s4 = x.fma(f16(w4), s4);
            s5 = x.fma(f16(w5), s5);
            s6 = x.fma(f16(w6), s6);
            s7 = x.fma(f16(w7), s7);
        }
        out[0] = VectorMath.sum(s0); out[1] = VectorMath.sum(s1);
        out[2] = VectorMath.sum(s2); out[3] = VectorMath.sum(s3);
        out[4] = VectorMath.sum(s4); out[5] = VectorMath.sum(s5);
        out[6] = VectorMath.sum(s6); out[7] = VectorMath.sum(s7);
        for (; p < k; p++) {
            float x = a.getAtIndex(F32_LE, aIdx + p);
            for (int q = 0; q < 8; q++) out[q] += x * at(b, false, bIdx + (long) q * ldb + p);
        }
    }

    /** VectorGemm.dot with y widened in registers. */
    private static float dot(MemorySegment x, long xOff, MemorySegment y, boolean bf16, long yOff, int n) {
        FloatVector s0 = FloatVector.zero(S), s1 = FloatVector.zero(S), s2 = FloatVector.zero(S), s3 = FloatVector.zero(S);
        long xb = xOff * 4, yb = yOff * 2;
        int i = 0;
        for (; i + 4 * L <= n; i += 4 * L) {
            long o = (long) i * 4, h = (long) i * 2;
            s0 = FloatVector.fromMemorySegment(S, x, xb + o, LE).fma(load(y, yb + h, bf16), s0);
            s1 = FloatVector.fromMemorySegment(S, x, xb + o + 4L * L, LE).fma(load(y, yb + h + 2L * L, bf16), s1);
            s2 = FloatVector.fromMemorySegment(S, x, xb + o + 8L * L, LE).fma(load(y, yb + h + 4L * L, bf16), s2);
            s3 = FloatVector.fromMemorySegment(S, x, xb + o + 12L * L, LE).fma(load(y, yb + h + 6L * L, bf16), s3);
        }
        for (; i + L <= n; i += L) {
            s0 = FloatVector.fromMemorySegment(S, x, xb + (long) i * 4, LE).fma(load(y, yb + (long) i * 2, bf16), s0);
        }
        float sum = VectorMath.sum(s0.add(s1).add(s2.add(s3)));
        for (; i < n; i++) sum += x.getAtIndex(F32_LE, xOff + i) * at(y, bf16, yOff + i);
        return sum;
    }
}
