// The activations one decoder block saves in its training forward for its backward.
package dev.llamafit.model;

import java.lang.foreign.MemorySegment;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;

import dev.llamafit.kernels.Kernels;
import dev.llamafit.tensor.DType;
import dev.llamafit.tensor.Tensor;

/**
 * One block's tensors, N = B·T rows, named as in {@link TrainingLayout#blockSlots}. Each is the block's own saved
 * buffer {@code layers.{l}.name} when the layout keeps it, else the shared {@code shared.name} that every block
 * overwrites (a forward temporary, or under gradient checkpointing the set recomputed in backward).
 */
record BlockActivations(
        MemorySegment xIn,        // [N, C] block input
        MemorySegment xnAttn,     // [N, C]
        MemorySegment invRmsAttn, // [N]
        MemorySegment q,          // [N, H·D] after RoPE
        MemorySegment k,          // [N, KvH·D] after RoPE
        MemorySegment v,          // [N, KvH·D]
        MemorySegment probs,      // [B, H, T, T] (eager attention), else null
        MemorySegment lse,        // [B, H, T] (flash attention), else null
        MemorySegment att,        // [N, H·D]
        MemorySegment xMid,       // [N, C] residual after attention
        MemorySegment xnMlp,      // [N, C]
        MemorySegment invRmsMlp,  // [N]
        MemorySegment gate,       // [N, F] pre-activation
        MemorySegment up,         // [N, F]
        MemorySegment h,          // [N, F] silu(gate)·up
        MemorySegment[] loraU,    // by LinearModule ordinal: [N, r], null if not targeted
        MemorySegment[] loraX,    // per module: dropout(input) [N, in], null if not targeted or no dropout
        List<Half> halves) {      // mixed precision: the block's 16-bit saved tensors and the fp32 buffers computed in

    /** A tensor saved in 16 bits ({@link TrainingLayout#HALF_TENSORS}) and the fp32 shared buffer the block computes it in. */
    record Half(Tensor saved, MemorySegment compute) {}

    /** After the block's forward: stores its 16-bit tensors (exact: their values were rounded to 16 bits when produced). */
    void save(Kernels k) {
        for (Half h : halves)
            if (h.saved().dtype() == DType.BF16) k.f32ToBf16(h.compute(), 0, h.saved().segment(), 0, h.saved().elements());
            else k.f32ToF16(h.compute(), 0, h.saved().segment(), 0, h.saved().elements());
    }

    /** Before the block's backward: widens them back into the buffers the backward reads. */
    void restore(Kernels k) {
        for (Half h : halves)
            if (h.saved().dtype() == DType.BF16) k.bf16ToF32(h.saved().segment(), 0, h.compute(), 0, h.saved().elements());
            else k.f16ToF32(h.saved().segment(), 0, h.compute(), 0, h.saved().elements());
    }

    /**
     * The block's views into buffers allocated from {@link TrainingLayout#blockSlots(int)} and sharedSlots(): its own
     * fp32 buffer where it has one, else the shared one; its 16-bit buffers become {@link #halves}.
     */
    static BlockActivations of(Map<String, Tensor> buffers, int layer) {
        String p = TrainingLayout.blockPrefix(layer);
        List<Half> halves = new ArrayList<>();
        for (Map.Entry<String, Tensor> e : buffers.entrySet())
            if (e.getKey().startsWith(p) && e.getValue().dtype() != DType.F32)
                halves.add(new Half(e.getValue(), buffers.get(TrainingLayout.SHARED_PREFIX + e.getKey().substring(p.length())).segment()));
        MemorySegment[] u = new MemorySegment[LinearModule.ALL.size()], x = new MemorySegment[LinearModule.ALL.size()];
        for (LinearModule m : LinearModule.ALL) {
            u[m.ordinal()] = find(buffers, p, m.key() + ".lora_u");
            x[m.ordinal()] = find(buffers, p, m.key() + ".lora_x");
        }
        return new BlockActivations(get(buffers, p, "x_in"), get(buffers, p, "xn_attn"), get(buffers, p, "inv_rms_attn"),
                get(buffers, p, "q"), get(buffers, p, "k"), get(buffers, p, "v"), find(buffers, p, "probs"), find(buffers, p, "lse"),
                get(buffers, p, "att"), get(buffers, p, "x_mid"), get(buffers, p, "xn_mlp"), get(buffers, p, "inv_rms_mlp"),
                get(buffers, p, "gate"), get(buffers, p, "up"), get(buffers, p, "h"), u, x, List.copyOf(halves));
    }

    private static MemorySegment find(Map<String, Tensor> buffers, String prefix, String name) {
        Tensor t = buffers.get(prefix + name);
        if (t == null || t.dtype() != DType.F32) t = buffers.get(TrainingLayout.SHARED_PREFIX + name);
        return t == null ? null : t.segment();
    }

    private static MemorySegment get(Map<String, Tensor> buffers, String prefix, String name) {
        MemorySegment s = find(buffers, prefix, name);
        if (s == null) throw new IllegalStateException("layout has no buffer " + prefix + name + " or " + TrainingLayout.SHARED_PREFIX + name);
        return s;
    }
}
