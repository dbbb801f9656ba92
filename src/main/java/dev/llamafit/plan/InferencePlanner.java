// Memory of generation (prefill a prompt, then decode): weights, KV cache, activations, for llamafit or PyTorch.
package dev.llamafit.plan;

import java.util.ArrayList;
import java.util.List;

import dev.llamafit.memory.ByteSize;
import dev.llamafit.memory.Category;
import dev.llamafit.model.ActivationLayout;
import dev.llamafit.model.KvCache;
import dev.llamafit.model.LlamaConfig;
import dev.llamafit.model.ParameterLayout;
import dev.llamafit.nn.Rope;
import dev.llamafit.tensor.DType;

/**
 * Generation of {@code newTokens} tokens after a {@code promptLen}-token prompt, for {@code batch} sequences. The llamafit
 * engine (LlamaModel + Generator) holds the weights (memory-mapped fp32), a KV cache of capacity prompt + new tokens,
 * the RoPE tables, and one set of activation buffers per call shape, freed before the next shape is allocated; prefill
 * (T = prompt) needs at least as much as decode (T = 1) in every buffer, so the prefill layout is the peak. Planned
 * bytes equal the ledger (InferencePlanTest). For PyTorch the same terms are counted in the model's dtype.
 */
public final class InferencePlanner {
    private InferencePlanner() {}

    /** KV capacity the Generator allocates: prompt + new tokens (at least one), capped at the context. */
    public static int capacity(LlamaConfig c, int promptLen, int newTokens) {
        return Math.min(c.maxPositions(), promptLen + Math.max(1, newTokens));
    }

    /**
     * @param weightsDtype storage of the weights when it differs from the compute dtype (fp32/bf16/fp16 as loaded, int8,
     *                     nf4), or null; given apart from {@code o} because PlanOptions ties int8/NF4 to LoRA training
     */
    public static MemoryPlan plan(LlamaConfig c, PlanOptions o, PlanOptions.BaseDtype weightsDtype, int newTokens, Device device) {
        if (newTokens < 0) throw new IllegalArgumentException("--max-new-tokens must be >= 0, got " + newTokens);
        if (o.method() != PlanOptions.Method.FULL || o.gradientCheckpointing() || o.zero() != 0 || o.offload() != PlanOptions.Offload.NONE)
            throw new IllegalArgumentException("--inference plans generation with one model: --method lora|qlora, --gradient-checkpointing, "
                    + "--zero and --offload are training techniques (merge an adapter first; quantise with --base-dtype)");
        if (o.seqLen() > c.maxPositions())
            throw new IllegalArgumentException("--seq-len (prompt) " + o.seqLen() + " exceeds the model's max_position_embeddings " + c.maxPositions());
        int capacity = capacity(c, o.seqLen(), newTokens);
        return o.runtime() == PlanOptions.Runtime.LLAMAFIT ? llamafit(c, o, weightsDtype, capacity, device) : pytorch(c, o, weightsDtype, capacity, device);
    }

    private static MemoryPlan llamafit(LlamaConfig c, PlanOptions o, PlanOptions.BaseDtype w, int capacity, Device device) {
        if (device.gpu()) throw new IllegalArgumentException("the llamafit runtime runs on the CPU; plan a GPU with --runtime pytorch");
        if (o.precision() != PlanOptions.Precision.FP32 || w != null && w != PlanOptions.BaseDtype.FP32)
            throw new IllegalArgumentException("half-precision and int8/NF4 inference are not implemented in the llamafit runtime yet; plan them with --runtime pytorch");
        ActivationLayout prefill = new ActivationLayout(c, o.batchSize(), o.seqLen(), capacity, o.batchSize(), device.threads());
        List<Component> comps = new ArrayList<>();
        comps.add(Component.constant("weights", Column.DEVICE, Category.WEIGHTS, ParameterLayout.of(c, DType.F32).bytes(),
                "fp32 parameters, memory-mapped from safetensors: Σ ParameterLayout"));
        comps.add(Component.constant("kv_cache", Column.DEVICE, Category.KV_CACHE, KvCache.bytes(c, o.batchSize(), capacity),
                "K and V: 2 × L × B × KvH × capacity × D × 4 B, capacity = prompt + new tokens = " + capacity));
        comps.add(Component.constant("activations", Column.DEVICE, Category.ACTIVATIONS, prefill.bytes(Category.ACTIVATIONS),
                "prefill buffers (T = prompt; decode reuses a smaller set): Σ ActivationLayout slots, last-position logits"));
        comps.add(Component.constant("workspace", Column.DEVICE, Category.WORKSPACE,
                Math.addExact(prefill.bytes(Category.WORKSPACE), Rope.tableBytes(c.headDim(), c.maxPositions())),
                "per-thread attention scores [threads, T × capacity] + RoPE tables"));
        return new MemoryPlan(device, o, comps, List.of("inference: prompt " + o.seqLen() + " + new tokens, KV capacity " + capacity,
                "the JVM adds its own heap and code (not in the ledger): about " + ByteSize.format(224L << 20)));
    }

    private static MemoryPlan pytorch(LlamaConfig c, PlanOptions o, PlanOptions.BaseDtype w, int capacity, Device device) {
        if (!device.gpu()) throw new IllegalArgumentException("the pytorch runtime plans CUDA GPUs; pick a GPU --device (or --runtime llamafit for the CPU)");
        int a = o.precision().computeBytes();
        PytorchProfile.Counts n = PytorchProfile.counts(c);
        boolean quantised = w != null && w.quantised();
        int stored = w != null && !quantised ? w.floatBytes() : a;
        double perLinear = quantised ? PytorchProfile.quantisedBytesPerWeight(w, o.doubleQuant()) : stored;
        double rowScales = w == PlanOptions.BaseDtype.INT8 ? PytorchProfile.linearRows(c) * 4.0 : 0;
        double weights = n.linearWeights() * perLinear + rowScales + (double) n.other() * stored;
        double tokens = (double) o.batchSize() * o.seqLen();
        double kv = 2.0 * c.numLayers() * o.batchSize() * c.kvDim() * (double) capacity * a;
        // One block's prefill temporaries (nothing is kept for backward), the larger of its two halves: attention
        // (residual, norm output, q/k/v, attention output) and MLP (residual, norm output, the attention sum, gate, up
        // and their product). Eager attention (and SDPA's math backend, see PytorchProfile.attentionKernel) adds the
        // B·H·T·T scores of the prompt (transformers' DynamicCache holds only what has been written): the softmax's
        // input and its fp32 output coexist (a + 4 B; 8 B in fp32), and the keys and values repeated to every query head.
        double attention = tokens * (2.0 * c.hiddenSize() + 2.0 * c.qDim() + 2.0 * c.kvDim()) * a;
        if (PytorchProfile.attentionKernel(c, o) == PlanOptions.Attention.EAGER)
            attention += (double) o.batchSize() * c.numHeads() * o.seqLen() * o.seqLen() * (a + 4)
                    + (c.numKvHeads() < c.numHeads() ? 2.0 * tokens * c.qDim() * a : 0);
        double mlp = tokens * (3.0 * c.hiddenSize() + 3.0 * c.intermediateSize()) * a;
        double block = Math.max(attention, mlp);
        double dequant = quantised ? n.largestLinear() * (double) a : 0;
        double logits = (double) o.batchSize() * c.vocabSize() * (a + 4.0); // last position only, upcast to fp32 for sampling
        List<Component> comps = new ArrayList<>();
        comps.add(PytorchProfile.gpu("weights", Category.WEIGHTS, weights, quantised
                ? n.linearWeights() + " linear weights in " + PlanOptions.name(w) + " (" + perLinear * 8 + " bits with block constants) + " + n.other() + " others × " + stored + " B"
                : n.total() + " params × " + stored + " B"));
        comps.add(PytorchProfile.gpu("kv_cache", Category.KV_CACHE, kv, "2 × L × B × KvH·D × capacity × " + a + " B, capacity " + capacity));
        comps.add(PytorchProfile.gpu("activations", Category.ACTIVATIONS, block + logits, "one block's prefill temporaries (attention or MLP half, the larger) + last-position logits"));
        if (dequant > 0) comps.add(PytorchProfile.gpu("weights.dequantised", Category.WORKSPACE, dequant, "largest linear dequantised for its matmul"));
        PytorchProfile.addAllocatorAndContext(comps, device, o);
        return new MemoryPlan(device, o, comps, List.of("inference: prompt " + o.seqLen() + " + new tokens, KV capacity " + capacity));
    }
}
