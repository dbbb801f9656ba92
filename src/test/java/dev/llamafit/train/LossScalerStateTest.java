// The fp16 loss scaler's footprint outside the loop: trainer_state.json's loss_scaler and metrics.jsonl's loss_scale/skipped.
package dev.llamafit.train;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ObjectNode;

import dev.llamafit.io.InputException;
import dev.llamafit.io.Json;
import dev.llamafit.io.data.Batches;
import dev.llamafit.optim.LossScaler;

class LossScalerStateTest {
    @TempDir Path tmp;

    static TrainerState state(LossScaler.State scaler) {
        return new TrainerState(12, 11, new Batches.Position(1, 3), 7, 20, 0,
                new RunIdentity(Map.of("seed", "7", "precision", "fp16")), Map.of(), scaler);
    }

    Path write(Map<String, Object> json) throws IOException {
        Path ckpt = Files.createDirectories(tmp.resolve("ckpt-" + System.nanoTime()));
        Files.writeString(ckpt.resolve(Checkpoints.STATE), Json.write(json));
        return ckpt;
    }

    @Test
    void scalerStateRoundTripsThroughTrainerStateJson() throws IOException {
        LossScaler.State s = new LossScaler.State(0x1p-3f, 1999, 5);
        TrainerState back = TrainerState.read(write(state(s).toJson()));
        assertEquals(s, back.scaler());
        assertEquals(12, back.step());
        assertEquals(11, back.optimizerSteps());
        JsonNode n = Json.MAPPER.readTree(Json.write(state(s).toJson()));
        assertEquals(0.125, n.get("loss_scaler").get("scale").doubleValue(), 0);
        assertEquals(1999, n.get("loss_scaler").get("growth_tracker").intValue());
        assertEquals(5, n.get("loss_scaler").get("consecutive_skips").intValue());
    }

    @Test
    void withoutAScalerTheFileHasNoKeyAndOldFilesLoad() throws IOException {
        Map<String, Object> json = state(null).toJson();
        assertFalse(json.containsKey("loss_scaler"), "fp32/bf16 checkpoints are as before");
        assertNull(TrainerState.read(write(json)).scaler());
    }

    @Test
    void badScalerValuesAreBadInputNamingTheField() throws IOException {
        String[][] cases = {
                {"{\"scale\": 0, \"growth_tracker\": 0}", "loss_scaler.scale"},
                {"{\"scale\": -2, \"growth_tracker\": 0}", "loss_scaler.scale"},
                {"{\"scale\": 1e39, \"growth_tracker\": 0}", "loss_scaler.scale"},
                {"{\"scale\": 0.1, \"growth_tracker\": 0}", "loss_scaler.scale"},
                {"{\"scale\": \"8\", \"growth_tracker\": 0}", "loss_scaler.scale"},
                {"{\"growth_tracker\": 0}", "loss_scaler.scale"},
                {"{\"scale\": 8, \"growth_tracker\": 2000}", "loss_scaler.growth_tracker"},
                {"{\"scale\": 8, \"growth_tracker\": 1.5}", "loss_scaler.growth_tracker"},
                {"{\"scale\": 8}", "loss_scaler.growth_tracker"},
                {"{\"scale\": 8, \"growth_tracker\": 0, \"consecutive_skips\": -1}", "loss_scaler.consecutive_skips"},
                {"5", "loss_scaler"}};
        for (String[] c : cases) {
            ObjectNode n = (ObjectNode) Json.MAPPER.valueToTree(state(null).toJson());
            n.set("loss_scaler", Json.MAPPER.readTree(c[0]));
            Path ckpt = write(Json.MAPPER.convertValue(n, Map.class));
            InputException e = assertThrows(InputException.class, () -> TrainerState.read(ckpt), c[0]);
            assertTrue(e.getMessage().contains("'" + c[1] + "'") && e.getMessage().contains(Checkpoints.STATE), c[0] + ": " + e.getMessage());
        }
    }

    @Test
    void metricsLinesCarryLossScaleAndSkippedOnlyForScaledSteps() throws IOException {
        Metrics m = new Metrics(tmp, -1);
        m.record(new Metrics.Step(1, 2.5, 1e-3, 0.75, 100, Double.NaN));
        m.record(new Metrics.Step(2, Double.POSITIVE_INFINITY, 1e-3, Double.NaN, 100, Double.NaN, 65536, true));
        m.record(new Metrics.Step(3, 2.0, 1e-3, 0.5, 100, 2.1, 32768, false));
        List<String> lines = Files.readAllLines(tmp.resolve(Metrics.FILE));
        assertEquals("{\"step\":1,\"loss\":2.5,\"lr\":0.001,\"grad_norm\":0.75,\"tokens_per_s\":100.0}", lines.get(0),
                "a line without loss scaling is unchanged");
        JsonNode skipped = Json.MAPPER.readTree(lines.get(1)), clean = Json.MAPPER.readTree(lines.get(2));
        assertEquals(65536.0, skipped.get("loss_scale").doubleValue(), 0);
        assertTrue(skipped.get("skipped").booleanValue());
        assertEquals(32768.0, clean.get("loss_scale").doubleValue(), 0);
        assertFalse(clean.has("skipped"), "only skipped steps say so");
        List<Metrics.Step> back = Metrics.read(tmp);
        assertEquals(m.steps(), back, "read back as written");
        assertTrue(Double.isNaN(back.get(0).lossScale()));
        assertTrue(back.get(1).skipped() && Double.isNaN(back.get(1).gradNorm()) && Double.isInfinite(back.get(1).loss()));
        assertEquals(32768.0, back.get(2).lossScale(), 0);
        m.plot(); // an infinite grad norm or loss on a skipped step does not break the chart
        assertTrue(Files.isRegularFile(tmp.resolve(Metrics.PLOT)));
        assertThrows(IllegalArgumentException.class, () -> new Metrics.Step(1, 1, 1, 1, 1, Double.NaN, Double.NaN, true));
    }
}
