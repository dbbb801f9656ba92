// The activations one decoder block saves in its training forward for its backward.
package dev.llamafit.model;

import java.lang.foreign.MemorySegment;
import java.util.Map;

import dev.llamafit.tensor.Tensor;

/**
 * One block's saved tensors, N = B·T rows, named as in {@link TrainingLayout#blockSlots}. Gradient checkpointing
 * (a later layout) keeps only {@code xIn} per block and points the others at one shared, recomputed set.
 */
record BlockActivations(
        MemorySegment xIn,        // [N, C] block input
        MemorySegment xnAttn,     // [N, C]
        MemorySegment invRmsAttn, // [N]
        MemorySegment q,          // [N, H·D] after RoPE
        MemorySegment k,          // [N, KvH·D] after RoPE
        MemorySegment v,          // [N, KvH·D]
        MemorySegment probs,      // [B, H, T, T]
        MemorySegment att,        // [N, H·D]
        MemorySegment xMid,       // [N, C] residual after attention
        MemorySegment xnMlp,      // [N, C]
        MemorySegment invRmsMlp,  // [N]
        MemorySegment gate,       // [N, F] pre-activation
        MemorySegment up,         // [N, F]
        MemorySegment h) {        // [N, F] silu(gate)·up

    /** The block's views into buffers allocated from {@link TrainingLayout#blockSlots(int)}. */
    static BlockActivations of(Map<String, Tensor> buffers, int layer) {
        String p = TrainingLayout.blockPrefix(layer);
        return new BlockActivations(get(buffers, p + "x_in"), get(buffers, p + "xn_attn"), get(buffers, p + "inv_rms_attn"),
                get(buffers, p + "q"), get(buffers, p + "k"), get(buffers, p + "v"), get(buffers, p + "probs"),
                get(buffers, p + "att"), get(buffers, p + "x_mid"), get(buffers, p + "xn_mlp"), get(buffers, p + "inv_rms_mlp"),
                get(buffers, p + "gate"), get(buffers, p + "up"), get(buffers, p + "h"));
    }

    private static MemorySegment get(Map<String, Tensor> buffers, String name) {
        Tensor t = buffers.get(name);
        if (t == null) throw new IllegalStateException("layout has no buffer " + name);
        return t.segment();
    }
}
