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
 * that repeats {@link ScalarKernels}' formula, so short inputs match the reference exactly. exp is
 * {@link VectorMath#exp} (within about an ulp of Math.exp, and the same bits compiled or not); sums whose
 * order the specification fixes (double sums in the backward kernels) add the lanes' products in that order.
 * The optimizer family lives in {@link VectorUpdates}.
 */
public sealed class VectorKernels implements Kernels permits OneDnnKernels {
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
    public void gemm(boolean transB, int m, int n, int k, float alpha, MemorySegment a, long aOff, int lda,
                     PackSource b, long bOff, int ldb, float beta, MemorySegment c, long cOff, int ldc) {
        VectorGemm.gemm(transB, m, n, k, alpha, a, aOff, lda, b, bOff, ldb, beta, c, cOff, ldc);
    }

    @Override
    public void gemm(boolean transA, boolean transB, int m, int n, int k, float alpha,
                     MemorySegment a, DType aType, long aOff, int lda,
                     MemorySegment b, DType bType, long bOff, int ldb,
                     float beta, MemorySegment c, long cOff, int ldc) {
        VectorGemm.gemm(transA, transB, m, n, k, alpha, a, aType, aOff, lda, b, bType, bOff, ldb, beta, c, cOff, ldc);
    }

    /** {@link VectorInt8Gemm}: exact int sums, so the same bits as the specification. */
    @Override
    public void gemmI8(int m, int n, int k, MemorySegment a, long aOff, int lda, MemorySegment b, long bOff, int ldb,
                       MemorySegment c, long cOff, int ldc) {
        VectorInt8Gemm.gemm(m, n, k, a, aOff, lda, b, bOff, ldb, c, cOff, ldc);
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

    /** The per-row double sum keeps the specification's order: products lane-wise, then added lane by lane. */
    @Override
    public void rmsnormBackward(MemorySegment x, long xOff, MemorySegment invRms, long invOff, MemorySegment dY, long dYOff,
                                MemorySegment weight, long wOff, int rows, int dim, MemorySegment dX, long dXOff,
                                MemorySegment dWeight, long dwOff) {
        float[] lanes = new float[L];
        for (int r = 0; r < rows; r++) {
            long row = (long) r * dim;
            long xr = (xOff + row) * 4, dyr = (dYOff + row) * 4, dxr = (dXOff + row) * 4;
            float inv = invRms.getAtIndex(F32_LE, invOff + r);
            double dot = 0;
            int i = 0;
            for (; i + L <= dim; i += L) {
                FloatVector dy = FloatVector.fromMemorySegment(S, dY, dyr + i * 4L, LE);
                FloatVector w = FloatVector.fromMemorySegment(S, weight, (wOff + i) * 4, LE);
                dy.mul(w).mul(FloatVector.fromMemorySegment(S, x, xr + i * 4L, LE)).intoArray(lanes, 0);
                for (int j = 0; j < L; j++) dot += lanes[j];
            }
            for (; i < dim; i++) {
                dot += dY.getAtIndex(F32_LE, dYOff + row + i) * weight.getAtIndex(F32_LE, wOff + i) * x.getAtIndex(F32_LE, xOff + row + i);
            }
            float coef = (float) (dot * inv * inv * inv / dim);
            i = 0;
            for (; i + L <= dim; i += L) {
                FloatVector xv = FloatVector.fromMemorySegment(S, x, xr + i * 4L, LE);
                FloatVector dy = FloatVector.fromMemorySegment(S, dY, dyr + i * 4L, LE);
                FloatVector w = FloatVector.fromMemorySegment(S, weight, (wOff + i) * 4, LE);
                // (dX + (r·w)·dy) − x·coef, rounded step by step as the specification is
                FloatVector.fromMemorySegment(S, dX, dxr + i * 4L, LE).add(w.mul(inv).mul(dy)).sub(xv.mul(coef))
                        .intoMemorySegment(dX, dxr + i * 4L, LE);
                if (dWeight != null) {
                    long dw = (dwOff + i) * 4;
                    FloatVector.fromMemorySegment(S, dWeight, dw, LE).add(dy.mul(xv).mul(inv)).intoMemorySegment(dWeight, dw, LE);
                }
            }
            for (; i < dim; i++) {
                float xi = x.getAtIndex(F32_LE, xOff + row + i), dy = dY.getAtIndex(F32_LE, dYOff + row + i);
                long at = dXOff + row + i;
                dX.setAtIndex(F32_LE, at, dX.getAtIndex(F32_LE, at) + inv * weight.getAtIndex(F32_LE, wOff + i) * dy - xi * coef);
                if (dWeight != null) dWeight.setAtIndex(F32_LE, dwOff + i, dWeight.getAtIndex(F32_LE, dwOff + i) + dy * xi * inv);
            }
        }
    }

    @Override
    public void softmax(MemorySegment x, long off, int len) {
        long base = off * 4;
        float sum = expSum(x, off, len, max(x, off, len));
        int i = 0;
        for (; i + L <= len; i += L) {
            FloatVector.fromMemorySegment(S, x, base + i * 4L, LE).div(sum).intoMemorySegment(x, base + i * 4L, LE);
        }
        for (; i < len; i++) x.setAtIndex(F32_LE, off + i, x.getAtIndex(F32_LE, off + i) / sum);
    }

    @Override
    public void softmaxBackward(MemorySegment p, long pOff, MemorySegment d, long dOff, int len) {
        long pb = pOff * 4, db = dOff * 4;
        // The double sum is serial by specification; a plain loop is faster here than products stored lane by lane.
        double dot = 0;
        for (int j = 0; j < len; j++) dot += p.getAtIndex(F32_LE, pOff + j) * d.getAtIndex(F32_LE, dOff + j);
        float s = (float) dot;
        int i = 0;
        for (; i + L <= len; i += L) {
            FloatVector pv = FloatVector.fromMemorySegment(S, p, pb + i * 4L, LE);
            pv.mul(FloatVector.fromMemorySegment(S, d, db + i * 4L, LE).sub(s)).intoMemorySegment(d, db + i * 4L, LE);
        }
        for (; i < len; i++) d.setAtIndex(F32_LE, dOff + i, p.getAtIndex(F32_LE, pOff + i) * (d.getAtIndex(F32_LE, dOff + i) - s));
    }

    @Override
    public float max(MemorySegment x, long off, int len) {
        long base = off * 4;
        FloatVector maxV = FloatVector.broadcast(S, Float.NEGATIVE_INFINITY);
        int i = 0;
        for (; i + L <= len; i += L) maxV = maxV.max(FloatVector.fromMemorySegment(S, x, base + i * 4L, LE));
        float max = maxV.reduceLanes(VectorOperators.MAX); // max is exact in any order
        for (; i < len; i++) max = Math.max(max, x.getAtIndex(F32_LE, off + i));
        return max;
    }

    @Override
    public float expSum(MemorySegment x, long off, int len, float shift) {
        long base = off * 4;
        FloatVector sumV = FloatVector.zero(S);
        int i = 0;
        for (; i + L <= len; i += L) {
            FloatVector e = VectorMath.exp(FloatVector.fromMemorySegment(S, x, base + i * 4L, LE).sub(shift));
            e.intoMemorySegment(x, base + i * 4L, LE);
            sumV = sumV.add(e);
        }
        float sum = VectorMath.sum(sumV);
        for (; i < len; i++) {
            float e = (float) Math.exp(x.getAtIndex(F32_LE, off + i) - shift);
            x.setAtIndex(F32_LE, off + i, e);
            sum += e;
        }
        return sum;
    }

    @Override
    public void softmaxBackward(MemorySegment p, long pOff, MemorySegment d, long dOff, int len, float s) {
        long pb = pOff * 4, db = dOff * 4;
        int i = 0;
        for (; i + L <= len; i += L) {
            FloatVector pv = FloatVector.fromMemorySegment(S, p, pb + i * 4L, LE);
            pv.mul(FloatVector.fromMemorySegment(S, d, db + i * 4L, LE).sub(s)).intoMemorySegment(d, db + i * 4L, LE);
        }
        for (; i < len; i++) d.setAtIndex(F32_LE, dOff + i, p.getAtIndex(F32_LE, pOff + i) * (d.getAtIndex(F32_LE, dOff + i) - s));
    }

    /** The arg-max only picks which p[argmax] to read; any index holding the maximum gives the same p. */
    @Override
    public double softmaxCrossEntropy(MemorySegment z, long off, int len, int label, float scale) {
        long base = off * 4;
        FloatVector maxV = FloatVector.broadcast(S, Float.NEGATIVE_INFINITY);
        int i = 0;
        for (; i + L <= len; i += L) maxV = maxV.max(FloatVector.fromMemorySegment(S, z, base + i * 4L, LE));
        float max = maxV.reduceLanes(VectorOperators.MAX); // max is exact in any order
        for (; i < len; i++) max = Math.max(max, z.getAtIndex(F32_LE, off + i));
        int arg = 0;
        i = 0;
        for (; i + L <= len; i += L) {
            VectorMask<Float> hit = FloatVector.fromMemorySegment(S, z, base + i * 4L, LE).eq(max);
            if (hit.anyTrue()) break;
        }
        for (; i < len; i++) {
            if (z.getAtIndex(F32_LE, off + i) == max) { arg = i; break; }
        }
        float target = z.getAtIndex(F32_LE, off + label);
        softmax(z, off, len);
        double loss = max - target - Math.log(z.getAtIndex(F32_LE, off + arg));
        scale(z, off, len, scale);
        z.setAtIndex(F32_LE, off + label, z.getAtIndex(F32_LE, off + label) - scale);
        return loss;
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

    /** s = 1/(1 + e^−g) with VectorMath.exp, so the vector lanes differ from the scalar tail by about an ulp of s. */
    @Override
    public void swigluBackward(MemorySegment gate, long gateOff, MemorySegment up, long upOff, MemorySegment dH, long dHOff,
                               MemorySegment dUp, long dUpOff, long n) {
        long i = 0;
        for (; i + L <= n; i += L) {
            FloatVector g = FloatVector.fromMemorySegment(S, gate, (gateOff + i) * 4, LE);
            FloatVector u = FloatVector.fromMemorySegment(S, up, (upOff + i) * 4, LE);
            FloatVector dh = FloatVector.fromMemorySegment(S, dH, (dHOff + i) * 4, LE);
            FloatVector sg = VectorMath.exp(g.neg()).add(1f);
            sg = FloatVector.broadcast(S, 1f).div(sg);
            dh.mul(g).mul(sg).intoMemorySegment(dUp, (dUpOff + i) * 4, LE);
            // dh·u·s·(1 + g·(1 − s)), left to right as the specification
            dh.mul(u).mul(sg).mul(g.mul(sg.neg().add(1f)).add(1f)).intoMemorySegment(dH, (dHOff + i) * 4, LE);
        }
        for (; i < n; i++) {
            float g = gate.getAtIndex(F32_LE, gateOff + i), u = up.getAtIndex(F32_LE, upOff + i), dh = dH.getAtIndex(F32_LE, dHOff + i);
            float sg = 1f / (1f + (float) Math.exp(-g));
            dUp.setAtIndex(F32_LE, dUpOff + i, dh * g * sg);
            dH.setAtIndex(F32_LE, dHOff + i, dh * u * sg * (1f + g * (1f - sg)));
        }
    }

    @Override
    public void rope(MemorySegment x, long xOff, int ldx, int rows, int heads, int headDim,
                     MemorySegment cos, MemorySegment sin, int[] positions) {
        rotate(x, xOff, ldx, rows, heads, headDim, cos, sin, positions, false);
    }

    /** RoPE's backward is the rotation by −θ: the forward with sin negated (exactly, so the same rounding). */
    @Override
    public void ropeBackward(MemorySegment dx, long xOff, int ldx, int rows, int heads, int headDim,
                             MemorySegment cos, MemorySegment sin, int[] positions) {
        rotate(dx, xOff, ldx, rows, heads, headDim, cos, sin, positions, true);
    }

    /** As ScalarKernels' rotation: each pair (x[i], x[i + D/2]) by θ, or by −θ when {@code inverse}. */
    private static void rotate(MemorySegment x, long xOff, int ldx, int rows, int heads, int headDim,
                               MemorySegment cos, MemorySegment sin, int[] positions, boolean inverse) {
        int half = headDim / 2;
        float sinSign = inverse ? -1f : 1f;
        for (int r = 0; r < rows; r++) {
            long table = (long) positions[r] * half;
            for (int h = 0; h < heads; h++) {
                long base = xOff + (long) r * ldx + (long) h * headDim;
                int i = 0;
                for (; i + L <= half; i += L) {
                    FloatVector x1 = FloatVector.fromMemorySegment(S, x, (base + i) * 4, LE);
                    FloatVector x2 = FloatVector.fromMemorySegment(S, x, (base + i + half) * 4, LE);
                    FloatVector c = FloatVector.fromMemorySegment(S, cos, (table + i) * 4, LE);
                    FloatVector s = FloatVector.fromMemorySegment(S, sin, (table + i) * 4, LE).mul(sinSign);
                    // Same rounding as the scalar x1·c − x2·s: two products, then one subtraction.
                    x1.mul(c).sub(x2.mul(s)).intoMemorySegment(x, (base + i) * 4, LE);
                    x2.mul(c).add(x1.mul(s)).intoMemorySegment(x, (base + i + half) * 4, LE);
                }
                for (; i < half; i++) {
                    float x1 = x.getAtIndex(F32_LE, base + i), x2 = x.getAtIndex(F32_LE, base + i + half);
                    float c = cos.getAtIndex(F32_LE, table + i), s = sinSign * sin.getAtIndex(F32_LE, table + i);
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
    public void adamw(MemorySegment p, MemorySegment g, MemorySegment m, MemorySegment v, long from, long to, AdamCoefficients c) {
        VectorUpdates.adamw(p, g, m, v, from, to, c);
    }

    @Override
    public void adamwBf16(MemorySegment p, MemorySegment g, MemorySegment m, MemorySegment v, long from, long to, AdamCoefficients c,
                          int seed) {
        VectorUpdates.adamwBf16(p, g, m, v, from, to, c, seed);
    }

    @Override
    public void addRoundBf16(MemorySegment dst, long dstOff, MemorySegment src, long srcOff, long n) {
        VectorUpdates.addRoundBf16(dst, dstOff, src, srcOff, n);
    }

    @Override
    public void sgd(MemorySegment p, MemorySegment g, MemorySegment buf, long from, long to, SgdCoefficients c) {
        VectorUpdates.sgd(p, g, buf, from, to, c);
    }

    @Override
    public double sumOfSquares(MemorySegment x, long from, long to) { return VectorUpdates.sumOfSquares(x, from, to); }

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

    /** BF16: the nearest-even carry of {@link #f32ToBf16} with the low half cleared, NaN kept; F16 element by element. */
    @Override
    public void round16(MemorySegment x, long off, long n, DType to) {
        if (to == DType.F16) {
            for (long i = off; i < off + n; i++) x.setAtIndex(F32_LE, i, Float.float16ToFloat(Float.floatToFloat16(x.getAtIndex(F32_LE, i))));
            return;
        }
        if (to != DType.BF16) throw new IllegalArgumentException("round16 rounds to BF16 or F16, not " + to);
        long i = off, end = off + n;
        for (; i + L <= end; i += L) {
            FloatVector f = FloatVector.fromMemorySegment(S, x, i * 4, LE);
            IntVector bits = (IntVector) f.reinterpretAsInts();
            IntVector lsb = bits.lanewise(VectorOperators.LSHR, 16).and(1);
            IntVector rounded = bits.add(0x7FFF).add(lsb).and(0xFFFF0000);
            IntVector quietNaN = bits.and(0xFFFF0000).or(0x00400000);
            VectorMask<Integer> nan = f.test(VectorOperators.IS_NAN).cast(SI);
            rounded.blend(quietNaN, nan).reinterpretAsFloats().intoMemorySegment(x, i * 4, LE);
        }
        for (; i < end; i++) x.setAtIndex(F32_LE, i, ScalarKernels.round16(x.getAtIndex(F32_LE, i), DType.BF16));
    }
}
