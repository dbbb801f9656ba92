// The optimizer's kernel family: element-wise AdamW and SGD updates and the sum of squares gradient clipping needs.
package dev.llamafit.kernels;

import static dev.llamafit.tensor.Tensor.I16_LE;

import java.lang.foreign.MemorySegment;

/**
 * Per-element optimizer updates on flat F32 segments over element range [from, to), part of every {@link Kernels}
 * backend (the optimizer asks the process's backend, see {@link KernelBackends}). The formulas follow the order
 * of PyTorch 1.13's single-tensor CPU kernels (torch/optim/adamw.py, sgd.py): where ATen's vectorised
 * {@code add_(x, alpha=a)} is an FMA (ufunc::add on Vectorized is fmadd), we use an FMA too; where it
 * multiplies then adds (addcmul, addcdiv), so do we. Every backend must give the scalar specification's bits
 * (IEEE sqrt, division and FMA are exactly rounded everywhere), which KernelsAgreementTest checks.
 */
public interface UpdateKernels {
    /** Elements per parallel block: 128 KiB per stream, large enough to amortise a pool hand-off. */
    int BLOCK = 1 << 15;

    /**
     * AdamW on elements [from, to): p ← p·decay; m ← β1·m + (1−β1)·g; v ← β2·v + (1−β2)·g·g;
     * p ← p + (−stepSize·m) / (√v / bc2Sqrt + eps).
     */
    void adamw(MemorySegment p, MemorySegment g, MemorySegment m, MemorySegment v, long from, long to, AdamCoefficients c);

    /**
     * SGD on elements [from, to): d ← g + wd·p; with momentum, buf ← d on the first step, else
     * buf ← momentum·buf + (1−dampening)·d, and d ← d + momentum·buf (Nesterov) or d ← buf; p ← p − lr·d.
     * {@code buf} is null when momentum is 0.
     */
    void sgd(MemorySegment p, MemorySegment g, MemorySegment buf, long from, long to, SgdCoefficients c);

    /**
     * Σ x² over elements [from, to) in double, with four accumulators taking elements i ≡ 0, 1, 2, 3 (mod 4)
     * counted from {@code from}, the tail added to the first, and the result (a0 + a1) + (a2 + a3). The order
     * is part of the contract: gradient clipping's norm, hence training, must not depend on the backend.
     */
    double sumOfSquares(MemorySegment x, long from, long to);

    /**
     * bf16-pure training: AdamW on BF16 p, g, m and v, elements [from, to). Each value is widened (exact), updated with
     * exactly {@link #adamw}'s fp32 operations; m and v are rounded back to nearest even, and the new p stochastically:
     * {@link #stochasticBf16}(p, {@link #roundingBits}(seed, i)), so an update below half a bf16 ulp still moves p
     * with the right probability instead of always being lost. NaN stays NaN.
     */
    void adamwBf16(MemorySegment p, MemorySegment g, MemorySegment m, MemorySegment v, long from, long to, AdamCoefficients c,
                   int seed);

    /**
     * 16 uniform random bits for element i under {@code seed}: murmur3's 32-bit finalizer of seed + i·golden ratio
     * (i's low 32 bits). Counter-based, so a resumed run draws exactly what an uninterrupted one would.
     */
    static int roundingBits(int seed, long i) {
        int h = seed + (int) i * 0x9E3779B9;
        h ^= h >>> 16;
        h *= 0x85EBCA6B;
        h ^= h >>> 13;
        h *= 0xC2B2AE35;
        h ^= h >>> 16;
        return h & 0xFFFF;
    }

    /** v to bfloat16, rounded up in magnitude with probability (dropped low bits)/2^16: add {@code bits} < 2^16, truncate. NaN stays a quiet NaN. */
    static short stochasticBf16(float v, int bits) {
        if (Float.isNaN(v)) return ScalarKernels.floatToBf16(v);
        return (short) ((Float.floatToRawIntBits(v) + bits) >>> 16);
    }

    /**
     * dst[i] ← bf16(dst[i] + src[i]) for i in [0, n), dst BF16 and src fp32, round to nearest even: a BF16 weight
     * gradient (bf16-pure) takes each fp32 GEMM product with one rounding.
     */
    void addRoundBf16(MemorySegment dst, long dstOff, MemorySegment src, long srcOff, long n);

    /** {@link #sumOfSquares} of BF16 elements (widened exactly), with the same accumulators and order: clipping a BF16 gradient. */
    default double sumOfSquaresBf16(MemorySegment x, long from, long to) {
        double a0 = 0, a1 = 0, a2 = 0, a3 = 0;
        long i = from;
        for (; i + 4 <= to; i += 4) {
            double x0 = ScalarKernels.bf16ToFloat(x.getAtIndex(I16_LE, i)), x1 = ScalarKernels.bf16ToFloat(x.getAtIndex(I16_LE, i + 1));
            double x2 = ScalarKernels.bf16ToFloat(x.getAtIndex(I16_LE, i + 2)), x3 = ScalarKernels.bf16ToFloat(x.getAtIndex(I16_LE, i + 3));
            a0 += x0 * x0;
            a1 += x1 * x1;
            a2 += x2 * x2;
            a3 += x3 * x3;
        }
        for (; i < to; i++) {
            double v = ScalarKernels.bf16ToFloat(x.getAtIndex(I16_LE, i));
            a0 += v * v;
        }
        return (a0 + a1) + (a2 + a3);
    }

    /** x[i] ← bf16(x[i]·alpha) on BF16 elements [from, to): clipping scales a BF16 gradient (rare: once a step at most). */
    default void scaleBf16(MemorySegment x, long from, long to, float alpha) {
        for (long i = from; i < to; i++)
            x.setAtIndex(I16_LE, i, ScalarKernels.floatToBf16(ScalarKernels.bf16ToFloat(x.getAtIndex(I16_LE, i)) * alpha));
    }

    /** Per-step scalars of AdamW, already rounded to float as ATen does with Python-number arguments. */
    record AdamCoefficients(float decay, float beta1, float oneMinusBeta1, float beta2, float oneMinusBeta2,
                            float negStepSize, float bc2Sqrt, float eps) {}

    /** Per-step scalars of SGD. */
    record SgdCoefficients(float weightDecay, float momentum, float oneMinusDampening, boolean nesterov, boolean firstStep,
                           float negLr) {}

    /**
     * Runs {@code body} over [0, n) in blocks of {@link #BLOCK} elements, in parallel when there is more than one.
     * The blocks depend only on n, so per-block results combined in block order do not depend on the thread count.
     */
    static void forBlocks(long n, RangeBody body) {
        if (n <= BLOCK) {
            body.run(0, n);
            return;
        }
        int blocks = Math.toIntExact((n + BLOCK - 1) / BLOCK);
        Parallel.forRange(blocks, (b0, b1) -> body.run((long) b0 * BLOCK, Math.min(n, (long) b1 * BLOCK)));
    }

    /** A body over an element range [from, to). */
    @FunctionalInterface
    interface RangeBody {
        void run(long from, long to);
    }
}
