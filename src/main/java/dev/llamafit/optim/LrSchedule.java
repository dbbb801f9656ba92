// Learning-rate schedules with transformers' warmup formulas: constant, linear decay, cosine decay.
package dev.llamafit.optim;

import java.util.Locale;

/**
 * The learning rate for the optimizer step about to be taken, as a function of {@code step}, the number of
 * optimizer steps already taken (0-based). This is how transformers uses torch.optim.lr_scheduler.LambdaLR:
 * the first optimizer step uses lr(0), and scheduler.step() after each optimizer step moves to lr(k + 1).
 * Each schedule is peakLr × the factor of the matching transformers function, written from its formula:
 * during warmup (step &lt; warmupSteps) the factor is step / max(1, warmupSteps), so lr(0) = 0 when there is warmup.
 */
public sealed interface LrSchedule permits LrSchedule.Constant, LrSchedule.Linear, LrSchedule.Cosine {
    /** The learning rate for the step after {@code step} steps were taken. */
    double lr(long step);

    /** The peak learning rate (the base lr that the factor multiplies). */
    double peakLr();

    /** Schedule names accepted by {@link #parse}. */
    String NAMES = "constant, linear, cosine";

    /**
     * The schedule called {@code name} ("constant", "linear" or "cosine", case-insensitive). The constant
     * schedule ignores {@code totalSteps}.
     *
     * @throws IllegalArgumentException for an unknown name (listing the valid ones) or inconsistent steps
     */
    static LrSchedule parse(String name, double peakLr, long warmupSteps, long totalSteps) {
        return switch (name == null ? "" : name.trim().toLowerCase(Locale.ROOT)) {
            case "constant" -> new Constant(peakLr, warmupSteps);
            case "linear" -> new Linear(peakLr, warmupSteps, totalSteps);
            case "cosine" -> new Cosine(peakLr, warmupSteps, totalSteps);
            default -> throw new IllegalArgumentException("unknown learning-rate schedule '" + name + "' (valid: " + NAMES + ")");
        };
    }

    /** transformers.get_constant_schedule_with_warmup (warmupSteps 0: get_constant_schedule). */
    record Constant(double peakLr, long warmupSteps) implements LrSchedule {
        public Constant {
            checkPeak(peakLr);
            if (warmupSteps < 0) throw new IllegalArgumentException("warmup steps must be >= 0, got " + warmupSteps);
        }

        @Override
        public double lr(long step) {
            checkStep(step);
            // float(current_step) / float(max(1.0, num_warmup_steps)) during warmup, then 1.0.
            double factor = step < warmupSteps ? (double) step / Math.max(1.0, (double) warmupSteps) : 1.0;
            return peakLr * factor;
        }
    }

    /** transformers.get_linear_schedule_with_warmup: linear warmup to the peak, then linear decay to 0 at totalSteps. */
    record Linear(double peakLr, long warmupSteps, long totalSteps) implements LrSchedule {
        public Linear {
            checkPeak(peakLr);
            checkSteps(warmupSteps, totalSteps);
        }

        @Override
        public double lr(long step) {
            checkStep(step);
            if (step < warmupSteps) return peakLr * ((double) step / Math.max(1, warmupSteps));
            // max(0.0, float(num_training_steps - current_step) / float(max(1, num_training_steps - num_warmup_steps)))
            return peakLr * Math.max(0.0, (double) (totalSteps - step) / Math.max(1, totalSteps - warmupSteps));
        }
    }

    /**
     * transformers.get_cosine_schedule_with_warmup: after warmup, factor 0.5·(1 + cos(π·numCycles·2·progress)),
     * progress = (step − warmup) / max(1, total − warmup), floored at 0; numCycles 0.5 (the default) is one
     * half-cosine from the peak down to 0.
     */
    record Cosine(double peakLr, long warmupSteps, long totalSteps, double numCycles) implements LrSchedule {
        public Cosine {
            checkPeak(peakLr);
            checkSteps(warmupSteps, totalSteps);
            if (!(numCycles > 0 && Double.isFinite(numCycles))) throw new IllegalArgumentException("cosine num_cycles must be > 0, got " + numCycles);
        }

        /** With transformers' default num_cycles = 0.5. */
        public Cosine(double peakLr, long warmupSteps, long totalSteps) {
            this(peakLr, warmupSteps, totalSteps, 0.5);
        }

        @Override
        public double lr(long step) {
            checkStep(step);
            if (step < warmupSteps) return peakLr * ((double) step / Math.max(1, warmupSteps));
            double progress = (double) (step - warmupSteps) / Math.max(1, totalSteps - warmupSteps);
            return peakLr * Math.max(0.0, 0.5 * (1.0 + Math.cos(Math.PI * numCycles * 2.0 * progress)));
        }
    }

    private static void checkPeak(double peakLr) {
        if (!(peakLr >= 0 && Double.isFinite(peakLr))) throw new IllegalArgumentException("peak learning rate must be finite and >= 0, got " + peakLr);
    }

    private static void checkSteps(long warmupSteps, long totalSteps) {
        if (warmupSteps < 0) throw new IllegalArgumentException("warmup steps must be >= 0, got " + warmupSteps);
        if (totalSteps < 0) throw new IllegalArgumentException("total steps must be >= 0, got " + totalSteps);
        if (warmupSteps > totalSteps) {
            throw new IllegalArgumentException("warmup steps (" + warmupSteps + ") exceed total steps (" + totalSteps
                    + "): the decay would never start");
        }
    }

    private static void checkStep(long step) {
        if (step < 0) throw new IllegalArgumentException("schedule step must be >= 0, got " + step);
    }
}
