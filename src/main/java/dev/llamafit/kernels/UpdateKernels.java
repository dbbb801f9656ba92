// The optimizer's kernel family: element-wise AdamW and SGD updates and the sum of squares gradient clipping needs.
package dev.llamafit.kernels;

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
