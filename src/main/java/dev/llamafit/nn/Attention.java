// Grouped-query causal self-attention over keys/values held either in activations or in a KV cache.
package dev.llamafit.nn;

import java.lang.foreign.MemorySegment;

import dev.llamafit.kernels.Kernels;
import dev.llamafit.kernels.Parallel;
import dev.llamafit.tensor.DType;

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
    private final DType half;    // training under mixed precision: scores, P, dP and dS rounded to it; null = fp32
    /** Below this many query rows, P·V is accumulated row by row instead of through a GEMM. */
    private static final int SMALL_T = 8;

    public Attention(int heads, int kvHeads, int headDim, int window) { this(heads, kvHeads, headDim, window, null); }

    /**
     * @param half BF16 or F16 for mixed-precision training: the products autocast computes in 16 bits (scores q·kᵀ,
     *             P·V's operand P, and in backward dP and dS) are rounded to it; softmax and its backward stay fp32
     */
    public Attention(int heads, int kvHeads, int headDim, int window, DType half) {
        this.half = half;
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

    /** Floats of scratch one backward chunk needs: a [T, T] matrix for dP, then dS. */
    public static long backwardScratchPerChunk(int t) { return (long) t * t; }

    /**
     * Training forward over a whole sequence (positions 0..T−1, no cache): as {@link #forward}, and saves the
     * softmax probabilities P[B, H, T, T], which backward needs. This is eager attention's memory cost, s² per
     * head; masked entries (future, or outside the window) are stored as exact zeros.
     *
     * @param q      [B·T, H·D], rotated
     * @param keys   [B·T, KvH·D], rotated
     * @param values [B·T, KvH·D]
     * @param probs  [B, H, T, T] at element offset probsOff, written
     * @param att    [B·T, H·D], written
     */
    public void forwardTraining(Kernels k, int batch, int t, MemorySegment q, MemorySegment keys, MemorySegment values,
                                MemorySegment probs, long probsOff, MemorySegment att) {
        int qDim = heads * headDim, kvDim = kvHeads * headDim, group = heads / kvHeads;
        float scale = (float) (1.0 / Math.sqrt(headDim));
        Parallel.forChunks(batch * heads, (chunk, from, to) -> {
            for (int bh = from; bh < to; bh++) {
                int b = bh / heads, h = bh % heads, kvh = h / group;
                long qOff = (long) b * t * qDim + (long) h * headDim;
                long kvOff = (long) b * t * kvDim + (long) kvh * headDim;
                long pOff = probsOff + (long) bh * t * t;
                // S[T, T] = q_h · k_hᵀ / √D, then row-wise masked softmax in place.
                k.gemm(false, true, t, t, headDim, scale, q, qOff, qDim, keys, kvOff, kvDim, 0f, probs, pOff, t);
                if (half != null) k.round16(probs, pOff, (long) t * t, half);
                for (int i = 0; i < t; i++) {
                    int lo = lowest(i);
                    long row = pOff + (long) i * t;
                    for (int j = 0; j < lo; j++) probs.setAtIndex(F32, row + j, 0f);
                    k.softmax(probs, row + lo, i - lo + 1);
                    for (int j = i + 1; j < t; j++) probs.setAtIndex(F32, row + j, 0f);
                }
                if (half != null) k.round16(probs, pOff, (long) t * t, half);
                // out_h[T, D] = P · v_h
                k.gemm(false, false, t, headDim, t, 1f, probs, pOff, t, values, kvOff, kvDim, 0f, att, qOff, qDim);
            }
        });
    }

    /** First key position query i may attend to. */
    private int lowest(int i) { return window > 0 ? Math.max(0, i - window + 1) : 0; }

    /**
     * Backward of {@link #forwardTraining}. Per head: dP = dOut·Vᵀ, dV += Pᵀ·dOut; softmax backward
     * dS = P ⊙ (dP − rowsum(P ⊙ dP)); dQ = dS·K/√D, dK += dSᵀ·Q/√D. Work is split over (batch, KV head) so the
     * query heads of one group, which all add into the same dK/dV slice, run on one thread, without races.
     *
     * @param dAtt    [B·T, H·D], gradient of the attention output
     * @param dQ      [B·T, H·D], written (gradient of the rotated q)
     * @param dK      [B·T, KvH·D], written
     * @param dV      [B·T, KvH·D], written
     * @param scratch at least {@code Parallel.threads() × backwardScratchPerChunk(T)} floats
     */
    public void backward(Kernels k, int batch, int t, MemorySegment q, MemorySegment keys, MemorySegment values,
                         MemorySegment probs, long probsOff, MemorySegment dAtt,
                         MemorySegment dQ, MemorySegment dK, MemorySegment dV, MemorySegment scratch) {
        int qDim = heads * headDim, kvDim = kvHeads * headDim, group = heads / kvHeads;
        float scale = (float) (1.0 / Math.sqrt(headDim));
        long perChunk = backwardScratchPerChunk(t);
        Parallel.forChunks(batch * kvHeads, (chunk, from, to) -> {
            long sOff = chunk * perChunk;
            for (int bk = from; bk < to; bk++) {
                int b = bk / kvHeads, kvh = bk % kvHeads;
                long kvOff = (long) b * t * kvDim + (long) kvh * headDim;
                for (int g = 0; g < group; g++) {
                    int h = kvh * group + g;
                    float first = g == 0 ? 0f : 1f; // the group's first head overwrites dK/dV, the others add
                    long qOff = (long) b * t * qDim + (long) h * headDim;
                    long pOff = probsOff + ((long) b * heads + h) * t * t;
                    // dP[T, T] = dOut_h · v_hᵀ
                    k.gemm(false, true, t, t, headDim, 1f, dAtt, qOff, qDim, values, kvOff, kvDim, 0f, scratch, sOff, t);
                    if (half != null) k.round16(scratch, sOff, (long) t * t, half);
                    // dV_kvh[T, D] += Pᵀ · dOut_h
                    k.gemm(true, false, t, headDim, t, 1f, probs, pOff, t, dAtt, qOff, qDim, first, dV, kvOff, kvDim);
                    // dS = P ⊙ (dP − rowsum(P ⊙ dP)) over the attended keys lo..i; masked entries are exact zeros.
                    for (int i = 0; i < t; i++) {
                        int lo = lowest(i);
                        long pr = pOff + (long) i * t, sr = sOff + (long) i * t;
                        scratch.asSlice(sr * 4, (long) lo * 4).fill((byte) 0);
                        k.softmaxBackward(probs, pr + lo, scratch, sr + lo, i - lo + 1);
                        scratch.asSlice((sr + i + 1) * 4, (long) (t - i - 1) * 4).fill((byte) 0);
                    }
                    if (half != null) k.round16(scratch, sOff, (long) t * t, half);
                    // dQ_h[T, D] = dS · k_h / √D ; dK_kvh[T, D] += dSᵀ · q_h / √D
                    k.gemm(false, false, t, headDim, t, scale, scratch, sOff, t, keys, kvOff, kvDim, 0f, dQ, qOff, qDim);
                    k.gemm(true, false, t, headDim, t, scale, scratch, sOff, t, q, qOff, qDim, first, dK, kvOff, kvDim);
                }
            }
        });
    }

    private static final java.lang.foreign.ValueLayout.OfFloat F32 = dev.llamafit.tensor.Tensor.F32_LE;
}
