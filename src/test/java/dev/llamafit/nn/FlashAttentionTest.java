// Tiled (flash) attention equals eager Attention: outputs, log-sum-exp, gradients, cached inference, O(T) scratch.
package dev.llamafit.nn;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.util.SplittableRandom;

import dev.llamafit.kernels.KernelBackends;
import dev.llamafit.kernels.Kernels;
import dev.llamafit.kernels.Parallel;
import dev.llamafit.kernels.ScalarKernels;
import dev.llamafit.tensor.DType;
import dev.llamafit.tensor.Tensor;
import org.junit.jupiter.api.Test;

class FlashAttentionTest {
    static final Kernels K = KernelBackends.get();

    static MemorySegment random(Arena arena, long n, long seed, float amp) {
        MemorySegment s = arena.allocate(Math.max(1, n) * 4, 64);
        SplittableRandom r = new SplittableRandom(seed);
        for (long i = 0; i < n; i++) s.setAtIndex(Tensor.F32_LE, i, (float) ((r.nextDouble() * 2 - 1) * amp));
        return s;
    }

    /** Fails unless got equals want within tol, both norm-wise and in max-abs relative to want's largest value. */
    static void assertNear(MemorySegment want, MemorySegment got, long n, double tol, String what) {
        double diff2 = 0, norm2 = 0, maxDiff = 0, maxAbs = 0;
        for (long i = 0; i < n; i++) {
            double w = want.getAtIndex(Tensor.F32_LE, i), g = got.getAtIndex(Tensor.F32_LE, i);
            assertTrue(Double.isFinite(g), what + ": element " + i + " is " + g);
            diff2 += (w - g) * (w - g);
            norm2 += w * w;
            maxDiff = Math.max(maxDiff, Math.abs(w - g));
            maxAbs = Math.max(maxAbs, Math.abs(w));
        }
        assertTrue(Math.sqrt(diff2) <= tol * Math.sqrt(norm2), what + ": norm-wise error " + Math.sqrt(diff2 / norm2));
        assertTrue(maxDiff <= tol * maxAbs, what + ": max error " + maxDiff / maxAbs + " of the largest value");
    }

    /** Runs eager and flash forward and backward on the same random inputs and compares everything. */
    static void compare(Kernels k, int batch, int heads, int kvHeads, int headDim, int window, int t, DType half, double tol) {
        String what = "B " + batch + " H " + heads + " KvH " + kvHeads + " D " + headDim + " window " + window + " T " + t
                + (half == null ? "" : " " + half);
        int qDim = heads * headDim, kvDim = kvHeads * headDim;
        long rows = (long) batch * t;
        try (Arena arena = Arena.ofShared()) {
            long seed = t * 31L + heads * 7L + window;
            MemorySegment q = random(arena, rows * qDim, seed, 2f), keys = random(arena, rows * kvDim, seed + 1, 2f);
            MemorySegment values = random(arena, rows * kvDim, seed + 2, 1f), dOut = random(arena, rows * qDim, seed + 3, 1f);
            if (half != null) for (MemorySegment s : new MemorySegment[] {q, keys, values, dOut}) k.round16(s, 0, s.byteSize() / 4, half);
            // Eager: the reference.
            Attention eager = new Attention(heads, kvHeads, headDim, window, half);
            MemorySegment probs = arena.allocate((long) batch * heads * t * t * 4, 64);
            MemorySegment att = arena.allocate(rows * qDim * 4, 64);
            eager.forwardTraining(k, batch, t, q, keys, values, probs, 0, att);
            MemorySegment eScratch = arena.allocate(Parallel.threads() * Attention.backwardScratchPerChunk(t) * 4, 64);
            MemorySegment eq = arena.allocate(rows * qDim * 4, 64), ek = arena.allocate(rows * kvDim * 4, 64),
                    ev = arena.allocate(rows * kvDim * 4, 64);
            eager.backward(k, batch, t, q, keys, values, probs, 0, dOut, eq, ek, ev, eScratch);
            // Flash, with NaN-filled outputs so that anything left unwritten shows.
            FlashAttention flash = new FlashAttention(heads, kvHeads, headDim, window, half);
            MemorySegment scratch = arena.allocate(Parallel.threads() * FlashAttention.scratchPerThread(t, t, headDim) * 4, 64);
            MemorySegment out = nan(arena, rows * qDim), lse = nan(arena, (long) batch * heads * t + 3);
            flash.forward(k, batch, t, q, keys, values, out, lse, 3, scratch);
            MemorySegment fq = nan(arena, rows * qDim), fk = nan(arena, rows * kvDim), fv = nan(arena, rows * kvDim);
            flash.backward(k, batch, t, q, keys, values, out, lse, 3, dOut, fq, fk, fv, scratch);
            assertNear(att, out, rows * qDim, tol, what + ": out");
            assertNear(eq, fq, rows * qDim, tol, what + ": dQ");
            assertNear(ek, fk, rows * kvDim, tol, what + ": dK");
            assertNear(ev, fv, rows * kvDim, tol, what + ": dV");
            if (half == null) checkLse(batch, heads, kvHeads, headDim, window, t, q, keys, lse, 3, what);
        }
    }

    static MemorySegment nan(Arena arena, long n) {
        MemorySegment s = arena.allocate(n * 4, 64);
        for (long i = 0; i < n; i++) s.setAtIndex(Tensor.F32_LE, i, Float.NaN);
        return s;
    }

    /** lse[b, h, i] = log Σ_j e^(q_i·k_j/√D) over the attended keys, recomputed in double. */
    static void checkLse(int batch, int heads, int kvHeads, int headDim, int window, int t, MemorySegment q, MemorySegment keys,
                         MemorySegment lse, long lseOff, String what) {
        int qDim = heads * headDim, kvDim = kvHeads * headDim, group = heads / kvHeads;
        double scale = 1 / Math.sqrt(headDim);
        for (int b = 0; b < batch; b++) for (int h = 0; h < heads; h++) for (int i = 0; i < t; i += Math.max(1, t / 40)) {
            int lo = window > 0 ? Math.max(0, i - window + 1) : 0;
            double[] s = new double[i - lo + 1];
            double max = Double.NEGATIVE_INFINITY;
            for (int j = lo; j <= i; j++) {
                double dot = 0;
                for (int d = 0; d < headDim; d++)
                    dot += (double) q.getAtIndex(Tensor.F32_LE, ((long) b * t + i) * qDim + h * headDim + d)
                            * keys.getAtIndex(Tensor.F32_LE, ((long) b * t + j) * kvDim + (h / group) * headDim + d);
                s[j - lo] = dot * scale;
                max = Math.max(max, s[j - lo]);
            }
            double sum = 0;
            for (double v : s) sum += Math.exp(v - max);
            double want = max + Math.log(sum);
            float got = lse.getAtIndex(Tensor.F32_LE, lseOff + ((long) b * heads + h) * t + i);
            assertEquals(want, got, 1e-5 * Math.max(1, Math.abs(want)), what + ": lse of b " + b + " h " + h + " row " + i);
        }
    }

    @Test
    void matchesEagerOnAwkwardLengths() {
        for (int t : new int[] {1, 3, 17, 64, 65, 129, 255, 300}) compare(K, 2, 4, 2, 16, 0, t, null, 1e-5);
        compare(K, 1, 2, 1, 16, 0, 1000, null, 1e-5);
    }

    @Test
    void matchesEagerWithGroupedQueryHeads() {
        compare(K, 2, 8, 2, 16, 0, 255, null, 1e-5);
        compare(K, 1, 8, 2, 48, 0, 130, null, 1e-5);
        compare(K, 1, 4, 4, 64, 0, 100, null, 1e-5); // no grouping
    }

    @Test
    void matchesEagerWithASlidingWindow() {
        for (int window : new int[] {5, 64}) {
            for (int t : new int[] {1, 3, 17, 255}) compare(K, 2, 4, 2, 16, window, t, null, 1e-5);
            compare(K, 1, 2, 1, 16, window, 1000, null, 1e-5);
        }
    }

    @Test
    void matchesEagerUnderMixedPrecision() {
        // P is rounded unnormalized here (as a 16-bit FlashAttention kernel does), normalized in eager: 16-bit rounding apart.
        for (int t : new int[] {3, 17, 255}) compare(K, 2, 4, 2, 16, 0, t, DType.BF16, 2e-2);
        compare(K, 1, 8, 2, 16, 5, 130, DType.BF16, 2e-2);
        compare(K, 1, 4, 2, 16, 0, 100, DType.F16, 4e-3);
    }

    @Test
    void theSpecificationAgrees() {
        compare(new ScalarKernels(), 1, 4, 2, 8, 0, 70, null, 1e-5);
        compare(new ScalarKernels(), 1, 4, 2, 8, 5, 70, null, 1e-5);
    }

    /** Prefill and decode through a KV-cache layout [B, KvH, capacity, D]: flash equals Attention.forward. */
    @Test
    void cachedInferenceMatchesEager() {
        int[][] cases = {{0, 40, 0}, {0, 130, 0}, {37, 1, 0}, {37, 1, 5}, {37, 3, 0}, {600, 1, 0}, {20, 70, 64}, {300, 200, 0}, {5000, 1, 0}, {5000, 2, 64}};
        for (int[] c : cases) {
            int startPos = c[0], t = c[1], window = c[2];
            int batch = 2, heads = 8, kvHeads = 2, headDim = 16, capacity = startPos + t + 5, kvLen = startPos + t;
            int qDim = heads * headDim;
            String what = "startPos " + startPos + " T " + t + " window " + window;
            try (Arena arena = Arena.ofShared()) {
                long cacheFloats = (long) batch * kvHeads * capacity * headDim;
                MemorySegment kc = random(arena, cacheFloats, startPos + t, 2f), vc = random(arena, cacheFloats, startPos + t + 1, 1f);
                MemorySegment q = random(arena, (long) batch * t * qDim, t, 2f);
                Attention.KvView kv = new Attention.KvView(kc, 0, (long) kvHeads * capacity * headDim, (long) capacity * headDim, headDim);
                Attention.KvView vv = new Attention.KvView(vc, 0, (long) kvHeads * capacity * headDim, (long) capacity * headDim, headDim);
                MemorySegment want = arena.allocate((long) batch * t * qDim * 4, 64);
                new Attention(heads, kvHeads, headDim, window).forward(K, batch, t, startPos, q, kv, vv,
                        arena.allocate(Parallel.threads() * Attention.scratchPerChunk(t, kvLen) * 4, 64), want);
                MemorySegment got = nan(arena, (long) batch * t * qDim);
                new FlashAttention(heads, kvHeads, headDim, window, null).forwardCached(K, batch, t, startPos, q, kv, vv,
                        arena.allocate(Parallel.threads() * FlashAttention.scratchPerThread(t, kvLen, headDim) * 4, 64), got);
                assertNear(want, got, (long) batch * t * qDim, 1e-5, what);
            }
        }
    }

    @Test
    void scratchGrowsLinearlyInT() {
        int d = 64;
        long s1 = FlashAttention.scratchPerThread(1000, 1000, d), s2 = FlashAttention.scratchPerThread(2000, 2000, d),
                s4 = FlashAttention.scratchPerThread(4000, 4000, d);
        assertEquals(s2 - s1, (s4 - s2) / 2, "scratch is affine in T (no T² term)");
        assertTrue(s2 - s1 <= 1000L * (d + 8), "at most O(T·D) floats per 1000 positions: " + (s2 - s1));
        assertTrue(FlashAttention.scratchPerThread(8192, 8192, d) < 8192L * 8192 / 100, "far below eager's T² at T 8192");
        assertTrue(FlashAttention.scratchPerThread(1, 9000, d) < 9000L * 100, "decode scratch does not grow with kvLen²");
    }
}
