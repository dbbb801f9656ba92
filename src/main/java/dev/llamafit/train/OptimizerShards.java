// ZeRO stage 1: this rank steps the optimizer on its shard of every parameter, then all-gathers the updated weights.
package dev.llamafit.train;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;

import dev.llamafit.dist.Collectives;
import dev.llamafit.memory.Category;
import dev.llamafit.memory.MemoryLedger;
import dev.llamafit.optim.Optimizer;
import dev.llamafit.optim.Param;
import dev.llamafit.tensor.DType;
import dev.llamafit.tensor.Shape;
import dev.llamafit.tensor.Tensor;

/**
 * Every trainable tensor of n elements is split as {@link Collectives} splits a buffer: rank r owns elements
 * {@code [r·s, min((r+1)·s, n))}, s = ⌈n / size⌉. The optimizer is handed views of those ranges only (same names, flat
 * shapes), so it allocates its state for them alone: each rank's optimizer memory is 1/size of stage 0's (rounded up per
 * tensor). The gradients are already the global sum on every rank, and AdamW and SGD are element-wise, so the updated
 * ranges are bit for bit stage 0's; the all-gather moves bytes without arithmetic, so every rank ends with the same
 * weights stage 0 would have. A rank whose range of a small tensor is empty passes no view of it.
 */
final class OptimizerShards {
    private final Collectives collectives;
    private final List<Param> full;
    private final List<Param> shards = new ArrayList<>();
    private final long[] from;
    private final long[] length;

    OptimizerShards(Collectives collectives, List<Param> params) {
        this.collectives = collectives;
        this.full = List.copyOf(params);
        from = new long[full.size()];
        length = new long[full.size()];
        for (int i = 0; i < full.size(); i++) {
            Param p = full.get(i);
            if (p.value().dtype() != DType.F32)
                throw new IllegalStateException("parameter " + p.name() + ": ZeRO stage 1 shards fp32 parameters, got " + p.value().dtype());
            long n = p.elements(), s = collectives.shardCount(n);
            from[i] = Math.min(n, collectives.rank() * s);
            length[i] = Math.min(n, from[i] + s) - from[i];
            if (length[i] > 0) shards.add(new Param(p.name(), slice(p.value(), from[i], length[i]), slice(p.grad(), from[i], length[i]), p.decay()));
        }
    }

    private static Tensor slice(Tensor t, long from, long length) {
        return new Tensor(t.name(), DType.F32, Shape.of(length),
                t.segment().asSlice(from * Float.BYTES, length * Float.BYTES));
    }

    /** The views this rank's optimizer steps. */
    List<Param> mine() { return shards; }

    /** Bytes of fp32 state per element the optimizer keeps (8 for AdamW) times this rank's shard elements, summed. */
    long shardElements() {
        long sum = 0;
        for (long l : length) sum += l;
        return sum;
    }

    /** One optimizer step on this rank's shards, then every parameter gathered whole on every rank. */
    void step(Optimizer optimizer, double lr) {
        // Every rank must step (one step counter serves all its shards); only a model of scalars could leave one none.
        if (shards.isEmpty()) throw new IllegalStateException("rank " + collectives.rank() + " holds no shard of any parameter");
        optimizer.step(shards, lr);
        gather();
    }

    /** Each parameter becomes the concatenation of the ranks' shards (a padded copy of this rank's, as the collective needs). */
    private void gather() {
        try (Arena arena = Arena.ofConfined()) {
            for (int i = 0; i < full.size(); i++) {
                Param p = full.get(i);
                long n = p.elements(), s = collectives.shardCount(n);
                MemorySegment mine = arena.allocate(s * Float.BYTES, Float.BYTES); // zeroed: the padding past n
                if (length[i] > 0)
                    mine.copyFrom(p.value().segment().asSlice(from[i] * Float.BYTES, length[i] * Float.BYTES));
                collectives.allGather(mine, n, p.value().segment());
            }
        }
    }

    /**
     * The optimizer state whole, for a checkpoint: every entry "kind/param" gathered from the ranks' shards into a tensor
     * of the parameter's shape, allocated under WORKSPACE (the checkpoint's temporary, not the optimizer's held state).
     * Collective: every rank calls it at the same step; the caller closes the tensors.
     */
    List<Tensor> gatherState(Optimizer optimizer, MemoryLedger ledger) {
        Map<String, Tensor> state = optimizer.state();
        List<Tensor> out = new ArrayList<>();
        List<String> kinds = new ArrayList<>();
        for (String key : state.keySet()) {
            String kind = key.substring(0, key.indexOf('/'));
            if (!kinds.contains(kind)) kinds.add(kind);
        }
        try (Arena arena = Arena.ofConfined()) {
            for (String kind : kinds)
                for (int i = 0; i < full.size(); i++) {
                    Param p = full.get(i);
                    long n = p.elements(), s = collectives.shardCount(n);
                    MemorySegment mine = arena.allocate(s * Float.BYTES, Float.BYTES);
                    Tensor part = state.get(kind + "/" + p.name());
                    if (length[i] > 0) {
                        if (part == null || part.dtype() != DType.F32 || part.elements() != length[i])
                            throw new IllegalStateException("optimizer state " + kind + "/" + p.name() + " is not this rank's fp32 shard: " + part);
                        mine.copyFrom(part.segment());
                    }
                    Tensor whole = Tensor.allocate(ledger, Category.WORKSPACE, kind + "/" + p.name(), DType.F32, p.value().shape());
                    collectives.allGather(mine, n, whole.segment());
                    out.add(whole);
                }
        }
        return out;
    }
}
