// Grouped-query causal self-attention over keys/values held either in activations or in a KV cache.
package dev.llamafit.nn;

import java.lang.foreign.MemorySegment;

import dev.llamafit.kernels.Kernels;
import dev.llamafit.kernels.Parallel;

/**
 * Scaled dot-product attention (Vaswani et al. 2017) with a causal mask, an optional sliding window
 * (Mistral), and grouped-query heads (Ainslie et al. 2023): query head h reads key/value head h / (H/KvH).
 *
 * <p>Keys and values are addressed through strides, so the same code reads them from the current
 * activations ([B, T, KvH·D]) or from a KV cache ([B, KvH, capacity, D]).
 */
public final class Attention {
    private final int heads;     // H
    private final int kvHeads;   // KvH
    private final int headDim;   // D
    private final int window;    // 0 = unlimited
    /** Below this many query rows, P·V is accumulated row by row instead of through a GEMM. */
    private static final int SMALL_T = 8;

    public Attention(int heads, int kvHeads, int headDim, int window) {
        this.heads = heads;
        this.kvHeads = kvHeads;
        this.headDim = headDim;
        this.window = window;
    }

    /** Where keys (or values) live: element (b, kvh, t, d) is at {@code off + b·strideB + kvh·strideH + t·strideT + d}. */
    public record KvView(MemorySegment segment, long off, long strideB, long strideH, int strideT) {}

    /** Floats of scratch one chunk needs: a [T, kvLen] score matrix. */
    public static long scratchPerChunk(int t, int kvLen) { return (long) t * kvLen; }

    /**
     * att[B·T, H·D] = softmax(q·kᵀ/√D + mask)·v for queries at positions startPos..startPos+T−1 attending to
     * key positions 0..startPos+T−1.
     *
     * @param q       [B·T, H·D], already rotated
     * @param scratch at least {@code Parallel.threads() × scratchPerChunk(T, startPos+T)} floats
     * @param att     [B·T, H·D] output
     */
    public void forward(Kernels k, int batch, int t, int startPos, MemorySegment q, KvView keys, KvView values,
                        MemorySegment scratch, MemorySegment att) {
        int kvLen = startPos + t;
        int qDim = heads * headDim;
        int group = heads / kvHeads;
        float scale = (float) (1.0 / Math.sqrt(headDim));
        long perChunk = scratchPerChunk(t, kvLen);
        Parallel.forChunks(batch * heads, (chunk, from, to) -> {
            long sOff = chunk * perChunk;
            for (int bh = from; bh < to; bh++) {
                int b = bh / heads, h = bh % heads, kvh = h / group;
                long qOff = (long) b * t * qDim + (long) h * headDim;
                long kOff = keys.off() + b * keys.strideB() + kvh * keys.strideH();
                long vOff = values.off() + b * values.strideB() + kvh * values.strideH();
                // scores[t, kvLen] = q_h · k_hᵀ · scale
                k.gemm(false, true, t, kvLen, headDim, scale, q, qOff, qDim, keys.segment(), kOff, keys.strideT(),
                        0f, scratch, sOff, kvLen);
                for (int i = 0; i < t; i++) {
                    int pos = startPos + i;
                    int lo = window > 0 ? Math.max(0, pos - window + 1) : 0;
                    long row = sOff + (long) i * kvLen;
                    for (int j = 0; j < lo; j++) scratch.setAtIndex(java.lang.foreign.ValueLayout.JAVA_FLOAT, row + j, 0f);
                    k.softmax(scratch, row + lo, pos - lo + 1);
                    for (int j = pos + 1; j < kvLen; j++) scratch.setAtIndex(java.lang.foreign.ValueLayout.JAVA_FLOAT, row + j, 0f);
                }
                // out_h[t, D] = P[t, kvLen] · v_h[kvLen, D]
                if (t < SMALL_T) {
                    // Decode: a GEMM with one row would pack V for nothing; accumulate p_j · v_j directly.
                    for (int i = 0; i < t; i++) {
                        long o = qOff + (long) i * qDim;
                        long row = sOff + (long) i * kvLen;
                        att.asSlice(o * 4, (long) headDim * 4).fill((byte) 0);
                        int pos = startPos + i;
                        int lo = window > 0 ? Math.max(0, pos - window + 1) : 0;
                        for (int j = lo; j <= pos; j++)
                            k.axpy(scratch.getAtIndex(java.lang.foreign.ValueLayout.JAVA_FLOAT, row + j), values.segment(),
                                    vOff + (long) j * values.strideT(), att, o, headDim);
                    }
                } else {
                    k.gemm(false, false, t, headDim, kvLen, 1f, scratch, sOff, kvLen, values.segment(), vOff, values.strideT(),
                            0f, att, qOff, qDim);
                }
            }
        });
    }
}
