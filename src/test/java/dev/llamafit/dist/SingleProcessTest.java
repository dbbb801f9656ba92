// The single process: rank 0 of 1, sums are the identity, shards are the whole buffer, bounds are checked.
package dev.llamafit.dist;

import static java.lang.foreign.ValueLayout.JAVA_FLOAT;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertThrows;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;

import org.junit.jupiter.api.Test;

class SingleProcessTest {
    static MemorySegment floats(Arena a, float... v) {
        MemorySegment s = a.allocate(4L * v.length);
        for (int i = 0; i < v.length; i++) s.setAtIndex(JAVA_FLOAT, i, v[i]);
        return s;
    }

    static float[] read(MemorySegment s, int n) {
        float[] v = new float[n];
        for (int i = 0; i < n; i++) v[i] = s.getAtIndex(JAVA_FLOAT, i);
        return v;
    }

    @Test
    void everyCollectiveIsTheIdentityOnOneRank() {
        try (Arena a = Arena.ofConfined(); Collectives c = new SingleProcess()) {
            assertEquals(0, c.rank());
            assertEquals(1, c.size());
            assertEquals(3, c.shardCount(3));
            MemorySegment data = floats(a, 1.5f, -2f, 0x1p-149f), shard = floats(a, 9, 9, 9), out = floats(a, 7, 7, 7);
            c.allReduceSum(data, 3);
            assertEquals("[1.5, -2.0, 1.4E-45]", java.util.Arrays.toString(read(data, 3)));
            c.reduceScatterSum(data, 3, shard);
            assertEquals("[1.5, -2.0, 1.4E-45]", java.util.Arrays.toString(read(shard, 3)));
            shard.setAtIndex(JAVA_FLOAT, 0, 4f);
            c.allGather(shard, 2, out);
            assertEquals("[4.0, -2.0, 7.0]", java.util.Arrays.toString(read(out, 3)), "only count values are written");
            c.broadcast(data, 3, 0);
            c.barrier();
            c.abort(1); // returns: the caller exits as usual
            assertEquals("[1.5, -2.0, 1.4E-45]", java.util.Arrays.toString(read(data, 3)));
        }
    }

    @Test
    void buffersTooSmallAndBadRootsAreRefusedBeforeAnyCopy() {
        try (Arena a = Arena.ofConfined(); Collectives c = new SingleProcess()) {
            MemorySegment two = floats(a, 1, 2), three = floats(a, 1, 2, 3);
            assertThrows(IllegalArgumentException.class, () -> c.allReduceSum(two, 3));
            assertThrows(IllegalArgumentException.class, () -> c.reduceScatterSum(three, 3, two));
            assertThrows(IllegalArgumentException.class, () -> c.allGather(three, 3, two));
            assertThrows(IllegalArgumentException.class, () -> c.broadcast(two, 2, 1));
            assertThrows(IllegalArgumentException.class, () -> c.allReduceSum(two, -1));
        }
    }

    @Test
    void shardsAreTheCeilingOfCountOverSize() {
        assertEquals(0, Collectives.shardCount(0, 2));
        assertEquals(1, Collectives.shardCount(1, 2));
        assertEquals(2, Collectives.shardCount(3, 2));
        assertEquals(500_002, Collectives.shardCount(1_000_003, 2));
        assertEquals(333_335, Collectives.shardCount(1_000_003, 3));
        assertThrows(IllegalArgumentException.class, () -> Collectives.shardCount(1, 0));
    }

    @Test
    void withoutMpirunTheJobIsOneProcess() throws Exception {
        org.junit.jupiter.api.Assumptions.assumeTrue(System.getenv("OMPI_COMM_WORLD_SIZE") == null, "this JVM was started by mpirun");
        try (Collectives c = Collectives.open()) {
            assertInstanceOf(SingleProcess.class, c);
        }
    }

    @Test
    void aFailureOnOneProcessIsRethrownForTheCommandLine() {
        Collectives c = new SingleProcess();
        IllegalStateException e = assertThrows(IllegalStateException.class, () -> c.abortOnFailure(() -> { throw new IllegalStateException("boom"); }));
        assertEquals("boom", e.getMessage());
    }
}
