// Collectives over Open MPI (libmpi.so.40, 4.x) through java.lang.foreign: MPI_COMM_WORLD, fp32 sums in rank order.
package dev.llamafit.dist;

import static java.lang.foreign.ValueLayout.ADDRESS;
import static java.lang.foreign.ValueLayout.JAVA_FLOAT;
import static java.lang.foreign.ValueLayout.JAVA_INT;

import java.lang.foreign.Arena;
import java.lang.foreign.FunctionDescriptor;
import java.lang.foreign.Linker;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.SymbolLookup;
import java.lang.invoke.MethodHandle;

/**
 * MPI_COMM_WORLD of the job mpirun started. Open MPI's predefined handles (MPI_COMM_WORLD, MPI_FLOAT, MPI_SUM,
 * MPI_ERRORS_ARE_FATAL) are, in its mpi.h, the addresses of exported globals ({@code ompi_mpi_comm_world},
 * {@code ompi_mpi_float}, {@code ompi_mpi_op_sum}, {@code ompi_mpi_errors_are_fatal}), so they are looked up as symbols.
 *
 * <p>Sums ({@link #allReduceSum}, {@link #reduceScatterSum}) are not MPI_Allreduce: each round, every rank sends each
 * other rank its piece of that rank's shard (MPI_Alltoall), sums the N pieces it received in rank order, and (for the
 * all-reduce) the sums are all-gathered back. That fixes the order of the fp32 additions, which MPI_Allreduce leaves to
 * the algorithm Open MPI picks by size (see {@link Collectives}). Rounds move at most {@link #ROUND_FLOATS} values per
 * rank through two staging buffers of that size, so the counts passed to MPI always fit its {@code int}, and the extra
 * memory is bounded (2 × 16 MiB) whatever the buffer. The broadcast is MPI_Bcast in rounds of below 2³¹ values; the
 * all-gather is one MPI_Allgather straight into the output when count is a multiple of the ranks (no padding to drop),
 * else MPI_Allgather in staging rounds.
 *
 * <p>Threads: initialised with MPI_THREAD_SERIALIZED (calls from any thread, one at a time), and every method is
 * synchronized, since the training loop's thread need not be the one that initialised MPI. Errors: the communicator's
 * handler is MPI_ERRORS_ARE_FATAL, so a failing call aborts the whole job instead of returning; {@link #abort} is
 * MPI_Abort, for a fatal Java exception on one rank. Open MPI does not replace the JVM's SIGSEGV/SIGBUS/SIGFPE handlers
 * (its opal_signal leaves signals that already have a handler alone), which the JVM needs.
 */
public final class OpenMpi implements Collectives {
    static final String LIBRARY = "libmpi.so.40";
    /** Values per rank and round through the staging buffers: 16 MiB of fp32. */
    static final int ROUND_FLOATS = 1 << 22;
    /** Values per MPI_Bcast: below int's limit. */
    static final int BCAST_FLOATS = 1 << 28;
    private static final int THREAD_SERIALIZED = 2; // mpi.h: SINGLE, FUNNELED, SERIALIZED, MULTIPLE
    private static final Linker LINKER = Linker.nativeLinker();

    /** The bound functions and handles, without initialising MPI. */
    record Binding(MethodHandle initThread, MethodHandle commRank, MethodHandle commSize, MethodHandle setErrhandler,
                   MethodHandle alltoall, MethodHandle allgather, MethodHandle allreduce, MethodHandle reduceScatterBlock,
                   MethodHandle bcast, MethodHandle barrier, MethodHandle finalizeFn, MethodHandle abortFn,
                   MethodHandle libraryVersion, MethodHandle iallgather, MethodHandle test, MethodHandle waitFn, MemorySegment world, MemorySegment f32, MemorySegment sum,
                   MemorySegment fatal) {
        static Binding load() {
            SymbolLookup mpi;
            try {
                mpi = SymbolLookup.libraryLookup(LIBRARY, Arena.global());
            } catch (IllegalArgumentException e) {
                throw new IllegalStateException(LIBRARY + " cannot be loaded (" + e.getMessage() + ")", e);
            }
            return new Binding(
                    bind(mpi, "MPI_Init_thread", ADDRESS, ADDRESS, JAVA_INT, ADDRESS),
                    bind(mpi, "MPI_Comm_rank", ADDRESS, ADDRESS),
                    bind(mpi, "MPI_Comm_size", ADDRESS, ADDRESS),
                    bind(mpi, "MPI_Comm_set_errhandler", ADDRESS, ADDRESS),
                    bind(mpi, "MPI_Alltoall", ADDRESS, JAVA_INT, ADDRESS, ADDRESS, JAVA_INT, ADDRESS, ADDRESS),
                    bind(mpi, "MPI_Allgather", ADDRESS, JAVA_INT, ADDRESS, ADDRESS, JAVA_INT, ADDRESS, ADDRESS),
                    bind(mpi, "MPI_Allreduce", ADDRESS, ADDRESS, JAVA_INT, ADDRESS, ADDRESS, ADDRESS),
                    bind(mpi, "MPI_Reduce_scatter_block", ADDRESS, ADDRESS, JAVA_INT, ADDRESS, ADDRESS, ADDRESS),
                    bind(mpi, "MPI_Bcast", ADDRESS, JAVA_INT, ADDRESS, JAVA_INT, ADDRESS),
                    bind(mpi, "MPI_Barrier", ADDRESS),
                    bind(mpi, "MPI_Finalize"),
                    bind(mpi, "MPI_Abort", ADDRESS, JAVA_INT),
                    bind(mpi, "MPI_Get_library_version", ADDRESS, ADDRESS),
                    bind(mpi, "MPI_Iallgather", ADDRESS, JAVA_INT, ADDRESS, ADDRESS, JAVA_INT, ADDRESS, ADDRESS, ADDRESS),
                    bind(mpi, "MPI_Test", ADDRESS, ADDRESS, ADDRESS),
                    bind(mpi, "MPI_Wait", ADDRESS, ADDRESS),
                    symbol(mpi, "ompi_mpi_comm_world"), symbol(mpi, "ompi_mpi_float"), symbol(mpi, "ompi_mpi_op_sum"),
                    symbol(mpi, "ompi_mpi_errors_are_fatal"));
        }

        private static MethodHandle bind(SymbolLookup l, String name, java.lang.foreign.MemoryLayout... args) {
            return LINKER.downcallHandle(symbol(l, name), FunctionDescriptor.of(JAVA_INT, args));
        }

        private static MemorySegment symbol(SymbolLookup l, String name) {
            return l.find(name).orElseThrow(() -> new IllegalStateException(LIBRARY + " has no symbol " + name + " (not Open MPI 4.x?)"));
        }
    }

    /** Loads on first use only; a failure is remembered, so the reason is the same every time. */
    private static final class Loaded {
        static final Object BINDING = loadOrReason();

        private static Object loadOrReason() {
            try {
                return Binding.load();
            } catch (RuntimeException | LinkageError e) {
                return e;
            }
        }
    }

    /** Null when libmpi.so.40 loads and has every function and handle used here, else why not. */
    public static String unavailableReason() {
        return Loaded.BINDING instanceof Throwable t ? t.getMessage() : null;
    }

    private static boolean initialised;

    private final Binding mpi;
    private final int rank, size;
    private final String version;
    private final Arena arena = Arena.ofShared();
    private MemorySegment send, recv;
    private boolean closed;

    /** MPI_Init_thread and MPI_COMM_WORLD's rank and size; once per process (MPI cannot be initialised twice). */
    public static synchronized OpenMpi init() {
        if (!(Loaded.BINDING instanceof Binding b)) throw new IllegalStateException("Open MPI is not usable: " + unavailableReason());
        if (initialised) throw new IllegalStateException("MPI is already initialised in this process");
        initialised = true;
        return new OpenMpi(b);
    }

    private OpenMpi(Binding mpi) {
        this.mpi = mpi;
        try (Arena a = Arena.ofConfined()) {
            MemorySegment out = a.allocate(JAVA_INT);
            check((int) mpi.initThread().invokeExact(MemorySegment.NULL, MemorySegment.NULL, THREAD_SERIALIZED, out), "MPI_Init_thread");
            if (out.get(JAVA_INT, 0) < THREAD_SERIALIZED)
                throw new IllegalStateException("Open MPI provides thread level " + out.get(JAVA_INT, 0) + ", below MPI_THREAD_SERIALIZED");
            check((int) mpi.setErrhandler().invokeExact(mpi.world(), mpi.fatal()), "MPI_Comm_set_errhandler");
            check((int) mpi.commRank().invokeExact(mpi.world(), out), "MPI_Comm_rank");
            rank = out.get(JAVA_INT, 0);
            check((int) mpi.commSize().invokeExact(mpi.world(), out), "MPI_Comm_size");
            size = out.get(JAVA_INT, 0);
            MemorySegment text = a.allocate(512); // MPI_MAX_LIBRARY_VERSION_STRING is 256
            check((int) mpi.libraryVersion().invokeExact(text, out), "MPI_Get_library_version");
            String v = text.getString(0).strip();
            int comma = v.indexOf(',');
            version = comma > 0 ? v.substring(0, comma) : v;
        } catch (RuntimeException | Error e) {
            throw e;
        } catch (Throwable t) {
            throw new IllegalStateException(t);
        }
    }

    @Override public int rank() { return rank; }
    @Override public int size() { return size; }
    @Override public String describe() { return version + ", " + size + " ranks, MPI_COMM_WORLD"; }

    @Override
    public synchronized void allReduceSum(MemorySegment data, long count) {
        Collectives.checkFloats("allReduceSum data", data, count);
        sumRounds(data, count, null);
    }

    @Override
    public synchronized void reduceScatterSum(MemorySegment data, long count, MemorySegment shard) {
        Collectives.checkFloats("reduceScatterSum data", data, count);
        Collectives.checkFloats("reduceScatterSum shard", shard, shardCount(count));
        sumRounds(data, count, shard);
    }

    /**
     * The rounds of a sum: round by round over the shard, rank r's piece [o, o+s) of every rank's shard goes to rank r,
     * which adds the N pieces in rank order; the piece's sum then goes to {@code shard} at o (reduce-scatter), or is
     * all-gathered back into every rank's {@code data} (all-reduce, {@code shard} null).
     */
    private void sumRounds(MemorySegment data, long count, MemorySegment shard) {
        ensureStaging();
        long n = shardCount(count);
        int s = (int) Math.min(ROUND_FLOATS / size, Math.max(n, 1));
        for (long o = 0; o < n; o += s) {
            int piece = (int) Math.min(s, n - o);
            for (int r = 0; r < size; r++) copyIn(data, count, r * n + o, send, (long) r * piece, piece);
            call(mpi.alltoall(), send, piece, recv, piece, "MPI_Alltoall");
            // Rank order: acc = x₀, then acc += x₁, … (element-wise, so the order per element is fixed).
            for (int j = 0; j < piece; j++) {
                float acc = recv.getAtIndex(JAVA_FLOAT, j);
                for (int r = 1; r < size; r++) acc += recv.getAtIndex(JAVA_FLOAT, (long) r * piece + j);
                send.setAtIndex(JAVA_FLOAT, j, acc);
            }
            if (shard != null) {
                MemorySegment.copy(send, 0, shard, o * Float.BYTES, (long) piece * Float.BYTES);
                continue;
            }
            call(mpi.allgather(), send, piece, recv, piece, "MPI_Allgather");
            for (int r = 0; r < size; r++) copyOut(recv, (long) r * piece, piece, data, count, r * n + o);
        }
    }

    @Override
    public synchronized void allGather(MemorySegment shard, long count, MemorySegment out) {
        long n = shardCount(count);
        Collectives.checkFloats("allGather shard", shard, n);
        Collectives.checkFloats("allGather out", out, count);
        if (n * size == count && n <= Integer.MAX_VALUE) { // no padding to drop: MPI's call straight into out
            call(mpi.allgather(), shard, (int) n, out, (int) n, "MPI_Allgather");
            return;
        }
        ensureStaging();
        int s = (int) Math.min(ROUND_FLOATS / size, Math.max(n, 1));
        for (long o = 0; o < n; o += s) {
            int piece = (int) Math.min(s, n - o);
            MemorySegment.copy(shard, o * Float.BYTES, send, 0, (long) piece * Float.BYTES);
            call(mpi.allgather(), send, piece, recv, piece, "MPI_Allgather");
            for (int r = 0; r < size; r++) copyOut(recv, (long) r * piece, piece, out, count, r * n + o);
        }
    }

    @Override
    public synchronized void broadcast(MemorySegment data, long count, int root) {
        if (root < 0 || root >= size) throw new IllegalArgumentException("broadcast root " + root + " is not a rank of a " + size + "-rank job");
        Collectives.checkFloats("broadcast data", data, count);
        for (long o = 0; o < count; o += BCAST_FLOATS) {
            int piece = (int) Math.min(BCAST_FLOATS, count - o);
            try {
                check((int) mpi.bcast().invokeExact(data.asSlice(o * Float.BYTES), piece, mpi.f32(), root, mpi.world()), "MPI_Bcast");
            } catch (Throwable t) {
                throw rethrow(t);
            }
        }
    }

    @Override
    public synchronized void barrier() {
        try {
            check((int) mpi.barrier().invokeExact(mpi.world()), "MPI_Barrier");
        } catch (Throwable t) {
            throw rethrow(t);
        }
    }

    @Override
    public void abort(int code) {
        // Not synchronized: another thread may be blocked inside a collective, which is exactly when this is needed.
        try {
            int ignored = (int) mpi.abortFn().invokeExact(mpi.world(), code);
        } catch (Throwable t) {
            throw rethrow(t);
        }
    }

    @Override
    public synchronized void close() {
        if (closed) return;
        closed = true;
        try {
            check((int) mpi.finalizeFn().invokeExact(), "MPI_Finalize");
        } catch (Throwable t) {
            throw rethrow(t);
        } finally {
            arena.close();
        }
    }

    /**
     * MPI_Iallgather of padded shards straight from {@code shard} into {@code out}; the request completes only inside
     * {@link Pending#test} (MPI_Test) or {@link Pending#await} (MPI_Wait), since this Open MPI makes no progress on its own.
     */
    @Override
    public synchronized Pending allGatherAsync(MemorySegment shard, long shardCount, MemorySegment out) {
        if (shardCount > Integer.MAX_VALUE) throw new IllegalArgumentException("a shard of " + shardCount + " values is above MPI's int count");
        Collectives.checkFloats("allGatherAsync shard", shard, shardCount);
        Collectives.checkFloats("allGatherAsync out", out, shardCount * size);
        MemorySegment request = Arena.ofAuto().allocate(ADDRESS); // MPI_Request: a handle Open MPI writes, freed by the GC
        try {
            check((int) mpi.iallgather().invokeExact(shard, (int) shardCount, mpi.f32(), out, (int) shardCount, mpi.f32(), mpi.world(), request),
                    "MPI_Iallgather");
        } catch (Throwable t) {
            throw rethrow(t);
        }
        return new Request(request);
    }

    /** An MPI_Request of this communicator; MPI_STATUS_IGNORE is NULL in Open MPI. */
    private final class Request implements Pending {
        private final MemorySegment handle;
        private final MemorySegment flag = Arena.ofAuto().allocate(JAVA_INT);
        private boolean done;

        Request(MemorySegment handle) { this.handle = handle; }

        @Override
        public boolean test() {
            synchronized (OpenMpi.this) {
                if (done) return true;
                try {
                    check((int) mpi.test().invokeExact(handle, flag, MemorySegment.NULL), "MPI_Test");
                } catch (Throwable t) {
                    throw rethrow(t);
                }
                done = flag.get(JAVA_INT, 0) != 0;
                return done;
            }
        }

        @Override
        public void await() {
            synchronized (OpenMpi.this) {
                if (done) return;
                try {
                    check((int) mpi.waitFn().invokeExact(handle, MemorySegment.NULL), "MPI_Wait");
                } catch (Throwable t) {
                    throw rethrow(t);
                }
                done = true;
            }
        }
    }

    // ---- Open MPI's own calls, for `bench collectives` (counts must fit an int; buffers native) ----

    /** MPI_Allreduce(MPI_IN_PLACE, data, count, MPI_FLOAT, MPI_SUM): Open MPI's order, not rank order. */
    public synchronized void mpiAllreduce(MemorySegment data, int count) {
        Collectives.checkFloats("MPI_Allreduce data", data, count);
        try {
            check((int) mpi.allreduce().invokeExact(MemorySegment.ofAddress(1), data, count, mpi.f32(), mpi.sum(), mpi.world()), "MPI_Allreduce");
        } catch (Throwable t) {
            throw rethrow(t);
        }
    }

    /** MPI_Reduce_scatter_block(data, shard, count / size, MPI_FLOAT, MPI_SUM); count must be a multiple of size. */
    public synchronized void mpiReduceScatterBlock(MemorySegment data, int count, MemorySegment shard) {
        if (count % size != 0) throw new IllegalArgumentException("count " + count + " is not a multiple of " + size);
        Collectives.checkFloats("MPI_Reduce_scatter_block data", data, count);
        Collectives.checkFloats("MPI_Reduce_scatter_block shard", shard, count / size);
        try {
            check((int) mpi.reduceScatterBlock().invokeExact(data, shard, count / size, mpi.f32(), mpi.sum(), mpi.world()), "MPI_Reduce_scatter_block");
        } catch (Throwable t) {
            throw rethrow(t);
        }
    }

    /** MPI_Allgather(shard, count / size, MPI_FLOAT, out, count / size, MPI_FLOAT); count must be a multiple of size. */
    public synchronized void mpiAllgather(MemorySegment shard, int count, MemorySegment out) {
        if (count % size != 0) throw new IllegalArgumentException("count " + count + " is not a multiple of " + size);
        Collectives.checkFloats("MPI_Allgather shard", shard, count / size);
        Collectives.checkFloats("MPI_Allgather out", out, count);
        call(mpi.allgather(), shard, count / size, out, count / size, "MPI_Allgather");
    }

    // ---- helpers ----

    private void ensureStaging() {
        if (send != null) return;
        long bytes = (long) (ROUND_FLOATS / size) * size * Float.BYTES;
        send = arena.allocate(bytes, 64);
        recv = arena.allocate(bytes, 64);
    }

    /** {@code piece} values of {@code data} from element {@code from} into {@code to} at {@code at}, zeros past {@code count}. */
    private static void copyIn(MemorySegment data, long count, long from, MemorySegment to, long at, int piece) {
        long valid = Math.clamp(count - from, 0, piece);
        if (valid > 0) MemorySegment.copy(data, from * Float.BYTES, to, at * Float.BYTES, valid * Float.BYTES);
        if (valid < piece) to.asSlice((at + valid) * Float.BYTES, (piece - valid) * Float.BYTES).fill((byte) 0);
    }

    /** {@code piece} values of {@code from} at {@code at} into {@code data} from element {@code to}, dropping those past {@code count}. */
    private static void copyOut(MemorySegment from, long at, int piece, MemorySegment data, long count, long to) {
        long valid = Math.clamp(count - to, 0, piece);
        if (valid > 0) MemorySegment.copy(from, at * Float.BYTES, data, to * Float.BYTES, valid * Float.BYTES);
    }

    /** An MPI_Alltoall or MPI_Allgather of fp32 on MPI_COMM_WORLD (the two share a signature). */
    private void call(MethodHandle fn, MemorySegment in, int inCount, MemorySegment out, int outCount, String name) {
        try {
            check((int) fn.invokeExact(in, inCount, mpi.f32(), out, outCount, mpi.f32(), mpi.world()), name);
        } catch (Throwable t) {
            throw rethrow(t);
        }
    }

    private static void check(int rc, String function) {
        // With MPI_ERRORS_ARE_FATAL set this does not happen after init; before it, MPI's default handler is also fatal.
        if (rc != 0) throw new IllegalStateException(function + " returned MPI error " + rc);
    }

    private static RuntimeException rethrow(Throwable t) {
        if (t instanceof RuntimeException r) return r;
        if (t instanceof Error e) throw e;
        return new IllegalStateException(t);
    }
}
