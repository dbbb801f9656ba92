// The job of one rank: every collective is the identity (or a copy), so single-process training needs no special case.
package dev.llamafit.dist;

import java.lang.foreign.MemorySegment;

/** Rank 0 of 1. Sums of one value are that value; the shard of a buffer is the whole buffer. */
public final class SingleProcess implements Collectives {
    @Override public int rank() { return 0; }
    @Override public int size() { return 1; }
    @Override public String describe() { return "single process"; }

    @Override
    public void allReduceSum(MemorySegment data, long count) { Collectives.checkFloats("allReduceSum data", data, count); }

    @Override
    public void reduceScatterSum(MemorySegment data, long count, MemorySegment shard) {
        Collectives.checkFloats("reduceScatterSum data", data, count);
        Collectives.checkFloats("reduceScatterSum shard", shard, count);
        MemorySegment.copy(data, 0, shard, 0, count * Float.BYTES);
    }

    @Override
    public void allGather(MemorySegment shard, long count, MemorySegment out) {
        Collectives.checkFloats("allGather shard", shard, count);
        Collectives.checkFloats("allGather out", out, count);
        MemorySegment.copy(shard, 0, out, 0, count * Float.BYTES);
    }

    @Override
    public void broadcast(MemorySegment data, long count, int root) {
        if (root != 0) throw new IllegalArgumentException("broadcast root " + root + " is not a rank of a 1-rank job");
        Collectives.checkFloats("broadcast data", data, count);
    }

    @Override public void barrier() {}
    @Override public void abort(int code) {}
    @Override public void close() {}
}
