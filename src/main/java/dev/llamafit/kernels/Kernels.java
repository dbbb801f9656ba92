// The compute kernels every layer calls: one interface, a readable scalar reference and SIMD backends.
package dev.llamafit.kernels;

import java.lang.foreign.MemorySegment;

import dev.llamafit.tensor.DType;

/**
 * Compute kernels over off-heap fp32 data (unless a method says otherwise).
 *
 * <p>Conventions: matrices are row-major; every {@code …Off} argument is an offset in <em>elements</em> of
 * the segment's element type (floats unless stated), every {@code ld…} is a row stride in elements. Segments
 * hold little-endian data (the platform order on every supported machine). Kernels never allocate from the
 * ledger; temporary packing buffers are thread-local and small.
 *
 * <p>{@link ScalarKernels} is the specification: plain loops written to be read. Other backends must agree
 * with it to within float rounding (see KernelsAgreementTest). Multi-threaded kernels run on the fixed
 * {@link Parallel} pool; called from inside a pool task they run on the calling thread (no nesting).
 *
 * <p>Backward kernels sit beside their forward ones. Where the specification sums in double, a backend must
 * add the same float products in the same order (they feed training, which must repeat bit for bit).
 * The optimizer's updates are the {@link UpdateKernels} family, inherited here.
 */
public interface Kernels extends UpdateKernels {

    /** A short name for logs and benchmark reports, e.g. "vector(AVX-512, 16 lanes)". */
    String name();

    /**
     * General matrix multiply: {@code C = alpha·op(A)·op(B) + beta·C}, with C of shape [m, n], op(A) [m, k],
     * op(B) [k, n]. {@code op(X)} is X or Xᵀ. With {@code transA}, A is stored [k, m]; with {@code transB},
     * B is stored [n, k]. When {@code beta == 0}, C's previous contents are ignored (NaN in C does not leak).
     * Forward passes use A·Bᵀ (activations × weightᵀ), backward passes A·B and Aᵀ·B.
     */
    void gemm(boolean transA, boolean transB, int m, int n, int k, float alpha,
              MemorySegment a, long aOff, int lda,
              MemorySegment b, long bOff, int ldb,
              float beta, MemorySegment c, long cOff, int ldc);

    /**
     * {@link #gemm} over typed operands: A and B may each be F32, BF16 or F16 (C is always F32), offsets and strides in
     * the operand's own elements. Each 16-bit element is widened exactly to fp32 and the products accumulate in fp32, so
     * the result is {@link #gemm} on widened copies up to summation order (the Vector backend keeps even that order except
     * for bf16 weights under 4 rows of A, decode, which it sums in an order of its own); with both operands F32 this
     * <em>is</em> {@link #gemm}, bit for bit.
     * The default converts through {@link ScalarKernels#gemm(boolean, boolean, int, int, int, float, MemorySegment,
     * DType, long, int, MemorySegment, DType, long, int, float, MemorySegment,
     * long, int) the specification} (slow, but right); backends that can do better override it.
     */
    /**
     * {@link #gemm} with an fp32 A (not transposed) and a B that exists only as a {@link PackSource} (a quantised
     * weight), read a slice at a time while the GEMM packs it: op(B) is Bᵀ with B stored [n, k] when {@code transB},
     * else B stored [k, n]; offsets and strides are in B's elements. The result is {@link #gemm} on B's widened values
     * up to summation order (the Vector backend keeps even that order). The default is the scalar specification.
     */
    default void gemm(boolean transB, int m, int n, int k, float alpha, MemorySegment a, long aOff, int lda,
                      PackSource b, long bOff, int ldb, float beta, MemorySegment c, long cOff, int ldc) {
        ScalarKernels.sourceGemm(transB, m, n, k, alpha, a, aOff, lda, b, bOff, ldb, beta, c, cOff, ldc);
    }

    default void gemm(boolean transA, boolean transB, int m, int n, int k, float alpha,
                      MemorySegment a, DType aType, long aOff, int lda,
                      MemorySegment b, DType bType, long bOff, int ldb,
                      float beta, MemorySegment c, long cOff, int ldc) {
        if (aType == DType.F32 && bType == DType.F32) {
            gemm(transA, transB, m, n, k, alpha, a, aOff, lda, b, bOff, ldb, beta, c, cOff, ldc);
        } else {
            ScalarKernels.typedGemm(transA, transB, m, n, k, alpha, a, aType, aOff, lda, b, bType, bOff, ldb, beta, c, cOff, ldc);
        }
    }

    /**
     * int8 GEMM with int32 accumulation, in the forward pass's layout: {@code C[m, n] = A[m, k] · Bᵀ} with A [m, k] and B
     * stored [n, k], both signed bytes (I8), C int32 and overwritten. Offsets and strides count elements (bytes for A and
     * B, ints for C). Integer sums are exact, so every backend must give the same bits; k is at most {@link #MAX_I8_K},
     * below which no sum of k products of two bytes can overflow an int. LLM.int8()'s quantised matmul
     * (dev.llamafit.nn.Int8Linear) is this product followed by the row and column scales.
     *
     * @throws IllegalArgumentException if k exceeds {@link #MAX_I8_K} or a size is negative
     */
    void gemmI8(int m, int n, int k, MemorySegment a, long aOff, int lda, MemorySegment b, long bOff, int ldb,
                MemorySegment c, long cOff, int ldc);

    /** Largest k for {@link #gemmI8}: k·128·128 stays below 2³¹. */
    int MAX_I8_K = (1 << 17) - 1;

    /** {@link #gemmI8}'s argument checks, shared by the backends. */
    static void checkGemmI8(int m, int n, int k) {
        if (m < 0 || n < 0 || k < 0) throw new IllegalArgumentException("negative int8 GEMM size: m=" + m + " n=" + n + " k=" + k);
        if (k > MAX_I8_K) throw new IllegalArgumentException("int8 GEMM with k=" + k + " could overflow int32 (at most " + MAX_I8_K + ")");
    }

    /**
     * RMSNorm per row (Zhang and Sennrich 2019, as in LLaMA): {@code out[r,i] = x[r,i] / sqrt(mean_i(x[r,i]²) + eps) · weight[i]}.
     * x and out are [rows, dim] contiguous; out may alias x.
     */
    void rmsnorm(MemorySegment out, long outOff, MemorySegment x, long xOff, MemorySegment weight, long wOff,
                 int rows, int dim, float eps);

    /**
     * RMSNorm backward over rows, with r[row] = 1/sqrt(mean(x²) + eps) saved by the forward. Per row:
     * {@code coef = (float) (Σ_i (double) (dy_i·w_i·x_i) · r³ / C)} (the sum in double, in order of i), then
     * {@code dX_i += r·w_i·dy_i − x_i·coef} and, unless dWeight is null, {@code dWeight_i += dy_i·x_i·r}.
     *
     * @param x       [rows, C]
     * @param invRms  [rows]
     * @param dY      [rows, C]
     * @param dX      [rows, C], accumulated
     * @param dWeight [C], accumulated over the rows in order; null for none
     */
    void rmsnormBackward(MemorySegment x, long xOff, MemorySegment invRms, long invOff, MemorySegment dY, long dYOff,
                         MemorySegment weight, long wOff, int rows, int dim, MemorySegment dX, long dXOff,
                         MemorySegment dWeight, long dwOff);

    /** Numerically stable softmax, in place, over {@code len} contiguous elements. */
    void softmax(MemorySegment x, long off, int len);

    /**
     * Softmax backward over one row, in place: {@code d[i] ← p[i]·(d[i] − s)} with
     * {@code s = (float) Σ_j (double) (p[j]·d[j])}, summed in order of j. On entry d holds dL/dp, on return dL/dz.
     */
    void softmaxBackward(MemorySegment p, long pOff, MemorySegment d, long dOff, int len);

    /** Largest of {@code len ≥ 1} contiguous elements (NaN if any is NaN, as Math.max): a tiled softmax's running row max. */
    float max(MemorySegment x, long off, int len);

    /**
     * {@code x[i] ← e^(x[i] − shift)} in place over {@code len} elements, returning the float sum of the new values:
     * the exponentiate-and-sum step of an online (tiled) softmax, whose shift is the running maximum or, in backward,
     * the row's log-sum-exp. The specification sums in order of i; a backend may sum in lanes (float rounding), but
     * with the same bits whether compiled or not. {@code x − shift} below about −87.3 (and −∞) gives exactly 0.
     */
    float expSum(MemorySegment x, long off, int len, float shift);

    /**
     * Softmax backward over one row with the row's sum already known: {@code d[i] ← p[i]·(d[i] − s)}. Tiled attention
     * knows s = rowsum(P ⊙ dP) = dOut·O before it sees the row (FlashAttention-2's D).
     */
    void softmaxBackward(MemorySegment p, long pOff, MemorySegment d, long dOff, int len, float s);

    /**
     * One row of softmax cross-entropy: returns {@code −log softmax(z)[label]}, computed as
     * {@code max − z[label] − log p[argmax]} (p[argmax] ≥ 1/len never underflows), and replaces z with
     * {@code (softmax(z) − onehot(label))·scale}, the softmax being this backend's {@link #softmax}.
     */
    double softmaxCrossEntropy(MemorySegment z, long off, int len, int label, float scale);

    /** {@code out[i] = x[i] · sigmoid(x[i])} for n elements; out may alias x. */
    void silu(MemorySegment out, long outOff, MemorySegment x, long xOff, long n);

    /** SwiGLU's gating: {@code out[i] = silu(gate[i]) · up[i]} for n elements; out may alias gate or up. */
    void swiglu(MemorySegment out, long outOff, MemorySegment gate, long gateOff, MemorySegment up, long upOff, long n);

    /**
     * Backward of {@link #swiglu}: with s = σ(g), {@code du = dh·g·s} and {@code dg = dh·u·s·(1 + g·(1 − s))}.
     * dH holds dh on entry and dg on return; dUp is written.
     */
    void swigluBackward(MemorySegment gate, long gateOff, MemorySegment up, long upOff, MemorySegment dH, long dHOff,
                        MemorySegment dUp, long dUpOff, long n);

    /**
     * Rotary position embedding, rotate-half convention (Hugging Face LLaMA): for each row r (a token),
     * each head h and i &lt; D/2, with x1 = x[i], x2 = x[i + D/2], c = cos[pos[r], i], s = sin[pos[r], i]:
     * {@code x[i] = x1·c − x2·s; x[i + D/2] = x2·c + x1·s}. In place.
     *
     * @param x        [rows, heads·headDim] with row stride {@code ldx}
     * @param cos      [maxPositions, headDim/2] table, contiguous
     * @param sin      same shape as cos
     * @param positions one position per row
     */
    void rope(MemorySegment x, long xOff, int ldx, int rows, int heads, int headDim,
              MemorySegment cos, MemorySegment sin, int[] positions);

    /**
     * Backward of {@link #rope}, in place on the gradient: the rotation is orthogonal, so its transpose is the
     * rotation by −θ: {@code d[i] = d1·c + d2·s; d[i + D/2] = d2·c − d1·s}. Arguments as for rope.
     */
    void ropeBackward(MemorySegment dx, long xOff, int ldx, int rows, int heads, int headDim,
                      MemorySegment cos, MemorySegment sin, int[] positions);

    /** {@code y[i] += x[i]} for n elements. */
    void add(MemorySegment y, long yOff, MemorySegment x, long xOff, long n);

    /** {@code y[i] += alpha · x[i]} for n elements. */
    void axpy(float alpha, MemorySegment x, long xOff, MemorySegment y, long yOff, long n);

    /** {@code x[i] *= alpha} for n elements. */
    void scale(MemorySegment x, long off, long n, float alpha);

    /** Dot product of n elements. */
    float dot(MemorySegment x, long xOff, MemorySegment y, long yOff, int n);

    /**
     * Embedding gather: row {@code ids[t]} of {@code table} ([V, dim] of the given storage type) to row t of
     * out ([ids.length, dim] fp32). Ids are checked against {@code vocab}.
     */
    void embedding(MemorySegment out, long outOff, MemorySegment table, DType tableType,
                   int vocab, int dim, int[] ids);

    /** IEEE half (binary16) to fp32; {@code srcOff} counts 2-byte elements. */
    void f16ToF32(MemorySegment src, long srcOff, MemorySegment dst, long dstOff, long n);

    /** bfloat16 to fp32 (exact: the upper 16 bits); {@code srcOff} counts 2-byte elements. */
    void bf16ToF32(MemorySegment src, long srcOff, MemorySegment dst, long dstOff, long n);

    /** fp32 to IEEE half, round to nearest even, overflow to ±Inf. */
    void f32ToF16(MemorySegment src, long srcOff, MemorySegment dst, long dstOff, long n);

    /** fp32 to bfloat16, round to nearest even; NaN stays NaN. */
    void f32ToBf16(MemorySegment src, long srcOff, MemorySegment dst, long dstOff, long n);

    /**
     * Rounds fp32 values in place to the nearest value of {@code to} (BF16 or F16, round to nearest even, as
     * {@link #f32ToBf16}/{@link #f32ToF16} followed by the exact widening): mixed precision keeps a 16-bit tensor's values
     * in an fp32 buffer while it is computed with, so every kernel stays fp32. F16 overflows to ±Inf.
     */
    void round16(MemorySegment x, long off, long n, DType to);

    /**
     * Resident memory the backend holds outside the ledger and the JVM (a native library's code and data once loaded),
     * for the process's RSS baseline; 0 for the Java backends.
     */
    default long nativeResidentBytes() { return 0; }

    /**
     * A view of these kernels for mixed precision, whose GEMMs may assume that every operand value, F32 ones included, is
     * exactly representable in {@code half} (BF16 or F16): the step rounds each 16-bit tensor where it is produced
     * ({@link #round16}), so converting an operand to {@code half} loses nothing and the products are exact in fp32. A
     * backend with a faster 16-bit GEMM may then run it (only the summation order changes); every other kernel is this
     * one's. The default is {@code this}: the fp32 GEMM on such operands is already the right answer.
     *
     * @throws IllegalArgumentException unless {@code half} is BF16 or F16
     */
    default Kernels halfOperands(DType half) {
        if (half != DType.BF16 && half != DType.F16) throw new IllegalArgumentException("halfOperands takes BF16 or F16, not " + half);
        return this;
    }
}
