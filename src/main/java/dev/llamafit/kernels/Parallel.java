// The one fixed thread pool that multi-threaded kernels and layers share (no nested parallelism).
package dev.llamafit.kernels;

import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.locks.LockSupport;
import java.util.concurrent.locks.ReentrantLock;

/**
 * A fixed pool of worker threads sized to the machine ({@code -Dllamafit.threads=N} overrides).
 * {@link #forRange} splits [0, n) into contiguous chunks, one per thread; the caller runs the first chunk.
 * Called from a pool thread, or while another caller holds the pool, it runs the whole range inline, so
 * kernels used inside a parallel layer loop stay single-threaded.
 *
 * <p>Why not an ExecutorService: decoding one token calls ~50 parallel kernels of a few microseconds each,
 * and a future's submit/park/unpark round trip (tens of microseconds) cost more than the work. Workers here
 * spin on a generation counter for a while before parking, so back-to-back kernels hand over quickly, and
 * idle workers still sleep. Measured on stories15M decode: 314 → ~650 tokens/s (with finer GEMV splits).
 */
public final class Parallel {
    private static final int THREADS = Math.max(1, Integer.getInteger("llamafit.threads", Runtime.getRuntime().availableProcessors()));
    /**
     * Spin iterations before a waiting thread parks: roughly 0.1–0.5 ms. Waking a parked thread costs tens of
     * microseconds on the virtual machines measured here, more than most decode kernels take.
     */
    private static final int SPINS = Integer.getInteger("llamafit.spins", 200_000);
    private static final ThreadLocal<Boolean> IN_POOL = ThreadLocal.withInitial(() -> false);
    private static final Pool POOL = THREADS > 1 ? new Pool(THREADS - 1) : null;

    /** A body over the half-open range [from, to). */
    @FunctionalInterface
    public interface RangeBody {
        void run(int from, int to);
    }

    /** A body over one chunk: its index (below {@link #threads()}) and its half-open range. */
    @FunctionalInterface
    public interface ChunkBody {
        void run(int chunk, int from, int to);
    }

    private Parallel() {}

    /**
     * With -Dllamafit.pause=true spinning threads execute PAUSE (Thread.onSpinWait). Off by default: under
     * KVM, PAUSE loops can trigger pause-loop exits that deschedule the spinning vCPU, and measured decode
     * speed was no better with it.
     */
    private static final boolean PAUSE = Boolean.getBoolean("llamafit.pause");

    private static void spinHint() {
        if (PAUSE) Thread.onSpinWait();
    }

    public static int threads() { return THREADS; }

    /** True on a thread running a pool task, where a nested forRange runs inline (native kernels use 1 thread there). */
    static boolean inPoolTask() { return IN_POOL.get(); }

    /** Runs {@code body} over [0, n) split into at most {@link #threads()} chunks; the caller takes one chunk. */
    public static void forRange(int n, RangeBody body) {
        forRange(n, 1, body);
    }

    /** As {@link #forRange(int, RangeBody)}, with chunks no smaller than {@code grain} items. */
    public static void forRange(int n, int grain, RangeBody body) {
        if (n <= 0) return;
        int chunks = Math.min(THREADS, Math.max(1, n / Math.max(1, grain)));
        forChunks(n, chunks, (c, from, to) -> body.run(from, to));
    }

    /**
     * As {@link #forRange(int, RangeBody)}, also passing each chunk's index, so a chunk can use its own slice
     * of a shared scratch buffer sized {@code threads() × per-chunk}.
     */
    public static void forChunks(int n, ChunkBody body) {
        if (n <= 0) return;
        forChunks(n, Math.min(THREADS, n), body);
    }

    private static void forChunks(int n, int chunks, ChunkBody body) {
        if (chunks <= 1 || POOL == null || IN_POOL.get() || !POOL.lock.tryLock()) {
            body.run(0, 0, n);
            return;
        }
        try {
            POOL.run(n, chunks, body);
        } finally {
            POOL.lock.unlock();
        }
    }

    /** Workers that wait for a new generation of work, run their chunk, and count down. */
    private static final class Pool {
        final ReentrantLock lock = new ReentrantLock();
        final Thread[] workers;
        final AtomicInteger pending = new AtomicInteger();
        volatile long generation;
        volatile ChunkBody task;
        volatile int taskN;
        volatile int taskChunks;
        volatile Thread caller;
        volatile Throwable failure;

        Pool(int size) {
            workers = new Thread[size];
            for (int i = 0; i < size; i++) {
                int index = i + 1; // chunk 0 belongs to the caller
                Thread t = new Thread(() -> loop(index), "llamafit-worker-" + index);
                t.setDaemon(true);
                workers[i] = t;
                t.start();
            }
        }

        void run(int n, int chunks, ChunkBody body) {
            failure = null;
            task = body;
            taskN = n;
            taskChunks = chunks;
            caller = Thread.currentThread();
            pending.set(workers.length);
            generation = generation + 1; // volatile write publishes the fields above
            for (Thread w : workers) LockSupport.unpark(w);
            IN_POOL.set(true);
            try {
                body.run(0, 0, (int) ((long) n / chunks));
            } finally {
                IN_POOL.set(false);
            }
            int spins = 0;
            while (pending.get() != 0) {
                if (++spins < SPINS) spinHint();
                else LockSupport.parkNanos(this, 50_000);
            }
            task = null;
            Throwable f = failure;
            if (f instanceof RuntimeException re) throw re;
            if (f instanceof Error err) throw err;
            if (f != null) throw new IllegalStateException(f);
        }

        private void loop(int index) {
            IN_POOL.set(true);
            long seen = 0;
            while (true) {
                int spins = 0;
                long g;
                while ((g = generation) == seen) {
                    if (++spins < SPINS) spinHint();
                    else LockSupport.park(this);
                }
                seen = g;
                int chunks = taskChunks, n = taskN;
                try {
                    if (index < chunks)
                        task.run(index, (int) ((long) n * index / chunks), (int) ((long) n * (index + 1) / chunks));
                } catch (Throwable t) {
                    failure = t;
                } finally {
                    if (pending.decrementAndGet() == 0) LockSupport.unpark(caller);
                }
            }
        }
    }
}
