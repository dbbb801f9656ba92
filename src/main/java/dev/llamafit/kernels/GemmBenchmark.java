// Measures fp32 GEMM throughput (GFLOPS) of a kernel backend at given shapes, for `llamafit bench gemm`.
package dev.llamafit.kernels;

import static dev.llamafit.tensor.Tensor.F32_LE;

import java.lang.foreign.MemorySegment;
import java.util.ArrayList;
import java.util.List;
import java.util.SplittableRandom;

import dev.llamafit.memory.Category;
import dev.llamafit.memory.MemoryLedger;

/**
 * Best-of-N timing of {@code C = A·op(B)} on buffers from the ledger (category workspace). Best-of rather than
 * mean because the machines are shared: the fastest run is the one least disturbed by other work.
 */
public final class GemmBenchmark {

    /** One measured shape: C [m, n] = A [m, k] · op(B), with the best time over the measured runs. */
    public record Result(String backend, int m, int n, int k, boolean transB, int threads, int runs,
                         double bestSeconds, double gflops) {
        public Result {
            if (m <= 0 || n <= 0 || k <= 0) throw new IllegalArgumentException("shape must be positive: m=" + m + " n=" + n + " k=" + k);
        }

        /** One JSON object on one line, e.g. for --json output. */
        public String toJson() {
            return String.format(java.util.Locale.ROOT,
                    "{\"backend\":\"%s\",\"m\":%d,\"n\":%d,\"k\":%d,\"transB\":%b,\"threads\":%d,\"runs\":%d,\"best_seconds\":%.6f,\"gflops\":%.2f}",
                    backend, m, n, k, transB, threads, runs, bestSeconds, gflops);
        }
    }

    private final Kernels kernels;
    private final MemoryLedger ledger;

    public GemmBenchmark(Kernels kernels, MemoryLedger ledger) {
        this.kernels = kernels;
        this.ledger = ledger;
    }

    /** The configured backend and the global ledger. */
    public GemmBenchmark() { this(KernelBackends.get(), MemoryLedger.global()); }

    /** Square shapes size³ in the forward pass's layout (A·Bᵀ), each warmed up then timed {@code runs} times. */
    public List<Result> runSquare(int[] sizes, int warmups, int runs) {
        List<Result> out = new ArrayList<>();
        for (int s : sizes) out.add(run(s, s, s, true, warmups, runs));
        return out;
    }

    /** Times C [m, n] = A [m, k] · op(B), op(B) = Bᵀ with B stored [n, k] when {@code transB}, else B [k, n]. */
    public Result run(int m, int n, int k, boolean transB, int warmups, int runs) {
        if (runs < 1 || warmups < 0) throw new IllegalArgumentException("need runs >= 1 and warmups >= 0, got " + runs + ", " + warmups);
        try (MemoryLedger.Buffer a = ledger.allocate(Category.WORKSPACE, "bench.gemm.A", Math.multiplyExact(4L * m, k));
             MemoryLedger.Buffer b = ledger.allocate(Category.WORKSPACE, "bench.gemm.B", Math.multiplyExact(4L * n, k));
             MemoryLedger.Buffer c = ledger.allocate(Category.WORKSPACE, "bench.gemm.C", Math.multiplyExact(4L * m, n))) {
            fill(a.segment(), 1);
            fill(b.segment(), 2);
            int ldb = transB ? k : n;
            for (int w = 0; w < warmups; w++) {
                kernels.gemm(false, transB, m, n, k, 1f, a.segment(), 0, k, b.segment(), 0, ldb, 0f, c.segment(), 0, n);
            }
            long best = Long.MAX_VALUE;
            for (int r = 0; r < runs; r++) {
                long t0 = System.nanoTime();
                kernels.gemm(false, transB, m, n, k, 1f, a.segment(), 0, k, b.segment(), 0, ldb, 0f, c.segment(), 0, n);
                best = Math.min(best, System.nanoTime() - t0);
            }
            double seconds = best / 1e9;
            return new Result(kernels.name(), m, n, k, transB, Parallel.threads(), runs, seconds, 2.0 * m * n * k / seconds / 1e9);
        }
    }

    private static void fill(MemorySegment seg, long seed) {
        SplittableRandom rnd = new SplittableRandom(seed);
        long n = seg.byteSize() / 4;
        for (long i = 0; i < n; i++) seg.setAtIndex(F32_LE, i, (float) (rnd.nextDouble() - 0.5));
    }

    /** Prints one JSON line per size: {@code java ... dev.llamafit.kernels.GemmBenchmark 1024 2048}. */
    public static void main(String[] args) {
        int[] sizes = args.length == 0 ? new int[] {1024, 2048} : java.util.Arrays.stream(args).mapToInt(Integer::parseInt).toArray();
        for (Result r : new GemmBenchmark().runSquare(sizes, 3, 5)) System.out.println(r.toJson());
    }
}
