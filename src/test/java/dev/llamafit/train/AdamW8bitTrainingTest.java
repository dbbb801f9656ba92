// 8-bit AdamW training runs on tinystories-656k: exact resume, U8 + F32 states in checkpoints, plan == ledger.
package dev.llamafit.train;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.io.PrintWriter;
import java.io.StringWriter;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import dev.llamafit.io.Json;
import dev.llamafit.io.safetensors.SafetensorsFile;
import dev.llamafit.memory.MemoryLedger;
import dev.llamafit.model.Technique;
import dev.llamafit.optim.AdamW8bit;
import dev.llamafit.tensor.DType;
import dev.llamafit.testing.SharedData;

class AdamW8bitTrainingTest {
    @TempDir Path tmp;

    private static TrainOptions options(Path out, long steps, long saveEvery, Path resume, Technique.Optimizer opt) {
        Technique t = Technique.FULL.withOptimizer(opt);
        return new TrainOptions(SharedData.require("models/tinystories-656k"), SharedData.require("datasets/text/tinystories_sample.txt"),
                out, steps, 0, 2, 32, 2e-3, "cosine", 2, 0.01, 1.0, 2, saveEvery, resume, 7, null, 0.2, false, false,
                t, null, false, null);
    }

    /** Train 8 steps vs train 4, save, resume, 4 more: the same losses, final weights and optimizer state bytes. */
    @Test
    void resumeIsBitIdentical() throws IOException {
        Path straight = tmp.resolve("straight"), resumed = tmp.resolve("resumed");
        TrainerTest.train(options(straight, 8, 4, null, Technique.Optimizer.ADAMW8BIT));
        Path mid = straight.resolve("checkpoints/step-00000004");
        assertTrue(Files.isDirectory(mid), "the mid-run checkpoint is kept");
        TrainerTest.train(options(resumed, 8, 4, mid, Technique.Optimizer.ADAMW8BIT));
        List<Metrics.Step> a = Fp16LossScalingTest.untimed(straight), b = Fp16LossScalingTest.untimed(resumed);
        assertEquals(a.subList(4, 8), b.subList(b.size() - 4, b.size()), "steps 5-8");
        assertArrayEquals(Files.readAllBytes(straight.resolve("final/model.safetensors")), Files.readAllBytes(resumed.resolve("final/model.safetensors")));
        Path end = Path.of("checkpoints/step-00000008", Checkpoints.OPTIMIZER);
        assertArrayEquals(Files.readAllBytes(straight.resolve(end)), Files.readAllBytes(resumed.resolve(end)), "optimizer state bytes");
        // fp32 AdamW differs: the 8-bit states are really in effect.
        Path fp32 = tmp.resolve("fp32");
        TrainerTest.train(options(fp32, 8, 0, null, Technique.Optimizer.ADAMW));
        assertNotEquals(Metrics.read(fp32).getLast().loss(), Metrics.read(straight).getLast().loss());
    }

    /** Matrices keep U8 codes + F32 absmax per block, vectors fp32 m and v; the ledger's optimizer bytes equal the plan's. */
    @Test
    void checkpointsHoldU8StatesAndTheLedgerMatchesThePlan() throws IOException {
        Path run = tmp.resolve("run");
        StringWriter out = new StringWriter(), err = new StringWriter();
        MemoryLedger.global().resetPeaks();
        int code = dev.llamafit.cli.Main.run(new String[] {"train", "--model", SharedData.require("models/tinystories-656k").toString(),
                "--data", SharedData.require("datasets/text/tinystories_sample.txt").toString(), "--output", run.toString(),
                "--steps", "2", "--save-every", "2", "--batch-size", "2", "--seq-len", "32", "--optimizer", "adamw8bit"},
                new PrintWriter(out), new PrintWriter(err));
        assertEquals(0, code, err.toString());
        long stateBytes = 0, params = 0;
        try (SafetensorsFile f = SafetensorsFile.open(run.resolve("checkpoints/step-00000002").resolve(Checkpoints.OPTIMIZER), new MemoryLedger())) {
            int codes = 0;
            for (String name : f.names()) {
                var t = f.find(name).orElseThrow();
                stateBytes += t.dtype().bytesFor(t.elements());
                if (name.startsWith("exp_avg/")) {
                    params += t.elements();
                    assertEquals(AdamW8bit.quantized(t.elements()) ? DType.U8 : DType.F32, t.dtype(), name);
                    if (t.dtype() == DType.U8) codes++;
                } else if (name.contains("absmax/")) {
                    assertEquals(DType.F32, t.dtype(), name);
                }
            }
            assertTrue(codes > 0, "the matrices have 8-bit states");
        }
        var memory = Json.read(run.resolve("memory.json"));
        long planned = memory.get("planned_bytes").get("optimizer").longValue();
        assertEquals(planned, memory.get("measured_peak_bytes").get("optimizer").longValue(), "plan == ledger");
        assertEquals(planned, stateBytes, "the checkpoint holds every state byte");
        // About 2 bytes per parameter: the embeddings and matrices dominate; the norm vectors keep 8 B.
        assertTrue(planned < 2.1 * params, planned + " bytes for " + params + " parameters");
    }
}
