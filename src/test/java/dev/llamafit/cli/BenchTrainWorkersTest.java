// `bench train --workers 2 --zero 3 --prefetch on,off` runs two real 2-rank jobs and reports every field; its flags are checked.
package dev.llamafit.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.List;

import org.junit.jupiter.api.Test;

import com.fasterxml.jackson.databind.JsonNode;

import dev.llamafit.io.Json;
import dev.llamafit.testing.Mpirun;
import dev.llamafit.testing.SharedData;

class BenchTrainWorkersTest {
    @Test
    void zeroThreeWithAndWithoutPrefetchReportsTokensCommunicationAndPerRankMemory() throws Exception {
        Mpirun.require();
        BadInputTest.Run r = BadInputTest.run("bench", "train", "--workers", "2", "--zero", "3", "--prefetch", "on,off",
                "--model", SharedData.require("models/tinystories-656k").toString(),
                "--data", SharedData.require("datasets/text/tinystories_sample.txt").toString(),
                "--steps", "2", "--batch-size", "2", "--seq-len", "32", "--json");
        assertEquals(0, r.code(), r.err() + r.out());
        JsonNode o = Json.MAPPER.readTree(r.out());
        assertEquals(2, o.get("workers").asInt());
        JsonNode vs = o.get("variants");
        assertEquals(2, vs.size(), r.out());
        for (int i = 0; i < 2; i++) {
            JsonNode v = vs.get(i);
            assertEquals(3, v.get("zero").asInt());
            assertEquals(i == 0, v.get("prefetch").asBoolean());
            assertTrue(v.get("tokens_per_s").asDouble() > 0, r.out());
            assertTrue(v.get("step_seconds_mean").asDouble() > 0, r.out());
            double max = v.get("comm_seconds_per_step_max").asDouble(), mean = v.get("comm_seconds_per_step_mean").asDouble();
            // ZeRO-3 gathers every block and reduce-scatters every gradient each step: never no communication.
            assertTrue(mean > 0 && max >= mean, r.out());
            double share = v.get("comm_share").asDouble();
            assertTrue(share > 0 && share <= 1, r.out());
            JsonNode ranks = v.get("ranks");
            assertEquals(2, ranks.size());
            for (int k = 0; k < 2; k++) {
                JsonNode rank = ranks.get(k);
                assertEquals(k, rank.get("rank").asInt());
                assertTrue(rank.get("comm_seconds_per_step").asDouble() > 0, r.out());
                assertTrue(rank.get("total_planned_bytes").asLong() > 0 && rank.get("total_measured_bytes").asLong() > 0, r.out());
                for (String c : List.of("weights", "gradients", "optimizer")) {
                    JsonNode cat = rank.get("model_state").get(c);
                    assertTrue(cat.get("planned_bytes").asLong() > 0 && cat.get("measured_bytes").asLong() > 0, c + ": " + r.out());
                }
                // Planned and measured optimizer state agree exactly (the shard's AdamW moments), as the engine planner promises.
                JsonNode opt = rank.get("model_state").get("optimizer");
                assertEquals(opt.get("planned_bytes").asLong(), opt.get("measured_bytes").asLong(), r.out());
            }
        }
        assertTrue(o.get("zero3_comm_prefetch_off_vs_on").asDouble() > 0, r.out());
    }

    @Test
    void multiRankFlagsNeedWorkersAndPrefetchNeedsStageThree() {
        String model = SharedData.require("models/tinystories-656k").toString();
        BadInputTest.assertBadInput(BadInputTest.run("bench", "train", "--zero", "1"), "--zero", "--workers");
        BadInputTest.assertBadInput(BadInputTest.run("bench", "train", "--workers", "2", "--zero", "1", "--prefetch", "off", "--model", model),
                "--prefetch", "add 3 to --zero");
        BadInputTest.assertBadInput(BadInputTest.run("bench", "train", "--workers", "2", "--zero", "4", "--model", model), "--zero", "4");
        BadInputTest.assertBadInput(BadInputTest.run("bench", "train", "--workers", "2", "--zero", "3", "--prefetch", "maybe", "--model", model),
                "--prefetch", "maybe");
        BadInputTest.assertBadInput(BadInputTest.run("bench", "train", "--workers", "2"), "--model");
        BadInputTest.assertBadInput(BadInputTest.run("bench", "train", "--workers", "1", "--model", model), "--workers");
        BadInputTest.assertBadInput(BadInputTest.run("bench", "train", "--workers", "2", "--model", model, "--shape", "stories42M"), "--shape");
    }

    @Test
    void stagesInOrderWithStageThreeOncePerPrefetchSetting() {
        assertEquals(List.of(new BenchTrainWorkers.Variant(0, true), new BenchTrainWorkers.Variant(3, true), new BenchTrainWorkers.Variant(3, false),
                new BenchTrainWorkers.Variant(1, true)), BenchTrainWorkers.variants(List.of(0, 3, 1, 0), List.of("on", "off")));
        assertFalse(BenchTrainWorkers.variants(List.of(3), List.of("off")).getFirst().prefetch());
    }
}
