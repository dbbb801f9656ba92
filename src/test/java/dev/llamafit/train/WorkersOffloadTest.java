// `train --workers 2` starts mpirun itself; ZeRO-1 with --offload disk on 2 ranks equals the in-memory ZeRO-1 run bit for bit.
package dev.llamafit.train;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

import java.io.IOException;
import java.io.PrintWriter;
import java.io.StringWriter;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import dev.llamafit.cli.Main;
import dev.llamafit.memory.MemoryLedger;
import dev.llamafit.testing.Mpirun;
import dev.llamafit.testing.SharedData;

/**
 * Three runs of 20 steps: one process of batch 4 (in this JVM); {@code train --workers 2 --zero 1 --offload disk} of
 * batch 2 in a child JVM, which starts mpirun itself; and {@code mpirun -np 2 train --zero 1} in memory. The first two
 * agree within the data-parallel tolerance (as DataParallelTrainingTest), the last two bit for bit.
 */
class WorkersOffloadTest {
    @TempDir Path tmp;

    private static List<String> common(Path out, int batch, String... extra) {
        List<String> a = new ArrayList<>(List.of("train", "--model", SharedData.require("models/tinystories-656k").toString(),
                "--data", SharedData.require("datasets/text/tinystories_sample.txt").toString(), "--output", out.toString(),
                "--steps", "20", "--batch-size", String.valueOf(batch), "--seq-len", "64", "--lr", "2e-3", "--warmup", "2",
                "--weight-decay", "0.01", "--max-grad-norm", "1.0", "--seed", "7"));
        a.addAll(List.of(extra));
        return a;
    }

    private static List<String> java() {
        return new ArrayList<>(List.of(Path.of(System.getProperty("java.home"), "bin", "java").toString(), "--add-modules", "jdk.incubator.vector",
                "--enable-native-access=ALL-UNNAMED", "-XX:+UseSerialGC", "-Xmx512m", "-Dllamafit.threads=1",
                "-cp", System.getProperty("java.class.path"), Main.class.getName()));
    }

    private static String run(List<String> cmd) throws Exception {
        ProcessBuilder pb = new ProcessBuilder(cmd).redirectErrorStream(true);
        pb.environment().remove("OMPI_COMM_WORLD_SIZE");
        pb.environment().remove("LLAMAFIT_LAUNCHER");
        Process p = pb.start();
        byte[][] out = new byte[1][];
        Thread reader = Thread.ofVirtual().start(() -> {
            try {
                out[0] = p.getInputStream().readAllBytes();
            } catch (IOException e) {
                out[0] = e.toString().getBytes();
            }
        });
        if (!p.waitFor(300, TimeUnit.SECONDS)) {
            p.descendants().forEach(ProcessHandle::destroyForcibly);
            p.destroyForcibly();
            reader.join(5000);
            fail("still running after 300 s: " + String.join(" ", cmd));
        }
        reader.join();
        String text = new String(out[0]);
        assertEquals(0, p.exitValue(), text);
        return text;
    }

    @Test
    void workersTwoStartsMpirunAndOffloadedZeroOneEqualsInMemoryBitForBit() throws Exception {
        Path mpirun = Mpirun.require();
        Path single = tmp.resolve("single"), workers = tmp.resolve("workers"), ranks = tmp.resolve("ranks");
        StringWriter out = new StringWriter(), err = new StringWriter();
        int code;
        try {
            code = Main.run(common(single, 4).toArray(String[]::new), new PrintWriter(out), new PrintWriter(err));
        } finally {
            MemoryLedger.global().resetPeaks();
        }
        assertEquals(0, code, err.toString());

        List<String> w = java();
        w.addAll(common(workers, 2, "--zero", "1", "--workers", "2", "--offload", "disk", "--offload-dir", tmp.resolve("off").toString(),
                "--offload-window", "64KiB"));
        String text = run(w);
        assertTrue(text.contains("data-parallel: 2 ranks (ZeRO stage 1)"), text);
        assertTrue(text.contains("offloaded_disk"), "the memory report shows the state on disk: " + text);

        List<String> m = new ArrayList<>(List.of(mpirun.toString(), "--oversubscribe", "--allow-run-as-root", "-np", "2"));
        m.addAll(java());
        m.addAll(common(ranks, 2, "--zero", "1"));
        run(m);

        List<Metrics.Step> a = Metrics.read(single), b = Metrics.read(workers), c = Metrics.read(ranks);
        assertEquals(20, b.size());
        for (int i = 0; i < 20; i++) {
            double rel = Math.abs(a.get(i).loss() - b.get(i).loss()) / Math.abs(a.get(i).loss());
            assertTrue(rel <= DataParallelTrainingTest.LOSS_TOLERANCE, "step " + (i + 1) + ": " + a.get(i).loss() + " vs " + b.get(i).loss());
            assertEquals(Double.doubleToLongBits(c.get(i).loss()), Double.doubleToLongBits(b.get(i).loss()), "step " + (i + 1) + ", offloaded vs in memory");
        }
        assertArrayEquals(Files.readAllBytes(ranks.resolve("final/model.safetensors")), Files.readAllBytes(workers.resolve("final/model.safetensors")));
        // The optimizer state, consolidated from the ranks' shards (ZeRO-1 checkpoints are sharded), tensor by tensor: the
        // offloaded optimizer lists its state in another order, so the files' bytes differ while every tensor is equal.
        Path step = Path.of("checkpoints/step-00000020");
        MemoryLedger ledger = new MemoryLedger();
        var inMemory = ShardedCheckpoint.consolidated(ranks.resolve(step), ledger);
        var offloaded = ShardedCheckpoint.consolidated(workers.resolve(step), ledger);
        try {
            assertEquals(inMemory.keySet(), java.util.Set.copyOf(offloaded.keySet()), "the state's tensors");
            for (var e : inMemory.entrySet()) {
                var other = offloaded.get(e.getKey());
                assertEquals(e.getValue().dtype(), other.dtype(), e.getKey());
                assertArrayEquals(e.getValue().segment().toArray(java.lang.foreign.ValueLayout.JAVA_BYTE),
                        other.segment().toArray(java.lang.foreign.ValueLayout.JAVA_BYTE), "optimizer state " + e.getKey());
            }
        } finally {
            inMemory.values().forEach(dev.llamafit.tensor.Tensor::close);
            offloaded.values().forEach(dev.llamafit.tensor.Tensor::close);
        }
    }
}
