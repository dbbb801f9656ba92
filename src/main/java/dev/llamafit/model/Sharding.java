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
 * With {@code masters} (full fine-tuning under mixed precision: the values are fp32 masters of the 16-bit working copies
 * the GEMMs read) stages 1-2 shard the values too: this rank keeps its padded shard of every unit (what its optimizer
 * steps), plus whole fp32 copies of the tensors the forward reads in fp32 ({@link #readInFp32}: the embedding, the norms
 * and biases); after each step every unit is all-gathered through the staging buffer in chunks of {@link #gatherChunk}
 * elements per rank and rounded into the working copies, so no whole fp32 matrix exists on any rank.
 *
 * <p>With one rank nothing is sharded whatever the stage: {@link #stage()} as asked, {@link #effectiveStage()} 0.
 */
public record Sharding(int ranks, int rank, int stage, boolean masters) {
    public Sharding {
        if (ranks < 1 || rank < 0 || rank >= ranks) throw new IllegalArgumentException("rank " + rank + " of " + ranks);
        if (stage < 0 || stage > 3) throw new IllegalArgumentException("ZeRO stage must be 0-3, got " + stage);
    }

    /** Values that are not masters of working copies (fp32 training, LoRA's adapters). */
    public Sharding(int ranks, int rank, int stage) { this(ranks, rank, stage, false); }

    /** The same rank and stage, the values masters of 16-bit working copies or not. */
    public Sharding withMasters(boolean masters) { return new Sharding(ranks, rank, stage, masters); }

    /** Stages 1-2 over several ranks with fp32 masters: each rank holds its shard of the masters (see above). */
    public boolean shardsMasters() { return masters && (effectiveStage() == 1 || effectiveStage() == 2); }

    /**
     * Whether the forward reads a trainable tensor in fp32 rather than through a 16-bit working copy: vectors (norm gains,
     * biases) and the embedding, whose rows are looked up in fp32 (autocast's way; tied, it also has a working copy as
     * the LM head). Under {@link #shardsMasters()} these are kept whole.
     */
    public static boolean readInFp32(dev.llamafit.tensor.TensorSpec s) {
        return s.shape().rank() != 2 || s.name().equals(ParameterLayout.EMBED);
    }

    /** Elements of the whole fp32 copies {@link #shardsMasters()} keeps: Σ of the tensors read in fp32. */
    public long wholeFp32Elements(ShardLayout l) {
        check(l);
        if (!shardsMasters()) return 0;
        long n = 0;
        for (ShardLayout.Unit u : l.units())
            for (dev.llamafit.tensor.TensorSpec s : u.specs()) if (readInFp32(s)) n = Math.addExact(n, s.elements());
        return n;
    }

    /**
     * Elements gathered whole (workspace temporaries, one per unit, padded) while a checkpoint's model file or final/ is
     * written, when this rank holds only shards of the values (stage 3, or {@link #shardsMasters()}); else 0.
     */
    public long saveGatherElements(ShardLayout l) {
        check(l);
        if (effectiveStage() < 3 && !shardsMasters()) return 0;
        long n = 0;
        for (ShardLayout.Unit u : l.units()) n = Math.addExact(n, u.gathered(ranks));
        return n;
    }

    /**
     * Under {@link #shardsMasters()}: each rank's elements per all-gather of a unit's masters, so that one gather
     * (chunk × ranks) fits the staging shard: ⌊largest shard / ranks⌋, at least 1.
     */
    public long gatherChunk(ShardLayout l) {
        check(l);
        return Math.max(1, l.largestShard() / ranks);
    }

    /** One process, nothing sharded. */
    public static final Sharding NONE = new Sharding(1, 0, 0);

    /** The stage that applies: 0 on one rank. */
    public int effectiveStage() { return ranks > 1 ? stage : 0; }

    /** Elements of the trainable values this rank holds (stage 3: shards + gathered buffers; sharded masters: shards + fp32 copies). */
    public long valueElements(ShardLayout l) {
        check(l);
        if (shardsMasters()) return Math.addExact(l.shardElements(), wholeFp32Elements(l));
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

    /**
     * Workspace elements: the staging shard of stages 1-3 (the all-gather's input, the reduce-scatter's output; sharded
     * masters: the output of each chunk's all-gather, which a tiny unit may need more than a shard for).
     */
    public long workspaceElements(ShardLayout l) {
        check(l);
        if (shardsMasters()) return Math.max(l.largestShard(), Math.multiplyExact(gatherChunk(l), (long) ranks));
        return effectiveStage() >= 1 ? l.largestShard() : 0;
    }

    private void check(ShardLayout l) {
        if (l.ranks() != ranks) throw new IllegalArgumentException("a layout over " + l.ranks() + " ranks for a run of " + ranks);
    }
}
