// Rotary position embedding tables (Su et al. 2021), rotate-half layout, with linear and Llama 3 scaling.
package dev.llamafit.nn;

import java.lang.foreign.MemorySegment;
import java.util.Arrays;

import dev.llamafit.kernels.Kernels;
import dev.llamafit.kernels.Parallel;
import dev.llamafit.memory.Category;
import dev.llamafit.memory.MemoryLedger;
import dev.llamafit.tensor.DType;
import dev.llamafit.tensor.Shape;
import dev.llamafit.tensor.Tensor;

/**
 * Precomputed cos/sin tables [maxPositions, D/2] for rotary embeddings. Frequencies are
 * {@code theta^(−2i/D)}; rope_scaling rescales them (Llama 3) or the positions (linear). Tables are
 * computed in double and rounded once to float.
 */
public final class Rope implements AutoCloseable {
    private final Tensor cos; // [P, D/2]
    private final Tensor sin; // [P, D/2]
    private final int headDim;
    private final int maxPositions;

    /**
     * @param invFrequencies D/2 inverse frequencies, already scaled (see {@link #inverseFrequencies})
     * @param positionScale  multiplier applied to positions (1 unless linear scaling)
     */
    public Rope(MemoryLedger ledger, int headDim, int maxPositions, double[] invFrequencies, double positionScale) {
        this.headDim = headDim;
        this.maxPositions = maxPositions;
        int half = headDim / 2;
        this.cos = Tensor.allocate(ledger, Category.WORKSPACE, "rope.cos", DType.F32, Shape.of(maxPositions, half));
        this.sin = Tensor.allocate(ledger, Category.WORKSPACE, "rope.sin", DType.F32, Shape.of(maxPositions, half));
        for (int p = 0; p < maxPositions; p++) {
            for (int i = 0; i < half; i++) {
                double angle = p * positionScale * invFrequencies[i];
                cos.setFloat((long) p * half + i, (float) Math.cos(angle));
                sin.setFloat((long) p * half + i, (float) Math.sin(angle));
            }
        }
    }

    /**
     * Inverse frequencies {@code 1 / theta^(2i/D)}, i &lt; D/2, with Llama 3's frequency-dependent scaling
     * when {@code llama3} is given: wavelengths longer than {@code original / lowFreqFactor} are divided by
     * {@code factor}, shorter than {@code original / highFreqFactor} kept, and those between interpolated.
     */
    public static double[] inverseFrequencies(int headDim, double theta, double factor, double lowFreqFactor,
                                              double highFreqFactor, int originalMaxPositions, boolean llama3) {
        int half = headDim / 2;
        double[] inv = new double[half];
        for (int i = 0; i < half; i++) {
            double f = 1.0 / Math.pow(theta, (2.0 * i) / headDim);
            if (llama3) {
                double wavelen = 2 * Math.PI / f;
                double lowWavelen = originalMaxPositions / lowFreqFactor;
                double highWavelen = originalMaxPositions / highFreqFactor;
                if (wavelen > lowWavelen) {
                    f = f / factor;
                } else if (wavelen >= highWavelen) {
                    double smooth = (originalMaxPositions / wavelen - lowFreqFactor) / (highFreqFactor - lowFreqFactor);
                    f = (1 - smooth) * f / factor + smooth * f;
                }
            }
            inv[i] = f;
        }
        return inv;
    }

    public int maxPositions() { return maxPositions; }

    /** Rotates the heads of x[rows, heads·D] (row stride ldx) in place, row r at position positions[r]. */
    public void apply(Kernels k, MemorySegment x, long xOff, int ldx, int rows, int heads, int[] positions) {
        for (int p : positions)
            if (p < 0 || p >= maxPositions)
                throw new IllegalArgumentException("position " + p + " outside the model's range 0.." + (maxPositions - 1));
        k.rope(x, xOff, ldx, rows, heads, headDim, cos.segment(), sin.segment(), positions);
    }

    /**
     * Backward of {@link #apply}: the rotation by θ is orthogonal, so its gradient is the rotation by −θ
     * ({@link Kernels#ropeBackward}). In place on dX[rows, heads·D] (row stride ldx), split over rows.
     */
    public void backward(Kernels k, MemorySegment dX, long dXOff, int ldx, int rows, int heads, int[] positions) {
        MemorySegment cs = cos.segment(), sn = sin.segment();
        Parallel.forRange(rows, 16, (from, to) -> k.ropeBackward(dX, dXOff + (long) from * ldx, ldx, to - from, heads, headDim,
                cs, sn, Arrays.copyOfRange(positions, from, to)));
    }

    /** Bytes of the cos/sin tables a Rope allocates under {@code workspace}, for layouts and the planner. */
    public static long tableBytes(int headDim, int maxPositions) {
        return Math.multiplyExact(2L * maxPositions, (long) (headDim / 2) * 4);
    }

    @Override
    public void close() {
        cos.close();
        sin.close();
    }
}
