// Searches PyTorch technique combinations for plans that fit, ranked by expected slowdown, each explained in one line per change.
package dev.llamafit.plan.pytorch;

import java.util.ArrayList;
import java.util.Comparator;
import java.util.List;
import java.util.Locale;

import dev.llamafit.memory.ByteSize;
import dev.llamafit.model.LlamaConfig;
import dev.llamafit.model.Technique;
import dev.llamafit.model.Technique.Method;
import dev.llamafit.model.Technique.Optimizer;
import dev.llamafit.model.Technique.Precision;
import dev.llamafit.plan.Device;
import dev.llamafit.plan.MemoryPlan;
import dev.llamafit.plan.pytorch.PytorchOptions.Offload;

/**
 * Varies precision, method (LoRA/QLoRA), checkpointing, optimizer, ZeRO stage, offload, activation offloading (torchtune)
 * and micro-batch (with gradient accumulation keeping the effective batch) around the requested options. Slowdown factors
 * are rough expectations, not measurements: stated here once and in docs/PLANNER.md.
 */
public final class PytorchRecommender {
    /** One recommended plan: options, expected time factor vs the request, and why. */
    public record Recommendation(PytorchOptions options, double slowdown, MemoryPlan plan, List<String> steps) {
        /** Micro-steps per optimizer step the plan runs (the request's, times the micro-batch halvings). */
        public int gradAccum() { return options.gradAccum(); }
    }

    private PytorchRecommender() {}

    public static List<Recommendation> recommend(LlamaConfig c, PytorchOptions want, Device device, int limit) {
        MemoryPlan base = PytorchProfile.plan(c, want, device);
        List<Precision> precisions = List.of(want.precision(), Precision.BF16, Precision.BF16_PURE);
        List<Method> methods = List.of(Method.FULL, Method.LORA, Method.QLORA);
        List<Optimizer> optims = List.of(Optimizer.ADAMW, Optimizer.ADAMW8BIT, Optimizer.SGD);
        List<Integer> zeros = want.workers() == 1 ? List.of(0) : List.of(0, 1, 2, 3);
        List<Offload> offloads = List.of(Offload.NONE, Offload.CPU);
        List<PytorchOptions.PytorchSettings> runs = runVariants(want);
        List<Recommendation> out = new ArrayList<>();
        for (Precision p : precisions.stream().distinct().toList())
            for (Method m : methods)
                for (boolean gc : List.of(false, true))
                    for (Optimizer opt : optims)
                        for (int z : zeros)
                            for (Offload off : offloads)
                                for (PytorchOptions.PytorchSettings asked : runs)
                                for (int b = want.batchSize(); b >= 1; b /= 2) {
                                    // An optimizer stepped inside backward cannot accumulate gradients over micro-batches.
                                    if (want.optimizerInBackward() && b < want.batchSize()) break;
                                    PytorchOptions o;
                                    try {
                                        int zero = off != Offload.NONE && z == 0 ? 2 : z;
                                        PytorchOptions.Sharding sharding = shardingFor(want, zero);
                                        // FSDP's unit layout and no_sync() describe how the user's framework runs FSDP: kept where
                                        // they apply, and offered turned off.
                                        boolean fsdp = sharding == PytorchOptions.Sharding.FSDP && zero >= 2;
                                        // Halving the micro-batch accumulates over more micro-steps, whose gradients the plan holds.
                                        int steps = Math.multiplyExact(want.gradAccum(), (int) Math.ceil((double) want.batchSize() / b));
                                        PytorchOptions.PytorchSettings run = asked.withFsdp(asked.blockUnits() && fsdp && m != Method.FULL,
                                                asked.noSync() && fsdp && steps > 1);
                                        if (run.blockUnits() != asked.blockUnits() || run.noSync() != asked.noSync()) continue; // the variant with them off covers it
                                        o = PytorchOptions.of(m, m == Method.FULL ? 0 : Math.max(want.loraRank(), 8), want.loraTargets(), want.loraDropout(), p,
                                                m == Method.QLORA ? Technique.BaseDtype.NF4 : m == Method.LORA && want.baseDtype() != Technique.BaseDtype.NF4 ? want.baseDtype() : null,
                                                opt, gc, 1, b, want.seqLen(), zero, want.workers(),
                                                off, want.attention(), want.stack(), sharding, run, steps);
                                        o.validateFor(c);
                                    } catch (IllegalArgumentException | ArithmeticException e) {
                                        continue;
                                    }
                                    MemoryPlan plan;
                                    try {
                                        plan = PytorchProfile.plan(c, o, device);
                                    } catch (IllegalArgumentException tooLarge) {
                                        continue;
                                    }
                                    if (!plan.fits()) continue;
                                    out.add(new Recommendation(o, slowdown(want, o), plan, explain(want, o, base, plan, device)));
                                    break; // the largest micro-batch that fits is the fastest for this combination
                                }
        // Plans that still train what was asked come first: LoRA in place of full fine-tuning is a different model
        // update, not a memory technique, so it is offered after every full fine-tuning plan that fits, however fast.
        out.sort(Comparator.comparing((Recommendation r) -> changesWhatIsTrained(want, r.options()))
                .thenComparingDouble(Recommendation::slowdown).thenComparingLong(r -> r.plan().devicePeakBytes()));
        return out.subList(0, Math.min(limit, out.size()));
    }

    /**
     * The request's PyTorch settings with what the search varies besides the technique: activation offloading tried on
     * for the torchtune stack (which implements it), FSDP's block units and no_sync() tried off where asked.
     */
    static List<PytorchOptions.PytorchSettings> runVariants(PytorchOptions want) {
        List<PytorchOptions.PytorchSettings> runs = new ArrayList<>();
        for (boolean offloadActs : want.activationOffload() ? List.of(true)
                : want.stack() == PytorchOptions.Stack.TORCHTUNE ? List.of(false, true) : List.of(false))
            for (boolean units : want.fsdpBlockUnits() ? List.of(true, false) : List.of(false))
                for (boolean noSync : want.fsdpNoSync() ? List.of(true, false) : List.of(false))
                    runs.add(want.pytorch().withActivationOffload(offloadActs).withFsdp(units, noSync));
        return runs;
    }

    /**
     * The implementation of a ZeRO stage: the requested one, unless that is DDP, which cannot shard: then FSDP for
     * stages 2 and 3 (SHARD_GRAD_OP, FULL_SHARD) and DeepSpeed for stage 1, which FSDP does not have.
     */
    static PytorchOptions.Sharding shardingFor(PytorchOptions want, int zero) {
        if (zero == 0 || want.sharding() != PytorchOptions.Sharding.DDP) return want.sharding();
        return zero == 1 ? PytorchOptions.Sharding.DEEPSPEED : PytorchOptions.Sharding.FSDP;
    }

    /** Full fine-tuning was asked and the plan trains adapters only (QLoRA for LoRA keeps the adapters: not a change). */
    static boolean changesWhatIsTrained(PytorchOptions want, PytorchOptions o) {
        return (want.method() == Method.FULL) != (o.method() == Method.FULL);
    }

    /** Expected time per effective batch relative to the request (1.0 = as fast). */
    static double slowdown(PytorchOptions want, PytorchOptions o) {
        double s = 1;
        if (o.gradientCheckpointing() && !want.gradientCheckpointing()) s *= 1.33;       // one more forward ≈ 1/3 of fwd+bwd
        if (o.method() == Method.QLORA && want.method() != Method.QLORA) s *= 1.3;       // NF4 dequantisation per matmul
        if (o.method() != want.method() && o.method() == Method.LORA) s *= 0.9;          // no base weight gradients (but a different model update)
        if (o.method() == Method.FULL && want.method() != Method.FULL) s *= 1.1;
        if (o.optimizer() == Optimizer.ADAMW8BIT && want.optimizer() != Optimizer.ADAMW8BIT) s *= 1.02;
        if (o.optimizer() == Optimizer.SGD && want.optimizer() != Optimizer.SGD) s *= 1.05;      // usually needs more steps
        if (o.precision() == Precision.FP32 && want.precision() != Precision.FP32) s *= 2.5; // no tensor cores
        if (o.precision() != Precision.FP32 && want.precision() == Precision.FP32) s *= 0.5;
        s *= 1 + 0.05 * Math.max(0, o.zero() - want.zero()) + (o.zero() == 3 && want.zero() != 3 ? 0.1 : 0);
        if (o.offload() == Offload.CPU && want.offload() != Offload.CPU) s *= 2.0;       // PCIe-bound optimizer step
        for (int b = want.batchSize(); b > o.batchSize(); b /= 2) s *= 1.08;               // smaller matmuls, more launches
        if (want.fsdpNoSync() && !o.fsdpNoSync()) s *= 1.05;                               // a reduce-scatter every micro-step
        if (o.activationOffload() && !want.activationOffload()) s *= 1.05;                 // host copies, mostly overlapped
        return s;
    }

    static List<String> explain(PytorchOptions want, PytorchOptions o, MemoryPlan base, MemoryPlan plan, Device device) {
        List<String> steps = new ArrayList<>();
        if (o.precision() != want.precision()) steps.add("precision " + Technique.name(o.precision()) + ": half-width weights and activations"
                + (o.precision() == Precision.BF16_PURE ? ", bf16 optimizer states (torchtune's default)" : ", fp32 master weights"));
        if (o.method() != want.method()) steps.add("method " + Technique.name(o.method()) + (o.method() == Method.FULL ? ": trains every weight"
                : (changesWhatIsTrained(want, o) ? ": not full fine-tuning any more:" : ":") + " frozen " + (o.method() == Method.QLORA ? "NF4 " : "")
                + "base, adapters r=" + o.loraRank() + " only (gradients and states shrink to the adapters)"
                + (o.method() == Method.QLORA ? ", about +30% compute for dequantisation" : "")));
        if (o.gradientCheckpointing() != want.gradientCheckpointing()) steps.add(o.gradientCheckpointing()
                ? "gradient checkpointing: keep block inputs only, about +33% compute" : "no gradient checkpointing: faster, saves every block");
        if (o.optimizer() != want.optimizer()) steps.add("optimizer " + Technique.name(o.optimizer()) + ": "
                + (o.optimizer() == Optimizer.ADAMW8BIT ? "2 B of state per parameter instead of 8" : o.optimizer() == Optimizer.SGD ? "one momentum buffer instead of two" : "full AdamW"));
        if (o.zero() != want.zero() || o.sharding() != want.sharding()) steps.add("ZeRO-" + o.zero() + " over " + o.workers() + " workers with "
                + switch (o.sharding()) { case DEEPSPEED -> "DeepSpeed"; case FSDP -> o.zero() == 3 ? "FSDP FULL_SHARD" : "FSDP SHARD_GRAD_OP"; case DDP -> "DDP"; }
                + (o.sharding() != want.sharding() ? " (DDP cannot shard)" : "") + ": "
                + switch (o.zero()) { case 1 -> "optimizer states sharded"; case 2 -> "optimizer states and gradients sharded" + (o.sharding() == PytorchOptions.Sharding.FSDP ? " (parameters too, but gathered from forward to backward)" : ""); case 3 -> "parameters sharded too (all-gather per block)"; default -> "no sharding"; });
        if (o.activationOffload() && !want.activationOffload()) steps.add("activation offloading (torchtune's enable_activation_offloading): "
                + "saved activations in pinned host memory, copied on a side stream");
        if (want.fsdpBlockUnits() && !o.fsdpBlockUnits()) steps.add("adapters as FSDP units of their own (PEFT's fsdp_auto_wrap_policy, or a lambda policy "
                + "over the LoRA layers): only they take gradients, not the frozen blocks");
        if (want.fsdpNoSync() && !o.fsdpNoSync()) steps.add("reduce-scatter gradients at every micro-step instead of accumulating in FSDP's no_sync() "
                + "(accelerate: sync_each_batch=True; Fabric: no no_backward_sync): gradients stay sharded, a little more communication");
        if (o.offload() != want.offload()) steps.add("offload " + Technique.name(o.offload()) + ": optimizer states (and gradients/parameters at higher stages) in host RAM, PCIe-bound step");
        if (o.batchSize() != want.batchSize()) steps.add(String.format(Locale.ROOT, "micro-batch %d × %d accumulation steps keeps the effective batch %d",
                o.batchSize(), o.gradAccum(), (long) want.batchSize() * want.gradAccum()));
        steps.add(String.format(Locale.ROOT, "peak %s of %s (%s than requested)", ByteSize.format(plan.devicePeakBytes()),
                ByteSize.format(device.memoryBytes()), signed(plan.devicePeakBytes() - base.devicePeakBytes())));
        return steps;
    }

    private static String signed(long delta) { return delta <= 0 ? ByteSize.format(-delta) + " less" : ByteSize.format(delta) + " more"; }
}
