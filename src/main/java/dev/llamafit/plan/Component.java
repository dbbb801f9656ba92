// One line of a memory plan: a named amount of memory, where it lives, its ledger category, and its size per phase.
package dev.llamafit.plan;

import java.util.Arrays;

import dev.llamafit.memory.Category;

/**
 * @param name          e.g. "weights", "activations.checkpoints", "logits"
 * @param column        device, host or disk
 * @param category      the ledger category it is filed under
 * @param accounting    which counters see it (PyTorch metrics)
 * @param bytesByPhase  bytes held at the peak of each {@link Phase}, indexed by ordinal
 * @param formula       where the number comes from (shown in reports; cites the source)
 */
public record Component(String name, Column column, Category category, Accounting accounting, long[] bytesByPhase, String formula) {
    public Component {
        if (name == null || name.isEmpty()) throw new IllegalArgumentException("component needs a name");
        if (bytesByPhase.length != Phase.values().length) throw new IllegalArgumentException("one size per phase");
        bytesByPhase = bytesByPhase.clone();
        for (long b : bytesByPhase) if (b < 0) throw new IllegalArgumentException(name + ": negative bytes");
    }

    /** A component of the same size in every phase. */
    public static Component constant(String name, Column column, Category category, long bytes, String formula) {
        return new Component(name, column, category, Accounting.TENSOR, new long[]{bytes, bytes, bytes, bytes}, formula);
    }

    public long bytes(Phase p) { return bytesByPhase[p.ordinal()]; }

    /** The largest size over phases. */
    public long bytes() { return Arrays.stream(bytesByPhase).max().orElse(0); }

    @Override public long[] bytesByPhase() { return bytesByPhase.clone(); }

    @Override public boolean equals(Object o) {
        return o instanceof Component c && name.equals(c.name) && column == c.column && category == c.category
                && accounting == c.accounting && Arrays.equals(bytesByPhase, c.bytesByPhase) && formula.equals(c.formula);
    }

    @Override public int hashCode() { return name.hashCode() * 31 + Arrays.hashCode(bytesByPhase); }
}
