// The one fixed thread pool that multi-threaded kernels and layers share (no nested parallelism).
package dev.llamafit.kernels;

import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.ThreadFactory;

/**
 * A fixed pool of worker threads sized to the machine ({@code -Dllamafit.threads=N} overrides).
 * {@link #forRange} splits [0, n) into contiguous chunks, one per thread; called from a pool thread it runs
 * the whole range inline, so kernels used inside a parallel layer loop stay single-threaded.
 */
public final class Parallel {
    private static final int THREADS = Integer.getInteger("llamafit.threads", Runtime.getRuntime().availableProcessors());
    private static final ThreadLocal<Boolean> IN_POOL = ThreadLocal.withInitial(() -> false);
    private static final ExecutorService POOL = Executors.newFixedThreadPool(Math.max(1, THREADS - 1), daemonFactory());

    /** A body over the half-open range [from, to). */
    @FunctionalInterface
    public interface RangeBody {
        void run(int from, int to);
    }

    private Parallel() {}

    public static int threads() { return THREADS; }

    /** Runs {@code body} over [0, n) split into at most {@link #threads()} chunks; the caller takes one chunk. */
    public static void forRange(int n, RangeBody body) {
        forRange(n, 1, body);
    }

    /** As {@link #forRange(int, RangeBody)}, with chunks no smaller than {@code grain} items. */
    public static void forRange(int n, int grain, RangeBody body) {
        if (n <= 0) return;
        int chunks = Math.min(THREADS, Math.max(1, n / Math.max(1, grain)));
        if (chunks == 1 || IN_POOL.get()) {
            body.run(0, n);
            return;
        }
        List<Future<?>> futures = new ArrayList<>(chunks - 1);
        for (int c = 1; c < chunks; c++) {
            int from = (int) ((long) n * c / chunks), to = (int) ((long) n * (c + 1) / chunks);
            futures.add(POOL.submit(() -> body.run(from, to)));
        }
        IN_POOL.set(true);
        try {
            body.run(0, (int) ((long) n / chunks));
        } finally {
            IN_POOL.set(false);
        }
        for (Future<?> f : futures) {
            try {
                f.get();
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                throw new IllegalStateException("interrupted while waiting for a parallel task", e);
            } catch (ExecutionException e) {
                Throwable cause = e.getCause();
                if (cause instanceof RuntimeException re) throw re;
                if (cause instanceof Error err) throw err;
                throw new IllegalStateException(cause);
            }
        }
    }

    /** A body over one chunk: its index (below {@link #threads()}) and its half-open range. */
    @FunctionalInterface
    public interface ChunkBody {
        void run(int chunk, int from, int to);
    }

    /**
     * As {@link #forRange(int, RangeBody)}, also passing each chunk's index, so a chunk can use its own slice
     * of a shared scratch buffer sized {@code threads() × per-chunk}.
     */
    public static void forChunks(int n, ChunkBody body) {
        if (n <= 0) return;
        int chunks = Math.min(THREADS, n);
        if (chunks == 1 || IN_POOL.get()) {
            body.run(0, 0, n);
            return;
        }
        forRange(chunks, (from, to) -> {
            for (int c = from; c < to; c++) body.run(c, (int) ((long) n * c / chunks), (int) ((long) n * (c + 1) / chunks));
        });
    }

    private static ThreadFactory daemonFactory() {
        return r -> {
            Thread t = new Thread(() -> {
                IN_POOL.set(true);
                r.run();
            }, "llamafit-worker");
            t.setDaemon(true);
            return t;
        };
    }
}
