// Plain data parallelism (ZeRO stage 0): this rank's rows of each global batch, and the sums of gradients and losses across ranks.
package dev.llamafit.train;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.List;

import dev.llamafit.dist.Collectives;
import dev.llamafit.io.data.Batches;
import dev.llamafit.io.data.Example;
import dev.llamafit.optim.Param;
import dev.llamafit.tensor.DType;

/**
 * Every rank draws the same global micro-batch of size × B rows (one process with batch size × B would draw exactly it)
 * and trains rows {@code [rank·B, (rank+1)·B)} of it. The loss of each rank is normalised by the global batch's counted
 * tokens, so the rank-order sum of the ranks' gradients is the single process's mean-loss gradient (up to the order of
 * fp32 additions); every rank then clips that same sum and takes the same optimizer step, so the replicas stay equal.
 * With one rank nothing here is called: a run without mpirun is the single-process run, bit for bit.
 */
final class DataParallel {
    final Collectives collectives;
    /** The ZeRO stage: 0 replicates everything, 1 shards the optimizer state, 2 the gradients too, 3 the weights too ({@link ZeroState}). */
    final int zero;
    /**
     * ZeRO-3 starts the next block's all-gather while this one computes; off with {@code -Dllamafit.zero3.prefetch=false}
     * (for benchmarks comparing the communication time).
     */
    final boolean prefetch = !"false".equals(System.getProperty(PREFETCH_PROPERTY));
    /** The system property that turns ZeRO-3's prefetch off. */
    public static final String PREFETCH_PROPERTY = "llamafit.zero3.prefetch";
    private long collectiveNanos, collectiveCalls;

    DataParallel(Collectives collectives, int zero) {
        if (zero < 0 || zero > 3) throw new IllegalArgumentException("ZeRO stage " + zero + " does not exist");
        this.collectives = collectives;
        this.zero = zero;
    }

    /** ZeRO stage 1 or above over more than one rank: the optimizer steps this rank's shards only. */
    boolean shardsOptimizer() { return zero >= 1 && distributed(); }

    /** This rank's view of the sharding. */
    dev.llamafit.model.Sharding sharding() { return new dev.llamafit.model.Sharding(size(), rank(), zero); }

    /** Adds one collective's time as the calling thread saw it (blocked in it, or starting a non-blocking one). */
    void countCollective(long nanos) {
        collectiveNanos += nanos;
        collectiveCalls++;
    }

    /** Seconds the training thread spent in collectives so far (gradient sums, reduce-scatters, gathers and their waits). */
    double collectiveSeconds() { return collectiveNanos / 1e9; }

    /** Collective calls counted by {@link #collectiveSeconds}. */
    long collectiveCalls() { return collectiveCalls; }

    int rank() { return collectives.rank(); }

    int size() { return collectives.size(); }

    /** More than one rank: the sums below are needed. */
    boolean distributed() { return collectives.size() > 1; }

    /** Rank 0, the one that prints and writes the run folder. */
    boolean leader() { return collectives.rank() == 0; }

    /** This rank's {@code rows} rows of a global batch of size() × rows rows; its tokens are the rows' counted labels. */
    Batches.Batch slice(Batches.Batch global, int rows) {
        if (global.inputIds().length != rows * size())
            throw new IllegalArgumentException("a global batch of " + global.inputIds().length + " rows for " + size() + " ranks of " + rows);
        int from = rank() * rows;
        int[][] ids = new int[rows][], labels = new int[rows][];
        long tokens = 0;
        for (int r = 0; r < rows; r++) {
            ids[r] = global.inputIds()[from + r];
            labels[r] = global.labels()[from + r];
            for (int l : labels[r]) if (l != Example.IGNORE) tokens++;
        }
        return new Batches.Batch(ids, labels, tokens, global.position());
    }

    /** Every parameter's gradient becomes the rank-order sum of all ranks' (fp32 gradients only). */
    void sumGradients(List<Param> params) {
        for (Param p : params) {
            if (p.grad().dtype() != DType.F32)
                throw new IllegalStateException("parameter " + p.name() + ": data-parallel sums fp32 gradients, got " + p.grad().dtype());
            collectives.allReduceSum(p.grad().segment(), p.grad().elements());
        }
    }

    /**
     * Element by element, the sum over ranks (in rank order, in double) of {@code values}. The doubles travel as raw bits
     * through an all-gather, which moves bytes without arithmetic, so the sum is exact double arithmetic on every rank.
     */
    double[] sum(double... values) {
        long t0 = System.nanoTime();
        try {
            return sumUncounted(values);
        } finally {
            countCollective(System.nanoTime() - t0);
        }
    }

    private double[] sumUncounted(double... values) {
        int n = values.length, ranks = size();
        try (Arena arena = Arena.ofConfined()) {
            // A double is two fp32 slots; the collectives count fp32 values.
            MemorySegment mine = arena.allocate(ValueLayout.JAVA_LONG, n);
            MemorySegment all = arena.allocate(ValueLayout.JAVA_LONG, (long) n * ranks);
            for (int i = 0; i < n; i++) mine.setAtIndex(ValueLayout.JAVA_LONG, i, Double.doubleToRawLongBits(values[i]));
            collectives.allGather(mine, 2L * n * ranks, all);
            double[] out = new double[n];
            for (int r = 0; r < ranks; r++)
                for (int i = 0; i < n; i++) out[i] += Double.longBitsToDouble(all.getAtIndex(ValueLayout.JAVA_LONG, (long) r * n + i));
            return out;
        }
    }
}
