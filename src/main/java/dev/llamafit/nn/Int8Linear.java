// A frozen LLM.int8() projection: int8 GEMM of the regular columns plus the outlier columns in fp32, backward dX only.
package dev.llamafit.nn;

import static dev.llamafit.tensor.Tensor.F32_LE;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import java.util.Map;

import dev.llamafit.kernels.Kernels;
import dev.llamafit.kernels.OneDnnKernels;
import dev.llamafit.kernels.PackSource;
import dev.llamafit.kernels.Parallel;
import dev.llamafit.quant.Int8;
import dev.llamafit.tensor.DType;
import dev.llamafit.tensor.Tensor;

/**
 * A weight stored as bitsandbytes' Linear8bitLt stores it (codes {@code CB} I8 [out, in] and per-row scales {@code SCB}
 * F32 [out], {@link Int8}), used as LLM.int8() does:
 *
 * <ol>
 * <li>the columns of X holding some |x| ≥ threshold are outliers ({@link Int8#outlierColumns});
 * <li>every other column is quantised per row (token) by absmax ({@link Int8#quantizeRows}) and multiplied with the codes by
 *     the int8 GEMM ({@link Kernels#gemmI8}, int32 sums), then dequantised: {@code y = C · (absmax_x/127) · (SCB/127)};
 * <li>the outlier columns of X (fp32) are multiplied with the matching columns of W dequantised, 64 at a time, and added.
 * </ol>
 * A threshold of 0 or less (or +∞) turns step 1 off: plain vector-wise int8. Backward is dX = dY·W with W dequantised a
 * block of {@link #BACKWARD_BLOCK} columns at a time (on oneDNN's bf16 view, under mixed precision: slabs of W rounded to
 * bf16 and its bf16 matmul, {@code kernels.Bf16SourceGemm}); there is no weight gradient (the base is frozen).
 *
 * <p>Workspace, outside the ledger like the GEMM kernels' packing buffers: per thread, the codes of X (rows·in bytes), one
 * float per row, and a block of W (out·64 floats) with its X columns; grown on demand and kept by the thread. The int32
 * products are written straight into y (int and float have the same size) and converted in place.
 */
public final class Int8Linear implements Projection {
    private static final ValueLayout.OfInt I32_LE = ValueLayout.JAVA_INT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);

    /** Columns of W dequantised per step of the backward pass and of the outlier product. */
    static final int BACKWARD_BLOCK = 64;

    private final Tensor codes; // I8 [out, in]
    private final Tensor scb;   // F32 [out]
    private final Tensor bias;  // F32 [out] or null
    private final float threshold;
    private final int in, out;

    /**
     * @param threshold LLM.int8()'s outlier threshold (6.0 in the paper and transformers); 0 or less, or +∞, for none
     * @throws IllegalArgumentException for shapes or dtypes that do not match, or a NaN threshold
     */
    public Int8Linear(Tensor codes, Tensor scb, Tensor bias, float threshold) {
        if (codes.dtype() != DType.I8 || codes.shape().rank() != 2)
            throw new IllegalArgumentException("Int8Linear needs I8 [out, in] codes, got " + codes);
        this.out = Math.toIntExact(codes.shape().dim(0));
        this.in = Math.toIntExact(codes.shape().dim(1));
        if (in > Kernels.MAX_I8_K) throw new IllegalArgumentException("int8 weight " + codes + " is too wide for int32 sums");
        if (scb.dtype() != DType.F32 || scb.elements() != out)
            throw new IllegalArgumentException("SCB " + scb + " does not match codes " + codes + " (F32 [out] expected)");
        if (bias != null && (bias.dtype() != DType.F32 || bias.elements() != out))
            throw new IllegalArgumentException("bias " + bias + " does not match weight " + codes);
        Int8.thresholdOn(threshold); // rejects NaN
        this.codes = codes;
        this.scb = scb;
        this.bias = bias;
        this.threshold = threshold;
    }

    /**
     * The projection of module P from the weight map: {@code weightKey} = "P.weight" (I8), "P.SCB" (F32), and "P.bias"
     * (F32) when the map has one.
     *
     * @throws IllegalArgumentException when P.weight or P.SCB is missing or malformed
     */
    public static Int8Linear of(Map<String, Tensor> w, String weightKey, float threshold) {
        String p = Int8.modulePrefix(weightKey);
        Tensor codes = w.get(weightKey), scb = w.get(p + "." + Int8.SCB);
        if (codes == null || scb == null)
            throw new IllegalArgumentException("int8 module " + p + " needs " + weightKey + " and " + p + "." + Int8.SCB);
        return new Int8Linear(codes, scb, w.get(p + ".bias"), threshold);
    }

    @Override
    public int in() { return in; }

    @Override
    public int out() { return out; }

    public float threshold() { return threshold; }

    public Tensor codes() { return codes; }

    public Tensor scb() { return scb; }

    /** All columns at once: the int8 GEMM runs over the pool (one call), the rest on the calling thread. */
    @Override
    public void forward(Kernels k, MemorySegment x, long xOff, int rows, MemorySegment y, long yOff) {
        forwardColumns(k, x, xOff, rows, 0, out, y, yOff);
    }

    @Override
    public void forwardColumns(Kernels k, MemorySegment x, long xOff, int rows, int from, int to, MemorySegment y, long yOff) {
        if (from < 0 || to > out || from > to) throw new IllegalArgumentException("columns [" + from + ", " + to + ") of " + out);
        if (rows == 0 || to == from) return;
        forwardColumns(k, x, xOff, rows, from, to, y, yOff, quantise(x, xOff, rows, in, threshold));
    }

    /** X quantised for the int8 product: its outlier columns, their count, its codes [rows, in] and per-row absmax. */
    private record QuantisedX(boolean[] outlier, int outliers, MemorySegment codes, float[] absmax) {}

    /** X's outliers found and X quantised into the calling thread's workspace. */
    private static QuantisedX quantise(MemorySegment x, long xOff, int rows, int in, float threshold) {
        Scratch s = SCRATCH.get();
        s.ensure(rows, in);
        int outliers = Int8.outlierColumns(x, xOff, rows, in, threshold, s.outlier);
        Int8.quantizeRows(x, xOff, rows, in, s.outlier, s.codes, 0, s.absmax);
        return new QuantisedX(s.outlier, outliers, s.codes, s.absmax);
    }

    /**
     * {@link Projection#forwardFused} for int8 projections that share X and the threshold (q/k/v, gate/up): X is
     * quantised once, then the same column tasks as the general loop run on it, so the result has the same bits; false
     * (having done nothing) for any other set of projections.
     */
    static boolean forwardFused(Kernels k, MemorySegment x, long xOff, int rows, Projection[] ps, MemorySegment[] ys) {
        if (rows == 0 || !(ps[0] instanceof Int8Linear first)) return false;
        int total = 0;
        for (Projection p : ps) {
            if (!(p instanceof Int8Linear q) || q.in != first.in || Float.compare(q.threshold, first.threshold) != 0) return false;
            total += q.out;
        }
        QuantisedX qx = quantise(x, xOff, rows, first.in, first.threshold);
        Parallel.forRange(total, 64, (from, to) -> {
            int base = 0;
            for (int i = 0; i < ps.length; i++) {
                Int8Linear p = (Int8Linear) ps[i];
                int j0 = Math.max(from - base, 0), j1 = Math.min(to - base, p.out);
                if (j0 < j1) p.forwardColumns(k, x, xOff, rows, j0, j1, ys[i], 0, qx);
                base += p.out;
            }
        });
        return true;
    }

    private void forwardColumns(Kernels k, MemorySegment x, long xOff, int rows, int from, int to, MemorySegment y, long yOff,
                                QuantisedX qx) {
        int n = to - from;
        Scratch s = SCRATCH.get();
        int outliers = qx.outliers();
        // int32 sums straight into y's columns, then each converted in place to its float value.
        k.gemmI8(rows, n, in, qx.codes(), 0, in, codes.segment(), (long) from * in, in, y, yOff + from, out);
        MemorySegment sc = scb.segment();
        for (int r = 0; r < rows; r++) {
            float rs = qx.absmax()[r] * Int8.INV127;
            long row = yOff + (long) r * out;
            for (int j = from; j < to; j++) {
                int c = y.getAtIndex(I32_LE, row + j);
                y.setAtIndex(F32_LE, row + j, c * rs * (sc.getAtIndex(F32_LE, j) * Int8.INV127));
            }
        }
        if (outliers > 0) addOutliers(k, x, xOff, rows, from, to, y, yOff, s, qx.outlier());
        if (bias != null)
            for (int r = 0; r < rows; r++) k.add(y, yOff + (long) r * out + from, bias.segment(), from, n);
    }

    /** y[:, from..to) += X[:, O] · W[from..to, O]ᵀ over the outlier columns O, a block of them at a time, in fp32. */
    private void addOutliers(Kernels k, MemorySegment x, long xOff, int rows, int from, int to, MemorySegment y, long yOff,
                             Scratch s, boolean[] outlier) {
        int n = to - from, b = BACKWARD_BLOCK;
        int[] cols = new int[b];
        int c = 0;
        while (c < in) {
            int nb = 0;
            for (; c < in && nb < b; c++) if (outlier[c]) cols[nb++] = c;
            if (nb == 0) break;
            s.ensureOutlierBlock(rows, n, nb);
            for (int r = 0; r < rows; r++)
                for (int q = 0; q < nb; q++)
                    s.xo.setAtIndex(F32_LE, (long) r * nb + q, x.getAtIndex(F32_LE, xOff + (long) r * in + cols[q]));
            MemorySegment cb = codes.segment(), sc = scb.segment();
            for (int j = 0; j < n; j++) {
                float sj = sc.getAtIndex(F32_LE, from + j);
                long row = (long) (from + j) * in;
                for (int q = 0; q < nb; q++)
                    s.wo.setAtIndex(F32_LE, (long) j * nb + q, Int8.dequantize(cb.get(ValueLayout.JAVA_BYTE, row + cols[q]), sj));
            }
            k.gemm(false, true, rows, n, nb, 1f, s.xo, 0, nb, s.wo, 0, nb, 1f, y, yOff + from, out);
        }
    }

    /**
     * dX = dY·W, W dequantised {@link #BACKWARD_BLOCK} columns at a time (each block of dX columns is one GEMM over all of
     * k = out, written once), the blocks split over the pool; dBias += Σ_rows dY.
     *
     * @throws IllegalArgumentException if {@code dWeight} is not null: an int8 base is frozen
     */
    @Override
    public void backward(Kernels k, MemorySegment x, long xOff, MemorySegment dY, long dYOff, int rows,
                         MemorySegment dX, long dXOff, boolean accumulateDx, Tensor dWeight, Tensor dBias, MemorySegment gradScratch) {
        if (dWeight != null) throw new IllegalArgumentException("an int8 weight is frozen: it has no gradient (" + codes.name() + ")");
        if (dX != null && rows > 0 && k instanceof OneDnnKernels o && o.bf16Operands()) {
            // Mixed precision on oneDNN's bf16 view: slabs of the dequantised W rounded to bf16 and its bf16 matmul
            // (kernels.Bf16SourceGemm), as for NF4; fp32 runs keep the exact blocked path below.
            o.gemm(false, rows, in, out, 1f, dY, dYOff, out, (PackSource) this::readDequantised, 0, in, accumulateDx ? 1f : 0f, dX, dXOff, in);
        } else if (dX != null && rows > 0) {
            int blocks = (in + BACKWARD_BLOCK - 1) / BACKWARD_BLOCK;
            MemorySegment cb = codes.segment(), sc = scb.segment();
            Parallel.forRange(blocks, 1, (b0, b1) -> {
                Scratch s = SCRATCH.get();
                for (int b = b0; b < b1; b++) {
                    int c0 = b * BACKWARD_BLOCK, c1 = Math.min(in, c0 + BACKWARD_BLOCK), w = c1 - c0;
                    s.ensureWeightBlock(out, w);
                    Int8.dequantizeBlock(cb, sc, in, 0, out, c0, c1, s.wo, 0, w);
                    k.gemm(false, false, rows, w, out, 1f, dY, dYOff, out, s.wo, 0, w, accumulateDx ? 1f : 0f, dX, dXOff + c0, in);
                }
            });
        }
        if (dBias != null)
            for (int r = 0; r < rows; r++) k.add(dBias.segment(), 0, dY, dYOff + (long) r * out, out);
    }

    /** W's dequantised values ({@link Int8#dequantize}), element by element in row-major order: a GEMM pack source. */
    private void readDequantised(long index, int count, float[] dst, int off) {
        MemorySegment cb = codes.segment(), sc = scb.segment();
        long i = index, end = index + count;
        while (i < end) {
            int r = (int) (i / in);
            long stop = Math.min(end, (long) (r + 1) * in);
            float s = sc.getAtIndex(F32_LE, r);
            for (; i < stop; i++) dst[off++] = Int8.dequantize(cb.get(ValueLayout.JAVA_BYTE, i), s);
        }
    }

    /** Per-thread workspace, grown to the largest call seen (see the class comment). */
    private static final class Scratch {
        boolean[] outlier = new boolean[0];
        float[] absmax = new float[0];
        MemorySegment codes = MemorySegment.NULL, xo = MemorySegment.NULL, wo = MemorySegment.NULL;

        void ensure(int rows, int in) {
            if (outlier.length < in) outlier = new boolean[in];
            if (absmax.length < rows) absmax = new float[rows];
            codes = grow(codes, (long) rows * in);
        }

        void ensureOutlierBlock(int rows, int n, int nb) {
            xo = grow(xo, 4L * rows * nb);
            wo = grow(wo, 4L * n * nb);
        }

        void ensureWeightBlock(int out, int w) { wo = grow(wo, 4L * out * w); }

        private static MemorySegment grow(MemorySegment s, long bytes) {
            return s.byteSize() >= bytes ? s : Arena.ofAuto().allocate(Math.max(bytes, 64), 64);
        }
    }

    private static final ThreadLocal<Scratch> SCRATCH = ThreadLocal.withInitial(Scratch::new);
}
