// Properties every PyTorch plan must have, over a grid of techniques: checkpointing never raises the peak, a larger
// micro-batch or a longer sequence never lowers it, checkpointing fewer blocks never lowers it, a higher ZeRO stage or
// more workers do not raise it.
package dev.llamafit.plan;

import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.ArrayList;
import java.util.List;

import org.junit.jupiter.api.Test;

import dev.llamafit.model.Technique;
import dev.llamafit.plan.pytorch.GpuDevices;
import dev.llamafit.plan.pytorch.PytorchOptions;
import dev.llamafit.plan.pytorch.PytorchProfile;
import dev.llamafit.io.ModelPresets;
import dev.llamafit.model.LinearModule;
import dev.llamafit.model.LlamaConfig;
import dev.llamafit.model.LoraConfig;
import dev.llamafit.model.Technique.BaseDtype;
import dev.llamafit.model.Technique.Method;
import dev.llamafit.plan.pytorch.PytorchOptions.Offload;
import dev.llamafit.model.Technique.Optimizer;
import dev.llamafit.model.Technique.Precision;
import dev.llamafit.plan.pytorch.PytorchOptions.Sharding;
import dev.llamafit.plan.pytorch.PytorchOptions.Stack;

class PlannerPropertiesTest {
    /** Every combination of the options either plans (a positive peak) or is refused with a message: none crashes. */
    @Test
    void everyCombinationPlansOrIsRefusedWithAMessage() {
        int planned = 0, refused = 0;
        List<String> crashes = new ArrayList<>();
        for (String model : List.of("llama-3.1-8b", "qwen2.5-0.5b")) {
            LlamaConfig c = ModelPresets.load(model);
            for (Method m : Method.values())
                for (Precision p : Precision.values())
                    for (BaseDtype base : new BaseDtype[]{null, BaseDtype.FP32, BaseDtype.BF16, BaseDtype.INT8, BaseDtype.NF4})
                        for (Optimizer opt : Optimizer.values())
                            for (int zero = 0; zero <= 3; zero++)
                                for (int workers : new int[]{1, 4})
                                    for (Offload off : Offload.values())
                                        for (Sharding sh : Sharding.values())
                                            for (Stack st : Stack.values())
                                                for (boolean ckpt : new boolean[]{false, true}) {
                                                    try {
                                                        PytorchOptions o = PytorchOptions.of(m, m == Method.FULL ? 0 : 8, List.of("q_proj", "v_proj"), 0.0, p, base, opt, ckpt, 1, 2, 512,
                                                                zero, workers, off, PytorchOptions.Attention.FLASH, st, sh, PytorchOptions.PytorchSettings.DEFAULTS);
                                                        o.validateFor(c);
                                                        if (PytorchProfile.plan(c, o, GpuDevices.gpu("a100-80gb")).devicePeakBytes() <= 0) crashes.add("no peak: " + o);
                                                        planned++;
                                                    } catch (IllegalArgumentException e) {
                                                        if (e.getMessage() == null || e.getMessage().isBlank()) crashes.add("refused without a message");
                                                        refused++;
                                                    } catch (RuntimeException e) {
                                                        crashes.add(model + " " + m + " " + p + " " + base + " " + opt + " zero " + zero + " " + workers + " " + off + " " + sh + " " + st + ": " + e);
                                                    }
                                                }
        }
        assertTrue(planned > 10_000 && refused > 10_000, planned + " planned, " + refused + " refused");
        assertTrue(crashes.isEmpty(), crashes.size() + " crashes, e.g. " + crashes.subList(0, Math.min(3, crashes.size())));
    }

    @Test
    void longerSequencesAndFewerCheckpointsNeverLowerThePeak() {
        List<String> violations = new ArrayList<>();
        int checks = 0;
        for (String model : List.of("llama-3.1-8b", "qwen2.5-0.5b"))
            for (boolean engine : new boolean[]{true, false})
                for (Method m : List.of(Method.FULL, Method.LORA))
                    for (Precision p : Precision.values())
                        for (PytorchOptions.Attention att : PytorchOptions.Attention.values())
                            for (Stack st : Stack.values()) {
                                LlamaConfig c = ModelPresets.load(model);
                                String id = model + (engine ? " llamafit " : " pytorch ") + m + " " + p + " " + att + " " + st;
                                for (boolean ckpt : new boolean[]{false, true}) {
                                    Long previous = null;
                                    for (int t : new int[]{64, 256, 1024, 4096}) {
                                        Long v = shaped(c, engine, m, p, att, st, ckpt, 1, t);
                                        if (v == null) continue;
                                        if (previous != null && v < previous) violations.add("T " + t + " below a shorter one: " + id + (ckpt ? " checkpointing" : ""));
                                        previous = v;
                                        checks++;
                                    }
                                }
                                Long every1 = shaped(c, engine, m, p, att, st, true, 1, 1024), every2 = shaped(c, engine, m, p, att, st, true, 2, 1024),
                                        none = shaped(c, engine, m, p, att, st, false, 1, 1024);
                                if (every1 == null || every2 == null || none == null) continue;
                                checks += 2;
                                if (every1 > every2 || every2 > none) violations.add("checkpoint every 1/2/none " + every1 + " " + every2 + " " + none + ": " + id);
                            }
        assertTrue(checks > 200, "the grid plans: " + checks);
        assertTrue(violations.isEmpty(), violations.size() + " of " + checks + ", e.g. " + violations.subList(0, Math.min(5, violations.size())));
    }

    /** The allocated peak in the engine (which runs eager attention only, and ignores the stack) or in PyTorch; null when refused. */
    static Long shaped(LlamaConfig c, boolean engine, Method m, Precision p, PytorchOptions.Attention att, Stack st, boolean ckpt, int every, int seqLen) {
        List<String> qv = LoraConfig.parseTargets(LinearModule.DEFAULT_LORA_TARGETS);
        if (engine) {
            try {
                if (att != PytorchOptions.Attention.EAGER) return null;
                Technique t = PytorchOptions.technique(m, m == Method.FULL ? 0 : 8, qv, 0.1, p, null, Optimizer.ADAMW, ckpt, every, 1);
                return Planner.plan(c, t, 2, seqLen, Devices.cpu(1L << 40, 2)).peak(Column.DEVICE, Metric.ALLOCATED);
            } catch (IllegalArgumentException refused) {
                return null;
            }
        }
        return allocated(c, () -> PytorchOptions.of(m, m == Method.FULL ? 0 : 8, qv, 0.1, p, null, Optimizer.ADAMW, ckpt, every, 2, seqLen, 0, 1,
                Offload.NONE, att, st, Sharding.DEEPSPEED, PytorchOptions.PytorchSettings.DEFAULTS), GpuDevices.gpu("h200"));
    }

    /** The allocated peak of the options, or null when they are refused. */
    static Long allocated(LlamaConfig c, java.util.function.Supplier<PytorchOptions> options, Device d) {
        try {
            PytorchOptions o = options.get();
            o.validateFor(c);
            return PytorchProfile.plan(c, o, d).peak(Column.DEVICE, Metric.ALLOCATED);
        } catch (IllegalArgumentException refused) {
            return null;
        }
    }

    @Test
    void shardingMoreNeverCostsMore() {
        List<String> violations = new ArrayList<>();
        int checks = 0;
        for (String model : List.of("llama-3.1-8b", "llama-2-70b"))
            for (Method m : Method.values())
                for (Precision p : Precision.values())
                    for (boolean ckpt : new boolean[]{false, true})
                        for (Offload off : List.of(Offload.NONE, Offload.CPU))
                            for (Sharding sh : List.of(Sharding.DEEPSPEED, Sharding.FSDP))
                                for (Stack st : Stack.values()) {
                                    LlamaConfig c = ModelPresets.load(model);
                                    String id = model + " " + m + " " + p + (ckpt ? " checkpointing " : " ") + off + " " + sh + " " + st;
                                    Long previous = null;
                                    for (int zero = 1; zero <= 3; zero++) {
                                        Long at8 = peak(c, m, p, null, Optimizer.ADAMW, ckpt, 2, zero, 8, off, sh, st);
                                        Long at2 = peak(c, m, p, null, Optimizer.ADAMW, ckpt, 2, zero, 2, off, sh, st);
                                        if (at8 == null) continue;
                                        // A higher stage moves more state off the GPU: within 1% (ZeRO-2 holds a gradient
                                        // and its shard for a moment where ZeRO-1 holds the gradient alone).
                                        if (previous != null && m == Method.FULL && at8 > previous * 1.01) violations.add("zero " + zero + " raises " + id);
                                        if (at2 != null && at8 > at2) violations.add("8 workers above 2 at zero " + zero + ": " + id);
                                        checks += 2;
                                        previous = at8;
                                    }
                                }
        assertTrue(checks > 200, "the grid plans: " + checks);
        assertTrue(violations.isEmpty(), violations.size() + " of " + checks + ", e.g. " + violations.subList(0, Math.min(5, violations.size())));
    }

    /**
     * FSDP's gradient options only add gradient memory: block units (adapters flattened with their frozen block) never
     * plan below adapters as units of their own, and accumulation inside no_sync() never below synchronising every
     * micro-step (all four accumulate over 4 micro-steps); the other settings stay refused or planned alike. And
     * accumulation itself never lowers a peak.
     */
    @Test
    void fsdpGradientOptionsNeverLowerThePeak() {
        List<String> violations = new ArrayList<>();
        int checks = 0;
        for (String model : List.of("llama-3.1-8b", "llama-2-70b"))
            for (Method m : List.of(Method.LORA, Method.QLORA))
                for (Precision p : Precision.values())
                    for (boolean ckpt : new boolean[]{false, true})
                        for (Offload off : List.of(Offload.NONE, Offload.CPU))
                            for (int zero = 2; zero <= 3; zero++)
                                for (int batch : new int[]{1, 4}) {
                                    LlamaConfig c = ModelPresets.load(model);
                                    String id = model + " " + m + " " + p + (ckpt ? " checkpointing " : " ") + off + " zero " + zero + " B " + batch;
                                    Long[] peaks = new Long[4];
                                    for (int v = 0; v < 4; v++)
                                        peaks[v] = peak(c, m, p, null, Optimizer.ADAMW, ckpt, batch, zero, 4, off, Sharding.FSDP, Stack.HF,
                                                PytorchOptions.PytorchSettings.DEFAULTS.withFsdp((v & 1) != 0, (v & 2) != 0), 4);
                                    if (peaks[0] == null) continue;
                                    Long single = peak(c, m, p, null, Optimizer.ADAMW, ckpt, batch, zero, 4, off, Sharding.FSDP, Stack.HF);
                                    checks++;
                                    if (single == null || peaks[0] < single) violations.add("accumulation lowers " + id);
                                    for (int v = 1; v < 4; v++) {
                                        checks++;
                                        if (peaks[v] == null) violations.add("variant " + v + " refused: " + id);
                                        else if (peaks[v] < peaks[v & 2] || peaks[v] < peaks[v & 1]) violations.add("variant " + v + " lowers " + id);
                                    }
                                }
        assertTrue(checks > 100, "the grid plans: " + checks);
        assertTrue(violations.isEmpty(), violations.size() + " of " + checks + ", e.g. " + violations.subList(0, Math.min(5, violations.size())));
    }

    static Long peak(LlamaConfig c, Method m, Precision p, BaseDtype base, Optimizer opt, boolean ckpt, int batch, int zero, int workers, Offload off,
                     Sharding sh, Stack st) {
        return peak(c, m, p, base, opt, ckpt, batch, zero, workers, off, sh, st, PytorchOptions.PytorchSettings.DEFAULTS, 1);
    }

    static Long peak(LlamaConfig c, Method m, Precision p, BaseDtype base, Optimizer opt, boolean ckpt, int batch, int zero, int workers, Offload off,
                     Sharding sh, Stack st, PytorchOptions.PytorchSettings run, int accum) {
        return allocated(c, () -> PytorchOptions.of(m, m == Method.FULL ? 0 : 8, List.of("q_proj", "v_proj"), 0.0, p, base, opt, ckpt, 1, batch, 1024, zero, workers, off,
                PytorchOptions.Attention.FLASH, st, sh, run, accum), GpuDevices.gpu("a100-80gb"));
    }

    @Test
    void checkpointingNeverRaisesAndBatchNeverLowersThePeak() {
        List<String> violations = new ArrayList<>();
        int checks = 0;
        for (String model : List.of("llama-3.1-8b", "qwen2.5-0.5b"))
            for (Method m : Method.values())
                for (Precision p : Precision.values())
                    for (BaseDtype base : new BaseDtype[]{null, BaseDtype.FP32, BaseDtype.NF4})
                        for (Optimizer opt : List.of(Optimizer.ADAMW, Optimizer.ADAMW8BIT))
                            for (int zero = 0; zero <= 3; zero++)
                                for (Offload off : List.of(Offload.NONE, Offload.CPU))
                                    for (Sharding sh : Sharding.values())
                                        for (Stack st : Stack.values()) {
                                            LlamaConfig c = ModelPresets.load(model);
                                            Long plain = peak(c, m, p, base, opt, false, 2, zero, 4, off, sh, st);
                                            if (plain == null) continue;
                                            String id = model + " " + m + " " + p + " " + base + " " + opt + " zero " + zero + " " + off + " " + sh + " " + st;
                                            Long ckpt = peak(c, m, p, base, opt, true, 2, zero, 4, off, sh, st);
                                            Long twice = peak(c, m, p, base, opt, false, 4, zero, 4, off, sh, st);
                                            checks += 2;
                                            if (ckpt > plain) violations.add("checkpointing raises " + id + ": " + plain + " -> " + ckpt);
                                            if (twice < plain) violations.add("batch 4 below batch 2 " + id);
                                        }
        assertTrue(checks > 1000, "the grid plans: " + checks);
        assertTrue(violations.isEmpty(), violations.size() + " of " + checks + ", e.g. " + violations.subList(0, Math.min(5, violations.size())));
    }

    /** Activation offloading moves saved tensors to the host: it never raises the device peak, and never lowers the host's. */
    @Test
    void activationOffloadNeverRaisesTheDevicePeak() {
        List<String> violations = new ArrayList<>();
        int checks = 0;
        for (String model : List.of("llama-3.1-8b", "qwen2.5-0.5b"))
            for (Method m : Method.values())
                for (Precision p : Precision.values())
                    for (boolean ckpt : new boolean[]{false, true})
                        for (PytorchOptions.Attention att : PytorchOptions.Attention.values())
                            for (int batch : new int[]{1, 4}) {
                                LlamaConfig c = ModelPresets.load(model);
                                MemoryPlan[] plans = new MemoryPlan[2];
                                for (int v = 0; v < 2; v++) {
                                    PytorchOptions.PytorchSettings run = PytorchOptions.PytorchSettings.DEFAULTS.withActivationOffload(v == 1);
                                    try {
                                        PytorchOptions o = PytorchOptions.of(m, m == Method.FULL ? 0 : 8, List.of("q_proj", "v_proj"), 0.0, p, null, Optimizer.ADAMW, ckpt, 1, batch,
                                                1024, 0, 1, Offload.NONE, att, Stack.TORCHTUNE, Sharding.DEEPSPEED, run);
                                        plans[v] = PytorchProfile.plan(c, o, GpuDevices.gpu("a100-80gb"));
                                    } catch (IllegalArgumentException refused) {
                                        plans[v] = null;
                                    }
                                }
                                if (plans[0] == null || plans[1] == null) continue;
                                checks++;
                                String id = model + " " + m + " " + p + (ckpt ? " checkpointing " : " ") + att + " B " + batch;
                                if (plans[1].peak(Column.DEVICE, Metric.ALLOCATED) > plans[0].peak(Column.DEVICE, Metric.ALLOCATED)) violations.add("raises " + id);
                                if (plans[1].peak(Column.HOST, Metric.ALLOCATED) < plans[0].peak(Column.HOST, Metric.ALLOCATED)) violations.add("host lower " + id);
                            }
        assertTrue(checks > 50, "the grid plans: " + checks);
        assertTrue(violations.isEmpty(), violations.size() + " of " + checks + ", e.g. " + violations.subList(0, Math.min(5, violations.size())));
    }
}
