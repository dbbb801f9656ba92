// The SwiGLU activation of LLaMA's MLP (Shazeer 2020): h = silu(g) ⊙ u, forward and backward.
package dev.llamafit.nn;

import java.lang.foreign.MemorySegment;

import dev.llamafit.kernels.Kernels;
import dev.llamafit.kernels.Parallel;

/**
 * The gate of LLaMA's MLP, down(silu(gate(x)) ⊙ up(x)): the three projections are {@link Projection}s the decoder
 * block runs itself (each may carry a LoRA adapter); this is the element-wise part between them, over n = N·F elements.
 */
public final class SwiGlu {
    private SwiGlu() {}

    /**
     * h = silu(g) ⊙ u ({@link Kernels#swiglu}).
     *
     * @param h    [n] written; may alias g (inference keeps nothing for backward)
     * @param gate [n] g, the gate projection's output
     * @param up   [n] u, the up projection's output
     */
    public static void forward(Kernels k, MemorySegment h, MemorySegment gate, MemorySegment up, long n) {
        k.swiglu(h, 0, gate, 0, up, 0, n);
    }

    /**
     * Backward of {@link #forward}. With s = σ(g): d silu(g)/dg = s·(1 + g·(1 − s)), so dg = dh·u·s·(1 + g(1 − s)) and
     * du = dh·silu(g) ({@link Kernels#swigluBackward}), split in blocks of at least 4096 elements.
     *
     * @param dH  [n] dh on entry, dg on return
     * @param dUp [n] written: du
     */
    public static void backward(Kernels k, MemorySegment gate, MemorySegment up, MemorySegment dH, MemorySegment dUp, long n) {
        Parallel.forRange(Math.toIntExact(n), 4096, (from, to) -> k.swigluBackward(gate, from, up, from, dH, from, dUp, from, to - from));
    }
}
