// SIMD kernels on jdk.incubator.vector; GEMM lives in VectorGemm, the rest is here.
package dev.llamafit.kernels;

import static dev.llamafit.tensor.Tensor.F32_LE;
import static dev.llamafit.tensor.Tensor.I16_LE;

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
 * {@link Kernels} on the platform's preferred vector width. Each loop runs whole vectors then a scalar tail
 * that repeats {@link ScalarKernels}' formula, so short inputs match the reference exactly. exp uses the
 * Vector API's lanewise EXP (an SVML-class intrinsic, within an ulp or two of Math.exp).
 */
public final class VectorKernels implements Kernels {
    private static final VectorSpecies<Float> S = FloatVector.SPECIES_PREFERRED;
    private static final int L = S.length();
    /** Ints and shorts with as many lanes as S, for the 16-bit float conversions. */
    private static final VectorSpecies<Integer> SI = VectorSpecies.of(int.class, VectorShape.forBitSize(L * 32));
    private static final VectorSpecies<Short> SS = VectorSpecies.of(short.class, VectorShape.forBitSize(L * 16));
    private static final ByteOrder LE = ByteOrder.LITTLE_ENDIAN;

    /** Lanes of the preferred float vector (16 with AVX-512). */
    public static int lanes() { return L; }

    @Override
    public String name() { return "vector(" + S.vectorBitSize() + "-bit, " + L + " lanes)"; }

    @Override
    public void gemm(boolean transA, boolean transB, int m, int n, int k, float alpha,
                     MemorySegment a, long aOff, int lda,
                     MemorySegment b, long bOff, int ldb,
                     float beta, MemorySegment c, long cOff, int ldc) {
        VectorGemm.gemm(transA, transB, m, n, k, alpha, a, aOff, lda, b, bOff, ldb, beta, c, cOff, ldc);
    }

    @Override
    public void rmsnorm(MemorySegment out, long outOff, MemorySegment x, long xOff, MemorySegment weight, long wOff,
                        int rows, int dim, float eps) {
        for (int r = 0; r < rows; r++) {
            long xr = xOff + (long) r * dim, or = outOff + (long) r * dim;
            FloatVector acc = FloatVector.zero(S);
            int i = 0;
            for (; i + L <= dim; i += L) {
                FloatVector v = FloatVector.fromMemorySegment(S, x, (xr + i) * 4, LE);
                acc = v.fma(v, acc);
            }
            float ss = VectorMath.sum(acc);
            for (; i < dim; i++) {
                float v = x.getAtIndex(F32_LE, xr + i);
                ss += v * v;
            }
            float inv = (float) (1.0 / Math.sqrt(ss / dim + eps));
            i = 0;
            for (; i + L <= dim; i += L) {
                FloatVector v = FloatVector.fromMemorySegment(S, x, (xr + i) * 4, LE);
                FloatVector w = FloatVector.fromMemorySegment(S, weight, (wOff + i) * 4, LE);
                v.mul(inv).mul(w).intoMemorySegment(out, (or + i) * 4, LE);
            }
            for (; i < dim; i++) {
                out.setAtIndex(F32_LE, or + i, x.getAtIndex(F32_LE, xr + i) * inv * weight.getAtIndex(F32_LE, wOff + i));
            }
        }
    }

    @Override
    public void softmax(MemorySegment x, long off, int len) {
        long base = off * 4;
        FloatVector maxV = FloatVector.broadcast(S, Float.NEGATIVE_INFINITY);
        int i = 0;
        for (; i + L <= len; i += L) maxV = maxV.max(FloatVector.fromMemorySegment(S, x, base + i * 4L, LE));
        float max = maxV.reduceLanes(VectorOperators.MAX);
        for (; i < len; i++) max = Math.max(max, x.getAtIndex(F32_LE, off + i));
        FloatVector sumV = FloatVector.zero(S);
        i = 0;
        for (; i + L <= len; i += L) {
            FloatVector e = VectorMath.exp(FloatVector.fromMemorySegment(S, x, base + i * 4L, LE).sub(max));
            e.intoMemorySegment(x, base + i * 4L, LE);
            sumV = sumV.add(e);
        }
        float sum = VectorMath.sum(sumV);
        for (; i < len; i++) {
            float e = (float) Math.exp(x.getAtIndex(F32_LE, off + i) - max);
            x.setAtIndex(F32_LE, off + i, e);
            sum += e;
        }
        i = 0;
        for (; i + L <= len; i += L) {
            FloatVector.fromMemorySegment(S, x, base + i * 4L, LE).div(sum).intoMemorySegment(x, base + i * 4L, LE);
        }
        for (; i < len; i++) x.setAtIndex(F32_LE, off + i, x.getAtIndex(F32_LE, off + i) / sum);
    }

    @Override
    public void silu(MemorySegment out, long outOff, MemorySegment x, long xOff, long n) {
        long i = 0;
        for (; i + L <= n; i += L) {
            FloatVector v = FloatVector.fromMemorySegment(S, x, (xOff + i) * 4, LE);
            v.div(VectorMath.exp(v.neg()).add(1f)).intoMemorySegment(out, (outOff + i) * 4, LE);
        }
        for (; i < n; i++) out.setAtIndex(F32_LE, outOff + i, ScalarKernels.silu(x.getAtIndex(F32_LE, xOff + i)));
    }

    @Override
    public void swiglu(MemorySegment out, long outOff, MemorySegment gate, long gateOff, MemorySegment up, long upOff, long n) {
        long i = 0;
        for (; i + L <= n; i += L) {
            FloatVector g = FloatVector.fromMemorySegment(S, gate, (gateOff + i) * 4, LE);
            FloatVector u = FloatVector.fromMemorySegment(S, up, (upOff + i) * 4, LE);
            g.div(VectorMath.exp(g.neg()).add(1f)).mul(u).intoMemorySegment(out, (outOff + i) * 4, LE);
        }
        for (; i < n; i++) {
            float g = gate.getAtIndex(F32_LE, gateOff + i), u = up.getAtIndex(F32_LE, upOff + i);
            out.setAtIndex(F32_LE, outOff + i, ScalarKernels.silu(g) * u);
        }
    }

    @Override
    public void rope(MemorySegment x, long xOff, int ldx, int rows, int heads, int headDim,
                     MemorySegment cos, MemorySegment sin, int[] positions) {
        int half = headDim / 2;
        for (int r = 0; r < rows; r++) {
            long table = (long) positions[r] * half;
            for (int h = 0; h < heads; h++) {
                long base = xOff + (long) r * ldx + (long) h * headDim;
                int i = 0;
                for (; i + L <= half; i += L) {
                    FloatVector x1 = FloatVector.fromMemorySegment(S, x, (base + i) * 4, LE);
                    FloatVector x2 = FloatVector.fromMemorySegment(S, x, (base + i + half) * 4, LE);
                    FloatVector c = FloatVector.fromMemorySegment(S, cos, (table + i) * 4, LE);
                    FloatVector s = FloatVector.fromMemorySegment(S, sin, (table + i) * 4, LE);
                    // Same rounding as the scalar x1·c − x2·s: two products, then one subtraction.
                    x1.mul(c).sub(x2.mul(s)).intoMemorySegment(x, (base + i) * 4, LE);
                    x2.mul(c).add(x1.mul(s)).intoMemorySegment(x, (base + i + half) * 4, LE);
                }
                for (; i < half; i++) {
                    float x1 = x.getAtIndex(F32_LE, base + i), x2 = x.getAtIndex(F32_LE, base + i + half);
                    float c = cos.getAtIndex(F32_LE, table + i), s = sin.getAtIndex(F32_LE, table + i);
                    x.setAtIndex(F32_LE, base + i, x1 * c - x2 * s);
                    x.setAtIndex(F32_LE, base + i + half, x2 * c + x1 * s);
                }
            }
        }
    }

    @Override
    public void add(MemorySegment y, long yOff, MemorySegment x, long xOff, long n) {
        long i = 0;
        for (; i + L <= n; i += L) {
            FloatVector.fromMemorySegment(S, y, (yOff + i) * 4, LE).add(FloatVector.fromMemorySegment(S, x, (xOff + i) * 4, LE))
                    .intoMemorySegment(y, (yOff + i) * 4, LE);
        }
        for (; i < n; i++) y.setAtIndex(F32_LE, yOff + i, y.getAtIndex(F32_LE, yOff + i) + x.getAtIndex(F32_LE, xOff + i));
    }

    @Override
    public void axpy(float alpha, MemorySegment x, long xOff, MemorySegment y, long yOff, long n) {
        long i = 0;
        for (; i + L <= n; i += L) {
            // mul then add (not fma) so the result rounds exactly as the scalar reference does.
            FloatVector.fromMemorySegment(S, x, (xOff + i) * 4, LE).mul(alpha)
                    .add(FloatVector.fromMemorySegment(S, y, (yOff + i) * 4, LE))
                    .intoMemorySegment(y, (yOff + i) * 4, LE);
        }
        for (; i < n; i++) y.setAtIndex(F32_LE, yOff + i, y.getAtIndex(F32_LE, yOff + i) + alpha * x.getAtIndex(F32_LE, xOff + i));
    }

    @Override
    public void scale(MemorySegment x, long off, long n, float alpha) {
        long i = 0;
        for (; i + L <= n; i += L) {
            FloatVector.fromMemorySegment(S, x, (off + i) * 4, LE).mul(alpha).intoMemorySegment(x, (off + i) * 4, LE);
        }
        for (; i < n; i++) x.setAtIndex(F32_LE, off + i, x.getAtIndex(F32_LE, off + i) * alpha);
    }

    @Override
    public float dot(MemorySegment x, long xOff, MemorySegment y, long yOff, int n) {
        return VectorGemm.dot(x, xOff, y, yOff, n);
    }

    @Override
    public void embedding(MemorySegment out, long outOff, MemorySegment table, DType tableType, int vocab, int dim, int[] ids) {
        ScalarKernels.checkEmbedding(tableType, vocab, ids);
        for (int t = 0; t < ids.length; t++) {
            long src = (long) ids[t] * dim, dst = outOff + (long) t * dim;
            switch (tableType) {
                case F32 -> MemorySegment.copy(table, F32_LE, src * 4, out, F32_LE, dst * 4, dim);
                case F16 -> f16ToF32(table, src, out, dst, dim);
                case BF16 -> bf16ToF32(table, src, out, dst, dim);
                default -> throw new AssertionError(tableType);
            }
        }
    }

    /** Float.float16ToFloat is a HotSpot intrinsic (vcvtph2ps), so the plain loop is already fast and exact. */
    @Override
    public void f16ToF32(MemorySegment src, long srcOff, MemorySegment dst, long dstOff, long n) {
        for (long i = 0; i < n; i++) dst.setAtIndex(F32_LE, dstOff + i, Float.float16ToFloat(src.getAtIndex(I16_LE, srcOff + i)));
    }

    @Override
    public void f32ToF16(MemorySegment src, long srcOff, MemorySegment dst, long dstOff, long n) {
        for (long i = 0; i < n; i++) dst.setAtIndex(I16_LE, dstOff + i, Float.floatToFloat16(src.getAtIndex(F32_LE, srcOff + i)));
    }

    /** bfloat16 is the top half of an fp32: widen each short to an int and shift it into place. */
    @Override
    public void bf16ToF32(MemorySegment src, long srcOff, MemorySegment dst, long dstOff, long n) {
        long i = 0;
        for (; i + L <= n; i += L) {
            ShortVector h = ShortVector.fromMemorySegment(SS, src, (srcOff + i) * 2, LE);
            IntVector w = (IntVector) h.convertShape(VectorOperators.S2I, SI, 0);
            w.lanewise(VectorOperators.LSHL, 16).reinterpretAsFloats().intoMemorySegment(dst, (dstOff + i) * 4, LE);
        }
        for (; i < n; i++) dst.setAtIndex(F32_LE, dstOff + i, ScalarKernels.bf16ToFloat(src.getAtIndex(I16_LE, srcOff + i)));
    }

    /** Round to nearest even as in {@link ScalarKernels#floatToBf16}, NaN lanes truncated and made quiet. */
    @Override
    public void f32ToBf16(MemorySegment src, long srcOff, MemorySegment dst, long dstOff, long n) {
        long i = 0;
        for (; i + L <= n; i += L) {
            FloatVector f = FloatVector.fromMemorySegment(S, src, (srcOff + i) * 4, LE);
            IntVector bits = (IntVector) f.reinterpretAsInts();
            IntVector lsb = bits.lanewise(VectorOperators.LSHR, 16).and(1);
            IntVector rounded = bits.add(0x7FFF).add(lsb).lanewise(VectorOperators.LSHR, 16);
            IntVector quietNaN = bits.lanewise(VectorOperators.LSHR, 16).or(0x0040);
            VectorMask<Integer> nan = f.test(VectorOperators.IS_NAN).cast(SI);
            IntVector out = rounded.blend(quietNaN, nan);
            ((ShortVector) out.convertShape(VectorOperators.I2S, SS, 0)).intoMemorySegment(dst, (dstOff + i) * 2, LE);
        }
        for (; i < n; i++) dst.setAtIndex(I16_LE, dstOff + i, ScalarKernels.floatToBf16(src.getAtIndex(F32_LE, srcOff + i)));
    }
}
