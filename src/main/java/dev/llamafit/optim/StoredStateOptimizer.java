// What AdamW and SGD share: a StateStore of per-parameter state, the step counter, checkpoint load/save, close.
package dev.llamafit.optim;

import java.util.List;
import java.util.Map;
import java.util.Objects;

import dev.llamafit.memory.MemoryLedger;
import dev.llamafit.tensor.Tensor;

/**
 * An {@link Optimizer} whose state lives in one {@link StateStore} (one tensor per kind per parameter) with one step
 * counter. Subclasses implement {@link #step}, calling {@link #beginStep} first.
 */
abstract sealed class StoredStateOptimizer implements Optimizer permits AdamW, Sgd {
    final StateStore store;
    long steps;

    StoredStateOptimizer(MemoryLedger ledger, List<String> kinds) {
        this.store = new StateStore(Objects.requireNonNull(ledger, "ledger"), kinds);
    }

    /** Checks the learning rate and that {@code params} are the ones this optimizer has state for. */
    final void beginStep(List<Param> params, double lr) {
        if (!(lr >= 0 && Double.isFinite(lr))) throw new IllegalArgumentException("learning rate must be finite and >= 0, got " + lr);
        store.checkParams(params, steps);
    }

    @Override
    public final long steps() { return steps; }

    @Override
    public final Map<String, Tensor> state() { return store.snapshot(); }

    @Override
    public final void loadState(Map<String, Tensor> state, long steps) {
        if (steps < 0) throw new IllegalArgumentException("optimizer steps must be >= 0, got " + steps);
        checkValues(state);
        store.load(state);
        this.steps = steps;
    }

    @Override
    public final void loadState(Map<String, Tensor> state, long steps, List<Param> params) {
        loadState(state, steps);
        store.checkParams(params, steps);
    }

    /** Refuses state values this optimizer can never hold (a loaded checkpoint's): none by default. */
    void checkValues(Map<String, Tensor> state) {}

    @Override
    public final long stateBytes(List<Param> params) { return store.bytesFor(params); }

    @Override
    public final void close() { store.close(); }
}
