// bf16-pure training runs on tinystories-656k: exact resume, BF16 weights and optimizer states in checkpoints, fp32 final/.
package dev.llamafit.train;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

import dev.llamafit.io.Json;
import dev.llamafit.io.safetensors.SafetensorsFile;
import dev.llamafit.memory.MemoryLedger;
import dev.llamafit.model.Technique;
import dev.llamafit.tensor.DType;
import dev.llamafit.testing.SharedData;

class PureBf16TrainingTest {
    @TempDir Path tmp;

    /** A run resumed from a mid-run checkpoint repeats the uninterrupted one: losses, eval losses and final bytes. */
    @ParameterizedTest(name = "lora={0}")
    @ValueSource(booleans = {false, true})
    void resumeIsBitIdentical(boolean lora) throws IOException {
        Path straight = tmp.resolve("straight"), resumed = tmp.resolve("resumed");
        TrainerTest.train(MixedPrecisionTrainingTest.options(straight, 8, 4, null, Technique.Precision.BF16_PURE, lora));
        Path mid = straight.resolve("checkpoints/step-00000004");
        assertTrue(Files.isDirectory(mid), "the mid-run checkpoint is kept");
        TrainerTest.train(MixedPrecisionTrainingTest.options(resumed, 8, 4, mid, Technique.Precision.BF16_PURE, lora));
        List<Metrics.Step> a = Fp16LossScalingTest.untimed(straight), b = Fp16LossScalingTest.untimed(resumed);
        assertEquals(a.subList(4, 8), b.subList(b.size() - 4, b.size()), "steps 5-8");
        String product = lora ? "adapter/adapter_model.safetensors" : "final/model.safetensors";
        assertArrayEquals(Files.readAllBytes(straight.resolve(product)), Files.readAllBytes(resumed.resolve(product)), product);
        // bf16 mixed precision differs: the pure update (bf16 weights, gradients and states) is really in effect.
        Path mixed = tmp.resolve("bf16");
        TrainerTest.train(MixedPrecisionTrainingTest.options(mixed, 8, 0, null, Technique.Precision.BF16, lora));
        assertNotEquals(Metrics.read(mixed).getLast().loss(), Metrics.read(straight).getLast().loss());
    }

    /** Checkpoints hold BF16 matrices and AdamW states (fp32 vectors); final/ keeps the fp32 base's dtype; plan == ledger. */
    @Test
    void checkpointsHoldBf16WeightsAndStatesAndTheLedgerMatchesThePlan() throws IOException {
        Path run = tmp.resolve("run");
        java.io.StringWriter out = new java.io.StringWriter(), err = new java.io.StringWriter();
        // In-process runs share the global ledger: an earlier test's (fp32) gradients must not stand in this run's peak.
        MemoryLedger.global().resetPeaks();
        int code = dev.llamafit.cli.Main.run(new String[] {"train", "--model", SharedData.require("models/tinystories-656k").toString(),
                "--data", SharedData.require("datasets/text/tinystories_sample.txt").toString(), "--output", run.toString(),
                "--steps", "2", "--save-every", "2", "--batch-size", "2", "--seq-len", "32", "--precision", "bf16-pure"},
                new java.io.PrintWriter(out), new java.io.PrintWriter(err));
        assertEquals(0, code, err.toString());
        Path ck = run.resolve("checkpoints/step-00000002");
        for (String file : List.of(Checkpoints.MODEL, Checkpoints.OPTIMIZER))
            try (SafetensorsFile f = SafetensorsFile.open(ck.resolve(file), new MemoryLedger())) {
                int matrices = 0;
                for (String name : f.names()) {
                    var t = f.find(name).orElseThrow();
                    assertEquals(t.shape().rank() == 2 ? DType.BF16 : DType.F32, t.dtype(), file + " " + name);
                    if (t.shape().rank() == 2) matrices++;
                }
                assertTrue(matrices > 0, file);
            }
        try (SafetensorsFile f = SafetensorsFile.open(run.resolve("final/model.safetensors"), new MemoryLedger())) {
            for (String name : f.names()) assertEquals(DType.F32, f.find(name).orElseThrow().dtype(), name);
        }
        var memory = Json.read(run.resolve("memory.json"));
        for (String category : new String[] {"gradients", "optimizer", "activations", "workspace"})
            assertEquals(memory.get("planned_bytes").get(category).longValue(), memory.get("measured_peak_bytes").get(category).longValue(), category);
        var masters = memory.get("measured_peak_bytes").get("master_weights");
        assertTrue(masters == null || masters.longValue() == 0, "no fp32 masters");
        // AdamW keeps two states per trainable element in its gradient's dtype: twice the gradient bytes.
        long grads = memory.get("planned_bytes").get("gradients").longValue();
        assertEquals(2 * grads, memory.get("planned_bytes").get("optimizer").longValue(), "AdamW m and v in each parameter's dtype");
    }
}
