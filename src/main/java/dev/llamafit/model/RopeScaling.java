// RoPE frequency scaling variants found in config.json ("rope_scaling").
package dev.llamafit.model;

/** The {@code rope_scaling} entry of a config: none, linear position interpolation, or Llama 3's scheme. */
public sealed interface RopeScaling {
    /** No scaling. */
    record None() implements RopeScaling {}

    /** Linear position interpolation (Chen et al. 2023): positions divided by {@code factor}. */
    record Linear(double factor) implements RopeScaling {
        public Linear {
            if (!(factor > 0) || Double.isInfinite(factor)) throw new IllegalArgumentException("rope_scaling.factor must be > 0, got " + factor);
        }
    }

    /**
     * Llama 3.1's frequency-dependent scaling: long wavelengths divided by {@code factor}, short ones kept,
     * and a smooth interpolation between {@code original_max_position_embeddings / low_freq_factor} and
     * {@code original_max_position_embeddings / high_freq_factor}.
     */
    record Llama3(double factor, double lowFreqFactor, double highFreqFactor, int originalMaxPositions) implements RopeScaling {
        public Llama3 {
            if (!(factor > 0) || Double.isInfinite(factor)) throw new IllegalArgumentException("rope_scaling.factor must be > 0, got " + factor);
            if (!(lowFreqFactor > 0) || Double.isInfinite(highFreqFactor))
                throw new IllegalArgumentException("rope_scaling.low_freq_factor must be > 0 and high_freq_factor finite, got "
                        + lowFreqFactor + " and " + highFreqFactor);
            if (!(highFreqFactor > lowFreqFactor))
                throw new IllegalArgumentException("rope_scaling.high_freq_factor (" + highFreqFactor
                        + ") must exceed low_freq_factor (" + lowFreqFactor + ")");
            if (originalMaxPositions <= 0)
                throw new IllegalArgumentException("rope_scaling.original_max_position_embeddings must be > 0");
        }
    }
}
