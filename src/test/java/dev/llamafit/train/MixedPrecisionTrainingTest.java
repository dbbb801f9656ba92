// Training runs in bf16 (and fp16) on tinystories-656k: exact resume, fp32 masters in checkpoints, the base's dtype in final/.
package dev.llamafit.train;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;

import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

import dev.llamafit.io.Json;
import dev.llamafit.model.LoraConfig;
import dev.llamafit.model.Technique;
import dev.llamafit.testing.SharedData;

class MixedPrecisionTrainingTest {
    @TempDir Path tmp;

    static TrainOptions options(Path out, long steps, long saveEvery, Path resume, Technique.Precision p, boolean lora) {
        Technique t = lora ? Technique.lora(new LoraConfig(4, 8, 0.1, List.of("q_proj", "v_proj"), false)) : Technique.FULL;
        t = new Technique(t.method(), t.lora(), p, null, t.optimizer(), t.gradientCheckpointing(), t.checkpointEvery(), t.gradAccum());
        return new TrainOptions(SharedData.require("models/tinystories-656k"), SharedData.require("datasets/text/tinystories_sample.txt"),
                out, steps, 0, 2, 32, 2e-3, "cosine", 2, 0.01, 1.0, 2, saveEvery, resume, 7, null, 0.2, false, false,
                t, null, false, null);
    }

    /** A run resumed from a mid-run checkpoint repeats the uninterrupted one: losses, eval losses and final bytes. */
    @ParameterizedTest(name = "{0} lora={1}")
    @CsvSource({"BF16,false", "BF16,true", "FP16,true"})
    void resumeIsBitIdentical(Technique.Precision p, boolean lora) throws IOException {
        Path straight = tmp.resolve("straight"), resumed = tmp.resolve("resumed");
        TrainerTest.train(options(straight, 8, 4, null, p, lora));
        Path mid = straight.resolve("checkpoints/step-00000004");
        assertTrue(Files.isDirectory(mid), "the mid-run checkpoint is kept");
        TrainerTest.train(options(resumed, 8, 4, mid, p, lora));
        List<Metrics.Step> a = Fp16LossScalingTest.untimed(straight), b = Fp16LossScalingTest.untimed(resumed);
        assertEquals(a.subList(4, 8), b.subList(b.size() - 4, b.size()), "steps 5-8");
        String product = lora ? "adapter/adapter_model.safetensors" : "final/model.safetensors";
        assertArrayEquals(Files.readAllBytes(straight.resolve(product)), Files.readAllBytes(resumed.resolve(product)), product);
        // The same run in fp32 differs: the precision is really in effect.
        Path fp32 = tmp.resolve("fp32");
        TrainerTest.train(options(fp32, 8, 0, null, Technique.Precision.FP32, lora));
        assertNotEquals(Metrics.read(fp32).getLast().loss(), Metrics.read(straight).getLast().loss());
    }

    /** Checkpoints hold the fp32 masters; final/ keeps the base's dtype (fp32 here); memory.json files the masters apart. */
    @ParameterizedTest(name = "{0}")
    @CsvSource({"BF16", "FP16"})
    void checkpointsHoldFp32MastersAndTheLedgerMatchesThePlan(Technique.Precision p) throws IOException {
        Path run = tmp.resolve("run");
        java.io.StringWriter out = new java.io.StringWriter(), err = new java.io.StringWriter();
        dev.llamafit.memory.MemoryLedger.global().resetPeaks(); // the measured peaks are this run's, not an earlier test's
        int code = dev.llamafit.cli.Main.run(new String[] {"train", "--model", SharedData.require("models/tinystories-656k").toString(),
                "--data", SharedData.require("datasets/text/tinystories_sample.txt").toString(), "--output", run.toString(),
                "--steps", "2", "--save-every", "2", "--batch-size", "2", "--seq-len", "32", "--precision", Technique.name(p)},
                new java.io.PrintWriter(out), new java.io.PrintWriter(err));
        assertEquals(0, code, err.toString());
        try (var f = dev.llamafit.io.safetensors.SafetensorsFile.open(run.resolve("checkpoints/step-00000002").resolve(Checkpoints.MODEL),
                new dev.llamafit.memory.MemoryLedger())) {
            for (String name : f.names()) assertEquals(dev.llamafit.tensor.DType.F32, f.find(name).orElseThrow().dtype(), name);
        }
        try (var f = dev.llamafit.io.safetensors.SafetensorsFile.open(run.resolve("final/model.safetensors"), new dev.llamafit.memory.MemoryLedger())) {
            for (String name : f.names()) assertEquals(dev.llamafit.tensor.DType.F32, f.find(name).orElseThrow().dtype(), name);
        }
        var memory = Json.read(run.resolve("memory.json"));
        for (String category : new String[] {"master_weights", "gradients", "optimizer", "activations", "workspace"})
            assertEquals(memory.get("planned_bytes").get(category).longValue(), memory.get("measured_peak_bytes").get(category).longValue(), category);
        // weights: the 16-bit working copies (planned); the measured peak also holds the file mapping while loading.
        long params = memory.get("planned_bytes").get("master_weights").longValue() / 4;
        assertTrue(memory.get("planned_bytes").get("weights").longValue() < 2 * params, "working copies of the matrices at 2 B");
    }
}
