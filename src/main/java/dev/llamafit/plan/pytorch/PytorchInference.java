// Memory of generation in PyTorch on a CUDA GPU (prefill a prompt, then decode): weights, KV cache, activations.
package dev.llamafit.plan.pytorch;

import java.util.ArrayList;
import java.util.List;

import dev.llamafit.memory.Category;
import dev.llamafit.model.LlamaConfig;
import dev.llamafit.model.Technique;
import dev.llamafit.model.Technique.BaseDtype;
import dev.llamafit.model.Technique.Method;
import dev.llamafit.plan.Component;
import dev.llamafit.plan.Device;
import dev.llamafit.plan.InferencePlanner;
import dev.llamafit.plan.MemoryPlan;

/**
 * The engine's generation terms (weights, KV cache of capacity prompt + new tokens, one block's prefill temporaries,
 * the last position's logits) counted for transformers in the model's dtype, with quantised weights where asked.
 */
public final class PytorchInference {
    private PytorchInference() {}

    /**
     * @param weightsDtype storage of the weights when it differs from the compute dtype (fp32/bf16/fp16 as loaded, int8,
     *                     nf4), or null; given apart from {@code o} because the options tie int8/NF4 to LoRA training
     */
    public static MemoryPlan plan(LlamaConfig c, PytorchOptions o, BaseDtype w, int newTokens, Device device) {
        try {
            return compute(c, o, w, newTokens, device);
        } catch (ArithmeticException overflow) {
            throw dev.llamafit.plan.Planner.tooLarge(o.batchSize(), o.seqLen());
        }
    }

    private static MemoryPlan compute(LlamaConfig c, PytorchOptions o, BaseDtype w, int newTokens, Device device) {
        InferencePlanner.checkShape(c, o.batchSize(), o.seqLen(), newTokens);
        if (o.method() != Method.FULL || o.gradientCheckpointing() || o.zero() != 0 || o.offload() != PytorchOptions.Offload.NONE)
            throw new IllegalArgumentException("--inference plans generation with one model: --method lora|qlora, --gradient-checkpointing, "
                    + "--zero and --offload are training techniques (merge an adapter first; quantise with --base-dtype)");
        int capacity = InferencePlanner.capacity(c, o.seqLen(), newTokens);
        if (!device.gpu()) throw new IllegalArgumentException("the pytorch runtime plans CUDA GPUs; pick a GPU --device (or --runtime llamafit for the CPU)");
        int a = o.precision().computeBytes();
        PytorchProfile.Counts n = PytorchProfile.counts(c);
        boolean quantised = w != null && w.quantised();
        int stored = w != null && !quantised ? w.floatBytes() : a;
        double perLinear = quantised ? PytorchProfile.quantisedBytesPerWeight(w, o.doubleQuant()) : stored;
        double rowScales = w == BaseDtype.INT8 ? PytorchProfile.linearRows(c) * 4.0 : 0;
        double weights = n.linearWeights() * perLinear + rowScales + (double) n.other() * stored;
        double tokens = (double) o.batchSize() * o.seqLen();
        double kv = 2.0 * c.numLayers() * o.batchSize() * c.kvDim() * (double) capacity * a;
        // One block's prefill temporaries (nothing is kept for backward), the larger of its two halves: attention
        // (residual, norm output, q/k/v, attention output) and MLP (residual, norm output, the attention sum, gate, up
        // and their product). Eager attention (and SDPA's math backend, see PytorchProfile.attentionKernel) adds the
        // B·H·T·T scores of the prompt (transformers' DynamicCache holds only what has been written): the softmax's
        // input and its fp32 output coexist (a + 4 B; 8 B in fp32), and the keys and values repeated to every query head.
        double attention = tokens * (2.0 * c.hiddenSize() + 2.0 * c.qDim() + 2.0 * c.kvDim()) * a;
        if (PytorchProfile.attentionKernel(c, o) == PytorchOptions.Attention.EAGER)
            attention += (double) o.batchSize() * c.numHeads() * o.seqLen() * o.seqLen() * (a + 4)
                    + (c.numKvHeads() < c.numHeads() ? 2.0 * tokens * c.qDim() * a : 0);
        double mlp = tokens * (3.0 * c.hiddenSize() + 3.0 * c.intermediateSize()) * a;
        double block = Math.max(attention, mlp);
        double dequant = quantised ? n.largestLinear() * (double) a : 0;
        double logits = (double) o.batchSize() * c.vocabSize() * (a + 4.0); // last position only, upcast to fp32 for sampling
        List<Component> comps = new ArrayList<>();
        comps.add(PytorchProfile.gpu("weights", Category.WEIGHTS, weights, quantised
                ? n.linearWeights() + " linear weights in " + Technique.name(w) + " (" + perLinear * 8 + " bits with block constants) + " + n.other() + " others × " + stored + " B"
                : n.total() + " params × " + stored + " B"));
        comps.add(PytorchProfile.gpu("kv_cache", Category.KV_CACHE, kv, "2 × L × B × KvH·D × capacity × " + a + " B, capacity " + capacity));
        comps.add(PytorchProfile.gpu("activations", Category.ACTIVATIONS, block + logits, "one block's prefill temporaries (attention or MLP half, the larger) + last-position logits"));
        if (dequant > 0) comps.add(PytorchProfile.gpu("weights.dequantised", Category.WORKSPACE, dequant, "largest linear dequantised for its matmul"));
        PytorchProfile.addAllocatorAndContext(comps, device, o);
        return new MemoryPlan(device, comps, List.of("inference: prompt " + o.seqLen() + " + new tokens, KV capacity " + capacity));
    }
}
