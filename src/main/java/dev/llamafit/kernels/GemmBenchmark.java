// Measures GEMM throughput (GFLOPS; GOPS for int8) of a kernel backend at given shapes, for `llamafit bench gemm`.
package dev.llamafit.kernels;

import static dev.llamafit.tensor.Tensor.F32_LE;

import java.lang.foreign.MemorySegment;
import java.util.ArrayList;
import java.util.List;
import java.util.SplittableRandom;

import dev.llamafit.memory.Category;
import dev.llamafit.memory.MemoryLedger;
import dev.llamafit.tensor.DType;
import dev.llamafit.tensor.Tensor;

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
        return run(kernels.name(), DType.F32, (a, b, c) -> kernels.gemm(false, transB, m, n, k, 1f, a, 0, k, b, 0, transB ? k : n, 0f, c, 0, n),
                m, n, k, transB, warmups, runs);
    }

    /** One GEMM call on the benchmark's buffers: A [m, k] and B of the operand type, C [m, n] fp32. */
    @FunctionalInterface
    public interface Call {
        void gemm(MemorySegment a, MemorySegment b, MemorySegment c);
    }

    /**
     * Times {@code call} on A and B filled with the same random values in {@code operands} (16-bit types rounded
     * from fp32), so every path multiplies the same matrices; {@code label} names the path in the result.
     */
    public Result run(String label, DType operands, Call call, int m, int n, int k, boolean transB, int warmups, int runs) {
        return run(label, operands, operands, call, m, n, k, transB, warmups, runs);
    }

    /**
     * As {@link #run(String, DType, Call, int, int, int, boolean, int, int)} with A of type {@code aType} and B of
     * {@code bType}. An F32 A beside a 16-bit B holds values rounded to B's type: what a mixed-precision step's
     * activations are when they meet its 16-bit working weights.
     */
    public Result run(String label, DType aType, DType bType, Call call, int m, int n, int k, boolean transB, int warmups, int runs) {
        if (runs < 1 || warmups < 0) throw new IllegalArgumentException("need runs >= 1 and warmups >= 0, got " + runs + ", " + warmups);
        try (MemoryLedger.Buffer a = ledger.allocate(Category.WORKSPACE, "bench.gemm.A", Math.multiplyExact(aType.bytes() * m, k));
             MemoryLedger.Buffer b = ledger.allocate(Category.WORKSPACE, "bench.gemm.B", Math.multiplyExact(bType.bytes() * n, k));
             MemoryLedger.Buffer c = ledger.allocate(Category.WORKSPACE, "bench.gemm.C", Math.multiplyExact(4L * m, n))) {
            fill(a.segment(), aType, 1);
            if (aType == DType.F32 && (bType == DType.BF16 || bType == DType.F16)) kernels.round16(a.segment(), 0, (long) m * k, bType);
            fill(b.segment(), bType, 2);
            for (int w = 0; w < warmups; w++) call.gemm(a.segment(), b.segment(), c.segment());
            long best = Long.MAX_VALUE;
            for (int r = 0; r < runs; r++) {
                long t0 = System.nanoTime();
                call.gemm(a.segment(), b.segment(), c.segment());
                best = Math.min(best, System.nanoTime() - t0);
            }
            double seconds = best / 1e9;
            return new Result(label, m, n, k, transB, Parallel.threads(), runs, seconds, 2.0 * m * n * k / seconds / 1e9);
        }
    }

    /**
     * Times C [m, n] = A [m, k] · Bᵀ with B [n, k] read through the {@link PackSource} that {@code encode} makes from
     * the same random fp32 B as the other paths (a quantised weight: `bench gemm --dtype nf4`). Encoding happens in the
     * first warm-up, untimed; the result's GFLOPS count 2·m·n·k like the others.
     */
    public Result runEncoded(String label, java.util.function.Function<MemorySegment, PackSource> encode,
                             int m, int n, int k, int warmups, int runs) {
        if (warmups < 1) throw new IllegalArgumentException("an encoded B needs a warm-up run (it is encoded there)");
        PackSource[] b = new PackSource[1];
        return run(label, DType.F32, (a, raw, c) -> {
            if (b[0] == null) b[0] = encode.apply(raw);
            kernels.gemm(true, m, n, k, 1f, a, 0, k, b[0], 0, k, 0f, c, 0, n);
        }, m, n, k, true, warmups, runs);
    }

    private static void fill(MemorySegment seg, DType type, long seed) {
        SplittableRandom rnd = new SplittableRandom(seed);
        long n = seg.byteSize() / type.bytes();
        for (long i = 0; i < n; i++) {
            float v = (float) (rnd.nextDouble() - 0.5);
            switch (type) {
                case F32 -> seg.setAtIndex(F32_LE, i, v);
                case BF16 -> seg.setAtIndex(Tensor.I16_LE, i, (short) (Float.floatToRawIntBits(v) + 0x8000 >>> 16)); // round half up: test data only
                case F16 -> seg.setAtIndex(Tensor.I16_LE, i, Float.floatToFloat16(v));
                case I8 -> seg.set(java.lang.foreign.ValueLayout.JAVA_BYTE, i, (byte) Math.round(v * 254)); // codes in [-127, 127]
                default -> throw new IllegalArgumentException("no GEMM benchmark for " + type);
            }
        }
    }

    /** Prints one JSON line per size: {@code java ... dev.llamafit.kernels.GemmBenchmark 1024 2048}. */
    public static void main(String[] args) {
        int[] sizes = args.length == 0 ? new int[] {1024, 2048} : java.util.Arrays.stream(args).mapToInt(Integer::parseInt).toArray();
        for (Result r : new GemmBenchmark().runSquare(sizes, 3, 5)) System.out.println(r.toJson());
    }
}
