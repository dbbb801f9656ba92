// Measures sustained memory read bandwidth (GB/s) on all pool threads, the ceiling for decode's weight reads.
package dev.llamafit.kernels;

import java.lang.foreign.MemorySegment;
import java.nio.ByteOrder;
import java.util.concurrent.atomic.DoubleAdder;

import dev.llamafit.memory.Category;
import dev.llamafit.memory.MemoryLedger;
import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.VectorOperators;
import jdk.incubator.vector.VectorSpecies;

/**
 * Sums a large off-heap float array (default 512 MiB, far beyond any cache) in parallel with vector loads and
 * reports the best of a few passes in GB/s (10⁹ bytes per second). Decode reads every weight once per token,
 * so weight bytes per token divided by this number bounds tokens per second from below in time.
 */
public final class BandwidthProbe {
    private static final VectorSpecies<Float> S = FloatVector.SPECIES_PREFERRED;
    private static final int L = S.length();

    /** The measured read bandwidth; {@code checksum} keeps the JIT from discarding the reads. */
    public record Result(long bytes, int threads, int runs, double bestSeconds, double gbPerSecond, double checksum) {
        public String toJson() {
            return String.format(java.util.Locale.ROOT,
                    "{\"bytes\":%d,\"threads\":%d,\"runs\":%d,\"best_seconds\":%.6f,\"gb_per_s\":%.2f}",
                    bytes, threads, runs, bestSeconds, gbPerSecond);
        }
    }

    private BandwidthProbe() {}

    /** Reads {@code bytes} (rounded down to whole vectors) {@code runs} times after one warm-up pass. */
    public static Result measure(MemoryLedger ledger, long bytes, int runs) {
        long block = (long) L * 4 * 4;
        long usable = bytes / block * block;
        if (usable <= 0 || runs < 1) throw new IllegalArgumentException("need at least " + block + " bytes and 1 run, got " + bytes + ", " + runs);
        try (MemoryLedger.Buffer buf = ledger.allocate(Category.WORKSPACE, "bench.bandwidth", usable)) {
            MemorySegment seg = buf.segment();
            seg.fill((byte) 1); // touch every page so the timed passes measure reads, not page faults
            double check = pass(seg, usable / block);
            long best = Long.MAX_VALUE;
            for (int r = 0; r < runs; r++) {
                long t0 = System.nanoTime();
                check += pass(seg, usable / block);
                best = Math.min(best, System.nanoTime() - t0);
            }
            double seconds = best / 1e9;
            return new Result(usable, Parallel.threads(), runs, seconds, usable / seconds / 1e9, check);
        }
    }

    /** The default probe: 512 MiB, best of 5. */
    public static Result measure() { return measure(MemoryLedger.global(), 512L << 20, 5); }

    private static double pass(MemorySegment seg, long blocks) {
        DoubleAdder total = new DoubleAdder();
        int chunks = (int) Math.min(Integer.MAX_VALUE, blocks);
        Parallel.forRange(chunks, (from, to) -> {
            FloatVector s0 = FloatVector.zero(S), s1 = FloatVector.zero(S), s2 = FloatVector.zero(S), s3 = FloatVector.zero(S);
            long stride = (long) L * 4;
            for (long i = (long) from * 4 * stride; i < (long) to * 4 * stride; i += 4 * stride) {
                s0 = s0.add(FloatVector.fromMemorySegment(S, seg, i, ByteOrder.LITTLE_ENDIAN));
                s1 = s1.add(FloatVector.fromMemorySegment(S, seg, i + stride, ByteOrder.LITTLE_ENDIAN));
                s2 = s2.add(FloatVector.fromMemorySegment(S, seg, i + 2 * stride, ByteOrder.LITTLE_ENDIAN));
                s3 = s3.add(FloatVector.fromMemorySegment(S, seg, i + 3 * stride, ByteOrder.LITTLE_ENDIAN));
            }
            total.add(s0.add(s1).add(s2.add(s3)).reduceLanes(VectorOperators.ADD));
        });
        return total.sum();
    }

    /** Prints one JSON line: {@code java ... dev.llamafit.kernels.BandwidthProbe}. */
    public static void main(String[] args) {
        System.out.println(measure().toJson());
    }
}
