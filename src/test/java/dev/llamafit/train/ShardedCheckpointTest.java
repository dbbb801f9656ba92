// Sharded checkpoints under mpirun: kill -9 at a random step, resume on 2 ranks bit for bit and on 1 or 4 within 1e-5; kills inside a write; start-up checks.
package dev.llamafit.train;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

import java.io.IOException;
import java.io.PrintWriter;
import java.io.StringWriter;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Locale;
import java.util.Random;
import java.util.concurrent.TimeUnit;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import dev.llamafit.cli.Main;
import dev.llamafit.memory.MemoryLedger;
import dev.llamafit.testing.Mpirun;
import dev.llamafit.testing.SharedData;

/** Needs Open MPI, as {@link DataParallelTrainingTest}; each rank is the real command line in its own JVM. */
class ShardedCheckpointTest {
    @TempDir Path tmp;

    static final long STEPS = 12, TIMEOUT_S = 300, FAULT_EXIT_S = 30;

    private static List<String> train(Path out, int batch, String... extra) {
        List<String> a = new ArrayList<>(List.of("train", "--model", SharedData.require("models/tinystories-656k").toString(),
                "--data", SharedData.require("datasets/text/tinystories_sample.txt").toString(), "--output", out.toString(),
                "--steps", String.valueOf(STEPS), "--batch-size", String.valueOf(batch), "--seq-len", "64", "--lr", "2e-3", "--warmup", "2",
                "--weight-decay", "0.01", "--max-grad-norm", "1.0", "--seed", "7", "--save-every", "2"));
        a.addAll(List.of(extra));
        return a;
    }

    /**
     * Resume: a 2-rank ZeRO-1 run killed (kill -9 of rank 1) at a random step exits non-zero within 30 s; its last
     * committed checkpoint, sharded over 2 ranks, resumes on 2 ranks bit for bit (losses and final weights of the
     * uninterrupted run), on one process of batch 4 and on 4 ranks of batch 1 within 1e-5 (the same global batch).
     */
    @Test
    void aRunKilledAtARandomStepResumesOnTwoRanksBitForBitAndOnOneOrFourWithinTolerance() throws Exception {
        Path mpirun = Mpirun.require();
        Path whole = tmp.resolve("uninterrupted"), killed = tmp.resolve("killed");
        run(mpirun, 2, train(whole, 2, "--zero", "1"), List.of(), tmp.resolve("logs-whole"), 0);
        Path shard = whole.resolve("checkpoints/step-00000012/zero");
        assertTrue(Files.isRegularFile(shard.resolve("partition.json")) && Files.isRegularFile(shard.resolve(ShardedCheckpoint.rankFile(1, 2))),
                "the checkpoint is sharded: " + shard);
        assertFalse(Files.exists(whole.resolve("checkpoints/step-00000012").resolve(Checkpoints.OPTIMIZER)), "no rank wrote the whole state");

        long seed = System.nanoTime();
        int killAt = 3 + new Random(seed).nextInt(7); // after step 3..9 is logged
        System.out.printf(Locale.ROOT, "kill -9 rank 1 once step %d is logged (seed %d)%n", killAt, seed);
        Job job = Job.start(mpirun, 2, train(killed, 2, "--zero", "1"), List.of(), tmp.resolve("logs-killed"));
        job.awaitMetrics(killed, killAt);
        long[] exit = job.kill9Rank(1);
        System.out.printf(Locale.ROOT, "job exit %d, %.1f s after the kill%n", exit[0], exit[1] / 1e3);
        assertNotEquals(0, exit[0], job.output());
        assertTrue(exit[1] <= FAULT_EXIT_S * 1000, "the job took " + exit[1] + " ms to end after the kill: " + job.output());
        Path from = Checkpoints.resolve(killed);
        long resumedAt = Checkpoints.stepOf(from).orElseThrow();
        assertTrue(resumedAt >= 2 && resumedAt <= killAt + 1, "resumes from " + from);

        List<Metrics.Step> reference = Metrics.read(whole);
        // Same number of ranks: bit for bit.
        Path two = tmp.resolve("resumed-2");
        run(mpirun, 2, train(two, 2, "--zero", "1", "--resume", killed.toString()), List.of(), tmp.resolve("logs-2"), 0);
        compare(reference, Metrics.read(two), resumedAt, 0);
        assertTrue(Arrays.equals(Files.readAllBytes(whole.resolve("final/model.safetensors")), Files.readAllBytes(two.resolve("final/model.safetensors"))),
                "final weights after a 2-rank resume equal the uninterrupted run's");

        // One process, batch 4: the whole state from the two shards.
        Path one = tmp.resolve("resumed-1");
        StringWriter out = new StringWriter(), err = new StringWriter();
        int code;
        try {
            code = Main.run(train(one, 4, "--resume", killed.toString()).toArray(String[]::new), new PrintWriter(out), new PrintWriter(err));
        } finally {
            MemoryLedger.global().resetPeaks();
        }
        assertEquals(0, code, out + "\n" + err);
        double d1 = compare(reference, Metrics.read(one), resumedAt, DataParallelTrainingTest.LOSS_TOLERANCE);

        // Four ranks, batch 1, re-partitioned from two.
        Path four = tmp.resolve("resumed-4");
        run(mpirun, 4, train(four, 1, "--zero", "1", "--resume", killed.toString()), List.of(), tmp.resolve("logs-4"), 0);
        double d4 = compare(reference, Metrics.read(four), resumedAt, DataParallelTrainingTest.LOSS_TOLERANCE);
        System.out.printf(Locale.ROOT, "resumed at step %d: 2 ranks bit for bit; 1 process max loss difference %.3g, 4 ranks %.3g%n", resumedAt, d1, d4);
    }

    /** The resumed run's steps against the reference's: the largest relative loss difference, at most {@code tolerance}. */
    private static double compare(List<Metrics.Step> reference, List<Metrics.Step> resumed, long from, double tolerance) {
        List<Metrics.Step> after = resumed.stream().filter(s -> s.step() > from).toList();
        assertEquals(STEPS - from, after.size(), "steps after the resume: " + resumed);
        double worst = 0;
        for (Metrics.Step s : after) {
            double ref = reference.get((int) s.step() - 1).loss();
            if (tolerance == 0) assertEquals(ref, s.loss(), "step " + s.step() + " loss");
            worst = Math.max(worst, Math.abs(ref - s.loss()) / Math.abs(ref));
        }
        assertTrue(worst <= tolerance, "losses differ by " + worst + " relative");
        return worst;
    }

    /**
     * Faults: rank 1 killed (kill -9) inside the write of step 4's checkpoint, its shard not yet on disk. The job ends
     * non-zero within 30 s; step 4 never counts (no marker, only a hidden temporary folder); the run resumes in place
     * from step 2 and finishes, the temporary removed.
     */
    @Test
    void aRankKilledInsideACheckpointWriteLeavesThePreviousCheckpointResumable() throws Exception {
        Path mpirun = Mpirun.require();
        Path run = tmp.resolve("run"), pause = tmp.resolve("paused.pid");
        Job job = Job.start(mpirun, 2, train(run, 2, "--zero", "1"), List.of("-Dllamafit.test.pauseInCheckpoint=4:1:" + pause),
                tmp.resolve("logs"));
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(TIMEOUT_S);
        while (!Files.isRegularFile(pause) || Files.readString(pause).isBlank()) {
            if (!job.process.isAlive()) fail("the job ended before the pause: " + job.output());
            if (System.nanoTime() > deadline) fail("no pause within " + TIMEOUT_S + " s");
            Thread.sleep(50);
        }
        long pid = Long.parseLong(Files.readString(pause).strip());
        Path temporary = run.resolve("checkpoints/.step-00000004.tmp-ranks");
        assertTrue(Files.isRegularFile(temporary.resolve("zero").resolve(ShardedCheckpoint.rankFile(0, 2)))
                || Files.isDirectory(temporary), "the write is under way: " + temporary);
        long[] exit = job.kill9(pid);
        System.out.printf(Locale.ROOT, "killed inside the checkpoint write: job exit %d, %.1f s after the kill%n", exit[0], exit[1] / 1e3);
        assertNotEquals(0, exit[0], job.output());
        assertTrue(exit[1] <= FAULT_EXIT_S * 1000, "the job took " + exit[1] + " ms to end after the kill: " + job.output());
        assertFalse(Files.exists(run.resolve("checkpoints/step-00000004")), "the interrupted checkpoint is not taken as good");
        assertEquals(run.resolve("checkpoints/step-00000002"), Checkpoints.resolve(run));

        StringWriter out = new StringWriter(), err = new StringWriter();
        int code;
        try {
            code = Main.run(train(run, 4, "--resume", run.toString()).toArray(String[]::new), new PrintWriter(out), new PrintWriter(err));
        } finally {
            MemoryLedger.global().resetPeaks();
        }
        assertEquals(0, code, out + "\n" + err);
        assertTrue(out.toString().contains("trained " + (STEPS - 2) + " steps"), "resumed from step 2: " + out);
        assertFalse(Files.exists(temporary), "the killed write's temporary folder is removed");
        assertEquals(STEPS, Checkpoints.stepOf(Checkpoints.resolve(run)).orElseThrow());
    }

    /** Ranks started with different options stop at once, exit 2, naming the rank and the option. */
    @Test
    void ranksThatDisagreeAtStartStopNamingTheRankAndTheField() throws Exception {
        Path mpirun = Mpirun.require();
        Path run = tmp.resolve("run");
        List<String> a = train(run, 2), b = new ArrayList<>(a);
        b.set(b.indexOf("--lr") + 1, "1e-3");
        List<String> cmd = new ArrayList<>(List.of(mpirun.toString(), "--oversubscribe", "--allow-run-as-root"));
        cmd.addAll(List.of("-np", "1"));
        cmd.addAll(Job.java(List.of()));
        cmd.addAll(a);
        cmd.addAll(List.of(":", "-np", "1"));
        cmd.addAll(Job.java(List.of()));
        cmd.addAll(b);
        Job job = Job.start(cmd, tmp.resolve("logs"), 2);
        long[] exit = job.await();
        String all = job.output();
        assertEquals(2, exit[0], all);
        String line = all.lines().filter(l -> l.contains("was started with another")).findFirst().orElse("");
        System.out.println("start-up check: " + line);
        assertTrue(line.contains("rank 1 was started with another --lr than rank 0"), all);
    }

    private static void run(Path mpirun, int ranks, List<String> args, List<String> javaOptions, Path logs, int expected) throws Exception {
        Job job = Job.start(mpirun, ranks, args, javaOptions, logs);
        long[] exit = job.await();
        assertEquals(expected, exit[0], job.output());
    }

    /** One mpirun job, its output collected. */
    private record Job(Process process, Path logs, int ranks, StringBuilder out) {
        static List<String> java(List<String> options) {
            List<String> cmd = new ArrayList<>(List.of(Path.of(System.getProperty("java.home"), "bin", "java").toString(), "--add-modules",
                    "jdk.incubator.vector", "--enable-native-access=ALL-UNNAMED", "-XX:+UseSerialGC", "-Xmx512m", "-Dllamafit.threads=1"));
            cmd.addAll(options);
            cmd.addAll(List.of("-cp", System.getProperty("java.class.path"), Main.class.getName()));
            return cmd;
        }

        static Job start(Path mpirun, int ranks, List<String> args, List<String> javaOptions, Path logs) throws IOException {
            List<String> cmd = new ArrayList<>(List.of(mpirun.toString(), "--oversubscribe", "--allow-run-as-root", "-np", String.valueOf(ranks)));
            cmd.addAll(java(javaOptions));
            cmd.addAll(args);
            return start(cmd, logs, ranks);
        }

        static Job start(List<String> cmd, Path logs, int ranks) throws IOException {
            List<String> withLogs = new ArrayList<>(cmd);
            withLogs.addAll(3, List.of("--output-filename", logs.toString()));
            ProcessBuilder pb = new ProcessBuilder(withLogs).redirectErrorStream(true);
            pb.environment().remove("OMPI_COMM_WORLD_SIZE");
            Process p = pb.start();
            StringBuilder out = new StringBuilder();
            Thread.ofVirtual().start(() -> {
                try {
                    byte[] all = p.getInputStream().readAllBytes();
                    synchronized (out) {
                        out.append(new String(all));
                    }
                } catch (IOException e) {
                    synchronized (out) {
                        out.append(e);
                    }
                }
            });
            return new Job(p, logs, ranks, out);
        }

        /** {exit code, ms}. */
        long[] await() throws Exception {
            long t0 = System.nanoTime();
            if (!process.waitFor(TIMEOUT_S, TimeUnit.SECONDS)) {
                process.descendants().forEach(ProcessHandle::destroyForcibly);
                process.destroyForcibly();
                fail("mpirun still running after " + TIMEOUT_S + " s: " + output());
            }
            return new long[] {process.exitValue(), (System.nanoTime() - t0) / 1_000_000};
        }

        void awaitMetrics(Path run, int steps) throws Exception {
            Path m = run.resolve("metrics.jsonl");
            long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(TIMEOUT_S);
            while (!Files.isRegularFile(m) || Files.readAllLines(m).stream().filter(l -> l.contains("\"loss\"")).count() < steps) {
                if (!process.isAlive()) fail("the job ended early: " + output());
                if (System.nanoTime() > deadline) fail("step " + steps + " not logged within " + TIMEOUT_S + " s");
                Thread.sleep(20);
            }
        }

        /** kill -9 of the rank's JVM (found by its OMPI_COMM_WORLD_RANK); {exit code, ms from the kill to mpirun's exit}. */
        long[] kill9Rank(int rank) throws Exception {
            for (ProcessHandle h : process.descendants().toList()) {
                Path env = Path.of("/proc", Long.toString(h.pid()), "environ");
                String e;
                try {
                    e = new String(Files.readAllBytes(env));
                } catch (IOException gone) {
                    continue;
                }
                if (Arrays.asList(e.split("\0")).contains("OMPI_COMM_WORLD_RANK=" + rank) && h.info().command().orElse("").endsWith("java"))
                    return kill9(h.pid());
            }
            throw new AssertionError("no JVM of rank " + rank + " under mpirun: " + output());
        }

        long[] kill9(long pid) throws Exception {
            assertEquals(0, new ProcessBuilder("kill", "-9", Long.toString(pid)).inheritIO().start().waitFor());
            return await();
        }

        String output() {
            StringBuilder sb = new StringBuilder();
            synchronized (out) {
                sb.append(out);
            }
            for (int r = 0; r < ranks; r++)
                try {
                    sb.append("\n--- rank ").append(r).append(" stderr:\n").append(DataParallelTrainingTest.rankFile(logs, r, "stderr"));
                } catch (IOException e) {
                    sb.append(e);
                }
            return sb.toString();
        }
    }
}
