// Open MPI for real: MpiSelfTest under `mpirun -np 2` and `-np 3` checks every collective bit for bit; a failing rank ends the job.
package dev.llamafit.dist;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

import java.io.File;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;

import org.junit.jupiter.api.Test;

import dev.llamafit.testing.Mpirun;

/**
 * Needs Open MPI (apt-get install -y openmpi-bin libopenmpi-dev): without mpirun or libmpi.so.40 each test is skipped
 * with the reason, or fails when CI=true, since CI installs it. Ranks are oversubscribed: CI has 2 cores.
 */
class OpenMpiTest {
    /** Result of one mpirun: exit code, seconds, everything it printed. */
    record Run(int code, double seconds, String output) {}

    static Run run(int ranks, String mode, long timeoutSeconds) throws Exception {
        Path mpirun = Mpirun.require();
        String cp = location(MpiSelfTest.class) + File.pathSeparator + location(Collectives.class);
        List<String> cmd = new ArrayList<>(List.of(mpirun.toString(), "--oversubscribe", "--allow-run-as-root", "-np", String.valueOf(ranks),
                Path.of(System.getProperty("java.home"), "bin", "java").toString(), "--enable-native-access=ALL-UNNAMED",
                "-XX:+UseSerialGC", "-Xmx256m", "-cp", cp, MpiSelfTest.class.getName(), mode));
        ProcessBuilder pb = new ProcessBuilder(cmd).redirectErrorStream(true);
        pb.environment().remove("OMPI_COMM_WORLD_SIZE");
        long t0 = System.nanoTime();
        Process p = pb.start();
        byte[][] out = new byte[1][];
        Thread reader = Thread.ofVirtual().start(() -> {
            try {
                out[0] = p.getInputStream().readAllBytes();
            } catch (java.io.IOException e) {
                out[0] = e.toString().getBytes();
            }
        });
        if (!p.waitFor(timeoutSeconds, TimeUnit.SECONDS)) {
            p.descendants().forEach(ProcessHandle::destroyForcibly);
            p.destroyForcibly();
            reader.join(5000);
            fail("mpirun -np " + ranks + " " + mode + " still running after " + timeoutSeconds + " s: " + (out[0] == null ? "" : new String(out[0])));
        }
        reader.join();
        return new Run(p.exitValue(), (System.nanoTime() - t0) / 1e9, new String(out[0]));
    }

    static String location(Class<?> c) throws Exception {
        return Path.of(c.getProtectionDomain().getCodeSource().getLocation().toURI()).toString();
    }

    @Test
    void everyCollectiveIsExactOnTwoRanks() throws Exception {
        Run r = run(2, "check", 300);
        assertEquals(0, r.code(), r.output());
        for (int rank = 0; rank < 2; rank++) assertTrue(r.output().contains("rank " + rank + " of 2 ok"), r.output());
    }

    @Test
    void everyCollectiveIsExactOnThreeRanksWhereTheOrderOfTheSumShows() throws Exception {
        Run r = run(3, "check", 300);
        assertEquals(0, r.code(), r.output());
        for (int rank = 0; rank < 3; rank++) assertTrue(r.output().contains("rank " + rank + " of 3 ok"), r.output());
    }

    @Test
    void aRankThatThrowsEndsTheWholeJobQuickly() throws Exception {
        Run r = run(2, "throw", 60);
        assertNotEquals(0, r.code(), r.output());
        assertTrue(r.output().contains("rank 1 of 2 failed, aborting the job: deliberate failure on the last rank"), r.output());
        assertTrue(r.seconds() < 30, "took " + r.seconds() + " s");
    }
}
