// The optimizer contract: step over the trainable parameters, and named state for checkpoints and the planner.
package dev.llamafit.optim;

import java.util.List;
import java.util.Map;

import dev.llamafit.tensor.Tensor;

/**
 * An optimizer over a list of {@link Param}s. State is created lazily on the first {@link #step} (as PyTorch
 * does), only for the parameters passed, through the ledger under {@code Category.OPTIMIZER}. The same trainable
 * parameters must be passed on every step: one step counter serves them all (PyTorch keeps one per parameter,
 * which is the same number when every parameter steps every time), so a parameter that appears after the first
 * step is rejected rather than given a silently wrong bias correction.
 */
public sealed interface Optimizer extends AutoCloseable permits StoredStateOptimizer, AdamW8bit, OffloadedOptimizer {
    /** One update of every parameter from its gradient, at learning rate {@code lr}. Gradients are not modified. */
    void step(List<Param> params, double lr);

    /** Steps taken so far (the bias-correction step t of the next step is steps() + 1). */
    long steps();

    /**
     * The state tensors by name, "&lt;kind&gt;/&lt;param name&gt;" (e.g. "exp_avg/w", "exp_avg_sq/w", "momentum/w"), in
     * parameter order. The tensors are live views owned by the optimizer: copy or write them before the next step.
     */
    Map<String, Tensor> state();

    /**
     * Replaces the state with copies of {@code state} (the caller keeps ownership of its tensors) and sets the
     * step counter. Checks names, dtypes and shapes among the entries; shapes against the parameters are checked
     * on the next {@link #step}, or at once with {@link #loadState(Map, long, List)}.
     *
     * @throws IllegalArgumentException naming the missing, unknown or mismatched entry
     */
    void loadState(Map<String, Tensor> state, long steps);

    /** As {@link #loadState(Map, long)}, then checks that every parameter has matching state and no entry is left over. */
    void loadState(Map<String, Tensor> state, long steps, List<Param> params);

    /** Bytes of state this optimizer holds for {@code params} once it has stepped (for the planner). */
    long stateBytes(List<Param> params);

    /** Frees the state; the optimizer may not be used afterwards. */
    @Override
    void close();
}
