// Global-norm clipping: the torch.nn.utils.clip_grad_norm_ coefficient and the edge cases.
package dev.llamafit.optim;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.List;
import java.util.Random;

import org.junit.jupiter.api.Test;

import dev.llamafit.memory.Category;
import dev.llamafit.memory.MemoryLedger;
import dev.llamafit.tensor.Tensor;

class GradClipTest {
    final MemoryLedger ledger = new MemoryLedger();

    Tensor t(float... v) { return OptimTesting.tensor(ledger, Category.GRADIENTS, "g", v, v.length); }

    @Test
    void scalesByMaxNormOverNormPlusEps() {
        Tensor a = t(3, 4), b = t(12);
        double norm = GradClip.clipGlobalNorm(List.of(a, b), 1.0);
        assertEquals(13.0, norm, 0);
        float scale = (float) (1.0 / (13.0 + 1e-6));
        assertArrayEquals(new float[] {3 * scale, 4 * scale}, a.toFloatArray());
        assertArrayEquals(new float[] {12 * scale}, b.toFloatArray());
        assertEquals(1.0, GradClip.globalNorm(List.of(a, b)), 1e-6);
    }

    @Test
    void belowTheLimitNothingChanges() {
        Tensor a = t(0.3f, 0.4f);
        assertEquals(0.5, GradClip.clipGlobalNorm(List.of(a), 1.0), 1e-7);
        assertArrayEquals(new float[] {0.3f, 0.4f}, a.toFloatArray());
        // norm + 1e-6 == maxNorm exactly is not "below": coefficient 1 leaves the values bit-identical.
        double n = GradClip.globalNorm(List.of(a));
        assertEquals(n, GradClip.clipGlobalNorm(List.of(a), n + 1e-6), 0);
        assertArrayEquals(new float[] {0.3f, 0.4f}, a.toFloatArray());
    }

    @Test
    void nonPositiveOrInfiniteMaxNormOnlyMeasures() {
        for (double max : new double[] {0, -1, Double.POSITIVE_INFINITY}) {
            Tensor a = t(30, 40);
            assertEquals(50, GradClip.clipGlobalNorm(List.of(a), max), 0);
            assertArrayEquals(new float[] {30, 40}, a.toFloatArray());
        }
        assertThrows(IllegalArgumentException.class, () -> GradClip.clipGlobalNorm(List.of(t(1)), Double.NaN));
    }

    @Test
    void nonFiniteNormIsReturnedAndGradientsKept() {
        Tensor a = t(1, Float.NaN), b = t(5);
        assertTrue(Double.isNaN(GradClip.clipGlobalNorm(List.of(a, b), 1.0)));
        assertEquals(5f, b.toFloatArray()[0]);
        Tensor c = t(1, Float.POSITIVE_INFINITY);
        assertEquals(Double.POSITIVE_INFINITY, GradClip.clipGlobalNorm(List.of(c), 1.0));
        assertEquals(1f, c.toFloatArray()[0]);
        // Squares that overflow float stay finite in double.
        Tensor d = t(3e30f, 4e30f);
        assertEquals(5e30, GradClip.clipGlobalNorm(List.of(d), 1.0), 1e24);
        assertEquals(0.6f, d.toFloatArray()[0], 1e-6f);
    }

    @Test
    void emptyListHasNormZero() {
        assertEquals(0.0, GradClip.clipGlobalNorm(List.of(), 1.0));
    }

    @Test
    void largeTensorsInParallelBlocks() {
        float[] v = OptimTesting.random(new Random(7), 300_007, 0.01f);
        Tensor a = OptimTesting.tensor(ledger, Category.GRADIENTS, "big", v, v.length);
        double sum = 0;
        for (float x : v) sum += (double) x * x;
        double norm = GradClip.clipGlobalNorm(List.of(a, t(2)), 1.0);
        double want = Math.sqrt(sum + 4);
        assertEquals(want, norm, 1e-12 * want);
        float scale = (float) (1.0 / (norm + 1e-6));
        float[] got = a.toFloatArray();
        for (int i = 0; i < v.length; i++) assertEquals(v[i] * scale, got[i], 0, "element " + i);
    }
}
