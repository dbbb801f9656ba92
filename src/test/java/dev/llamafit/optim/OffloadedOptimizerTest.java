// OffloadedOptimizer against the in-memory AdamW and SGD: bit for bit, through windows smaller than a tensor; ledger; load.
package dev.llamafit.optim;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.SplittableRandom;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import dev.llamafit.io.InputException;
import dev.llamafit.memory.Category;
import dev.llamafit.memory.MemoryLedger;
import dev.llamafit.tensor.DType;
import dev.llamafit.tensor.Shape;
import dev.llamafit.tensor.Tensor;

class OffloadedOptimizerTest {
    @TempDir Path tmp;

    /** Sizes that are not multiples of the window or of a vector, one below ALIGN, a matrix. */
    private static final Shape[] SHAPES = {Shape.of(1000), Shape.of(77), Shape.of(61, 53)};
    private static final long WINDOW = 1024; // bytes: 128 elements per AdamW kind, 256 for SGD

    private static List<Param> params(MemoryLedger ledger, long seed) {
        SplittableRandom r = new SplittableRandom(seed);
        List<Param> out = new ArrayList<>();
        for (int i = 0; i < SHAPES.length; i++) {
            Tensor v = Tensor.allocate(ledger, Category.WEIGHTS, "p" + i, DType.F32, SHAPES[i]);
            Tensor g = Tensor.allocate(ledger, Category.GRADIENTS, "g" + i, DType.F32, SHAPES[i]);
            for (long j = 0; j < v.elements(); j++) v.setFloat(j, (float) r.nextGaussian() * 0.1f);
            out.add(new Param("p" + i, v, g, i != 1));
        }
        return out;
    }

    private static void grads(List<Param> ps, long seed) {
        SplittableRandom r = new SplittableRandom(seed);
        for (Param p : ps) for (long j = 0; j < p.elements(); j++) p.grad().setFloat(j, (float) r.nextGaussian() * 0.01f);
    }

    private static void assertSame(List<Param> a, List<Param> b, Map<String, Tensor> sa, Map<String, Tensor> sb) {
        for (int i = 0; i < a.size(); i++) assertArrayEquals(a.get(i).value().toFloatArray(), b.get(i).value().toFloatArray(), a.get(i).name());
        assertEquals(List.copyOf(sa.keySet()), List.copyOf(sb.keySet()), "state names and order");
        for (String k : sa.keySet()) {
            assertEquals(sa.get(k).shape(), sb.get(k).shape(), k);
            assertArrayEquals(sa.get(k).toFloatArray(), sb.get(k).toFloatArray(), k);
        }
    }

    @Test
    void adamWStepsBitForBitAsInMemoryWithTheStateOnDisk() throws Exception {
        MemoryLedger la = new MemoryLedger(), lb = new MemoryLedger();
        AdamW.Config config = new AdamW.Config(0.9, 0.999, 1e-8, 0.01);
        List<Param> a = params(la, 1), b = params(lb, 1);
        try (AdamW mem = new AdamW(config, la); OffloadedOptimizer disk = OffloadedOptimizer.adamW(config, tmp.resolve("r0"), WINDOW, lb)) {
            for (int s = 0; s < 4; s++) {
                grads(a, 10 + s);
                grads(b, 10 + s);
                mem.step(a, 1e-2);
                disk.step(b, 1e-2);
            }
            assertSame(a, b, mem.state(), disk.state());
            assertEquals(mem.steps(), disk.steps());
            // In memory: the window only (128 elements × 2 kinds); the state's bytes are the file's, outside the totals.
            assertEquals(WINDOW, lb.peakBytes(Category.OPTIMIZER));
            assertEquals(la.peakBytes(Category.OPTIMIZER), lb.peakBytes(Category.OFFLOADED_DISK));
            assertEquals(la.peakBytes(Category.OPTIMIZER), Files.size(tmp.resolve("r0").resolve(OffloadedOptimizer.STATE_FILE)));
            assertEquals(la.totalPeakBytes() - la.peakBytes(Category.OPTIMIZER) + WINDOW, lb.totalPeakBytes());
            assertEquals(la.peakBytes(Category.OPTIMIZER), disk.stateBytes(b));

            // A checkpoint's state loaded into a fresh offloaded optimizer continues bit for bit, as does its own state fed back.
            try (OffloadedOptimizer resumed = OffloadedOptimizer.adamW(config, tmp.resolve("r1"), WINDOW, lb)) {
                resumed.loadState(mem.state(), mem.steps(), b);
                disk.loadState(disk.state(), disk.steps(), b);
                List<Param> c = params(new MemoryLedger(), 1);
                for (int i = 0; i < c.size(); i++) c.get(i).value().segment().copyFrom(b.get(i).value().segment());
                grads(a, 99);
                grads(b, 99);
                grads(c, 99);
                mem.step(a, 1e-2);
                disk.step(b, 1e-2);
                resumed.step(c, 1e-2);
                assertSame(a, b, mem.state(), disk.state());
                assertSame(a, c, mem.state(), resumed.state());
            }
        }
        assertFalse(Files.exists(tmp.resolve("r0")), "close deletes the scratch state and its directory");
        assertEquals(0, lb.currentBytes(Category.OFFLOADED_DISK));
    }

    @Test
    void sgdWithMomentumStepsBitForBitAsInMemory() {
        MemoryLedger la = new MemoryLedger(), lb = new MemoryLedger();
        Sgd.Config config = new Sgd.Config(0.9, 0.01, 0, false);
        List<Param> a = params(la, 2), b = params(lb, 2);
        try (Sgd mem = new Sgd(config, la); OffloadedOptimizer disk = OffloadedOptimizer.sgd(config, tmp.resolve("s"), WINDOW, lb)) {
            for (int s = 0; s < 3; s++) {
                grads(a, 20 + s);
                grads(b, 20 + s);
                mem.step(a, 5e-2);
                disk.step(b, 5e-2);
            }
            assertSame(a, b, mem.state(), disk.state());
            assertEquals(WINDOW, lb.peakBytes(Category.OPTIMIZER));
        }
    }

    @Test
    void theWindowRuleIsBoundedByTheLargestTensorAndAligned() {
        assertEquals(8L << 20, OffloadedOptimizer.windowElements(64L << 20, 2, 1L << 30));
        assertEquals(1000, OffloadedOptimizer.windowElements(64L << 20, 2, 1000));
        assertEquals(OffloadedOptimizer.ALIGN, OffloadedOptimizer.windowElements(1, 2, 1000));
        assertEquals(0, OffloadedOptimizer.windowElements(1024, 0, 1000));
    }

    @Test
    void aSecondRunOnTheSameDirectoryIsRefusedAndBadStateIsNamed() {
        MemoryLedger l = new MemoryLedger();
        AdamW.Config config = new AdamW.Config(0.9, 0.999, 1e-8, 0);
        List<Param> p = params(l, 3);
        try (OffloadedOptimizer one = OffloadedOptimizer.adamW(config, tmp.resolve("d"), WINDOW, l);
             OffloadedOptimizer two = OffloadedOptimizer.adamW(config, tmp.resolve("d"), WINDOW, l)) {
            one.step(p, 1e-3);
            InputException e = assertThrows(InputException.class, () -> two.step(p, 1e-3));
            assertTrue(e.getMessage().contains("is in use by another run"), e.getMessage());
            Tensor t = Tensor.allocate(l, Category.WORKSPACE, "x", DType.F32, Shape.of(3));
            IllegalArgumentException bad = assertThrows(IllegalArgumentException.class, () -> one.loadState(Map.of("momentum/p0", t), 1));
            assertTrue(bad.getMessage().contains("unknown optimizer state entry 'momentum/p0'"), bad.getMessage());
        }
    }
}
