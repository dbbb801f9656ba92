// A training run that stopped for a reason in its numbers or settings, not a bug: e.g. the loss became NaN.
package dev.llamafit.train;

/** Ends a run that cannot go on (the CLI exits 1 with "failed: " and this message, no "internal error"). */
public final class RunFailure extends RuntimeException {
    public RunFailure(String message) { super(message); }
}
