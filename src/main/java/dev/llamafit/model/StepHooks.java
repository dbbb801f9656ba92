// Points in a training step where a technique (ZeRO's gathers and reduce-scatters, later offload) acts without editing the step.
package dev.llamafit.model;

/**
 * Called by {@link TrainingStep} on the calling thread, in this order for one micro-batch (L blocks):
 * <pre>
 *   beforeForward · (beforeBlockForward(l, false) · block l)  for l = 0 … L−1 · head and loss
 *   [backward only]  (beforeBlockForward(l, true) if l is recomputed · beforeBlockBackward(l) · block l⁻¹ · afterBlockBackward(l))
 *                    for l = L−1 … 0 · embedding⁻¹ · afterBackward
 * </pre>
 * An evaluation forward ({@code backward} false) calls only the forward points. Every method defaults to nothing, so a
 * step without hooks runs exactly as before. ZeRO-3 gathers a block's weights in {@code beforeBlockForward} and
 * {@code beforeBlockBackward}; ZeRO-2 zeroes its gradient bucket in {@code beforeBlockBackward} and reduce-scatters it in
 * {@code afterBlockBackward}, and the units outside the blocks (embedding, final norm, LM head) in {@code afterBackward}.
 */
public interface StepHooks {
    /** No hooks: the plain step. */
    StepHooks NONE = new StepHooks() {};

    /** Before the embedding lookup; {@code backward} tells a training forward from an evaluation one. */
    default void beforeForward(boolean backward) {}

    /** Before block {@code layer}'s forward; {@code recompute} for gradient checkpointing's recompute just before its backward. */
    default void beforeBlockForward(int layer, boolean recompute) {}

    /** Before block {@code layer}'s backward (after its recompute, if any). */
    default void beforeBlockBackward(int layer) {}

    /** After block {@code layer}'s backward: its gradients for this micro-batch are complete. */
    default void afterBlockBackward(int layer) {}

    /** After the embedding's backward: every gradient of this micro-batch is complete. */
    default void afterBackward() {}
}
