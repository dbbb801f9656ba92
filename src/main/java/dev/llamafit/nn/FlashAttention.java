// Memory-efficient (FlashAttention-2 style) causal attention: tiles and an online softmax, no T×T buffer.
package dev.llamafit.nn;

import java.lang.foreign.MemorySegment;

import dev.llamafit.kernels.Kernels;
import dev.llamafit.kernels.Parallel;
import dev.llamafit.tensor.DType;
import dev.llamafit.tensor.Tensor;

/**
 * The same attention as {@link Attention} (causal mask, optional sliding window, grouped-query heads), computed the way
 * FlashAttention-2 does (Dao 2023): queries and keys in tiles, each query row keeping a running maximum m and sum l of
 * its exponentiated scores, so the output is rescaled and accumulated tile by tile. The forward keeps only the output
 * and each row's log-sum-exp lse = m + log l; backward recomputes each probability tile as e^(s − lse) and uses
 * D_i = dOut_i·O_i for the softmax backward's row sum, so memory is O(T) per head instead of eager's T².
 *
 * <p>Tiles wholly above the diagonal (or wholly outside the window) are skipped. The query heads of one KV head run in
 * one task, one after another, so K/V are read without being repeated and dK/dV accumulate without races. Every task's
 * arithmetic depends only on the sizes, never on the thread that runs it, so results are the same for any thread count.
 *
 * <p>Under mixed precision ({@code half}) the products autocast makes in 16 bits are rounded as {@link Attention} does:
 * the scores, P before P·V (here the unnormalized e^(s − m), as a 16-bit FlashAttention kernel does), dP and dS. The
 * log-sum-exp stays fp32.
 */
public final class FlashAttention {
    /**
     * Query rows per tile. Measured on the stories15M shape (B 8, H 6, D 48, 2 threads, AVX-512): 128×128 beat 64×64 by
     * 10-15% at T 1024-2048 and tied at T 256; 32-row tiles were 3× slower. The forward, which needs one tile where
     * backward needs two (P and dP), uses keys tiles twice as wide (128×256), another 10% there.
     */
    static final int TILE_Q = 128;
    /** Key columns per backward tile. */
    static final int TILE_K = 128;
    /** Below this many query rows (decode), P·V is accumulated row by row and key tiles are wider. */
    private static final int SMALL_T = 8;

    private final int heads, kvHeads, headDim, window;
    private final DType half;

    /** @param half null for fp32; BF16 or F16 to round scores, P, dP and dS as {@link Attention} does */
    public FlashAttention(int heads, int kvHeads, int headDim, int window, DType half) {
        if (heads <= 0 || kvHeads <= 0 || heads % kvHeads != 0 || headDim <= 0 || window < 0)
            throw new IllegalArgumentException("attention shape: heads " + heads + ", kvHeads " + kvHeads + ", headDim " + headDim
                    + ", window " + window);
        if (half != null && half != DType.BF16 && half != DType.F16)
            throw new IllegalArgumentException("half is BF16, F16 or null, not " + half);
        this.heads = heads;
        this.kvHeads = kvHeads;
        this.headDim = headDim;
        this.window = window;
        this.half = half;
    }

    /**
     * Floats of scratch one thread needs, independent of the batch: two tiles (scores/P and dP/dS), the tile's running
     * max and sum, and backward's D for one head's T rows. Linear in T, never T².
     */
    public static long scratchPerThread(int seqLen, int kvLen, int headDim) {
        return 2L * TILE_Q * TILE_K + 2L * TILE_Q + Math.max(seqLen, 1);
    }

    /** First key position query position {@code pos} may attend to. */
    private int lowest(int pos) { return window > 0 ? Math.max(0, pos - window + 1) : 0; }

    /**
     * Training forward over whole sequences (positions 0..T−1).
     *
     * @param q      [B·T, H·D], rotated
     * @param keys   [B·T, KvH·D], rotated
     * @param values [B·T, KvH·D]
     * @param out    [B·T, H·D], written
     * @param lse    [B, H, T] at element offset lseOff, written: each row's log-sum-exp of its scaled, masked scores
     * @param scratch {@code Parallel.threads() × scratchPerThread(T, T, D)} floats
     */
    public void forward(Kernels k, int batch, int t, MemorySegment q, MemorySegment keys, MemorySegment values,
                        MemorySegment out, MemorySegment lse, long lseOff, MemorySegment scratch) {
        int kvDim = kvHeads * headDim;
        long perThread = scratchPerThread(t, t, headDim);
        int qTiles = (t + TILE_Q - 1) / TILE_Q;
        // Tasks (b, kvh, query tile); the last tiles of a row have the most keys, so interleave them over the range.
        Parallel.forChunks(batch * kvHeads * qTiles, (chunk, from, to) -> {
            long sOff = chunk * perThread;
            for (int task = from; task < to; task++) {
                int qt = task % qTiles, bk = task / qTiles, b = bk / kvHeads, kvh = bk % kvHeads;
                long kvOff = (long) b * t * kvDim + (long) kvh * headDim;
                tileForward(k, b, kvh, t, qt * TILE_Q, Math.min(TILE_Q, t - qt * TILE_Q), 0, t, q,
                        keys, kvOff, kvDim, values, kvOff, kvDim, out, lse, lseOff, scratch, sOff, 2 * TILE_K);
            }
        });
    }

    /**
     * One query tile of every head in KV head kvh's group: rows i0..i0+rows−1 (positions startPos+i), against keys
     * 0..kvLen−1 at kOff + j·ldk (values at vOff + j·ldv), tileK at a time (rows·tileK ≤ 2·TILE_Q·TILE_K, the scratch's
     * two tiles). Writes out rows and, unless lse is null, their log-sum-exp.
     */
    private void tileForward(Kernels k, int b, int kvh, int t, int i0, int rows, int startPos, int kvLen, MemorySegment q,
                             MemorySegment keys, long kOff, int ldk, MemorySegment values, long vOff, int ldv,
                             MemorySegment out, MemorySegment lse, long lseOff, MemorySegment scratch, long sOff, int tileK) {
        int qDim = heads * headDim, group = heads / kvHeads;
        float scale = (float) (1.0 / Math.sqrt(headDim));
        long mOff = sOff + 2L * TILE_Q * TILE_K, lOff = mOff + TILE_Q;
        int firstPos = startPos + i0, lastPos = firstPos + rows - 1;
        int jFrom = lowest(firstPos) / tileK * tileK, jTo = Math.min(kvLen, lastPos + 1); // keys any row of the tile sees
        for (int g = 0; g < group; g++) {
            int h = kvh * group + g;
            long qOff = ((long) b * t + i0) * qDim + (long) h * headDim;
            for (int i = 0; i < rows; i++) {
                out.asSlice((qOff + (long) i * qDim) * 4, (long) headDim * 4).fill((byte) 0);
                scratch.setAtIndex(F32, mOff + i, Float.NEGATIVE_INFINITY);
                scratch.setAtIndex(F32, lOff + i, 0f);
            }
            for (int j0 = jFrom; j0 < jTo; j0 += tileK) {
                int cols = Math.min(tileK, jTo - j0);
                // S[rows, cols] = q · kᵀ / √D
                k.gemm(false, true, rows, cols, headDim, scale, q, qOff, qDim, keys, kOff + (long) j0 * ldk, ldk,
                        0f, scratch, sOff, cols);
                if (half != null) k.round16(scratch, sOff, (long) rows * cols, half);
                for (int i = 0; i < rows; i++) {
                    int pos = firstPos + i;
                    int a = Math.max(lowest(pos), j0) - j0, e = Math.min(pos, j0 + cols - 1) - j0; // attended columns a..e
                    long row = sOff + (long) i * cols, o = qOff + (long) i * qDim;
                    if (a > e) { // nothing attended in this tile: P row is zero, the running state unchanged
                        scratch.asSlice(row * 4, (long) cols * 4).fill((byte) 0);
                        continue;
                    }
                    float mOld = scratch.getAtIndex(F32, mOff + i);
                    float mNew = Math.max(mOld, k.max(scratch, row + a, e - a + 1));
                    if (a > 0) scratch.asSlice(row * 4, (long) a * 4).fill((byte) 0);
                    if (e + 1 < cols) scratch.asSlice((row + e + 1) * 4, (long) (cols - e - 1) * 4).fill((byte) 0);
                    float sum = k.expSum(scratch, row + a, e - a + 1, mNew);
                    float l = scratch.getAtIndex(F32, lOff + i);
                    if (mNew != mOld) { // rescale what was accumulated under the old maximum
                        float c = (float) Math.exp(mOld - mNew);
                        l *= c;
                        if (mOld != Float.NEGATIVE_INFINITY) k.scale(out, o, headDim, c);
                    }
                    scratch.setAtIndex(F32, mOff + i, mNew);
                    scratch.setAtIndex(F32, lOff + i, l + sum);
                }
                if (half != null) k.round16(scratch, sOff, (long) rows * cols, half);
                // out[rows, D] += P · v
                if (rows < SMALL_T) {
                    for (int i = 0; i < rows; i++) {
                        long row = sOff + (long) i * cols, o = qOff + (long) i * qDim;
                        int pos = firstPos + i;
                        int a = Math.max(lowest(pos), j0) - j0, e = Math.min(pos, j0 + cols - 1) - j0;
                        for (int j = a; j <= e; j++)
                            k.axpy(scratch.getAtIndex(F32, row + j), values, vOff + (long) (j0 + j) * ldv, out, o, headDim);
                    }
                } else {
                    k.gemm(false, false, rows, headDim, cols, 1f, scratch, sOff, cols, values, vOff + (long) j0 * ldv, ldv,
                            1f, out, qOff, qDim);
                }
            }
            for (int i = 0; i < rows; i++) {
                float l = scratch.getAtIndex(F32, lOff + i);
                k.scale(out, qOff + (long) i * qDim, headDim, 1f / l);
                if (lse != null)
                    lse.setAtIndex(F32, lseOff + ((long) b * heads + h) * t + i0 + i,
                            scratch.getAtIndex(F32, mOff + i) + (float) Math.log(l));
            }
        }
    }

    /**
     * Backward of {@link #forward} from its out and lse: per (batch, KV head) task, for each head of the group, each key
     * tile and each query tile that sees it: P = e^(q·kᵀ/√D − lse), dV += Pᵀ·dOut, dP = dOut·vᵀ, dS = P ⊙ (dP − D),
     * dQ += dS·k/√D, dK += dSᵀ·q/√D.
     *
     * @param dOut [B·T, H·D]
     * @param dQ   [B·T, H·D], written
     * @param dK   [B·T, KvH·D], written
     * @param dV   [B·T, KvH·D], written
     */
    public void backward(Kernels k, int batch, int t, MemorySegment q, MemorySegment keys, MemorySegment values,
                         MemorySegment out, MemorySegment lse, long lseOff, MemorySegment dOut,
                         MemorySegment dQ, MemorySegment dK, MemorySegment dV, MemorySegment scratch) {
        int qDim = heads * headDim, kvDim = kvHeads * headDim, group = heads / kvHeads;
        float scale = (float) (1.0 / Math.sqrt(headDim));
        long perThread = scratchPerThread(t, t, headDim);
        Parallel.forChunks(batch * kvHeads, (chunk, from, to) -> {
            long pOff = chunk * perThread, dOff = pOff + (long) TILE_Q * TILE_K, rowDots = pOff + 2L * TILE_Q * TILE_K + 2L * TILE_Q;
            for (int bk = from; bk < to; bk++) {
                int b = bk / kvHeads, kvh = bk % kvHeads;
                long kvOff = (long) b * t * kvDim + (long) kvh * headDim;
                for (int j = 0; j < t; j++) {
                    dK.asSlice((kvOff + (long) j * kvDim) * 4, (long) headDim * 4).fill((byte) 0);
                    dV.asSlice((kvOff + (long) j * kvDim) * 4, (long) headDim * 4).fill((byte) 0);
                }
                for (int g = 0; g < group; g++) {
                    int h = kvh * group + g;
                    long qOff = (long) b * t * qDim + (long) h * headDim, lRow = lseOff + ((long) b * heads + h) * t;
                    for (int i = 0; i < t; i++) {
                        long r = qOff + (long) i * qDim;
                        dQ.asSlice(r * 4, (long) headDim * 4).fill((byte) 0);
                        scratch.setAtIndex(F32, rowDots + i, k.dot(dOut, r, out, r, headDim));
                    }
                    for (int j0 = 0; j0 < t; j0 += TILE_K) {
                        int cols = Math.min(TILE_K, t - j0);
                        int iTo = window > 0 ? Math.min(t, j0 + cols - 1 + window) : t; // query rows that see this tile
                        for (int i0 = j0 / TILE_Q * TILE_Q; i0 < iTo; i0 += TILE_Q) {
                            int rows = Math.min(TILE_Q, iTo - i0);
                            long qi = qOff + (long) i0 * qDim, kj = kvOff + (long) j0 * kvDim;
                            // P[rows, cols] = e^(q·kᵀ/√D − lse), masked entries 0
                            k.gemm(false, true, rows, cols, headDim, scale, q, qi, qDim, keys, kj, kvDim, 0f, scratch, pOff, cols);
                            if (half != null) k.round16(scratch, pOff, (long) rows * cols, half);
                            boolean any = false;
                            for (int i = 0; i < rows; i++) {
                                int pos = i0 + i;
                                int a = Math.max(lowest(pos), j0) - j0, e = Math.min(pos, j0 + cols - 1) - j0;
                                long row = pOff + (long) i * cols;
                                if (a > e) {
                                    scratch.asSlice(row * 4, (long) cols * 4).fill((byte) 0);
                                    continue;
                                }
                                any = true;
                                if (a > 0) scratch.asSlice(row * 4, (long) a * 4).fill((byte) 0);
                                if (e + 1 < cols) scratch.asSlice((row + e + 1) * 4, (long) (cols - e - 1) * 4).fill((byte) 0);
                                k.expSum(scratch, row + a, e - a + 1, lse.getAtIndex(F32, lRow + pos));
                            }
                            if (!any) continue;
                            if (half != null) k.round16(scratch, pOff, (long) rows * cols, half);
                            // dV[cols, D] += Pᵀ · dOut ; dP[rows, cols] = dOut · vᵀ
                            k.gemm(true, false, cols, headDim, rows, 1f, scratch, pOff, cols, dOut, qi, qDim, 1f, dV, kj, kvDim);
                            k.gemm(false, true, rows, cols, headDim, 1f, dOut, qi, qDim, values, kj, kvDim, 0f, scratch, dOff, cols);
                            if (half != null) k.round16(scratch, dOff, (long) rows * cols, half);
                            // dS = P ⊙ (dP − D): zero wherever P is (masked entries)
                            for (int i = 0; i < rows; i++)
                                k.softmaxBackward(scratch, pOff + (long) i * cols, scratch, dOff + (long) i * cols, cols,
                                        scratch.getAtIndex(F32, rowDots + i0 + i));
                            if (half != null) k.round16(scratch, dOff, (long) rows * cols, half);
                            // dQ[rows, D] += dS · k / √D ; dK[cols, D] += dSᵀ · q / √D
                            k.gemm(false, false, rows, headDim, cols, scale, scratch, dOff, cols, keys, kj, kvDim, 1f, dQ, qi, qDim);
                            k.gemm(true, false, cols, headDim, rows, scale, scratch, dOff, cols, q, qi, qDim, 1f, dK, kj, kvDim);
                        }
                    }
                }
            }
        });
    }

    /**
     * Inference as {@link Attention#forward}: queries at positions startPos..startPos+T−1 attend to keys
     * 0..startPos+T−1 read through the views (activations or a KV cache), tile by tile.
     *
     * @param scratch {@code Parallel.threads() × scratchPerThread(T, startPos+T, D)} floats
     * @param out     [B·T, H·D], written
     */
    public void forwardCached(Kernels k, int batch, int t, int startPos, MemorySegment q, Attention.KvView keys,
                              Attention.KvView values, MemorySegment scratch, MemorySegment out) {
        int kvLen = startPos + t;
        long perThread = scratchPerThread(t, kvLen, headDim);
        int qTiles = (t + TILE_Q - 1) / TILE_Q;
        // Decode has a handful of rows: spend the tile on wider key tiles, fewer calls.
        int tileK = t < SMALL_T ? 2 * TILE_Q * TILE_K / SMALL_T : 2 * TILE_K;
        Parallel.forChunks(batch * kvHeads * qTiles, (chunk, from, to) -> {
            long sOff = chunk * perThread;
            for (int task = from; task < to; task++) {
                int qt = task % qTiles, bk = task / qTiles, b = bk / kvHeads, kvh = bk % kvHeads;
                long kOff = keys.off() + b * keys.strideB() + kvh * keys.strideH();
                long vOff = values.off() + b * values.strideB() + kvh * values.strideH();
                tileForward(k, b, kvh, t, qt * TILE_Q, Math.min(TILE_Q, t - qt * TILE_Q), startPos, kvLen, q,
                        keys.segment(), kOff, keys.strideT(), values.segment(), vOff, values.strideT(), out, null, 0,
                        scratch, sOff, tileK);
            }
        });
    }

    private static final java.lang.foreign.ValueLayout.OfFloat F32 = Tensor.F32_LE;
}
