// The "seed" rule of thumb for fine-tuning memory, reproduced as stated so it can be shown beside the component model.
package dev.llamafit.plan.pytorch;

import dev.llamafit.model.LlamaConfig;

/**
 * The rule of thumb: params × bytes × 4 (weights + gradients + two optimizer states, all at the weight's width)
 * + 1.3 GB (CUDA context and overhead) + (hidden + intermediate) × context × layers × bytes per sample. Its classic
 * example, LLaMA-6B in int8 (LLaMA-7B's shape, "6B" parameters): 6 + 6 + 12 + 1.3 = 25.3 GB, (4096 + 11008) × 2048 × 32
 * = 0.99 GB per 2048-token sample, batch ≈ 50 on an 80 GB A100: (74.5 − 25.3) / 0.99 = 49.7, where 74.5 is 80·10⁹ bytes
 * written in GiB — the rule mixes decimal and binary units.
 *
 * @param weightsGb    params × bytes
 * @param gradientsGb  params × bytes
 * @param optimizerGb  2 × params × bytes
 * @param overheadGb   1.3
 * @param perSampleGb  (hidden + intermediate) × context × layers × bytes
 */
public record FormulaSeed(double weightsGb, double gradientsGb, double optimizerGb, double overheadGb, double perSampleGb) {
    public static final double OVERHEAD_GB = 1.3;

    public static FormulaSeed of(double params, double bytesPerParam, LlamaConfig c, int context) {
        double w = params * bytesPerParam / 1e9;
        double perSample = (double) (c.hiddenSize() + c.intermediateSize()) * context * c.numLayers() * bytesPerParam / 1e9;
        return new FormulaSeed(w, w, 2 * w, OVERHEAD_GB, perSample);
    }

    public double fixedGb() { return weightsGb + gradientsGb + optimizerGb + overheadGb; }

    /** The rule's batch: its free memory over its per-sample cost, with the device size read as the rule does. */
    public int batch(double deviceGb) { return (int) Math.floor((deviceGb - fixedGb()) / perSampleGb); }

    /** A card sold as "X GB" read as X·10⁹ bytes in GiB (80 -> 74.5), as the rule's example does. */
    public static double asRuleReadsIt(double soldGb) { return soldGb * 1e9 / (1L << 30); }

    /** Why the rule and the component model differ. */
    public static String differences() {
        return String.join("\n",
                "- units: the rule adds GB (10^9) and reads the card's size in GiB; the component model works in bytes and prints GiB",
                "- gradients and optimizer states at the weights' width: int8 weights cannot be trained directly (no int8 gradients);",
                "  a quantised base trains adapters (LoRA/QLoRA), and Adam keeps fp32 states (8 B per trainable parameter)",
                "- activations: the rule counts (hidden + intermediate) per token per layer at 1 byte; a LLaMA block saves",
                "  about 2C + H·D + 2·KvH·D + 3F (+ C, H·D, C, F for trainable linears) elements, at 2 bytes in bf16 (gated MLP: 3-4 F-wide tensors)",
                "- missing terms: eager attention's B·H·T² probabilities, the logits and loss (N·V in fp32, large for V = 128k),",
                "  checkpointing, ZeRO sharding, the allocator's cache, and the phase structure (peak, not sum)");
    }
}
