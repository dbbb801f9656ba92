// Element-wise optimizer updates over a range of one tensor: the scalar reference, a SIMD twin, and the choice.
package dev.llamafit.optim;

import static dev.llamafit.tensor.Tensor.F32_LE;

import java.lang.foreign.MemorySegment;

import dev.llamafit.kernels.KernelBackends;
import dev.llamafit.kernels.Parallel;
import dev.llamafit.kernels.ScalarKernels;

/**
 * The per-element update rules, on flat F32 segments over element range [from, to). The formulas follow the
 * order of PyTorch 1.13's single-tensor CPU kernels (torch/optim/adamw.py, sgd.py): where ATen's vectorised
 * {@code add_(x, alpha=a)} is an FMA (ufunc::add on Vectorized is fmadd), we use an FMA too; where it
 * multiplies then adds (addcmul, addcdiv), so do we. The vector twin does the same operations lane-wise, so the
 * two agree bit for bit (IEEE sqrt, division and FMA are exact-rounded in both), which a test checks.
 */
sealed interface UpdateKernels permits UpdateKernels.Scalar, VectorUpdateKernels {
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

    /** Per-step scalars of AdamW, already rounded to float as ATen does with Python-number arguments. */
    record AdamCoefficients(float decay, float beta1, float oneMinusBeta1, float beta2, float oneMinusBeta2,
                            float negStepSize, float bc2Sqrt, float eps) {}

    /** Per-step scalars of SGD. */
    record SgdCoefficients(float weightDecay, float momentum, float oneMinusDampening, boolean nesterov, boolean firstStep,
                           float negLr) {}

    /** The implementation matching the process's kernel backend (scalar when -Dllamafit.kernels=scalar). */
    static UpdateKernels get() { return Holder.INSTANCE; }

    /** Runs {@code body} over [0, n) in blocks of {@link #BLOCK} elements, in parallel when there is more than one. */
    static void forBlocks(long n, RangeBody body) {
        if (n <= BLOCK) {
            body.run(0, n);
            return;
        }
        int blocks = Math.toIntExact((n + BLOCK - 1) / BLOCK);
        Parallel.forRange(blocks, (b0, b1) -> body.run((long) b0 * BLOCK, Math.min(n, (long) b1 * BLOCK)));
    }

    @FunctionalInterface
    interface RangeBody {
        void run(long from, long to);
    }

    final class Holder {
        private Holder() {}

        static final UpdateKernels INSTANCE = KernelBackends.get() instanceof ScalarKernels ? new Scalar() : vector();

        /** Its own method so the Vector API classes load only when the vector backend is in use. */
        private static UpdateKernels vector() { return new VectorUpdateKernels(); }
    }

    /** The reference: plain loops, one element at a time. */
    final class Scalar implements UpdateKernels {
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
    }
}
