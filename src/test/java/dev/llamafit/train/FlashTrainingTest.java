// Issue 20's run-level check: 20 training steps on tinystories-656k with flash attention repeat eager's losses within 1e-5.
package dev.llamafit.train;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.nio.file.Path;
import java.util.List;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import dev.llamafit.model.Technique;
import dev.llamafit.testing.SharedData;

class FlashTrainingTest {
    @TempDir Path tmp;

    static TrainOptions options(Path out, Technique.Attention attention) {
        return new TrainOptions(SharedData.require("models/tinystories-656k"), SharedData.require("datasets/text/tinystories_sample.txt"),
                out, 20, 0, 4, 128, 1e-3, "cosine", 2, 0.01, 1.0, 0, 0, null, 3, null, 0, false, false,
                Technique.FULL.withAttention(attention), null, false, null);
    }

    @Test
    void twentyStepsMatchEagerWithinOneInAHundredThousand() throws IOException {
        TrainerTest.train(options(tmp.resolve("eager"), Technique.Attention.EAGER));
        TrainerTest.train(options(tmp.resolve("flash"), Technique.Attention.FLASH));
        List<Metrics.Step> e = Metrics.read(tmp.resolve("eager")), f = Metrics.read(tmp.resolve("flash"));
        assertEquals(20, e.size());
        assertEquals(20, f.size());
        for (int i = 0; i < 20; i++) {
            double rel = Math.abs(f.get(i).loss() - e.get(i).loss()) / Math.abs(e.get(i).loss());
            assertTrue(rel <= 1e-5, "step " + (i + 1) + ": flash loss " + f.get(i).loss() + " vs eager " + e.get(i).loss());
        }
    }
}
