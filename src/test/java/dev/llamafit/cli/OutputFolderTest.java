package dev.llamafit.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.PosixFilePermissions;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;

import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import dev.llamafit.io.OutputFolder;
import dev.llamafit.testing.SharedData;

/**
 * Issue 19, findings 4 and 5: one run per output folder (exit 2 at once, naming the holder; a dead holder's lock is
 * taken over), output paths checked before any work (exit 2 naming the path), and write failures during a run (exit 1,
 * one line naming the path, the operation and the checkpoint still intact).
 */
class OutputFolderTest {
    @TempDir Path tmp;

    static Path model() { return SharedData.require("models/tinystories-656k"); }
    static Path data() { return SharedData.require("datasets/text/tinystories_sample.txt"); }

    static List<String> trainArgs(Path out, long steps, String... extra) {
        List<String> a = new ArrayList<>(List.of("train", "--model", model().toString(), "--data", data().toString(), "--output",
                out.toString(), "--steps", String.valueOf(steps), "--batch-size", "2", "--seq-len", "32", "--save-every", "1", "--seed", "3"));
        a.addAll(List.of(extra));
        return a;
    }

    static BadInputTest.Run train(Path out, long steps, String... extra) {
        return BadInputTest.run(trainArgs(out, steps, extra).toArray(String[]::new));
    }

    /** The CLI in a child JVM, under {@code bash -c "PREFIX exec java …"} (e.g. a ulimit), output into {@code log}. */
    Process launch(String shellPrefix, List<String> cliArgs, Path log) throws Exception {
        List<String> java = new ArrayList<>(List.of(Path.of(System.getProperty("java.home"), "bin", "java").toString(),
                "--add-modules", "jdk.incubator.vector", "--enable-native-access=ALL-UNNAMED", "-cp", System.getProperty("java.class.path"),
                "dev.llamafit.cli.Main"));
        java.addAll(cliArgs);
        StringBuilder cmd = new StringBuilder(shellPrefix).append(" exec");
        for (String s : java) cmd.append(" '").append(s.replace("'", "'\\''")).append('\'');
        return new ProcessBuilder("bash", "-c", cmd.toString()).redirectErrorStream(true).redirectOutput(log.toFile()).start();
    }

    @Test
    void aSecondRunOnAFolderInUseStopsAtOnceNamingTheHolderAndADeadHoldersLockIsTakenOver() throws Exception {
        Assumptions.assumeTrue(Files.isExecutable(Path.of("/bin/bash")), "needs bash");
        Path out = tmp.resolve("run");
        Process first = launch("", trainArgs(out, 100000), tmp.resolve("first.log"));
        try {
            long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(60);
            while (System.nanoTime() < deadline && !hasCheckpoint(out)) Thread.sleep(20);
            assertTrue(first.isAlive() && hasCheckpoint(out), "the first run is training");
            long t0 = System.nanoTime();
            BadInputTest.Run second = train(out, 3);
            double seconds = (System.nanoTime() - t0) / 1e9;
            BadInputTest.assertBadInput(second, out.toString(), "in use by another llamafit run", "PID " + first.pid(), "on host ", "since ");
            assertTrue(seconds < 5, "stops at once, before loading anything: " + seconds + " s");
        } finally {
            first.destroyForcibly(); // SIGKILL: no shutdown hook, the lock file keeps naming the dead PID
            first.waitFor();
        }
        assertTrue(Files.readString(out.resolve(OutputFolder.LOCK_FILE)).contains("\"pid\" : " + first.pid()), "the dead run's lock file stays");
        // The holder is gone: the next run (a resume, which locks too) takes the lock over with a note and trains.
        java.io.ByteArrayOutputStream notes = new java.io.ByteArrayOutputStream();
        java.io.PrintStream stdout = System.out;
        BadInputTest.Run resumed;
        System.setOut(new java.io.PrintStream(notes, true));
        try {
            resumed = resume(out);
        } finally {
            System.setOut(stdout);
        }
        assertEquals(0, resumed.code(), resumed.err());
        assertTrue(notes.toString().contains("note: took over the stale lock " + out.resolve(OutputFolder.LOCK_FILE).toAbsolutePath()
                + " of PID " + first.pid()), notes.toString());
        assertTrue(Files.readString(out.resolve(OutputFolder.LOCK_FILE)).isBlank(), "released: the lock file is emptied");
    }

    static boolean hasCheckpoint(Path out) {
        try {
            dev.llamafit.train.Checkpoints.resolve(out);
            return true;
        } catch (dev.llamafit.io.InputException notYet) {
            return false;
        }
    }

    /** Resumes {@code out} from its newest checkpoint for one more step, with the settings the first run used. */
    private BadInputTest.Run resume(Path out) throws Exception {
        String step = dev.llamafit.train.Checkpoints.resolve(out).getFileName().toString().substring("step-".length());
        long next = Long.parseLong(step) + 1;
        return train(out, next, "--resume", out.toString());
    }

    @Test
    void aLockHeldByAnotherThreadOfThisProcessIsRefusedAndAStaleOneOfADeadPidIsTakenOver() throws Exception {
        Path out = tmp.resolve("held");
        CountDownLatch locked = new CountDownLatch(1), done = new CountDownLatch(1);
        Thread holder = new Thread(() -> {
            try (OutputFolder.Lock l = OutputFolder.lock(out, "--output", null)) {
                locked.countDown();
                done.await();
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
            }
        });
        holder.start();
        try {
            assertTrue(locked.await(10, TimeUnit.SECONDS));
            BadInputTest.assertBadInput(train(out, 1), "in use by another llamafit run", "this process", "lock file");
            BadInputTest.assertBadInput(BadInputTest.run("convert", "--from", "llama2c", "--input", tmp.resolve("none.bin").toString(),
                    "--output", out.toString()), "in use by another llamafit run");
        } finally {
            done.countDown();
            holder.join();
        }
        // A lock file left by a process that has exited (a real, reaped PID) on this host: taken over with a note.
        Process gone = new ProcessBuilder("true").start();
        gone.waitFor();
        String host = Files.readString(Path.of("/proc/sys/kernel/hostname")).strip();
        Files.writeString(out.resolve(OutputFolder.LOCK_FILE), "{\"pid\": " + gone.pid() + ", \"host\": \"" + host
                + "\", \"since\": \"2020-01-01T00:00:00Z\", \"process_start\": \"2020-01-01T00:00:00Z\"}\n");
        BadInputTest.Run r = train(out, 1);
        assertEquals(0, r.code(), r.err());
    }

    @Test
    void aLockFileFromAnotherHostIsNotTakenOverAndSaysHowToRemoveIt() throws Exception {
        Path out = Files.createDirectories(tmp.resolve("shared"));
        Files.writeString(out.resolve(OutputFolder.LOCK_FILE),
                "{\"pid\": 4242, \"host\": \"elsewhere-7\", \"since\": \"2024-05-01T10:00:00Z\"}\n");
        BadInputTest.assertBadInput(train(out, 1), "host elsewhere-7", "PID 4242", "delete " + out.resolve(OutputFolder.LOCK_FILE));
        assertFalse(Files.exists(out.resolve("checkpoints")));
    }

    @Test
    void anOutputThatIsAFileIsBadInputNamingIt() throws Exception {
        Path file = Files.writeString(tmp.resolve("taken"), "x");
        BadInputTest.assertBadInput(train(file, 1), file.toString(), "is a file, not a folder");
        Path adapterFixture = SharedData.fixture("tiny-llama-gqa-tied");
        BadInputTest.assertBadInput(BadInputTest.run("merge", "--model", adapterFixture.toString(), "--adapter",
                adapterFixture.resolve("lora").toString(), "--output", file.toString()), file.toString(), "is a file, not a folder");
        BadInputTest.assertBadInput(BadInputTest.run("convert", "--from", "llama2c", "--input", tmp.resolve("none.bin").toString(),
                "--output", file.toString()), file.toString(), "is a file, not a folder");
        assertEquals("x", Files.readString(file));
    }

    @Test
    void anOutputUnderAFileIsBadInputNamingIt() throws Exception {
        Path file = Files.writeString(tmp.resolve("plain"), "x");
        Path out = file.resolve("sub/run");
        BadInputTest.assertBadInput(train(out, 1), out.toString(), file + " is a file, not a folder");
    }

    @Test
    void anOutputThatIsNotWritableIsBadInputNamingIt() throws Exception {
        Path parent = Files.createDirectories(tmp.resolve("readonly"));
        Files.setPosixFilePermissions(parent, PosixFilePermissions.fromString("r-xr-xr-x"));
        // root (CI runs as root) writes through permissions; the immutable attribute stops root too, where the file system has it.
        boolean immutable = Files.isWritable(parent) && chattr("+i", parent);
        try {
            Assumptions.assumeFalse(Files.isWritable(parent), "neither permissions nor chattr +i make a folder unwritable here");
            Path out = parent.resolve("run");
            BadInputTest.assertBadInput(train(out, 1), out.toString(), "not writable");
        } finally {
            if (immutable) chattr("-i", parent);
            Files.setPosixFilePermissions(parent, PosixFilePermissions.fromString("rwxr-xr-x"));
        }
    }

    private static boolean chattr(String flag, Path dir) {
        try {
            Process p = new ProcessBuilder("chattr", flag, dir.toString()).redirectErrorStream(true).start();
            p.getInputStream().readAllBytes();
            return p.waitFor() == 0;
        } catch (IOException e) {
            return false;
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            return false;
        }
    }

    @Test
    void aMergeIntoItsOwnModelFolderIsRefusedWithoutLeavingALockThere() throws Exception {
        Path model = tmp.resolve("model");
        Path fixture = SharedData.fixture("tiny-llama-gqa-tied");
        try (var files = Files.list(fixture)) {
            Files.createDirectories(model);
            for (Path f : files.toList()) if (Files.isRegularFile(f)) Files.copy(f, model.resolve(f.getFileName()));
        }
        BadInputTest.assertBadInput(BadInputTest.run("merge", "--model", model.toString(), "--adapter",
                fixture.resolve("lora").toString(), "--output", model.toString()), "must differ");
        assertFalse(Files.exists(model.resolve(OutputFolder.LOCK_FILE)));
    }

    @Test
    void aWriteFailureDuringARunNamesThePathTheOperationAndTheIntactCheckpoint() throws Exception {
        Assumptions.assumeTrue(Files.isExecutable(Path.of("/bin/bash")), "needs bash and ulimit");
        Path out = tmp.resolve("run");
        assertEquals(0, train(out, 2).code());
        // A real kernel failure, unprivileged: files may not grow past 1 MiB in the child (the JVM ignores SIGXFSZ, so
        // write(2) fails with EFBIG, as it fails with ENOSPC on a full disk). Step 3's checkpoint (2.6 MB of weights) fails.
        Path log = tmp.resolve("limited.log");
        Process p = launch("ulimit -f 1024;", trainArgs(out, 4, "--resume", out.toString()), log);
        assertTrue(p.waitFor(120, TimeUnit.SECONDS));
        String text = Files.readString(log);
        assertEquals(1, p.exitValue(), text);
        List<String> failed = text.lines().filter(l -> l.startsWith("llamafit:")).toList();
        assertEquals(1, failed.size(), text);
        String line = failed.getFirst();
        assertTrue(line.startsWith("llamafit: failed: writing checkpoint step 3 to " + out.resolve("checkpoints/.step-00000003.tmp-")), line);
        assertTrue(line.contains("/model.safetensors: File too large;"), line);
        assertTrue(line.endsWith("the last intact checkpoint is " + out.resolve("checkpoints/step-00000002") + " (resume with --resume " + out + ")"), line);
        assertFalse(line.contains("Exception"), line);
        // The failed write's temporaries (and any a killed run left) do not block the next run.
        Files.createDirectories(out.resolve("checkpoints/.step-00000003.tmp-dead"));
        Files.writeString(out.resolve("checkpoints/.step-00000003.tmp-dead/model.safetensors"), "torn");
        BadInputTest.Run r = train(out, 4, "--resume", out.toString());
        assertEquals(0, r.code(), r.err());
        try (var s = Files.list(out.resolve("checkpoints"))) {
            assertEquals(List.of("step-00000003", "step-00000004"), s.map(f -> f.getFileName().toString()).sorted().toList());
        }
    }
}
