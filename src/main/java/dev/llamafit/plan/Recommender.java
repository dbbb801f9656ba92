// Searches what the engine can vary for plans that fit, ranked by expected slowdown, each explained in one line per change.
package dev.llamafit.plan;

import java.util.ArrayList;
import java.util.Comparator;
import java.util.List;
import java.util.Locale;

import dev.llamafit.memory.ByteSize;
import dev.llamafit.model.LinearModule;
import dev.llamafit.model.LlamaConfig;
import dev.llamafit.model.LoraConfig;
import dev.llamafit.model.Technique;
import dev.llamafit.model.Technique.Method;
import dev.llamafit.model.Technique.Optimizer;

/**
 * Varies what the engine implements around the request: full or LoRA, checkpointing, AdamW or SGD, and the micro-batch
 * (with gradient accumulation keeping the effective batch). Slowdown factors are rough expectations, not measurements:
 * stated here once and in docs/PLANNER.md (the PyTorch search, which varies more, is {@code plan.pytorch.PytorchRecommender}).
 */
public final class Recommender {
    /** One recommended plan: technique and micro-batch, expected time factor vs the request, and why. */
    public record Recommendation(Technique technique, int batchSize, double slowdown, MemoryPlan plan, List<String> steps) {
        /** Micro-steps per optimizer step the plan runs (the request's, times the micro-batch halvings). */
        public int gradAccum() { return technique.gradAccum(); }
    }

    private Recommender() {}

    public static List<Recommendation> recommend(LlamaConfig c, Technique want, int batch, int seqLen, Device device, int limit) {
        MemoryPlan base = Planner.plan(c, want, batch, seqLen, device);
        List<Recommendation> out = new ArrayList<>();
        for (Method m : List.of(Method.FULL, Method.LORA))
            for (boolean gc : List.of(false, true))
                for (Optimizer opt : List.of(Optimizer.ADAMW, Optimizer.SGD))
                    for (int b = batch; b >= 1; b /= 2) {
                        Technique t;
                        MemoryPlan plan;
                        try {
                            // Halving the micro-batch accumulates over more micro-steps, keeping the effective batch.
                            int steps = Math.multiplyExact(want.gradAccum(), (int) Math.ceil((double) batch / b));
                            t = new Technique(m, m == Method.FULL ? null : adapters(want), want.precision(), null, opt, gc,
                                    1, steps);
                            plan = Planner.plan(c, t, b, seqLen, device);
                        } catch (IllegalArgumentException | ArithmeticException refused) {
                            continue;
                        }
                        if (!plan.fits()) continue;
                        out.add(new Recommendation(t, b, slowdown(want, batch, t, b), plan, explain(want, batch, t, b, base, plan, device)));
                        break; // the largest micro-batch that fits is the fastest for this combination
                    }
        // Plans that still train what was asked come first: LoRA in place of full fine-tuning is a different model
        // update, not a memory technique, so it is offered after every full fine-tuning plan that fits, however fast.
        out.sort(Comparator.comparing((Recommendation r) -> want.adapters() != r.technique().adapters())
                .thenComparingDouble(Recommendation::slowdown).thenComparingLong(r -> r.plan().devicePeakBytes()));
        return out.subList(0, Math.min(limit, out.size()));
    }

    /** The request's adapters (rank at least 8), or PEFT's default targets at rank 8 when it asked for full fine-tuning. */
    static LoraConfig adapters(Technique want) {
        if (!want.adapters()) return new LoraConfig(8, 16, 0, LoraConfig.parseTargets(LinearModule.DEFAULT_LORA_TARGETS), false);
        LoraConfig l = want.lora();
        return new LoraConfig(Math.max(l.rank(), 8), l.alpha(), l.dropout(), l.targets(), l.useRslora());
    }

    /** Expected time per effective batch relative to the request (1.0 = as fast). */
    static double slowdown(Technique want, int wantBatch, Technique t, int b) {
        double s = 1;
        if (t.gradientCheckpointing() && !want.gradientCheckpointing()) s *= 1.33;       // one more forward ≈ 1/3 of fwd+bwd
        if (t.method() != want.method() && t.method() == Method.LORA) s *= 0.9;          // no base weight gradients (but a different model update)
        if (t.method() == Method.FULL && want.method() != Method.FULL) s *= 1.1;
        if (t.optimizer() == Optimizer.SGD && want.optimizer() != Optimizer.SGD) s *= 1.05; // usually needs more steps
        for (int x = wantBatch; x > b; x /= 2) s *= 1.08;                                 // smaller matmuls, more launches
        return s;
    }

    static List<String> explain(Technique want, int wantBatch, Technique t, int b, MemoryPlan base, MemoryPlan plan, Device device) {
        List<String> steps = new ArrayList<>();
        if (t.method() != want.method()) steps.add("method " + Technique.name(t.method()) + (t.method() == Method.FULL ? ": trains every weight"
                : ": not full fine-tuning any more: frozen base, adapters r=" + t.lora().rank() + " only (gradients and states shrink to the adapters)"));
        if (t.gradientCheckpointing() != want.gradientCheckpointing()) steps.add(t.gradientCheckpointing()
                ? "gradient checkpointing: keep block inputs only, about +33% compute" : "no gradient checkpointing: faster, saves every block");
        if (t.optimizer() != want.optimizer()) steps.add("optimizer " + Technique.name(t.optimizer()) + ": "
                + (t.optimizer() == Optimizer.SGD ? "one momentum buffer instead of two" : "full AdamW"));
        if (b != wantBatch) steps.add(String.format(Locale.ROOT, "micro-batch %d × %d accumulation steps keeps the effective batch %d",
                b, t.gradAccum(), (long) wantBatch * want.gradAccum()));
        steps.add(String.format(Locale.ROOT, "peak %s of %s (%s than requested)", ByteSize.format(plan.devicePeakBytes()),
                ByteSize.format(device.memoryBytes()), signed(plan.devicePeakBytes() - base.devicePeakBytes())));
        return steps;
    }

    static String signed(long delta) { return delta <= 0 ? ByteSize.format(-delta) + " less" : ByteSize.format(delta) + " more"; }
}
