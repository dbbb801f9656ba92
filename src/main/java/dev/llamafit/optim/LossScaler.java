// Dynamic loss scaling for fp16 training, with the semantics of PyTorch's torch.cuda.amp.GradScaler.
package dev.llamafit.optim;

import java.lang.foreign.MemorySegment;
import java.util.List;

import dev.llamafit.kernels.KernelBackends;
import dev.llamafit.kernels.Kernels;
import dev.llamafit.kernels.UpdateKernels;
import dev.llamafit.tensor.DType;
import dev.llamafit.tensor.Tensor;

/**
 * Keeps fp16 backward passes inside fp16's range: the loss gradient is multiplied by {@link #scale()} before backward,
 * so small gradients do not flush to zero, and the fp32 gradients are divided by it again ({@link #unscale}) before
 * clipping and the optimizer. A step whose gradients hold inf or NaN is skipped by the caller and the scale halves;
 * after {@link #GROWTH_INTERVAL} clean steps in a row it doubles. As GradScaler: initial scale 2^16, growth ×2,
 * backoff ×0.5, interval 2000, and growth only when the doubled scale is still a finite float. Starting at a power of
 * two and only doubling or halving, the scale stays a power of two, so unscaling is exact (away from subnormals).
 *
 * <p>One addition: the count of consecutive skipped steps, so a trainer can stop a run whose every step overflows
 * (GradScaler would go on halving forever) and a resumed run stops where the uninterrupted one would.
 */
public final class LossScaler {
    /** GradScaler's init_scale: 2^16, large enough that small gradients survive fp16, small enough to back off fast. */
    public static final float INITIAL_SCALE = 65536f;
    /** GradScaler's growth_factor. */
    public static final float GROWTH_FACTOR = 2f;
    /** GradScaler's backoff_factor. */
    public static final float BACKOFF_FACTOR = 0.5f;
    /** GradScaler's growth_interval: clean steps in a row before the scale grows. */
    public static final int GROWTH_INTERVAL = 2000;

    /**
     * What a checkpoint holds.
     *
     * @param scale            the scale the next step's backward uses; a positive finite float
     * @param growthTracker    clean steps since the scale last changed (GradScaler's _growth_tracker), in [0, interval)
     * @param consecutiveSkips steps skipped in a row up to now (0 after a clean step)
     */
    public record State(float scale, int growthTracker, long consecutiveSkips) {
        public State {
            if (!(scale > 0) || !Float.isFinite(scale)) throw new IllegalArgumentException("loss scale must be a positive finite number, got " + scale);
            if (growthTracker < 0 || growthTracker >= GROWTH_INTERVAL)
                throw new IllegalArgumentException("growth tracker must be in [0, " + GROWTH_INTERVAL + "), got " + growthTracker);
            if (consecutiveSkips < 0) throw new IllegalArgumentException("consecutive skips must be >= 0, got " + consecutiveSkips);
        }

        /** A fresh scaler's state. */
        public static State initial() { return new State(INITIAL_SCALE, 0, 0); }
    }

    private float scale;
    private int growthTracker;
    private long consecutiveSkips;

    /** A fresh scaler (scale 2^16). */
    public LossScaler() { this(State.initial()); }

    /** A scaler continuing from a checkpoint's state. */
    public LossScaler(State s) {
        this.scale = s.scale();
        this.growthTracker = s.growthTracker();
        this.consecutiveSkips = s.consecutiveSkips();
    }

    /** The factor the next backward's loss gradient is multiplied by. */
    public float scale() { return scale; }

    public int growthTracker() { return growthTracker; }

    /** Steps skipped in a row up to now. */
    public long consecutiveSkips() { return consecutiveSkips; }

    public State state() { return new State(scale, growthTracker, consecutiveSkips); }

    /**
     * Multiplies every gradient by 1/scale in place (exact for a power-of-two scale) and returns the L2 norm of the
     * unscaled gradients, which is finite exactly when every value is: the squares are summed in double, and even
     * Long.MAX_VALUE squares of the largest float stay far below the largest double. The norm is the one
     * {@link GradClip} measures (same blocks, same order), so it does not depend on the thread count.
     */
    public double unscale(List<Tensor> grads) {
        Kernels k = KernelBackends.get();
        // GradScaler takes the reciprocal in double and rounds it to float; for a power of two both are exact.
        float inv = (float) (1.0 / scale);
        for (Tensor g : grads) {
            if (g.dtype() != DType.F32) throw new IllegalArgumentException("gradient " + g.name() + " is " + g.dtype() + ", unscaling needs F32");
            MemorySegment s = g.segment();
            UpdateKernels.forBlocks(g.elements(), (from, to) -> k.scale(s, from, to - from, inv));
        }
        return GradClip.globalNorm(grads);
    }

    /**
     * Adjusts the scale after a step: on inf/NaN gradients (the step was skipped) it halves and the tracker restarts;
     * otherwise the tracker counts the clean step and, at {@link #GROWTH_INTERVAL}, the scale doubles (if still
     * finite) and the tracker restarts.
     */
    public void update(boolean foundInf) {
        if (foundInf) {
            scale *= BACKOFF_FACTOR;
            growthTracker = 0;
            consecutiveSkips++;
            return;
        }
        consecutiveSkips = 0;
        int clean = growthTracker + 1;
        if (clean == GROWTH_INTERVAL) {
            float grown = scale * GROWTH_FACTOR;
            if (Float.isFinite(grown)) scale = grown;
            growthTracker = 0;
        } else {
            growthTracker = clean;
        }
    }
}
