package dev.llamafit.train;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import dev.llamafit.testing.SharedData;

/** A run killed with SIGKILL, even in the middle of writing a checkpoint, leaves the previous one loadable. */
class CrashSafetyTest {
    @TempDir Path tmp;

    Process launch(Path model, Path data, Path out, long steps, String... jvmProps) throws Exception {
        List<String> cmd = new ArrayList<>(List.of(Path.of(System.getProperty("java.home"), "bin", "java").toString(),
                "--add-modules", "jdk.incubator.vector", "--enable-native-access=ALL-UNNAMED"));
        cmd.addAll(List.of(jvmProps));
        cmd.addAll(List.of("-cp", System.getProperty("java.class.path"), "dev.llamafit.cli.Main", "train",
                "--model", model.toString(), "--data", data.toString(), "--output", out.toString(),
                "--steps", String.valueOf(steps), "--batch-size", "2", "--seq-len", "32", "--save-every", "1", "--seed", "3"));
        return new ProcessBuilder(cmd).redirectErrorStream(true).redirectOutput(tmp.resolve("child-" + System.nanoTime() + ".log").toFile()).start();
    }

    @Test
    void killedDuringACheckpointWriteLeavesThePreviousCheckpointResumable() throws Exception {
        Path model = SharedData.require("models/tinystories-656k");
        Path data = SharedData.require("datasets/text/tinystories_sample.txt");
        Path out = tmp.resolve("run");
        // The test hook kills the JVM (Runtime.halt: no shutdown hooks, no finally blocks — what SIGKILL does)
        // after the weights of step 3's checkpoint are on disk and before the checkpoint is complete.
        Process p = launch(model, data, out, 6, "-Dllamafit.test.haltInCheckpoint=3");
        assertTrue(p.waitFor(120, TimeUnit.SECONDS));
        assertEquals(137, p.exitValue(), "halted like a SIGKILL");
        List<Path> complete = Checkpoints.list(out.resolve(Checkpoints.DIR));
        assertEquals("step-00000002", complete.getLast().getFileName().toString());
        try (var s = Files.list(out.resolve(Checkpoints.DIR))) {
            assertTrue(s.anyMatch(f -> f.getFileName().toString().startsWith(".step-00000003.tmp")), "the torn write is a hidden temporary");
        }
        // Resume (the CLI's defaults, as the child used them), then compare with a run that was never killed.
        TrainerTest.train(new TrainOptions(model, data, out, 6, 0, 2, 1, 32, 3e-4, "cosine", 0, 0.0, 1.0, "adamw",
                0, 1, out, 3, null, 0, false, false));
        assertEquals("step-00000006", Checkpoints.list(out.resolve(Checkpoints.DIR)).getLast().getFileName().toString());
        Path straight = tmp.resolve("straight");
        TrainerTest.train(new TrainOptions(model, data, straight, 6, 0, 2, 1, 32, 3e-4, "cosine", 0, 0.0, 1.0, "adamw",
                0, 0, null, 3, null, 0, false, false));
        List<Double> a = TrainerTest.losses(straight), b = TrainerTest.losses(out);
        assertEquals(6, b.size());
        for (int i = 0; i < 6; i++)
            assertEquals(Double.doubleToLongBits(a.get(i)), Double.doubleToLongBits(b.get(i)), "step " + (i + 1));
    }

    @Test
    void realSigkillAtRandomMomentsNeverCorruptsTheLatestCheckpoint() throws Exception {
        Path model = SharedData.require("models/tinystories-656k");
        Path data = SharedData.require("datasets/text/tinystories_sample.txt");
        Path out = tmp.resolve("run");
        java.util.Random r = new java.util.Random(5);
        for (int attempt = 0; attempt < 3; attempt++) {
            Process p = launch(model, data, out, 1000);
            // Wait until the child is checkpointing every step, then kill it at a random moment.
            long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(60);
            while (System.nanoTime() < deadline && (!Files.isDirectory(out.resolve(Checkpoints.DIR))
                    || Checkpoints.list(out.resolve(Checkpoints.DIR)).isEmpty())) Thread.sleep(20);
            Thread.sleep(r.nextInt(300));
            p.destroyForcibly(); // SIGKILL
            p.waitFor();
            Path latest = Checkpoints.resolve(out);
            try (var f = dev.llamafit.io.safetensors.SafetensorsFile.open(latest.resolve(Checkpoints.MODEL), new dev.llamafit.memory.MemoryLedger());
                 var g = dev.llamafit.io.safetensors.SafetensorsFile.open(latest.resolve(Checkpoints.OPTIMIZER), new dev.llamafit.memory.MemoryLedger())) {
                assertTrue(f.names().size() > 0 && Checkpoints.readState(latest).has("step"));
            }
        }
    }
}
