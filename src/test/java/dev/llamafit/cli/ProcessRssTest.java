// Process peak RSS of real `train` runs against the plan: planned total + the documented JVM baseline, within 15%.
package dev.llamafit.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.concurrent.TimeUnit;

import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import com.fasterxml.jackson.databind.JsonNode;

import dev.llamafit.io.HfFolderWriter;
import dev.llamafit.io.Json;
import dev.llamafit.memory.ByteSize;
import dev.llamafit.memory.MemoryLedger;
import dev.llamafit.memory.ProcessMemory;
import dev.llamafit.model.LlamaConfig;
import dev.llamafit.model.RandomModels;
import dev.llamafit.tensor.Tensor;
import dev.llamafit.testing.SharedData;

/**
 * Issue 5's RSS acceptance: for full / LoRA × checkpointing off/on × B ∈ {1, 2, 4} × two model shapes (the shared
 * tinystories-656k and a stories15M-shaped model), a child JVM started as the launcher starts it runs two optimizer
 * steps of {@code train}; its peak RSS (VmHWM) must be within 15% of the planned total plus
 * {@link TrainCommand#JVM_BASELINE_BYTES}. Each run writes OUTPUT/memory.json, which this test reads.
 */
class ProcessRssTest {
    static final double TOLERANCE = 0.15;
    static final int SEQ_LEN = 128;

    @TempDir static Path tmp;
    static Path stories15M;
    static final List<String> table = new ArrayList<>();

    @BeforeAll
    static void writeStories15M() throws IOException {
        Path tokenizer = SharedData.require("tokenizers/llama2");
        LlamaConfig c = RandomModels.stories15M();
        MemoryLedger ledger = new MemoryLedger();
        Map<String, Tensor> w = RandomModels.weights(c, ledger, 11, 0.02);
        try {
            stories15M = tmp.resolve("stories15M");
            HfFolderWriter.write(stories15M, c, List.copyOf(w.values()), tokenizer);
        } finally {
            w.values().forEach(Tensor::close);
        }
    }

    @AfterAll
    static void printTable() {
        System.out.println(String.format(Locale.ROOT, "%-34s %12s %12s %12s %7s", "run", "planned", "+baseline", "peak RSS", "ratio"));
        table.forEach(System.out::println);
    }

    @Test
    void peakRssWithinFifteenPercentOfPlanPlusBaseline() throws Exception {
        if (ProcessMemory.peakRssBytes().isEmpty()) return; // no /proc (not Linux): nothing to measure
        Path data = SharedData.require("datasets/text/tinystories_sample.txt");
        Path tiny = SharedData.require("models/tinystories-656k");
        List<String> failures = new ArrayList<>();
        for (Path model : List.of(tiny, stories15M))
            for (boolean lora : List.of(false, true))
                for (boolean gc : List.of(false, true))
                    for (int b : List.of(1, 2, 4)) {
                        String name = String.format(Locale.ROOT, "%s %s%s B=%d", model.getFileName(), lora ? "lora" : "full", gc ? " ckpt" : "", b);
                        Path out = tmp.resolve("run-" + table.size());
                        List<String> args = new ArrayList<>(List.of("train", "--model", model.toString(), "--data", data.toString(),
                                "--output", out.toString(), "--steps", "2", "--batch-size", Integer.toString(b), "--seq-len",
                                Integer.toString(SEQ_LEN), "--lr", "1e-4"));
                        if (lora) args.addAll(List.of("--lora-r", "8", "--lora-targets", "all-linear"));
                        if (gc) args.add("--gradient-checkpointing");
                        JsonNode m = trainInChildJvm(args, out);
                        long planned = m.get("planned_total_bytes").asLong(), baseline = m.get("jvm_baseline_bytes").asLong();
                        long rss = m.get("peak_rss_bytes").asLong();
                        double ratio = (double) rss / (planned + baseline);
                        table.add(String.format(Locale.ROOT, "%-34s %12s %12s %12s %7.3f", name, ByteSize.format(planned),
                                ByteSize.format(planned + baseline), ByteSize.format(rss), ratio));
                        if (Math.abs(ratio - 1) > TOLERANCE) failures.add(name + ": ratio " + String.format(Locale.ROOT, "%.3f", ratio));
                    }
        assertTrue(failures.isEmpty(), "peak RSS outside ±15% of planned + JVM baseline: " + failures);
    }

    /** Runs `train` in a fresh JVM with the launcher's flags and returns its memory.json. */
    static JsonNode trainInChildJvm(List<String> args, Path out) throws Exception {
        String java = ProcessHandle.current().info().command().orElse("java");
        List<String> cmd = new ArrayList<>(List.of(java, "--add-modules", "jdk.incubator.vector", "--enable-native-access=ALL-UNNAMED",
                "-XX:+UseSerialGC", "-cp", System.getProperty("java.class.path"), Main.class.getName()));
        cmd.addAll(args);
        Path log = out.resolveSibling(out.getFileName() + ".log");
        Process p = new ProcessBuilder(cmd).redirectErrorStream(true).redirectOutput(log.toFile()).start();
        assertTrue(p.waitFor(5, TimeUnit.MINUTES), "child train did not finish");
        assertEquals(0, p.exitValue(), () -> "child train failed:\n" + read(log));
        return Json.read(out.resolve(TrainCommand.MEMORY_REPORT));
    }

    static String read(Path p) {
        try { return Files.readString(p); } catch (IOException e) { return e.toString(); }
    }
}
