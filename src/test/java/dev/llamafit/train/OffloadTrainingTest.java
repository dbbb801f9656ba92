// --offload disk on tinystories-656k: bit for bit the in-memory run (losses, weights, checkpoints), exact resume, plan == ledger.
package dev.llamafit.train;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.PrintStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import dev.llamafit.io.ModelFolder;
import dev.llamafit.kernels.KernelBackends;
import dev.llamafit.memory.Category;
import dev.llamafit.memory.MemoryLedger;
import dev.llamafit.plan.Devices;
import dev.llamafit.plan.DiskOffloadPlan;
import dev.llamafit.plan.MemoryPlan;
import dev.llamafit.plan.Planner;
import dev.llamafit.testing.SharedData;

class OffloadTrainingTest {
    @TempDir Path tmp;

    /** 16 KiB: 2048 elements per AdamW kind, so the embedding (and every matrix) streams through many windows. */
    static final long WINDOW = 16 << 10;

    private static Trainer.Result train(TrainOptions o, MemoryLedger ledger, Trainer.DiskOffload offload) throws IOException {
        return new Trainer(o, KernelBackends.get(), ledger, new PrintStream(new ByteArrayOutputStream())).withDiskOffload(offload).run();
    }

    private static void assertSameBytes(Path a, Path b) throws IOException {
        assertArrayEquals(Files.readAllBytes(a), Files.readAllBytes(b), a + " vs " + b);
    }

    @Test
    void offloadedRunEqualsTheInMemoryOneBitForBitAndResumesExactly() throws IOException {
        Path model = SharedData.require("models/tinystories-656k");
        Path data = SharedData.require("datasets/text/tinystories_sample.txt");
        Path mem = tmp.resolve("mem"), disk = tmp.resolve("disk"), split = tmp.resolve("split"), dir = tmp.resolve("offload");
        MemoryLedger lm = new MemoryLedger(), ld = new MemoryLedger();
        train(TrainerTest.options(model, data, mem, 20, 10, null), lm, null);
        train(TrainerTest.options(model, data, disk, 20, 10, null), ld, new Trainer.DiskOffload(dir, WINDOW));

        List<Double> a = TrainerTest.losses(mem), b = TrainerTest.losses(disk);
        assertEquals(20, b.size());
        for (int i = 0; i < 20; i++) assertEquals(Double.doubleToLongBits(a.get(i)), Double.doubleToLongBits(b.get(i)), "step " + (i + 1));
        assertSameBytes(mem.resolve("final/model.safetensors"), disk.resolve("final/model.safetensors"));
        for (String step : new String[] {"step-00000010", "step-00000020"})
            assertSameBytes(mem.resolve("checkpoints").resolve(step).resolve(Checkpoints.OPTIMIZER),
                    disk.resolve("checkpoints").resolve(step).resolve(Checkpoints.OPTIMIZER));

        // Memory: the window alone under OPTIMIZER; the state's bytes under OFFLOADED_DISK, not in the total.
        long state = lm.peakBytes(Category.OPTIMIZER);
        System.out.printf("offload: optimizer in memory %d B (window %d B) vs %d B in memory without offload; %d B on disk%n",
                ld.peakBytes(Category.OPTIMIZER), WINDOW, state, ld.peakBytes(Category.OFFLOADED_DISK));
        assertTrue(ld.peakBytes(Category.OPTIMIZER) <= WINDOW && ld.peakBytes(Category.OPTIMIZER) > 0, "" + ld.peakBytes(Category.OPTIMIZER));
        assertEquals(state, ld.peakBytes(Category.OFFLOADED_DISK));
        assertTrue(ld.totalPeakBytes() < lm.totalPeakBytes() - state / 2, ld.totalPeakBytes() + " vs " + lm.totalPeakBytes());
        assertFalse(Files.exists(dir.resolve("rank-00000")), "the scratch state is deleted when the run ends");

        // The planner: optimizer = the window, offloaded_disk = the state, exactly what the ledger saw.
        TrainOptions o = TrainerTest.options(model, data, disk, 20, 10, null);
        MemoryPlan plan = DiskOffloadPlan.of(Planner.plan(ModelFolder.readConfig(model), o.technique(), o.batchSize(), o.seqLen(),
                Devices.cpu(1L << 34, 1)), ModelFolder.readConfig(model), o.technique(), o.batchSize(), o.seqLen(), WINDOW);
        assertEquals(ld.peakBytes(Category.OPTIMIZER), plan.categoryPeak(Category.OPTIMIZER));
        assertEquals(ld.peakBytes(Category.OFFLOADED_DISK), plan.diskBytes());

        // Exact resume: 10 offloaded steps, then 10 more from the checkpoint, equal the uninterrupted run bit for bit.
        train(TrainerTest.options(model, data, split, 10, 10, null), new MemoryLedger(), new Trainer.DiskOffload(dir, WINDOW));
        train(TrainerTest.options(model, data, split, 20, 10, split), new MemoryLedger(), new Trainer.DiskOffload(dir, WINDOW));
        List<Double> c = TrainerTest.losses(split);
        assertEquals(20, c.size());
        for (int i = 0; i < 20; i++) assertEquals(Double.doubleToLongBits(a.get(i)), Double.doubleToLongBits(c.get(i)), "resumed, step " + (i + 1));
        assertSameBytes(mem.resolve("final/model.safetensors"), split.resolve("final/model.safetensors"));
    }
}
