// LoRA settings (Hu et al. 2021) with PEFT's conventions: which linear layers get adapters, rank, scaling, dropout.
package dev.llamafit.model;

import java.util.List;
import java.util.Set;

/**
 * A low-rank adapter ΔW = scale·B·A on each targeted linear layer, with A [r, in] and B [out, r]. PEFT's
 * scaling is alpha / r, or alpha / √r with rsLoRA (Kalajdzievski 2023). Dropout applies to the adapter's input.
 * Lives in {@code model} (not {@code peft}) because the training step and layouts need it; the PEFT file format
 * and merging build on it in {@code peft} and {@code io}.
 *
 * @param rank     r
 * @param alpha    lora_alpha
 * @param dropout  lora_dropout, in [0, 1)
 * @param targets  module names: q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj
 * @param useRslora scale by alpha/√r instead of alpha/r
 */
public record LoraConfig(int rank, double alpha, double dropout, List<String> targets, boolean useRslora) {
    /** Every linear layer inside the blocks (PEFT's "all-linear" for LLaMA, which excludes the LM head). */
    public static final List<String> ALL_LINEAR = List.of("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj");

    public LoraConfig {
        if (rank < 1) throw new IllegalArgumentException("--lora-r must be >= 1, got " + rank);
        if (!(alpha > 0)) throw new IllegalArgumentException("--lora-alpha must be > 0, got " + alpha);
        if (!(dropout >= 0 && dropout < 1)) throw new IllegalArgumentException("--lora-dropout must be in [0, 1), got " + dropout);
        if (targets == null || targets.isEmpty()) throw new IllegalArgumentException("--lora-targets needs at least one module");
        targets = List.copyOf(Set.copyOf(targets)).stream().sorted((a, b) -> ALL_LINEAR.indexOf(a) - ALL_LINEAR.indexOf(b)).toList();
        for (String t : targets)
            if (!ALL_LINEAR.contains(t))
                throw new IllegalArgumentException("unknown LoRA target '" + t + "' (LLaMA linear layers: " + String.join(", ", ALL_LINEAR) + ", or all-linear)");
    }

    /** Parses "q_proj,v_proj" or "all-linear". */
    public static List<String> parseTargets(String spec) {
        if (spec.equals("all-linear")) return ALL_LINEAR;
        return List.of(spec.split(",")).stream().map(String::trim).filter(s -> !s.isEmpty()).toList();
    }

    /** The factor applied to B·A. */
    public double scale() { return useRslora ? alpha / Math.sqrt(rank) : alpha / rank; }

    public boolean targets(String module) { return targets.contains(module); }
}
