// The reference kernels: plain loops written to be read; every other backend is tested against these.
package dev.llamafit.kernels;

import static dev.llamafit.tensor.Tensor.F32_LE;
import static dev.llamafit.tensor.Tensor.I16_LE;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;

import dev.llamafit.tensor.DType;

/**
 * The specification of {@link Kernels}: one obvious loop per operation, float arithmetic, no blocking.
 * Only gemm runs in parallel (over rows of C), so that agreement tests at moderate sizes stay quick; callers
 * split the other kernels themselves, by sizes only (layers over rows, the optimizer in {@link #BLOCK}s).
 */
public final class ScalarKernels implements Kernels {

    /** int32, little-endian, unaligned: int8 GEMM results. */
    static final ValueLayout.OfInt I32_LE = ValueLayout.JAVA_INT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);

    @Override
    public String name() { return "scalar"; }

    @Override
    public void gemm(boolean transA, boolean transB, int m, int n, int k, float alpha,
                     MemorySegment a, long aOff, int lda,
                     MemorySegment b, long bOff, int ldb,
                     float beta, MemorySegment c, long cOff, int ldc) {
        typedGemm(transA, transB, m, n, k, alpha, a, DType.F32, aOff, lda, b, DType.F32, bOff, ldb, beta, c, cOff, ldc);
    }

    @Override
    public void gemm(boolean transA, boolean transB, int m, int n, int k, float alpha,
                     MemorySegment a, DType aType, long aOff, int lda,
                     MemorySegment b, DType bType, long bOff, int ldb,
                     float beta, MemorySegment c, long cOff, int ldc) {
        typedGemm(transA, transB, m, n, k, alpha, a, aType, aOff, lda, b, bType, bOff, ldb, beta, c, cOff, ldc);
    }

    /** The specification of the {@link PackSource} gemm: B read one element at a time through the source, fp32 sums. */
    static void sourceGemm(boolean transB, int m, int n, int k, float alpha, MemorySegment a, long aOff, int lda,
                           PackSource b, long bOff, int ldb, float beta, MemorySegment c, long cOff, int ldc) {
        Parallel.forRange(m, 4, (from, to) -> {
            float[] one = new float[1];
            for (int i = from; i < to; i++) {
                for (int j = 0; j < n; j++) {
                    float sum = 0f;
                    for (int p = 0; p < k; p++) {
                        b.read(transB ? bOff + (long) j * ldb + p : bOff + (long) p * ldb + j, 1, one, 0);
                        sum += a.getAtIndex(F32_LE, aOff + (long) i * lda + p) * one[0];
                    }
                    long ci = cOff + (long) i * ldc + j;
                    float old = beta == 0f ? 0f : beta * c.getAtIndex(F32_LE, ci);
                    c.setAtIndex(F32_LE, ci, (alpha == 0f ? 0f : alpha * sum) + old);
                }
            }
        });
    }

    /** The specification of both gemms: every element of A and B read through its dtype ({@link #load}), fp32 sums. */
    static void typedGemm(boolean transA, boolean transB, int m, int n, int k, float alpha,
                          MemorySegment a, DType aType, long aOff, int lda,
                          MemorySegment b, DType bType, long bOff, int ldb,
                          float beta, MemorySegment c, long cOff, int ldc) {
        checkOperand(aType);
        checkOperand(bType);
        Parallel.forRange(m, 4, (from, to) -> {
            for (int i = from; i < to; i++) {
                for (int j = 0; j < n; j++) {
                    float sum = 0f;
                    for (int p = 0; p < k; p++) {
                        // op(A)[i,p] and op(B)[p,j], reading the stored layout the flags describe.
                        long ai = transA ? aOff + (long) p * lda + i : aOff + (long) i * lda + p;
                        long bi = transB ? bOff + (long) j * ldb + p : bOff + (long) p * ldb + j;
                        sum += load(a, aType, ai) * load(b, bType, bi);
                    }
                    long ci = cOff + (long) i * ldc + j;
                    // beta == 0 must not read C: it may hold NaN or garbage.
                    float old = beta == 0f ? 0f : beta * c.getAtIndex(F32_LE, ci);
                    // alpha == 0 means "no product" (the BLAS convention): Inf or NaN in A or B does not reach C.
                    c.setAtIndex(F32_LE, ci, (alpha == 0f ? 0f : alpha * sum) + old);
                }
            }
        });
    }

    /** The specification of {@link Kernels#gemmI8}: each C[i, j] the int sum of A[i, p]·B[j, p] over p, in order. */
    @Override
    public void gemmI8(int m, int n, int k, MemorySegment a, long aOff, int lda, MemorySegment b, long bOff, int ldb,
                       MemorySegment c, long cOff, int ldc) {
        Kernels.checkGemmI8(m, n, k);
        for (int i = 0; i < m; i++) {
            for (int j = 0; j < n; j++) {
                int sum = 0;
                for (int p = 0; p < k; p++)
                    sum += a.get(ValueLayout.JAVA_BYTE, aOff + (long) i * lda + p) * b.get(ValueLayout.JAVA_BYTE, bOff + (long) j * ldb + p);
                c.setAtIndex(I32_LE, cOff + (long) i * ldc + j, sum);
            }
        }
    }

    @Override
    public void rmsnorm(MemorySegment out, long outOff, MemorySegment x, long xOff, MemorySegment weight, long wOff,
                        int rows, int dim, float eps) {
        for (int r = 0; r < rows; r++) {
            long row = (long) r * dim;
            float ss = 0f;
            for (int i = 0; i < dim; i++) {
                float v = x.getAtIndex(F32_LE, xOff + row + i);
                ss += v * v;
            }
            float inv = (float) (1.0 / Math.sqrt(ss / dim + eps));
            for (int i = 0; i < dim; i++) {
                float v = x.getAtIndex(F32_LE, xOff + row + i);
                out.setAtIndex(F32_LE, outOff + row + i, v * inv * weight.getAtIndex(F32_LE, wOff + i));
            }
        }
    }

    @Override
    public void rmsnormBackward(MemorySegment x, long xOff, MemorySegment invRms, long invOff, MemorySegment dY, long dYOff,
                                MemorySegment weight, long wOff, int rows, int dim, MemorySegment dX, long dXOff,
                                MemorySegment dWeight, long dwOff) {
        for (int r = 0; r < rows; r++) {
            long row = (long) r * dim;
            float inv = invRms.getAtIndex(F32_LE, invOff + r);
            double dot = 0; // Σ dy·w·x, the projection of dy on the normalised direction
            for (int i = 0; i < dim; i++) {
                dot += dY.getAtIndex(F32_LE, dYOff + row + i) * weight.getAtIndex(F32_LE, wOff + i) * x.getAtIndex(F32_LE, xOff + row + i);
            }
            float coef = (float) (dot * inv * inv * inv / dim);
            for (int i = 0; i < dim; i++) {
                float xi = x.getAtIndex(F32_LE, xOff + row + i), dy = dY.getAtIndex(F32_LE, dYOff + row + i);
                long at = dXOff + row + i;
                dX.setAtIndex(F32_LE, at, dX.getAtIndex(F32_LE, at) + inv * weight.getAtIndex(F32_LE, wOff + i) * dy - xi * coef);
            }
            if (dWeight == null) continue;
            for (int i = 0; i < dim; i++) {
                float xi = x.getAtIndex(F32_LE, xOff + row + i), dy = dY.getAtIndex(F32_LE, dYOff + row + i);
                dWeight.setAtIndex(F32_LE, dwOff + i, dWeight.getAtIndex(F32_LE, dwOff + i) + dy * xi * inv);
            }
        }
    }

    /** A row of only -Inf gives NaN everywhere, as in PyTorch: there is no finite maximum to subtract. */
    @Override
    public void softmax(MemorySegment x, long off, int len) {
        float max = Float.NEGATIVE_INFINITY;
        for (int i = 0; i < len; i++) max = Math.max(max, x.getAtIndex(F32_LE, off + i));
        float sum = 0f;
        for (int i = 0; i < len; i++) {
            float e = (float) Math.exp(x.getAtIndex(F32_LE, off + i) - max);
            x.setAtIndex(F32_LE, off + i, e);
            sum += e;
        }
        for (int i = 0; i < len; i++) x.setAtIndex(F32_LE, off + i, x.getAtIndex(F32_LE, off + i) / sum);
    }

    @Override
    public void softmaxBackward(MemorySegment p, long pOff, MemorySegment d, long dOff, int len) {
        double dot = 0;
        for (int j = 0; j < len; j++) dot += p.getAtIndex(F32_LE, pOff + j) * d.getAtIndex(F32_LE, dOff + j);
        float s = (float) dot;
        for (int j = 0; j < len; j++) d.setAtIndex(F32_LE, dOff + j, p.getAtIndex(F32_LE, pOff + j) * (d.getAtIndex(F32_LE, dOff + j) - s));
    }

    @Override
    public float max(MemorySegment x, long off, int len) {
        float m = Float.NEGATIVE_INFINITY;
        for (int i = 0; i < len; i++) m = Math.max(m, x.getAtIndex(F32_LE, off + i));
        return m;
    }

    @Override
    public float expSum(MemorySegment x, long off, int len, float shift) {
        float sum = 0f;
        for (int i = 0; i < len; i++) {
            float e = (float) Math.exp(x.getAtIndex(F32_LE, off + i) - shift);
            x.setAtIndex(F32_LE, off + i, e);
            sum += e;
        }
        return sum;
    }

    @Override
    public void softmaxBackward(MemorySegment p, long pOff, MemorySegment d, long dOff, int len, float s) {
        for (int j = 0; j < len; j++) d.setAtIndex(F32_LE, dOff + j, p.getAtIndex(F32_LE, pOff + j) * (d.getAtIndex(F32_LE, dOff + j) - s));
    }

    @Override
    public double softmaxCrossEntropy(MemorySegment z, long off, int len, int label, float scale) {
        int arg = 0;
        float max = Float.NEGATIVE_INFINITY;
        for (int j = 0; j < len; j++) {
            float v = z.getAtIndex(F32_LE, off + j);
            if (v > max) { max = v; arg = j; }
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
        for (long i = 0; i < n; i++) out.setAtIndex(F32_LE, outOff + i, silu(x.getAtIndex(F32_LE, xOff + i)));
    }

    @Override
    public void swiglu(MemorySegment out, long outOff, MemorySegment gate, long gateOff, MemorySegment up, long upOff, long n) {
        for (long i = 0; i < n; i++) {
            float g = gate.getAtIndex(F32_LE, gateOff + i), u = up.getAtIndex(F32_LE, upOff + i);
            out.setAtIndex(F32_LE, outOff + i, silu(g) * u);
        }
    }

    static float silu(float v) { return v / (1f + (float) Math.exp(-v)); }

    @Override
    public void swigluBackward(MemorySegment gate, long gateOff, MemorySegment up, long upOff, MemorySegment dH, long dHOff,
                               MemorySegment dUp, long dUpOff, long n) {
        for (long i = 0; i < n; i++) {
            float g = gate.getAtIndex(F32_LE, gateOff + i), u = up.getAtIndex(F32_LE, upOff + i), dh = dH.getAtIndex(F32_LE, dHOff + i);
            float sg = 1f / (1f + (float) Math.exp(-g));
            dUp.setAtIndex(F32_LE, dUpOff + i, dh * g * sg);
            dH.setAtIndex(F32_LE, dHOff + i, dh * u * sg * (1f + g * (1f - sg)));
        }
    }

    @Override
    public void rope(MemorySegment x, long xOff, int ldx, int rows, int heads, int headDim,
                     MemorySegment cos, MemorySegment sin, int[] positions) {
        rotate(x, xOff, ldx, rows, heads, headDim, cos, sin, positions, 1f);
    }

    /** RoPE's backward is the rotation by −θ: the forward with sin negated (exactly, so the same rounding). */
    @Override
    public void ropeBackward(MemorySegment dx, long xOff, int ldx, int rows, int heads, int headDim,
                             MemorySegment cos, MemorySegment sin, int[] positions) {
        rotate(dx, xOff, ldx, rows, heads, headDim, cos, sin, positions, -1f);
    }

    /** Rotates each pair (x[i], x[i + D/2]) by the angle whose sine is sinSign·sin: +1 forward, −1 backward. */
    private static void rotate(MemorySegment x, long xOff, int ldx, int rows, int heads, int headDim,
                               MemorySegment cos, MemorySegment sin, int[] positions, float sinSign) {
        int half = headDim / 2;
        for (int r = 0; r < rows; r++) {
            long table = (long) positions[r] * half;
            for (int h = 0; h < heads; h++) {
                long base = xOff + (long) r * ldx + (long) h * headDim;
                for (int i = 0; i < half; i++) {
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
        for (long i = 0; i < n; i++) y.setAtIndex(F32_LE, yOff + i, y.getAtIndex(F32_LE, yOff + i) + x.getAtIndex(F32_LE, xOff + i));
    }

    @Override
    public void axpy(float alpha, MemorySegment x, long xOff, MemorySegment y, long yOff, long n) {
        for (long i = 0; i < n; i++) {
            y.setAtIndex(F32_LE, yOff + i, y.getAtIndex(F32_LE, yOff + i) + alpha * x.getAtIndex(F32_LE, xOff + i));
        }
    }

    @Override
    public void scale(MemorySegment x, long off, long n, float alpha) {
        for (long i = 0; i < n; i++) x.setAtIndex(F32_LE, off + i, x.getAtIndex(F32_LE, off + i) * alpha);
    }

    @Override
    public float dot(MemorySegment x, long xOff, MemorySegment y, long yOff, int n) {
        float sum = 0f;
        for (int i = 0; i < n; i++) sum += x.getAtIndex(F32_LE, xOff + i) * y.getAtIndex(F32_LE, yOff + i);
        return sum;
    }

    @Override
    public void adamw(MemorySegment p, MemorySegment g, MemorySegment m, MemorySegment v, long from, long to, AdamCoefficients c) {
        for (long i = from; i < to; i++) {
            float gi = g.getAtIndex(F32_LE, i);
            float pi = p.getAtIndex(F32_LE, i) * c.decay();
            float mi = Math.fma(gi, c.oneMinusBeta1(), m.getAtIndex(F32_LE, i) * c.beta1());
            float vi = v.getAtIndex(F32_LE, i) * c.beta2() + c.oneMinusBeta2() * gi * gi;
            float denom = (float) Math.sqrt(vi) / c.bc2Sqrt() + c.eps();
            m.setAtIndex(F32_LE, i, mi);
            v.setAtIndex(F32_LE, i, vi);
            p.setAtIndex(F32_LE, i, pi + c.negStepSize() * mi / denom);
        }
    }

    @Override
    public void adamwBf16(MemorySegment p, MemorySegment g, MemorySegment m, MemorySegment v, long from, long to, AdamCoefficients c,
                          int seed) {
        for (long i = from; i < to; i++) {
            float gi = bf16ToFloat(g.getAtIndex(I16_LE, i));
            float pi = bf16ToFloat(p.getAtIndex(I16_LE, i)) * c.decay();
            float mi = Math.fma(gi, c.oneMinusBeta1(), bf16ToFloat(m.getAtIndex(I16_LE, i)) * c.beta1());
            float vi = bf16ToFloat(v.getAtIndex(I16_LE, i)) * c.beta2() + c.oneMinusBeta2() * gi * gi;
            float denom = (float) Math.sqrt(vi) / c.bc2Sqrt() + c.eps();
            m.setAtIndex(I16_LE, i, floatToBf16(mi));
            v.setAtIndex(I16_LE, i, floatToBf16(vi));
            p.setAtIndex(I16_LE, i, UpdateKernels.stochasticBf16(pi + c.negStepSize() * mi / denom, UpdateKernels.roundingBits(seed, i)));
        }
    }

    @Override
    public void addRoundBf16(MemorySegment dst, long dstOff, MemorySegment src, long srcOff, long n) {
        for (long i = 0; i < n; i++)
            dst.setAtIndex(I16_LE, dstOff + i, floatToBf16(bf16ToFloat(dst.getAtIndex(I16_LE, dstOff + i)) + src.getAtIndex(F32_LE, srcOff + i)));
    }

    @Override
    public void sgd(MemorySegment p, MemorySegment g, MemorySegment buf, long from, long to, SgdCoefficients c) {
        for (long i = from; i < to; i++) {
            float pi = p.getAtIndex(F32_LE, i);
            float d = Math.fma(pi, c.weightDecay(), g.getAtIndex(F32_LE, i));
            if (buf != null) {
                float b = c.firstStep() ? d : Math.fma(d, c.oneMinusDampening(), buf.getAtIndex(F32_LE, i) * c.momentum());
                buf.setAtIndex(F32_LE, i, b);
                d = c.nesterov() ? Math.fma(b, c.momentum(), d) : b;
            }
            p.setAtIndex(F32_LE, i, Math.fma(d, c.negLr(), pi));
        }
    }

    /** Four accumulators: shorter dependency chains, and a little less rounding than one. */
    @Override
    public double sumOfSquares(MemorySegment x, long from, long to) {
        double a0 = 0, a1 = 0, a2 = 0, a3 = 0;
        long i = from;
        for (; i + 4 <= to; i += 4) {
            double x0 = x.getAtIndex(F32_LE, i), x1 = x.getAtIndex(F32_LE, i + 1);
            double x2 = x.getAtIndex(F32_LE, i + 2), x3 = x.getAtIndex(F32_LE, i + 3);
            a0 += x0 * x0;
            a1 += x1 * x1;
            a2 += x2 * x2;
            a3 += x3 * x3;
        }
        for (; i < to; i++) {
            double v = x.getAtIndex(F32_LE, i);
            a0 += v * v;
        }
        return (a0 + a1) + (a2 + a3);
    }

    @Override
    public void embedding(MemorySegment out, long outOff, MemorySegment table, DType tableType, int vocab, int dim, int[] ids) {
        checkEmbedding(tableType, vocab, ids);
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

    /** Shared by all backends: the id check is part of the contract, not of the arithmetic. */
    static void checkEmbedding(DType tableType, int vocab, int[] ids) {
        if (tableType != DType.F32 && tableType != DType.F16 && tableType != DType.BF16) {
            throw new IllegalArgumentException("embedding table of type " + tableType + " is not supported (expected F32, F16 or BF16)");
        }
        for (int t = 0; t < ids.length; t++) {
            if (ids[t] < 0 || ids[t] >= vocab) {
                throw new IllegalArgumentException("token id " + ids[t] + " at position " + t + " is out of range [0, " + vocab
                        + "): the tokenizer and the model's vocabulary do not match");
            }
        }
    }

    @Override
    public void f16ToF32(MemorySegment src, long srcOff, MemorySegment dst, long dstOff, long n) {
        for (long i = 0; i < n; i++) dst.setAtIndex(F32_LE, dstOff + i, Float.float16ToFloat(src.getAtIndex(I16_LE, srcOff + i)));
    }

    @Override
    public void bf16ToF32(MemorySegment src, long srcOff, MemorySegment dst, long dstOff, long n) {
        for (long i = 0; i < n; i++) dst.setAtIndex(F32_LE, dstOff + i, bf16ToFloat(src.getAtIndex(I16_LE, srcOff + i)));
    }

    @Override
    public void f32ToF16(MemorySegment src, long srcOff, MemorySegment dst, long dstOff, long n) {
        for (long i = 0; i < n; i++) dst.setAtIndex(I16_LE, dstOff + i, Float.floatToFloat16(src.getAtIndex(F32_LE, srcOff + i)));
    }

    @Override
    public void f32ToBf16(MemorySegment src, long srcOff, MemorySegment dst, long dstOff, long n) {
        for (long i = 0; i < n; i++) dst.setAtIndex(I16_LE, dstOff + i, floatToBf16(src.getAtIndex(F32_LE, srcOff + i)));
    }

    @Override
    public void round16(MemorySegment x, long off, long n, DType to) {
        for (long i = off; i < off + n; i++) x.setAtIndex(F32_LE, i, round16(x.getAtIndex(F32_LE, i), to));
    }

    /** v rounded to the nearest BF16 or F16 value (nearest even), as an fp32. */
    static float round16(float v, DType to) {
        return switch (to) {
            case BF16 -> bf16ToFloat(floatToBf16(v));
            case F16 -> Float.float16ToFloat(Float.floatToFloat16(v));
            default -> throw new IllegalArgumentException("round16 rounds to BF16 or F16, not " + to);
        };
    }

    /** Element {@code i} of a F32, BF16 or F16 segment as a float: the 16-bit widenings are exact. */
    static float load(MemorySegment s, DType type, long i) {
        return switch (type) {
            case F32 -> s.getAtIndex(F32_LE, i);
            case BF16 -> bf16ToFloat(s.getAtIndex(I16_LE, i));
            case F16 -> Float.float16ToFloat(s.getAtIndex(I16_LE, i));
            default -> throw new IllegalArgumentException("no GEMM operand of type " + type);
        };
    }

    static void checkOperand(DType type) {
        if (type != DType.F32 && type != DType.BF16 && type != DType.F16)
            throw new IllegalArgumentException("GEMM operands are F32, BF16 or F16, not " + type);
    }

    /** bfloat16 is the upper half of an fp32, so widening is exact. */
    public static float bf16ToFloat(short bits) { return Float.intBitsToFloat((bits & 0xFFFF) << 16); }

    /**
     * fp32 to bfloat16 with round to nearest, ties to even: add 0x7FFF plus the lowest kept bit, then truncate.
     * A NaN would round into Inf or change payload, so it is truncated and forced quiet (top mantissa bit set).
     */
    public static short floatToBf16(float v) {
        int bits = Float.floatToRawIntBits(v);
        if (Float.isNaN(v)) return (short) ((bits >>> 16) | 0x0040);
        int lsb = (bits >>> 16) & 1;
        return (short) ((bits + 0x7FFF + lsb) >>> 16);
    }
}
