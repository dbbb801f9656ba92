// Memory of generation in the engine (prefill a prompt, then decode): weights, KV cache, activations, scratch.
package dev.llamafit.plan;

import java.util.ArrayList;
import java.util.List;

import dev.llamafit.memory.ByteSize;
import dev.llamafit.memory.Category;
import dev.llamafit.model.ActivationLayout;
import dev.llamafit.model.KvCache;
import dev.llamafit.model.LlamaConfig;
import dev.llamafit.model.ParameterLayout;
import dev.llamafit.model.Technique;
import dev.llamafit.nn.Rope;
import dev.llamafit.tensor.DType;

/**
 * Generation of {@code newTokens} tokens after a {@code promptLen}-token prompt, for {@code batch} sequences. The llamafit
 * engine (LlamaModel + Generator) holds the weights (memory-mapped fp32), a KV cache of capacity prompt + new tokens,
 * the RoPE tables, and one set of activation buffers per call shape, freed before the next shape is allocated; prefill
 * (T = prompt) needs at least as much as decode (T = 1) in every buffer, so the prefill layout is the peak. Planned
 * bytes equal the ledger (InferencePlanTest). PyTorch generation is planned by {@code plan.pytorch.PytorchInference}.
 */
public final class InferencePlanner {
    private InferencePlanner() {}

    /** KV capacity the Generator allocates: prompt + new tokens (at least one), capped at the context. */
    public static int capacity(LlamaConfig c, int promptLen, int newTokens) {
        return (int) Math.min(c.maxPositions(), (long) promptLen + Math.max(1, newTokens));
    }

    /** The engine's memory for generating {@code newTokens} after a {@code promptLen}-token prompt, {@code batch} sequences, fp32. */
    public static MemoryPlan plan(LlamaConfig c, int batch, int promptLen, int newTokens, Device device) {
        return plan(c, batch, promptLen, newTokens, device, Technique.DEFAULT_ATTENTION);
    }

    /** As {@link #plan(LlamaConfig, int, int, int, Device)} with eager or flash attention (its scratch differs). */
    public static MemoryPlan plan(LlamaConfig c, int batch, int promptLen, int newTokens, Device device, Technique.Attention attention) {
        checkShape(c, batch, promptLen, newTokens);
        if (device.gpu()) throw new IllegalArgumentException("the llamafit runtime runs on the CPU; plan a GPU with --runtime pytorch");
        Planner.checkTokens(batch, promptLen);
        try {
            return engine(c, batch, promptLen, newTokens, device, attention);
        } catch (ArithmeticException overflow) {
            throw Planner.tooLarge(batch, promptLen);
        }
    }

    private static MemoryPlan engine(LlamaConfig c, int batch, int promptLen, int newTokens, Device device, Technique.Attention attention) {
        int capacity = capacity(c, promptLen, newTokens);
        ActivationLayout prefill = new ActivationLayout(c, batch, promptLen, capacity, batch, device.threads(), attention);
        List<Component> comps = new ArrayList<>();
        comps.add(Component.constant("weights", Column.DEVICE, Category.WEIGHTS, ParameterLayout.of(c, DType.F32).bytes(),
                "fp32 parameters, memory-mapped from safetensors: Σ ParameterLayout"));
        comps.add(Component.constant("kv_cache", Column.DEVICE, Category.KV_CACHE, KvCache.bytes(c, batch, capacity),
                "K and V: 2 × L × B × KvH × capacity × D × 4 B, capacity = prompt + new tokens = " + capacity));
        comps.add(Component.constant("activations", Column.DEVICE, Category.ACTIVATIONS, prefill.bytes(Category.ACTIVATIONS),
                "prefill buffers (T = prompt; decode reuses a smaller set): Σ ActivationLayout slots, last-position logits"));
        comps.add(Component.constant("workspace", Column.DEVICE, Category.WORKSPACE,
                Math.addExact(prefill.bytes(Category.WORKSPACE), Rope.tableBytes(c.headDim(), c.maxPositions())),
                "per-thread attention scores [threads, T × capacity] + RoPE tables"));
        return new MemoryPlan(device, comps, List.of("inference: prompt " + promptLen + " + new tokens, KV capacity " + capacity,
                "the JVM adds its own heap and code (not in the ledger): about " + ByteSize.format(248L << 20)
                        + " (+12 MiB with the onednn kernel backend's native library)"));
    }

    /** The checks every runtime's generation plan makes: a batch, a prompt within the context, no negative token count. */
    public static void checkShape(LlamaConfig c, int batch, int promptLen, int newTokens) {
        if (newTokens < 0) throw new IllegalArgumentException("--max-new-tokens must be >= 0, got " + newTokens);
        if (batch < 1) throw new IllegalArgumentException("--batch-size must be >= 1, got " + batch);
        if (promptLen < 1) throw new IllegalArgumentException("--seq-len must be >= 1, got " + promptLen);
        if (promptLen > c.maxPositions())
            throw new IllegalArgumentException("--seq-len (prompt) " + promptLen + " exceeds the model's max_position_embeddings " + c.maxPositions());
    }
}
