// The technique flags `plan` and `train` share (one picocli mixin, one PlanOptions record): what changes memory.
package dev.llamafit.cli;

import java.util.List;

import dev.llamafit.model.LoraConfig;
import dev.llamafit.plan.PlanOptions;
import picocli.CommandLine.Option;

/**
 * Method, LoRA rank and targets, precision, base dtype, optimizer, checkpointing, micro-batch shape and data
 * parallelism. {@code plan} accepts every value; {@code train} accepts the same flags and the planner's validation
 * rejects what the llamafit runtime does not implement yet, naming it. LoRA settings that do not change memory
 * (alpha, dropout, rsLoRA, a starting adapter) stay with {@code train}.
 */
final class TechniqueOptions {
    static final int DEFAULT_LORA_RANK = 8;

    @Option(names = "--method", description = "full, lora or qlora (default: lora when --lora-r > 0 is given, else full).") String method;
    @Option(names = "--lora-r", description = "LoRA rank; 0 = full fine-tuning (default with --method lora|qlora: " + DEFAULT_LORA_RANK + ").") Integer loraR;
    @Option(names = "--lora-targets", defaultValue = "q_proj,v_proj", description = "Adapted layers: comma list of q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj, or all-linear (default: ${DEFAULT-VALUE}).") String loraTargets;
    @Option(names = "--lora-dropout", defaultValue = "0", description = "Dropout on the adapters' input (default: ${DEFAULT-VALUE}).") double loraDropout;
    @Option(names = "--precision", defaultValue = "fp32", description = "fp32, bf16, fp16 or bf16-pure (default: ${DEFAULT-VALUE}).") String precision;
    @Option(names = "--base-dtype", description = "Frozen LoRA base storage: fp32, bf16, fp16 (as loaded), int8 or nf4 (default: the compute dtype).") String baseDtype;
    @Option(names = "--optimizer", defaultValue = "adamw", description = "adamw (AdamW), adamw8bit or sgd (momentum 0.9) (default: ${DEFAULT-VALUE}).") String optimizer;
    @Option(names = "--gradient-checkpointing", description = "Keep only block inputs; recompute each block in backward.") boolean gradientCheckpointing;
    @Option(names = "--checkpoint-every", defaultValue = "1", description = "With --gradient-checkpointing: checkpoint every N-th block (default: ${DEFAULT-VALUE}).") int checkpointEvery;
    @Option(names = "--batch-size", defaultValue = "4", description = "Sequences per micro-batch per worker (default: ${DEFAULT-VALUE}).") int batchSize;
    @Option(names = "--seq-len", defaultValue = "256", description = "Tokens per sequence (default: ${DEFAULT-VALUE}).") int seqLen;
    @Option(names = "--zero", defaultValue = "0", description = "ZeRO stage 0..3 (default: ${DEFAULT-VALUE}).") int zero;
    @Option(names = "--workers", defaultValue = "1", description = "Data-parallel workers / GPUs (default: ${DEFAULT-VALUE}).") int workers;
    @Option(names = "--offload", defaultValue = "none", description = "none, cpu or disk (default: ${DEFAULT-VALUE}).") String offload;

    /** full, lora or qlora: --method when given, else lora exactly when a rank above 0 is given. */
    PlanOptions.Method method() {
        if (loraR != null && loraR < 0) throw new IllegalArgumentException("--lora-r must be >= 0, got " + loraR);
        if (method == null) return loraR != null && loraR > 0 ? PlanOptions.Method.LORA : PlanOptions.Method.FULL;
        PlanOptions.Method m = PlanOptions.parse(PlanOptions.Method.class, "--method", method);
        if (m == PlanOptions.Method.FULL && loraR != null && loraR > 0)
            throw new IllegalArgumentException("--lora-r " + loraR + " trains adapters but --method is full: drop one of them");
        if (m != PlanOptions.Method.FULL && loraR != null && loraR == 0)
            throw new IllegalArgumentException("--method " + method + " needs a LoRA rank >= 1, got --lora-r 0");
        return m;
    }

    int loraRank() { return method() == PlanOptions.Method.FULL ? 0 : loraR != null ? loraR : DEFAULT_LORA_RANK; }

    List<String> targets() { return LoraConfig.parseTargets(loraTargets); }

    /** The one options record the planner (and the train gate) reads. */
    PlanOptions toPlanOptions(PlanOptions.Runtime runtime, PlanOptions.Attention attention, PlanOptions.Stack stack, PlanOptions.Sharding sharding) {
        return toPlanOptions(runtime, attention, stack, sharding, parsedBaseDtype());
    }

    /** --base-dtype parsed, or null. */
    PlanOptions.BaseDtype parsedBaseDtype() {
        return baseDtype == null ? null : PlanOptions.parse(PlanOptions.BaseDtype.class, "--base-dtype", baseDtype);
    }

    PlanOptions toPlanOptions(PlanOptions.Runtime runtime, PlanOptions.Attention attention, PlanOptions.Stack stack, PlanOptions.Sharding sharding,
                              PlanOptions.BaseDtype base) {
        PlanOptions.Method m = method();
        return new PlanOptions(m, loraRank(), m == PlanOptions.Method.FULL ? List.of() : targets(), loraDropout,
                PlanOptions.parse(PlanOptions.Precision.class, "--precision", precision), base,
                PlanOptions.parse(PlanOptions.Optim.class, "--optimizer", optimizer), gradientCheckpointing, checkpointEvery,
                batchSize, seqLen, zero, workers, PlanOptions.parse(PlanOptions.Offload.class, "--offload", offload),
                runtime, attention, stack, sharding, PlanOptions.PytorchSettings.DEFAULTS);
    }
}
