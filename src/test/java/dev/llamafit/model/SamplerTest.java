package dev.llamafit.model;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import org.junit.jupiter.api.Test;

class SamplerTest {
    @Test
    void ordersByDescendingLogitThenId() {
        assertArrayEquals(new int[] {3, 1, 4, 0, 2}, Sampler.descending(new float[] {-1f, 2f, -3.5f, 7f, 2f - 1e-6f}));
        assertArrayEquals(new int[] {1, 2, 0}, Sampler.descending(new float[] {Float.NEGATIVE_INFINITY, 0f, 0f}));
    }

    @Test
    void greedyTopKAndTopPRespectTheirCandidates() {
        float[] z = {0f, 5f, 4.9f, -2f, 1f};
        assertEquals(1, new Sampler(0, 0, 1, 1).sample(z));
        Sampler k2 = new Sampler(1.0, 2, 1, 3);
        for (int i = 0; i < 200; i++) {
            int id = k2.sample(z);
            assertTrue(id == 1 || id == 2, "top-2 draws only ids 1 and 2, got " + id);
        }
        Sampler p = new Sampler(1.0, 0, 0.3, 3);
        for (int i = 0; i < 50; i++) assertEquals(1, p.sample(z), "top-p 0.3 keeps only the most likely id");
        int[] counts = new int[5];
        Sampler t = new Sampler(1.0, 0, 1, 11);
        for (int i = 0; i < 4000; i++) counts[t.sample(z)]++;
        double p1 = Math.exp(5) / (Math.exp(0) + Math.exp(5) + Math.exp(4.9) + Math.exp(-2) + Math.exp(1));
        assertEquals(p1, counts[1] / 4000.0, 0.03, "temperature 1 samples the softmax");
    }
}
