// Tests of the dynamic 8-bit maps and block-wise quantisation with them.
package dev.llamafit.quant;

import static org.junit.jupiter.api.Assertions.*;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.Random;

import org.junit.jupiter.api.Test;

import dev.llamafit.tensor.Tensor;

class DynamicMapTest {
    @Test
    void mapsHold256AscendingValuesWithZeroAndOne() {
        for (float[] map : new float[][] {DynamicMap.signed(), DynamicMap.unsigned()}) {
            assertEquals(256, map.length);
            for (int i = 1; i < 256; i++) assertTrue(map[i - 1] < map[i], "strictly ascending at " + i);
            assertEquals(1f, map[255]);
        }
        float[] s = DynamicMap.signed(), u = DynamicMap.unsigned();
        // Signed: 127 negative values, 0 at index 127, 128 positive; the most negative is −(0.9859375+1)/2·1 = −0.99296875.
        assertEquals(0f, s[127]);
        assertEquals(-0.99296875f, s[0]);
        assertEquals(0.99296875f, s[254]);
        // The smallest magnitudes: exponent 0 has one midpoint, (0.1 + 1)/2 · 1e-6.
        assertEquals((float) 1e-6 * 0.55f, s[128]);
        assertEquals(-s[128], s[126]);
        for (int i = 0; i < 127; i++) assertEquals(-s[i], s[254 - i], "signed map symmetric except for 1 at " + i);
        // Unsigned: 0 first, then two midpoints at exponent 0: linspace(0.1, 1, 3) = 0.1, 0.55, 1.
        assertEquals(0f, u[0]);
        assertEquals((float) 1e-6 * ((0.1f + 0.55f) / 2f), u[1]);
        assertEquals((float) 1e-6 * ((0.55f + 1f) / 2f), u[2]);
    }

    @Test
    void linspaceCountsTheSecondHalfBackFromTheEnd() {
        float[] b = DynamicMap.linspace(0.1f, 1f, 5);
        assertEquals(0.1f, b[0]);
        assertEquals(1f, b[4]);
        assertEquals(1f - 0.225f * 2, b[2]);
    }

    @Test
    void nearestPicksTheClosestValueAndTheLowerOnATie() {
        float[] map = {-1f, 0f, 0.5f, 1f};
        assertEquals(1, DynamicMap.nearest(map, 0.1f));
        assertEquals(2, DynamicMap.nearest(map, 0.3f));
        assertEquals(1, DynamicMap.nearest(map, 0.25f), "tie goes to the lower index");
        assertEquals(2, DynamicMap.nearest(map, 0.75f), "tie goes to the lower index");
        assertEquals(0, DynamicMap.nearest(map, -5f));
        assertEquals(3, DynamicMap.nearest(map, 5f));
        assertEquals(3, DynamicMap.nearest(map, 1f));
        assertThrows(IllegalArgumentException.class, () -> DynamicMap.nearest(map, Float.NaN));
        float[] s = DynamicMap.signed();
        for (int i = 0; i < 256; i++) assertEquals(i, DynamicMap.nearest(s, s[i]), "a map value codes as itself");
        // Agrees with a linear scan (first minimum of |x − map[i]|) on random inputs.
        Random r = new Random(7);
        for (int k = 0; k < 20000; k++) {
            float x = (float) (r.nextGaussian() * Math.pow(10, -r.nextInt(8)));
            int best = 0;
            for (int i = 1; i < 256; i++) if (Math.abs(x - s[i]) < Math.abs(x - s[best])) best = i;
            assertEquals(best, DynamicMap.nearest(s, x), "x = " + x);
        }
    }

    @Test
    void blockwiseRoundTripIsWithinHalfAGapOfTheMap() {
        int n = 5000, block = 2048; // three blocks, the last short
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment x = arena.allocate(4L * n), y = arena.allocate(4L * n), codes = arena.allocate(n), absmax = arena.allocate(4L * 3);
            Random r = new Random(1);
            for (int i = 0; i < n; i++) x.setAtIndex(Tensor.F32_LE, i, (float) r.nextGaussian() * (i < 2048 ? 1e-3f : 3f));
            for (int i = 4096; i < n; i++) x.setAtIndex(Tensor.F32_LE, i, 0f); // an all-zero block
            float[] map = DynamicMap.signed();
            DynamicMap.quantizeBlockwise(map, block, x, n, codes, absmax);
            DynamicMap.dequantizeBlockwise(map, block, codes, absmax, n, y);
            assertEquals(0f, absmax.getAtIndex(Tensor.F32_LE, 2));
            for (int i = 0; i < n; i++) {
                float amax = absmax.getAtIndex(Tensor.F32_LE, i / block);
                float v = x.getAtIndex(Tensor.F32_LE, i), w = y.getAtIndex(Tensor.F32_LE, i);
                int c = codes.get(ValueLayout.JAVA_BYTE, i) & 0xFF;
                // The error is at most half the gap to the next map value (in units of absmax), plus rounding.
                float gap = amax == 0 ? 0 : Math.max(c > 0 ? map[c] - map[c - 1] : 0, c < 255 ? map[c + 1] - map[c] : 0);
                assertTrue(Math.abs(v - w) <= gap * amax / 2 * 1.0001f + 1e-12f, "element " + i + ": " + v + " -> " + w);
            }
            // The block maximum is exact: it codes as 1 (or −0.99297 for a negative maximum, the map's end).
            for (int b = 0; b < 2; b++) {
                float amax = absmax.getAtIndex(Tensor.F32_LE, b);
                boolean hit = false;
                for (int i = b * block; i < (b + 1) * block; i++) hit |= y.getAtIndex(Tensor.F32_LE, i) == amax;
                float minMap = map[0] * amax;
                for (int i = b * block; i < (b + 1) * block; i++) hit |= y.getAtIndex(Tensor.F32_LE, i) == minMap;
                assertTrue(hit, "block " + b + " keeps its maximum");
            }
        }
    }

    @Test
    void handComputedCodes() {
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment x = arena.allocate(16), codes = arena.allocate(4), absmax = arena.allocate(4);
            float[] v = {2f, -1f, 0f, 1.1f};
            for (int i = 0; i < 4; i++) x.setAtIndex(Tensor.F32_LE, i, v[i]);
            float[] u = DynamicMap.unsigned(), s = DynamicMap.signed();
            DynamicMap.quantizeBlockwise(s, 64, x, 4, codes, absmax);
            assertEquals(2f, absmax.getAtIndex(Tensor.F32_LE, 0));
            assertEquals(255, codes.get(ValueLayout.JAVA_BYTE, 0) & 0xFF, "2/2 = 1 is the last code");
            assertEquals(127, codes.get(ValueLayout.JAVA_BYTE, 2) & 0xFF, "0 is code 127 of the signed map");
            // −0.5 lies between the map's values around −0.5; the code is the nearest one.
            int c1 = codes.get(ValueLayout.JAVA_BYTE, 1) & 0xFF;
            assertTrue(Math.abs(-0.5f - s[c1]) <= Math.abs(-0.5f - s[c1 - 1]) && Math.abs(-0.5f - s[c1]) <= Math.abs(-0.5f - s[c1 + 1]));
            // In the unsigned map, 0.55 lies between the exponent-6 midpoints; 1.1/2 = 0.55 codes to the nearest.
            DynamicMap.quantizeBlockwise(u, 64, x, 1, codes, absmax);
            assertEquals(255, codes.get(ValueLayout.JAVA_BYTE, 0) & 0xFF);
            x.setAtIndex(Tensor.F32_LE, 0, -1f);
            assertThrows(IllegalArgumentException.class, () -> {
                x.setAtIndex(Tensor.F32_LE, 0, Float.POSITIVE_INFINITY);
                DynamicMap.quantizeBlockwise(s, 64, x, 4, codes, absmax);
            });
        }
    }
}
