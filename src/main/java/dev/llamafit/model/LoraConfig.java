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
 * @param targets  keys of {@link LinearModule}s; kept in block order
 * @param useRslora scale by alpha/√r instead of alpha/r
 */
public record LoraConfig(int rank, double alpha, double dropout, List<String> targets, boolean useRslora) {
    public LoraConfig {
        if (rank < 1) throw new IllegalArgumentException("--lora-r must be >= 1, got " + rank);
        if (!(alpha > 0)) throw new IllegalArgumentException("--lora-alpha must be > 0, got " + alpha);
        if (!(dropout >= 0 && dropout < 1)) throw new IllegalArgumentException("--lora-dropout must be in [0, 1), got " + dropout);
        if (targets == null || targets.isEmpty()) throw new IllegalArgumentException("--lora-targets needs at least one module");
        for (String t : targets)
            if (LinearModule.byKey(t).isEmpty())
                throw new IllegalArgumentException("unknown LoRA target '" + t + "' (LLaMA linear layers: "
                        + String.join(", ", LinearModule.keys()) + ", or " + ALL_LINEAR_SPEC + ")");
        // Block order, no duplicates: the order adapters are laid out, saved and listed in.
        targets = LinearModule.ALL.stream().map(LinearModule::key).filter(Set.copyOf(targets)::contains).toList();
    }

    /** PEFT's name for every linear layer inside the blocks (it excludes the LM head). */
    public static final String ALL_LINEAR_SPEC = "all-linear";

    /** Parses a comma list of module keys (q_proj,v_proj) or "all-linear". */
    public static List<String> parseTargets(String spec) {
        if (spec.equals(ALL_LINEAR_SPEC)) return LinearModule.keys();
        return List.of(spec.split(",")).stream().map(String::trim).filter(s -> !s.isEmpty()).toList();
    }

    /** The targeted modules, in block order. */
    public List<LinearModule> modules() {
        return targets.stream().map(t -> LinearModule.byKey(t).orElseThrow()).toList();
    }

    /** The factor applied to B·A. */
    public double scale() { return useRslora ? alpha / Math.sqrt(rank) : alpha / rank; }

    public boolean targets(String module) { return targets.contains(module); }

    public boolean targets(LinearModule module) { return targets.contains(module.key()); }
}
