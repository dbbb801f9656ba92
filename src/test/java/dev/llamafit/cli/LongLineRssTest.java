// Issue 19 finding 3: a 50 MB single-line text file trains within its planned memory (it took 4.17 GiB against 238 MiB).
package dev.llamafit.cli;

import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.BufferedWriter;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Locale;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import com.fasterxml.jackson.databind.JsonNode;

import dev.llamafit.memory.ByteSize;
import dev.llamafit.memory.ProcessMemory;
import dev.llamafit.testing.SharedData;

class LongLineRssTest {
    static final long FILE_BYTES = 50L << 20;

    @TempDir Path tmp;

    @Test
    void fiftyMegabyteSingleLineTrainsWithinPlanPlusBaseline() throws Exception {
        if (ProcessMemory.peakRssBytes().isEmpty()) return; // no /proc (not Linux): nothing to measure
        Path tiny = SharedData.require("models/tinystories-656k");
        // One line of story text (its own line breaks turned into spaces), repeated to 50 MB; written at test time.
        String story = Files.readString(SharedData.require("datasets/text/tinystories_sample.txt"))
                .replace("<|endoftext|>", " ").replaceAll("\\s+", " ").strip() + " ";
        Path data = tmp.resolve("one-line.txt");
        try (BufferedWriter w = Files.newBufferedWriter(data, StandardCharsets.UTF_8)) {
            for (long n = 0; n < FILE_BYTES; n += story.length()) w.write(story);
        }
        Path out = tmp.resolve("run");
        long t0 = System.nanoTime();
        JsonNode m = ProcessRssTest.trainInChildJvm(List.of("train", "--model", tiny.toString(), "--data", data.toString(),
                "--output", out.toString(), "--steps", "2", "--batch-size", "2", "--seq-len", "64", "--lr", "1e-4"), out);
        double seconds = (System.nanoTime() - t0) / 1e9;
        long planned = m.get("planned_total_bytes").asLong(), baseline = m.get("jvm_baseline_bytes").asLong();
        long rss = m.get("peak_rss_bytes").asLong();
        planned += m.get("planned_data_bytes").asLong(); // the token stream's planned share (an upper bound)
        double ratio = (double) rss / (planned + baseline);
        System.out.printf(Locale.ROOT, "50 MB line: planned %s + baseline %s, peak RSS %s (ratio %.3f), %.1f s%n", ByteSize.format(planned),
                ByteSize.format(baseline), ByteSize.format(rss), ratio, seconds);
        assertTrue(ratio <= 1 + ProcessRssTest.TOLERANCE, "peak RSS " + ByteSize.format(rss) + " above planned + baseline "
                + ByteSize.format(planned + baseline) + " by more than 15%");
    }
}
