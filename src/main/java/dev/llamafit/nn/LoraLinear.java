// A LoRA adapter (Hu et al. 2021) beside a frozen projection: y = x·Wᵀ + b + scale·(dropout(x)·Aᵀ)·Bᵀ, forward and backward.
package dev.llamafit.nn;

import static dev.llamafit.tensor.Tensor.F32_LE;

import java.lang.foreign.MemorySegment;

import dev.llamafit.kernels.Kernels;
import dev.llamafit.kernels.Parallel;
import dev.llamafit.tensor.DType;
import dev.llamafit.tensor.Tensor;

/**
 * The low-rank update of one linear layer, with PEFT's conventions: A [r, in], B [out, r], scale = alpha/r (or
 * alpha/√r with rsLoRA), inverted dropout on the adapter's input only. The base is any {@link Projection} (fp32 today,
 * a quantised weight under QLoRA): it is read, never differentiated with respect to its weight, so a frozen base has
 * no gradient buffer (DESIGN §5).
 *
 * <p>Dropout masks are not stored: element i of a [rows, in] input is kept iff {@link #keep}(seed, i, p), a
 * counter-based hash, so backward (and a gradient-checkpointing recompute) regenerates the same mask from the seed.
 */
public final class LoraLinear {
    private final Projection base; // [out, in] frozen
    private final Tensor a;      // [r, in]
    private final Tensor b;      // [out, r]
    private final int rank;      // r
    private final float scale;
    private final float dropout; // p in [0, 1)
    private final DType half;    // mixed precision: dropout(x), u and du rounded to it; null = fp32

    public LoraLinear(Projection base, Tensor a, Tensor b, double scale, double dropout) { this(base, a, b, scale, dropout, null); }

    /**
     * @param a    [r, in]: F32, or under mixed precision the 16-bit working copy of the fp32 master (bf16-pure: the
     *             BF16 adapter itself)
     * @param b    [out, r], the same type as a
     * @param half BF16 or F16 under mixed precision: the adapter's 16-bit tensors as autocast holds them (its dropped-out
     *             input, u, and u's gradient) are rounded to it; null in fp32
     */
    public LoraLinear(Projection base, Tensor a, Tensor b, double scale, double dropout, DType half) {
        this.base = base;
        this.half = half;
        this.rank = Math.toIntExact(a.shape().dim(0));
        if (!Linear.isDenseType(a.dtype()) || a.shape().rank() != 2 || a.shape().dim(1) != base.in())
            throw new IllegalArgumentException("lora_A must be [r, " + base.in() + "] in F32, BF16 or F16, got " + a);
        if (b.dtype() != a.dtype() || b.shape().rank() != 2 || b.shape().dim(0) != base.out() || b.shape().dim(1) != rank)
            throw new IllegalArgumentException("lora_B must be " + a.dtype() + " [" + base.out() + ", " + rank + "], got " + b);
        if (!(dropout >= 0 && dropout < 1)) throw new IllegalArgumentException("dropout must be in [0, 1), got " + dropout);
        this.a = a;
        this.b = b;
        this.scale = (float) scale;
        this.dropout = (float) dropout;
    }

    public Projection base() { return base; }

    public int rank() { return rank; }

    public float dropout() { return dropout; }

    /** Whether element {@code index} survives dropout p under {@code seed}: SplitMix64 of (seed, index), uniform in [0, 1). */
    public static boolean keep(long seed, long index, float p) {
        long z = seed + (index + 1) * 0x9E3779B97F4A7C15L;
        z = (z ^ (z >>> 30)) * 0xBF58476D1CE4E5B9L;
        z = (z ^ (z >>> 27)) * 0x94D049BB133111EBL;
        z ^= z >>> 31;
        return (z >>> 40) * 0x1.0p-24f >= p;
    }

    /**
     * The adapter's part of the forward; y already holds the base output x·Wᵀ + b (e.g. from a fused q/k/v GEMM).
     * y[rows, out] += scale·u·Bᵀ with u = xd·Aᵀ and xd = dropout(x).
     *
     * @param x     [rows, in] at xOff
     * @param xd    [rows, in], written with dropout(x) when dropout is applied; unused (may be null) otherwise
     * @param u     [rows, r], written: saved for dB
     * @param y     [rows, out] at yOff, added to
     * @param train apply dropout (training); false in evaluation, or when p = 0 (then x itself is the adapter input)
     * @param seed  dropout mask seed of this layer in this step
     */
    public void forwardAdapter(Kernels k, MemorySegment x, long xOff, int rows, MemorySegment xd, MemorySegment u,
                               MemorySegment y, long yOff, boolean train, long seed) {
        int in = base.in(), out = base.out();
        MemorySegment src = x;
        long srcOff = xOff;
        if (train && dropout > 0) {
            float p = dropout, inv = 1f / (1f - p);
            Parallel.forRange(rows, 16, (from, to) -> {
                for (long i = (long) from * in; i < (long) to * in; i++)
                    xd.setAtIndex(F32_LE, i, keep(seed, i, p) ? x.getAtIndex(F32_LE, xOff + i) * inv : 0f);
            });
            src = xd;
            srcOff = 0;
            if (half != null) k.round16(xd, 0, (long) rows * in, half);
        }
        // u[rows, r] = xd · Aᵀ ; y[rows, out] += scale · u · Bᵀ
        k.gemm(false, true, rows, rank, in, 1f, src, DType.F32, srcOff, in, a.segment(), a.dtype(), 0, in, 0f, u, 0, rank);
        if (half != null) k.round16(u, 0, (long) rows * rank, half);
        k.gemm(false, true, rows, out, rank, scale, u, DType.F32, 0, rank, b.segment(), b.dtype(), 0, rank, 1f, y, yOff, out);
    }

    /** Base and adapter: y[rows, out] = x·Wᵀ + b + scale·(dropout(x)·Aᵀ)·Bᵀ (see {@link #forwardAdapter}). */
    public void forward(Kernels k, MemorySegment x, long xOff, int rows, MemorySegment xd, MemorySegment u,
                        MemorySegment y, long yOff, boolean train, long seed) {
        base.forward(k, x, xOff, rows, y, yOff);
        forwardAdapter(k, x, xOff, rows, xd, u, y, yOff, train, seed);
    }

    /**
     * Backward of {@link #forward} with the base frozen:
     * <pre>
     *   dB += scale·dYᵀ·u          [out, r]
     *   du  = scale·dY·B           [rows, r]
     *   dA += duᵀ·xd               [r, in]
     *   dX  = dY·W + mask ⊙ (du·A) / (1 − p)      (dY·W overwrites dX, or adds with accumulateDx)
     * </pre>
     *
     * @param xd        [rows, in]: dropout(x) saved by forward, or x itself when p = 0
     * @param u         [rows, r] saved by forward
     * @param dY        [rows, out] at dYOff
     * @param dX        [rows, in] at dXOff, or null when the input needs no gradient
     * @param du        [rows, r] scratch
     * @param dxScratch [rows, in] scratch, used only when p > 0 (the masked term cannot be added by the GEMM)
     * @param dA        [r, in], accumulated: F32, or BF16 under bf16-pure (then with {@code gradScratch})
     * @param dB        [out, r], accumulated, the same type as dA
     * @param gradScratch fp32 scratch of at least max(r·in, out·r) floats for BF16 gradients ({@link WeightGradient}), else null
     */
    /** {@link #backward} with F32 adapter gradients. */
    public void backward(Kernels k, MemorySegment xd, MemorySegment u, MemorySegment dY, long dYOff, int rows,
                         MemorySegment dX, long dXOff, boolean accumulateDx, MemorySegment du, MemorySegment dxScratch,
                         Tensor dA, Tensor dB, long seed) {
        backward(k, xd, u, dY, dYOff, rows, dX, dXOff, accumulateDx, du, dxScratch, dA, dB, seed, null);
    }

    public void backward(Kernels k, MemorySegment xd, MemorySegment u, MemorySegment dY, long dYOff, int rows,
                         MemorySegment dX, long dXOff, boolean accumulateDx, MemorySegment du, MemorySegment dxScratch,
                         Tensor dA, Tensor dB, long seed, MemorySegment gradScratch) {
        int in = base.in(), out = base.out();
        // The adapter's gradients read xd before the base writes dX, so that dX may overwrite the input (the block reuses
        // h's buffer for dH, and without dropout xd is h).
        WeightGradient.addProduct(k, true, false, out, rank, rows, scale, dY, dYOff, out, u, 0, rank, dB, gradScratch);
        k.gemm(false, false, rows, rank, out, scale, dY, DType.F32, dYOff, out, b.segment(), b.dtype(), 0, rank, 0f, du, 0, rank);
        if (half != null) k.round16(du, 0, (long) rows * rank, half);
        WeightGradient.addProduct(k, true, false, rank, in, rows, 1f, du, 0, rank, xd, 0, in, dA, gradScratch);
        if (dX == null) return;
        base.backward(k, null, 0, dY, dYOff, rows, dX, dXOff, accumulateDx, null, null);
        if (dropout == 0) {
            k.gemm(false, false, rows, in, rank, 1f, du, DType.F32, 0, rank, a.segment(), a.dtype(), 0, in, 1f, dX, dXOff, in);
            return;
        }
        // dropout'(x) is the mask scaled by 1/(1 − p): regenerate it from the seed, as forward drew it.
        k.gemm(false, false, rows, in, rank, 1f, du, DType.F32, 0, rank, a.segment(), a.dtype(), 0, in, 0f, dxScratch, 0, in);
        float p = dropout, inv = 1f / (1f - p);
        Parallel.forRange(rows, 16, (from, to) -> {
            for (long i = (long) from * in; i < (long) to * in; i++)
                if (keep(seed, i, p))
                    dX.setAtIndex(F32_LE, dXOff + i, dX.getAtIndex(F32_LE, dXOff + i) + dxScratch.getAtIndex(F32_LE, i) * inv);
        });
    }
}
