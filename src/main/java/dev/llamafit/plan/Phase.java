// The moments of a training step at which memory peaks.
package dev.llamafit.plan;

/**
 * A step's memory is the maximum over these moments, not the sum of everything ever allocated: the end of the forward
 * pass (loss included), the start of backward (the LM head and loss gradients, with every saved activation still
 * held), the backward through the blocks (gradients building up, recomputation under checkpointing), and the
 * optimizer step.
 */
public enum Phase {
    FORWARD, BACKWARD_HEAD, BACKWARD, OPTIMIZER_STEP;

    public String key() { return name().toLowerCase(java.util.Locale.ROOT); }
}
