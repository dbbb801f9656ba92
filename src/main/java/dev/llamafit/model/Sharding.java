// Which ZeRO stage a data-parallel run uses, on how many ranks, seen from one rank: and the flat buffers that makes it hold.
package dev.llamafit.model;

/**
 * A rank's view of a ZeRO run: {@code ranks} ranks, this one {@code rank}, stage 0-3. The buffer sizes below are what
 * the engine ({@code train.ZeroState}) allocates for the trainable tensors' {@link ShardLayout} and what the planner
 * sums for each rank, so plan and ledger agree by construction. Sizes are fp32 elements:
 * <ul>
 *   <li>stage 0: the values and the gradients of every unit, whole; the optimizer state for all of them;</li>
 *   <li>stage 1: as 0, but the optimizer state for this rank's shard only, plus one shard-sized staging buffer
 *       (workspace) through which each unit's shard is all-gathered after the step;</li>
 *   <li>stage 2: as 1, but the gradients are this rank's shard of every unit, plus one block-sized bucket that each
 *       block's backward fills and that is reduce-scattered right after it, plus whole gradients of the units outside
 *       the blocks (embedding; final norm and LM head), reduce-scattered at the end of the backward;</li>
 *   <li>stage 3: as 2, but the values are this rank's shard of every unit, plus gathered buffers: the units outside
 *       the blocks (held for the micro-batch) and two block buffers (the block computing, the next one prefetched).</li>
 * </ul>
 * With one rank nothing is sharded whatever the stage: {@link #stage()} as asked, {@link #effectiveStage()} 0.
 */
public record Sharding(int ranks, int rank, int stage) {
    public Sharding {
        if (ranks < 1 || rank < 0 || rank >= ranks) throw new IllegalArgumentException("rank " + rank + " of " + ranks);
        if (stage < 0 || stage > 3) throw new IllegalArgumentException("ZeRO stage must be 0-3, got " + stage);
    }

    /** One process, nothing sharded. */
    public static final Sharding NONE = new Sharding(1, 0, 0);

    /** The stage that applies: 0 on one rank. */
    public int effectiveStage() { return ranks > 1 ? stage : 0; }

    /** Elements of the trainable values this rank holds (stage 3: shards + gathered buffers). */
    public long valueElements(ShardLayout l) {
        check(l);
        if (effectiveStage() < 3) return l.elements();
        return Math.addExact(l.shardElements(), gatheredElements(l));
    }

    /** Stage 3's gathered buffers: each unit outside the blocks, and min(2, blocks) block buffers. */
    public long gatheredElements(ShardLayout l) {
        check(l);
        if (effectiveStage() < 3) return 0;
        long n = Math.multiplyExact(Math.min(2, l.blocks()), l.largestGatheredBlock());
        for (ShardLayout.Unit u : l.units()) if (u.layer() < 0) n = Math.addExact(n, u.gathered(ranks));
        return n;
    }

    /** Elements of the gradients this rank holds (stages 2-3: shards + bucket + the units outside the blocks). */
    public long gradientElements(ShardLayout l) {
        check(l);
        if (effectiveStage() < 2) return l.elements();
        long n = Math.addExact(l.shardElements(), l.largestBlock());
        for (ShardLayout.Unit u : l.units()) if (u.layer() < 0) n = Math.addExact(n, u.elements());
        return n;
    }

    /** Elements the optimizer keeps state for on this rank (per kind: AdamW twice this, SGD once). */
    public long optimizerElements(ShardLayout l) {
        check(l);
        return effectiveStage() >= 1 ? l.owned(rank) : l.elements();
    }

    /** Workspace elements: the staging shard of stages 1-3 (the all-gather's input, the reduce-scatter's output). */
    public long workspaceElements(ShardLayout l) {
        check(l);
        return effectiveStage() >= 1 ? l.largestShard() : 0;
    }

    private void check(ShardLayout l) {
        if (l.ranks() != ranks) throw new IllegalArgumentException("a layout over " + l.ranks() + " ranks for a run of " + ranks);
    }
}
