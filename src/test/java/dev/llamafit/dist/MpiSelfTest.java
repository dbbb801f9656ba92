// The program OpenMpiTest starts on every rank under mpirun: each collective against the expected rank-order sums, bit for bit.
package dev.llamafit.dist;

import static java.lang.foreign.ValueLayout.JAVA_FLOAT;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.util.SplittableRandom;

/**
 * {@code check}: every collective on awkward counts (1, 3, 1000003, and one spanning several staging rounds), with each
 * rank's input known to every rank (seeded by rank), so each rank computes the exact expected bits itself and prints
 * {@code rank R ok} only if all agree. {@code throw}: the last rank throws while the others wait in an all-reduce; the
 * job must end non-zero at once through {@link Collectives#abortOnFailure}.
 */
public final class MpiSelfTest {
    static final long[] COUNTS = {1, 3, 1_000_003, 2L * OpenMpi.ROUND_FLOATS + 5};

    public static void main(String[] args) throws Exception {
        try (Collectives c = Collectives.open()) {
            if (!(c instanceof OpenMpi)) throw new AssertionError("not started as Open MPI: " + c.describe());
            c.abortOnFailure(() -> {
                if (args[0].equals("throw")) {
                    if (c.rank() == c.size() - 1) throw new IllegalStateException("deliberate failure on the last rank");
                    try (Arena a = Arena.ofConfined()) {
                        c.allReduceSum(a.allocate(4L * 1000), 1000); // waits for the rank that failed
                    }
                    throw new AssertionError("the all-reduce returned although a rank had failed");
                }
                for (long n : COUNTS) check(c, n);
                System.out.println("rank " + c.rank() + " of " + c.size() + " ok");
                return null;
            });
        }
    }

    static float value(int rank, long i, long seed) {
        // Values of mixed sign and magnitude, so the order of the additions shows in the bits.
        long h = new SplittableRandom(seed * 1_000_003L + rank * 7919L + i).nextLong();
        return (float) ((h >> 11) * 0x1.0p-53 * 2 - 1) * (float) Math.scalb(1.0, (int) (h & 15) - 8);
    }

    static void fill(MemorySegment s, int rank, long n, long seed) {
        for (long i = 0; i < n; i++) s.setAtIndex(JAVA_FLOAT, i, value(rank, i, seed));
    }

    static float sum(int size, long i, long seed) {
        float acc = value(0, i, seed);
        for (int r = 1; r < size; r++) acc += value(r, i, seed);
        return acc;
    }

    static void check(Collectives c, long n) {
        int size = c.size(), rank = c.rank();
        long shard = c.shardCount(n);
        try (Arena a = Arena.ofConfined()) {
            MemorySegment data = a.allocate(4 * n), part = a.allocate(4 * shard), out = a.allocate(4 * n);
            fill(data, rank, n, n);
            c.reduceScatterSum(data, n, part);
            for (long j = 0; j < shard; j++) {
                long i = rank * shard + j;
                expect("reduceScatterSum", n, j, i < n ? sum(size, i, n) : 0f, part.getAtIndex(JAVA_FLOAT, j));
            }
            for (long i = 0; i < n; i++) expect("reduceScatterSum left its input", n, i, value(rank, i, n), data.getAtIndex(JAVA_FLOAT, i));
            c.allReduceSum(data, n);
            for (long i = 0; i < n; i++) expect("allReduceSum", n, i, sum(size, i, n), data.getAtIndex(JAVA_FLOAT, i));
            fill(part, rank, shard, n + 1);
            c.allGather(part, n, out);
            for (long i = 0; i < n; i++) expect("allGather", n, i, value((int) (i / shard), i % shard, n + 1), out.getAtIndex(JAVA_FLOAT, i));
            int root = (int) (n % size);
            fill(data, rank, n, n + 2);
            c.broadcast(data, n, root);
            for (long i = 0; i < n; i++) expect("broadcast from " + root, n, i, value(root, i, n + 2), data.getAtIndex(JAVA_FLOAT, i));
            c.barrier();
        }
    }

    static void expect(String what, long n, long i, float want, float got) {
        if (Float.floatToRawIntBits(want) != Float.floatToRawIntBits(got))
            throw new AssertionError(what + " of " + n + " values: element " + i + " is " + got + ", expected " + want);
    }
}
