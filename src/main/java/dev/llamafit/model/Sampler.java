// Next-token sampling: greedy, temperature, top-k and top-p (nucleus), seeded.
package dev.llamafit.model;

import java.util.Arrays;
import java.util.SplittableRandom;

import dev.llamafit.tensor.Tensor;

/**
 * Picks the next token from a row of logits. Temperature 0 is greedy (argmax, lowest id on ties).
 * Otherwise logits are divided by the temperature, restricted to the top-k ids (k &gt; 0) and then to the
 * smallest set whose probability reaches top-p (Holtzman et al. 2019), renormalised, and sampled with a
 * seeded generator, so a seed reproduces a run.
 */
public final class Sampler {
    private final double temperature;
    private final int topK;
    private final double topP;
    private final SplittableRandom random;

    public Sampler(double temperature, int topK, double topP, long seed) {
        if (!(temperature >= 0)) throw new IllegalArgumentException("temperature must be >= 0, got " + temperature);
        if (topK < 0) throw new IllegalArgumentException("top-k must be >= 0 (0 = off), got " + topK);
        if (!(topP > 0 && topP <= 1)) throw new IllegalArgumentException("top-p must be in (0, 1], got " + topP);
        this.temperature = temperature;
        this.topK = topK;
        this.topP = topP;
        this.random = new SplittableRandom(seed);
    }

    /** Samples from row {@code row} of logits [rows, V]. */
    public int sample(Tensor logits, int row) {
        int v = Math.toIntExact(logits.shape().dim(-1));
        float[] z = new float[v];
        long base = (long) row * v;
        for (int i = 0; i < v; i++) z[i] = logits.getFloat(base + i);
        return sample(z);
    }

    public int sample(float[] logits) {
        int v = logits.length;
        if (temperature == 0) return argmax(logits);
        int[] order = descending(logits);
        int keep = topK > 0 ? Math.min(topK, v) : v;
        double max = logits[order[0]] / temperature;
        double[] p = new double[keep];
        double sum = 0;
        for (int i = 0; i < keep; i++) {
            p[i] = Math.exp(logits[order[i]] / temperature - max);
            sum += p[i];
        }
        if (topP < 1) {
            double cum = 0;
            int cut = keep;
            for (int i = 0; i < keep; i++) {
                cum += p[i] / sum;
                if (cum >= topP) {
                    cut = i + 1;
                    break;
                }
            }
            keep = cut;
            sum = 0;
            for (int i = 0; i < keep; i++) sum += p[i];
        }
        double r = random.nextDouble() * sum;
        for (int i = 0; i < keep; i++) {
            r -= p[i];
            if (r < 0) return order[i];
        }
        return order[keep - 1];
    }

    /**
     * Ids by descending logit, ties by ascending id: one primitive sort of (order-preserving float bits, id)
     * packed into longs, instead of boxing 32k Integers per token.
     */
    static int[] descending(float[] logits) {
        long[] keys = new long[logits.length];
        for (int i = 0; i < logits.length; i++) {
            int bits = Float.floatToIntBits(-logits[i]);
            bits ^= (bits >> 31) & 0x7fffffff; // signed-int order now equals float order
            keys[i] = ((long) bits << 32) | i;
        }
        Arrays.sort(keys);
        int[] order = new int[keys.length];
        for (int i = 0; i < keys.length; i++) order[i] = (int) keys[i];
        return order;
    }

    public static int argmax(float[] z) {
        int best = 0;
        for (int i = 1; i < z.length; i++) if (z[i] > z[best]) best = i;
        return best;
    }
}
