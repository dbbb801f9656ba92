// `bench collectives` outside mpirun, and with bad flags: exit 2 with one line saying how to start it.
package dev.llamafit.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.Test;

class BenchCollectivesTest {
    @Test
    void withoutMpirunItSaysHowToStartIt() {
        Assumptions.assumeTrue(System.getenv("OMPI_COMM_WORLD_SIZE") == null, "this JVM was started by mpirun");
        BadInputTest.Run r = BadInputTest.run("bench", "collectives", "--sizes", "1");
        assertEquals(2, r.code(), r.err());
        assertTrue(r.err().contains("start it with mpirun, e.g. mpirun -np 2 ./llamafit bench collectives"), r.err());
    }

    @Test
    void badSizesAndRunsAreRefused() {
        BadInputTest.Run r = BadInputTest.run("bench", "collectives", "--sizes", "0");
        assertEquals(2, r.code(), r.err());
        assertTrue(r.err().contains("--sizes are MiB from 1 to 4096, got 0"), r.err());
        r = BadInputTest.run("bench", "collectives", "--runs", "0");
        assertEquals(2, r.code(), r.err());
        assertTrue(r.err().contains("--runs must be >= 1, got 0"), r.err());
    }
}
