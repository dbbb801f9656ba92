// The reference kernels: plain loops written to be read; every other backend is tested against these.
package dev.llamafit.kernels;

import static dev.llamafit.tensor.Tensor.F32_LE;
import static dev.llamafit.tensor.Tensor.I16_LE;

import java.lang.foreign.MemorySegment;

import dev.llamafit.tensor.DType;

/**
 * The specification of {@link Kernels}: one obvious loop per operation, float arithmetic, no blocking.
 * Only gemm runs in parallel (over rows of C), so that agreement tests at moderate sizes stay quick.
 */
public final class ScalarKernels implements Kernels {

    @Override
    public String name() { return "scalar"; }

    @Override
    public void gemm(boolean transA, boolean transB, int m, int n, int k, float alpha,
                     MemorySegment a, long aOff, int lda,
                     MemorySegment b, long bOff, int ldb,
                     float beta, MemorySegment c, long cOff, int ldc) {
        Parallel.forRange(m, 4, (from, to) -> {
            for (int i = from; i < to; i++) {
                for (int j = 0; j < n; j++) {
                    float sum = 0f;
                    for (int p = 0; p < k; p++) {
                        // op(A)[i,p] and op(B)[p,j], reading the stored layout the flags describe.
                        long ai = transA ? aOff + (long) p * lda + i : aOff + (long) i * lda + p;
                        long bi = transB ? bOff + (long) j * ldb + p : bOff + (long) p * ldb + j;
                        sum += a.getAtIndex(F32_LE, ai) * b.getAtIndex(F32_LE, bi);
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
    public void rope(MemorySegment x, long xOff, int ldx, int rows, int heads, int headDim,
                     MemorySegment cos, MemorySegment sin, int[] positions) {
        int half = headDim / 2;
        for (int r = 0; r < rows; r++) {
            long table = (long) positions[r] * half;
            for (int h = 0; h < heads; h++) {
                long base = xOff + (long) r * ldx + (long) h * headDim;
                for (int i = 0; i < half; i++) {
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
