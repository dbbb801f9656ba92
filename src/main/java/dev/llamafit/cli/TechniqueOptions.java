// The technique flags `train` and `plan` share (a picocli mixin): method, adapters, optimizer, checkpointing, micro-batch.
package dev.llamafit.cli;

import dev.llamafit.model.LinearModule;
import dev.llamafit.model.LoraConfig;
import dev.llamafit.model.Technique;
import picocli.CommandLine.Option;

/**
 * What both commands take. Each command adds its own {@code --method} and {@code --optimizer} (their values differ:
 * {@code train} runs full|lora with adamw|adamw8bit|sgd; {@code plan} also plans qlora and adamw8bit for PyTorch) by subclassing;
 * base dtype and parallelism are {@code plan}'s alone ({@link PlanCommand}); each has its own {@code --precision} help. LoRA settings that do not
 * change memory (alpha, rsLoRA, a starting adapter) stay with {@code train}.
 */
abstract class TechniqueOptions {
    static final int DEFAULT_LORA_RANK = 8;

    @Option(names = "--lora-r", description = "LoRA rank; 0 = full fine-tuning (default with --method lora: " + DEFAULT_LORA_RANK + ").") Integer loraR;
    @Option(names = "--lora-targets", defaultValue = LinearModule.DEFAULT_LORA_TARGETS, description = "Adapted layers: a comma list of the block's linear layers "
            + "(${COMPLETION-CANDIDATES}), or all-linear (default: ${DEFAULT-VALUE}).", completionCandidates = LinearModuleKeys.class) String loraTargets;
    @Option(names = "--lora-dropout", defaultValue = "0", description = "Dropout on the adapters' input (default: ${DEFAULT-VALUE}).") double loraDropout;
    @Option(names = "--gradient-checkpointing", description = "Keep only block inputs; recompute each block in backward.") boolean gradientCheckpointing;
    @Option(names = "--checkpoint-every", defaultValue = "1", description = "With --gradient-checkpointing: checkpoint every N-th block (default: ${DEFAULT-VALUE}).") int checkpointEvery;
    @Option(names = "--batch-size", defaultValue = "4", description = "Sequences per micro-batch (default: ${DEFAULT-VALUE}).") int batchSize;
    @Option(names = "--seq-len", defaultValue = "256", description = "Tokens per sequence (default: ${DEFAULT-VALUE}).") int seqLen;

    /** The keys of the seven linear modules, for the --lora-targets help. */
    static final class LinearModuleKeys implements Iterable<String> {
        @Override public java.util.Iterator<String> iterator() { return LinearModule.keys().iterator(); }
    }

    /** The --method value, or null when not given. */
    abstract String methodFlag();

    /** The --optimizer value. */
    abstract String optimizerFlag();

    /** --method when given, else lora exactly when a rank above 0 is given. */
    Technique.Method method() {
        if (loraR != null && loraR < 0) throw new IllegalArgumentException("--lora-r must be >= 0, got " + loraR);
        String method = methodFlag();
        if (method == null) return loraR != null && loraR > 0 ? Technique.Method.LORA : Technique.Method.FULL;
        Technique.Method m = Technique.parse(Technique.Method.class, "--method", method);
        if (m == Technique.Method.FULL && loraR != null && loraR > 0)
            throw new IllegalArgumentException("--lora-r " + loraR + " trains adapters but --method is full: drop one of them");
        if (m != Technique.Method.FULL && loraR != null && loraR == 0)
            throw new IllegalArgumentException("--method " + method + " needs a LoRA rank >= 1, got --lora-r 0");
        return m;
    }

    int loraRank() { return method() == Technique.Method.FULL ? 0 : loraR != null ? loraR : DEFAULT_LORA_RANK; }

    /**
     * The technique these flags describe, with the precision and base storage the caller has (fp32 and null for
     * {@code train}). Throws IllegalArgumentException for invalid combinations; the commands turn that into a usage error.
     */
    Technique technique(Technique.Precision precision, Technique.BaseDtype base, double loraAlpha, boolean useRslora, int gradAccum) {
        Technique.Method m = method();
        LoraConfig lora = m == Technique.Method.FULL ? null
                : new LoraConfig(loraRank(), loraAlpha, loraDropout, LoraConfig.parseTargets(loraTargets), useRslora);
        return new Technique(m, lora, precision, base, Technique.parse(Technique.Optimizer.class, "--optimizer", optimizerFlag()),
                gradientCheckpointing, checkpointEvery, gradAccum);
    }

    /** `train`'s: what the engine runs. */
    static final class Train extends TechniqueOptions {
        @Option(names = "--method", description = "full, lora, or qlora (lora on an nf4 base, double-quantised unless --no-double-quant)"
                + " (default: lora when --lora-r > 0 is given, else full).") String method;
        @Option(names = "--optimizer", defaultValue = "adamw", description = "adamw (AdamW), adamw8bit (AdamW with 8-bit block-wise quantised states, as bitsandbytes) or sgd (momentum 0.9) (default: ${DEFAULT-VALUE}).") String optimizer;
        @Option(names = "--precision", defaultValue = "fp32", description = "fp32; bf16 or fp16: 16-bit GEMM operands and saved activations "
                + "with fp32 master weights, gradients and optimizer state, as PyTorch's autocast (fp16 adds dynamic loss scaling); "
                + "bf16-pure: the same activations, and the trained matrices, their gradients and AdamW's states all in bf16 "
                + "with no fp32 masters, as torchtune's full bf16 (norm/bias vectors stay fp32) (default: ${DEFAULT-VALUE}).") String precision;

        @Override String methodFlag() { return method; }

        Technique.Precision precision() { return Technique.parse(Technique.Precision.class, "--precision", precision); }

        @Option(names = "--attention", paramLabel = "eager|flash", description = AttentionOption.DESCRIPTION) String attention;

        @Override String optimizerFlag() { return optimizer; }
    }

    /** `plan`'s: the engine's values, and what only the PyTorch runtime plans. */
    static final class Plan extends TechniqueOptions {
        @Option(names = "--method", description = "full, lora, or qlora (pytorch runtime) (default: lora when --lora-r > 0 is given, else full).") String method;
        @Option(names = "--optimizer", defaultValue = "adamw", description = "adamw (AdamW), sgd (momentum 0.9), or adamw8bit (8-bit states, bitsandbytes' AdamW8bit) (default: ${DEFAULT-VALUE}).") String optimizer;

        @Override String methodFlag() { return method; }

        @Override String optimizerFlag() { return optimizer; }
    }
}
