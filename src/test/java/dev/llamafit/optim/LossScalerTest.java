// The fp16 loss scaler: GradScaler's backoff, growth and exact unscaling, and its state for checkpoints.
package dev.llamafit.optim;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.List;
import java.util.Random;

import org.junit.jupiter.api.Test;

import dev.llamafit.memory.Category;
import dev.llamafit.memory.MemoryLedger;
import dev.llamafit.tensor.Tensor;

class LossScalerTest {
    final MemoryLedger ledger = new MemoryLedger();

    Tensor t(float... v) { return OptimTesting.tensor(ledger, Category.GRADIENTS, "g", v, v.length); }

    @Test
    void startsAtTwoToTheSixteen() {
        LossScaler s = new LossScaler();
        assertEquals(65536f, s.scale());
        assertEquals(0, s.growthTracker());
        assertEquals(new LossScaler.State(65536f, 0, 0), s.state());
    }

    @Test
    void unscaleMultipliesExactlyByTheReciprocal() {
        // Blocks of more than one UpdateKernels.BLOCK go through the parallel path too.
        float[] v = OptimTesting.random(new Random(3), 100_003, 50f);
        Tensor big = t(v), small = t(3f, -0.125f, 0f);
        LossScaler s = new LossScaler(new LossScaler.State(1024f, 0, 0));
        double norm = s.unscale(List.of(big, small));
        float[] want = new float[v.length];
        double sq = 0;
        for (int i = 0; i < v.length; i++) {
            want[i] = v[i] / 1024f; // a power of two: division and multiplication by 2^-10 are both exact
            assertEquals(v[i], want[i] * 1024f, 0, "exact at " + i);
        }
        assertArrayEquals(want, big.toFloatArray());
        assertArrayEquals(new float[] {3f / 1024, -0.125f / 1024, 0f}, small.toFloatArray());
        assertEquals(GradClip.globalNorm(List.of(big, small)), norm, 0, "the norm is the unscaled gradients' norm");
        assertTrue(Double.isFinite(norm));
    }

    @Test
    void injectedOverflowIsReportedTheStepSkippedAndTheScaleHalved() {
        for (float bad : new float[] {Float.POSITIVE_INFINITY, Float.NEGATIVE_INFINITY, Float.NaN}) {
            MemoryLedger l = new MemoryLedger();
            Param p = OptimTesting.param(l, "w", new float[] {1f, 2f, 3f}, false, 3);
            OptimTesting.set(p.grad(), new float[] {0.5f, bad, 4f});
            LossScaler s = new LossScaler(new LossScaler.State(65536f, 1234, 0));
            try (AdamW opt = new AdamW(0.9, 0.999, 1e-8, 0, l)) {
                double norm = s.unscale(List.of(p.grad()));
                boolean overflow = !Double.isFinite(norm);
                assertTrue(overflow, "inf/NaN gradient " + bad + " is reported");
                if (!overflow) opt.step(List.of(p), 1e-3); // the caller's rule: no update on overflow
                s.update(overflow);
                assertEquals(0, opt.steps(), "no optimizer step");
                assertArrayEquals(new float[] {1f, 2f, 3f}, p.value().toFloatArray(), "weights untouched");
            }
            assertEquals(32768f, s.scale(), "scale halves");
            assertEquals(0, s.growthTracker(), "growth tracker restarts on overflow");
            assertEquals(1, s.consecutiveSkips());
        }
    }

    @Test
    void hugeFiniteGradientsAreNotAnOverflow() {
        // The squares are summed in double: even many max-float values stay finite there.
        float[] v = new float[4096];
        java.util.Arrays.fill(v, Float.MAX_VALUE);
        LossScaler s = new LossScaler(new LossScaler.State(1f, 0, 0));
        assertTrue(Double.isFinite(s.unscale(List.of(t(v)))));
    }

    @Test
    void twoThousandCleanStepsDoubleTheScaleBackAndAnOverflowResetsTheCount() {
        LossScaler s = new LossScaler();
        s.update(true);
        assertEquals(32768f, s.scale());
        for (int i = 1; i < LossScaler.GROWTH_INTERVAL; i++) {
            s.update(false);
            assertEquals(32768f, s.scale(), "still " + i + " clean steps");
            assertEquals(i, s.growthTracker());
        }
        assertEquals(0, s.consecutiveSkips());
        s.update(false);
        assertEquals(65536f, s.scale(), "the 2000th clean step doubles it");
        assertEquals(0, s.growthTracker());

        // An overflow at clean step 1999 restarts the count: 2000 more are needed.
        for (int i = 0; i < 1999; i++) s.update(false);
        s.update(true);
        assertEquals(32768f, s.scale());
        assertEquals(0, s.growthTracker());
        for (int i = 0; i < 1999; i++) s.update(false);
        assertEquals(32768f, s.scale());
        s.update(false);
        assertEquals(65536f, s.scale());
    }

    @Test
    void consecutiveSkipsCountUntilACleanStep() {
        LossScaler s = new LossScaler();
        for (int i = 0; i < 5; i++) s.update(true);
        assertEquals(5, s.consecutiveSkips());
        assertEquals(65536f / 32, s.scale());
        s.update(false);
        assertEquals(0, s.consecutiveSkips());
        assertEquals(1, s.growthTracker());
    }

    @Test
    void growthStopsAtTheLargestFiniteScale() {
        LossScaler s = new LossScaler(new LossScaler.State(0x1p127f, LossScaler.GROWTH_INTERVAL - 1, 0));
        s.update(false);
        assertEquals(0x1p127f, s.scale(), "2^128 is not a float: GradScaler keeps the scale");
        assertEquals(0, s.growthTracker());
    }

    @Test
    void stateRoundTripsAndIsValidated() {
        LossScaler a = new LossScaler();
        for (int i = 0; i < 7; i++) a.update(i == 2);
        LossScaler b = new LossScaler(a.state());
        assertEquals(a.state(), b.state());
        for (int i = 0; i < 3000; i++) {
            a.update(i % 1500 == 0);
            b.update(i % 1500 == 0);
        }
        assertEquals(a.state(), b.state(), "a restored scaler continues as the original");
        assertThrows(IllegalArgumentException.class, () -> new LossScaler.State(0f, 0, 0));
        assertThrows(IllegalArgumentException.class, () -> new LossScaler.State(Float.POSITIVE_INFINITY, 0, 0));
        assertThrows(IllegalArgumentException.class, () -> new LossScaler.State(Float.NaN, 0, 0));
        assertThrows(IllegalArgumentException.class, () -> new LossScaler.State(1f, LossScaler.GROWTH_INTERVAL, 0));
        assertThrows(IllegalArgumentException.class, () -> new LossScaler.State(1f, -1, 0));
        assertThrows(IllegalArgumentException.class, () -> new LossScaler.State(1f, 0, -1));
        assertFalse(new LossScaler.State(1f, 0, 0).equals(new LossScaler.State(2f, 0, 0)));
    }
}
