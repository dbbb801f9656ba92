// Training with --precision fp16 on tinystories-656k: loss_scale in metrics.jsonl, exact resume, skipped overflow steps.
package dev.llamafit.train;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotNull;
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

import dev.llamafit.io.Json;
import dev.llamafit.model.Technique;
import dev.llamafit.optim.LossScaler;
import dev.llamafit.testing.SharedData;

/**
 * The loss scaler inside real runs. Overflows are provoked through inputs only (a checkpoint whose scaler state holds
 * a huge scale, a learning rate that blows the weights up), never a test hook.
 */
class Fp16LossScalingTest {
    @TempDir Path tmp;

    static Technique technique(Technique.Precision p) {
        Technique f = Technique.FULL;
        return new Technique(f.method(), f.lora(), p, f.baseDtype(), f.optimizer(), f.gradientCheckpointing(), f.checkpointEvery(), f.gradAccum());
    }

    static TrainOptions options(Path out, long steps, long saveEvery, Path resume, double lr, Technique.Precision p) {
        return new TrainOptions(SharedData.require("models/tinystories-656k"), SharedData.require("datasets/text/tinystories_sample.txt"),
                out, steps, 0, 2, 32, lr, "constant", 2, 0.01, 1.0, 0, saveEvery, resume, 7, null, 0, false, false,
                technique(p), null, false, null);
    }

    static JsonNode state(Path run, long step) {
        return Json.read(run.resolve("checkpoints").resolve(String.format("step-%08d", step)).resolve(Checkpoints.STATE));
    }

    /** Rewrites a checkpoint's loss_scaler (as a user could; no hook in the trainer). */
    static void setScaler(Path run, long step, double scale, long consecutiveSkips) throws IOException {
        Path file = run.resolve("checkpoints").resolve(String.format("step-%08d", step)).resolve(Checkpoints.STATE);
        ObjectNode n = (ObjectNode) Json.read(file);
        ObjectNode s = (ObjectNode) n.get(TrainerState.SCALER);
        s.put("scale", scale);
        s.put("consecutive_skips", consecutiveSkips);
        Files.writeString(file, n.toString());
    }

    @Test
    void fp16RunsRecordTheLossScaleAndResumeBitForBit() throws IOException {
        Path straight = tmp.resolve("straight"), split = tmp.resolve("split");
        TrainerTest.train(options(straight, 12, 0, null, 2e-3, Technique.Precision.FP16));
        TrainerTest.train(options(split, 6, 6, null, 2e-3, Technique.Precision.FP16));
        TrainerTest.train(options(split, 12, 6, split, 2e-3, Technique.Precision.FP16));
        List<Metrics.Step> a = untimed(straight), b = untimed(split);
        assertEquals(12, a.size());
        assertEquals(a, b, "the resumed run repeats the uninterrupted one: loss, grad norm, loss scale, skips");
        for (Metrics.Step s : a) {
            assertTrue(s.lossScale() > 0 && Math.getExponent(s.lossScale()) >= -126
                    && s.lossScale() == Math.scalb(1.0, Math.getExponent(s.lossScale())), "a power of two: " + s);
            assertFalse(s.skipped(), "nothing overflows at this learning rate: " + s);
        }
        assertEquals(LossScaler.INITIAL_SCALE, a.getFirst().lossScale(), 0);
        for (String line : Files.readAllLines(straight.resolve(Metrics.FILE)))
            assertTrue(Json.MAPPER.readTree(line).has("loss_scale"), line);
        JsonNode ls = state(split, 6).get(TrainerState.SCALER);
        assertNotNull(ls, "the checkpoint holds the scaler");
        assertEquals(65536.0, ls.get("scale").doubleValue(), 0);
        assertEquals(6, ls.get("growth_tracker").intValue());
        assertEquals(state(straight, 12).get(TrainerState.SCALER), state(split, 12).get(TrainerState.SCALER));
        assertEquals(12, state(split, 12).get("optimizer_steps").longValue());
    }

    @Test
    void fp32RunsHaveNoScaler() throws IOException {
        Path run = tmp.resolve("fp32");
        TrainerTest.train(options(run, 2, 0, null, 2e-3, Technique.Precision.FP32));
        for (String line : Files.readAllLines(run.resolve(Metrics.FILE))) {
            JsonNode n = Json.MAPPER.readTree(line);
            assertFalse(n.has("loss_scale") || n.has("skipped"), line);
        }
        assertNull(state(run, 2).get(TrainerState.SCALER));
    }

    /** A step's record without its timing (the one field two runs never share). */
    static List<Metrics.Step> untimed(Path run) throws IOException {
        return Metrics.read(run).stream().map(s -> new Metrics.Step(s.step(), s.loss(), s.lr(), s.gradNorm(), 0, s.evalLoss(),
                s.lossScale(), s.skipped())).toList();
    }

    @Test
    void anOverflowSkipsTheStepHalvesTheScaleAndLeavesTheWeights() throws IOException {
        Path straight = tmp.resolve("straight"), hot = tmp.resolve("hot");
        TrainerTest.train(options(straight, 8, 0, null, 2e-3, Technique.Precision.FP16));
        TrainerTest.train(options(hot, 2, 2, null, 2e-3, Technique.Precision.FP16));
        // 2^127 times the loss gradient overflows even fp32 arithmetic.
        setScaler(hot, 2, 0x1p127, 0);
        Path c2 = Files.createDirectories(tmp.resolve("step-2-tensors")); // only the newest checkpoints are kept
        for (String f : new String[] {Checkpoints.MODEL, Checkpoints.OPTIMIZER})
            Files.copy(hot.resolve("checkpoints/step-00000002").resolve(f), c2.resolve(f));
        TrainerTest.train(options(hot, 3, 1, hot, 2e-3, Technique.Precision.FP16));
        TrainerTest.train(options(hot, 8, 0, hot, 2e-3, Technique.Precision.FP16));
        List<Metrics.Step> a = untimed(straight), h = untimed(hot);
        assertEquals(a.subList(0, 2), h.subList(0, 2));
        Metrics.Step s3 = h.get(2);
        assertTrue(s3.skipped() && !Double.isFinite(s3.gradNorm()), "the overflow is reported: " + s3);
        assertEquals(0x1p127, s3.lossScale(), 0);
        assertEquals(Double.doubleToLongBits(a.get(2).loss()), Double.doubleToLongBits(s3.loss()),
                "the reported loss is the unscaled one, computed from the same weights as the straight run's");
        // A skipped step changes no weight and no optimizer state: step 3's checkpoint holds step 2's tensors.
        Path c3 = hot.resolve("checkpoints/step-00000003");
        for (String f : new String[] {Checkpoints.MODEL, Checkpoints.OPTIMIZER})
            assertEquals(-1, Files.mismatch(c2.resolve(f), c3.resolve(f)), f + " unchanged by the skipped step");
        assertEquals(2, state(hot, 3).get("optimizer_steps").longValue(), "no optimizer step counted");
        JsonNode ls3 = state(hot, 3).get(TrainerState.SCALER);
        assertEquals(0x1p126, ls3.get("scale").doubleValue(), 0, "the scale halves");
        assertEquals(0, ls3.get("growth_tracker").intValue());
        assertEquals(1, ls3.get("consecutive_skips").intValue());
        // The rest of the run follows GradScaler's rule step by step, and skipped steps are not optimizer steps. (How many
        // steps skip before the scale fits depends on the engine's arithmetic: with fp32 operands a few, with fp16 more.)
        LossScaler replay = new LossScaler(new LossScaler.State(0x1p127f, 0, 0));
        long skipped = 0;
        for (Metrics.Step s : h.subList(2, h.size())) {
            assertEquals(replay.scale(), s.lossScale(), 0, "step " + s.step());
            assertEquals(!Double.isFinite(s.gradNorm()), s.skipped(), "step " + s.step());
            replay.update(s.skipped());
            if (s.skipped()) skipped++;
        }
        assertEquals(8 - skipped, state(hot, 8).get("optimizer_steps").longValue());
        JsonNode ls = state(hot, 8).get(TrainerState.SCALER);
        assertEquals(replay.scale(), ls.get("scale").doubleValue(), 0);
        assertEquals(replay.growthTracker(), ls.get("growth_tracker").intValue());
    }

    @Test
    void aRunThatKeepsOverflowingStopsAfter64SkippedStepsInARow() throws IOException {
        // A learning rate that blows the weights up: from step 2 on every forward is inf/NaN, every step skipped.
        Path run = tmp.resolve("diverged");
        RunFailure f = assertThrows(RunFailure.class, () -> TrainerTest.train(options(run, 200, 0, null, 1e30, Technique.Precision.FP16)));
        assertTrue(f.getMessage().contains("64 steps in a row") && f.getMessage().contains("--precision bf16")
                && f.getMessage().contains("--lr") && !f.getMessage().contains("\n"), f.getMessage());
        List<Metrics.Step> steps = Metrics.read(run);
        Metrics.Step last = steps.getLast();
        assertTrue(last.skipped(), "the failure comes at a skipped step: " + last);
        assertEquals(TrainingLoop.MAX_CONSECUTIVE_SKIPS, steps.stream().filter(Metrics.Step::skipped).count());
        long firstSkip = steps.stream().filter(Metrics.Step::skipped).findFirst().orElseThrow().step();
        assertEquals(firstSkip + TrainingLoop.MAX_CONSECUTIVE_SKIPS - 1, last.step(), "skipped in a row up to the stop");
        assertEquals(Math.scalb(steps.get((int) firstSkip - 1).lossScale(), -(TrainingLoop.MAX_CONSECUTIVE_SKIPS - 1)), last.lossScale(), 0);
    }

    @Test
    void aResumeAtTheLimitStopsAtTheSameStepAsTheUninterruptedRun() throws IOException {
        // A checkpoint that already skipped 63 steps in a row: one more overflow ends the run.
        Path run = tmp.resolve("limit");
        TrainerTest.train(options(run, 2, 2, null, 2e-3, Technique.Precision.FP16));
        setScaler(run, 2, 0x1p127, TrainingLoop.MAX_CONSECUTIVE_SKIPS - 1);
        RunFailure f = assertThrows(RunFailure.class, () -> TrainerTest.train(options(run, 8, 0, run, 2e-3, Technique.Precision.FP16)));
        assertTrue(f.getMessage().contains("at step 3") || f.getMessage().contains("up to step 3"), f.getMessage());
    }
}
