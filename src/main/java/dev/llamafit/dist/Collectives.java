// Collective operations across the ranks of a data-parallel job: all-reduce, reduce-scatter, all-gather, broadcast, barrier.
package dev.llamafit.dist;

import java.lang.foreign.MemorySegment;
import java.util.concurrent.Callable;

import dev.llamafit.io.InputException;

/**
 * The ranks of one job and the collectives between them, on buffers of native-order fp32 values (little-endian here,
 * as {@code Tensor.F32_LE}). Every rank must make the same calls in the same order with the same counts; a call returns
 * when this rank's part is done. Calls on one instance are serialised (one at a time, from any thread).
 *
 * <p><b>Reduction order.</b> A sum is {@code ((x₀ + x₁) + x₂) + … + x_{N-1}} in fp32, element by element, where xᵣ is
 * rank r's value: always rank order, whatever the size of the buffer or the transport's choice of algorithm, so the
 * result is bit-identical on every rank and from run to run, and {@link #reduceScatterSum} gives exactly the slice of
 * {@link #allReduceSum}'s result. (Open MPI's own MPI_Allreduce picks its algorithm, and so its order, by message size;
 * {@link OpenMpi} does not use it for sums.)
 *
 * <p><b>Shards.</b> A buffer of {@code count} values is split into {@link #size()} equal shards of
 * {@link #shardCount(long, int) shardCount} = ⌈count / size⌉ values; rank r owns elements {@code [r·shard, (r+1)·shard)}
 * of the buffer as if it were padded at the end with zeros to size × shard values. The padding exists only in the
 * shard buffers: a shard buffer always holds {@code shard} values, and the elements of it past {@code count} are 0 after
 * {@link #reduceScatterSum} and ignored by {@link #allGather}.
 */
public interface Collectives extends AutoCloseable {
    /** This process's rank, 0 ≤ rank < size. */
    int rank();

    /** The number of ranks in the job. */
    int size();

    /** What carries the calls, in words (for logs and benchmarks). */
    String describe();

    /** Values per shard of a {@code count}-value buffer split over {@code size} ranks: ⌈count / size⌉. */
    static long shardCount(long count, int size) {
        if (count < 0 || size < 1) throw new IllegalArgumentException("count " + count + ", size " + size);
        return (count + size - 1) / size;
    }

    /** {@link #shardCount(long, int)} for this job. */
    default long shardCount(long count) { return shardCount(count, size()); }

    /** In place: every rank's first {@code count} values of {@code data} become the rank-order sum of all ranks' values. */
    void allReduceSum(MemorySegment data, long count);

    /**
     * {@code shard} ({@link #shardCount(long) shardCount(count)} values) becomes this rank's shard of the rank-order sum
     * of every rank's {@code data} ({@code count} values, which are left as they were).
     */
    void reduceScatterSum(MemorySegment data, long count, MemorySegment shard);

    /**
     * The inverse of the split: every rank's {@code out} ({@code count} values) becomes the concatenation of all ranks'
     * {@code shard}s ({@link #shardCount(long) shardCount(count)} values each), the padding past {@code count} dropped.
     */
    void allGather(MemorySegment shard, long count, MemorySegment out);

    /** A collective in flight ({@link #allGatherAsync}); its buffers must stay untouched until it is done. */
    interface Pending {
        /** Advances it (Open MPI here makes progress only inside such calls) and says whether it is done. */
        boolean test();

        /** Returns when it is done. */
        void await();
    }

    /** A collective that was done when it was started. */
    Pending DONE = new Pending() {
        @Override public boolean test() { return true; }
        @Override public void await() {}
    };

    /**
     * Starts an all-gather of padded shards: every rank's {@code out} ({@code shardCount} × size values) becomes the
     * concatenation of all ranks' {@code shard}s ({@code shardCount} values each), padding included. Non-blocking where the
     * transport can (MPI_Iallgather); the default does it at once. Collective: every rank starts the same ones in the
     * same order as its other calls, and must drive it ({@link Pending#test}) or wait for it.
     */
    default Pending allGatherAsync(MemorySegment shard, long shardCount, MemorySegment out) {
        allGather(shard, Math.multiplyExact(shardCount, (long) size()), out);
        return DONE;
    }

    /** Every rank's first {@code count} values of {@code data} become rank {@code root}'s. */
    void broadcast(MemorySegment data, long count, int root);

    /** Returns when every rank has called it. */
    void barrier();

    /**
     * Ends the whole job now with {@code code}: for a fatal exception on one rank, so that the others do not wait forever
     * in a collective. The single process does nothing (its caller exits as usual).
     */
    void abort(int code);

    /**
     * Runs {@code body}; if it throws on a rank of a multi-rank job, says so on stderr and {@link #abort aborts} the job
     * (code 2 for an {@link InputException}, else 1), so no other rank waits forever for this one. A single process
     * rethrows, for the command line to report as usual.
     */
    default <T> T abortOnFailure(Callable<T> body) throws Exception {
        try {
            return body.call();
        } catch (Throwable t) {
            if (size() == 1) throw t;
            System.err.println("llamafit: rank " + rank() + " of " + size() + " failed, aborting the job: "
                    + (t.getMessage() != null ? t.getMessage() : t.toString()));
            System.err.flush();
            abort(t instanceof InputException ? 2 : 1);
            throw t; // MPI_Abort does not return; this is for a transport whose abort does
        }
    }

    /** Leaves the job (MPI_Finalize); collective, like the calls above. */
    @Override
    void close();

    /**
     * Open MPI when this process was started by {@code mpirun} (it sets OMPI_COMM_WORLD_SIZE), else the single process.
     * Under mpirun without a usable libmpi.so.40 this is an {@link InputException} naming what to install, rather than N
     * independent single-process runs.
     */
    static Collectives open() {
        String world = System.getenv("OMPI_COMM_WORLD_SIZE");
        if (world == null) return new SingleProcess();
        String why = OpenMpi.unavailableReason();
        if (why != null)
            throw new InputException("started by mpirun (OMPI_COMM_WORLD_SIZE=" + world + ") but " + why
                    + "; install Open MPI (apt-get install -y openmpi-bin libopenmpi-dev) or run without mpirun");
        return OpenMpi.init();
    }

    /** Throws unless {@code segment} holds at least {@code count} fp32 values: native calls cannot check bounds themselves. */
    static void checkFloats(String what, MemorySegment segment, long count) {
        if (count < 0) throw new IllegalArgumentException(what + ": count " + count + " < 0");
        if (segment.byteSize() / Float.BYTES < count)
            throw new IllegalArgumentException(what + ": " + count + " values asked for, but the buffer holds " + segment.byteSize() + " bytes");
    }
}
