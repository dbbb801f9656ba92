// The SwiGLU feed-forward block (Shazeer 2020): down(silu(gate(x)) ⊙ up(x)).
package dev.llamafit.nn;

import java.lang.foreign.MemorySegment;

import dev.llamafit.kernels.Kernels;
import dev.llamafit.kernels.Parallel;
import dev.llamafit.tensor.Tensor;

/** LLaMA's gated MLP: gate, up [F, C] and down [C, F] projections. */
public final class SwiGlu {
    private final Linear gate;
    private final Linear up;
    private final Linear down;

    public SwiGlu(Linear gate, Linear up, Linear down) {
        this.gate = gate;
        this.up = up;
        this.down = down;
    }

    public Linear gate() { return gate; }

    public Linear up() { return up; }

    public Linear down() { return down; }

    /**
     * out[rows, C] = down(silu(gate(x)) ⊙ up(x)).
     *
     * @param x     [rows, C]
     * @param hGate [rows, F] scratch; holds silu(gate)·up afterwards
     * @param hUp   [rows, F] scratch; holds up(x) afterwards
     * @param out   [rows, C]; may alias x, which only gate and up read, before down writes
     */
    public void forward(Kernels k, MemorySegment x, long xOff, int rows,
                        MemorySegment hGate, MemorySegment hUp, MemorySegment out, long outOff) {
        Linear.forwardFused(k, x, xOff, rows, new Linear[] {gate, up}, new MemorySegment[] {hGate, hUp});
        k.swiglu(hGate, 0, hGate, 0, hUp, 0, (long) rows * gate.out());
        down.forward(k, hGate, 0, rows, out, outOff);
    }

    /**
     * Training forward: as {@link #forward}, keeping what backward needs: the gate's pre-activation g, the up
     * projection u and h = silu(g)·u (the down projection's input, for its weight gradient).
     *
     * @param x    [rows, C]
     * @param gate [rows, F] written: g
     * @param up   [rows, F] written: u
     * @param h    [rows, F] written: silu(g)·u
     * @param out  [rows, C] written; must not alias x
     */
    public void forwardTraining(Kernels k, MemorySegment x, long xOff, int rows, MemorySegment gate, MemorySegment up,
                                MemorySegment h, MemorySegment out, long outOff) {
        Linear.forwardFused(k, x, xOff, rows, new Linear[] {this.gate, this.up}, new MemorySegment[] {gate, up});
        k.swiglu(h, 0, gate, 0, up, 0, (long) rows * this.gate.out());
        down.forward(k, h, 0, rows, out, outOff);
    }

    /** Parameter gradients of the three projections (entries null for frozen ones). */
    public record Grads(Tensor dGateW, Tensor dGateB, Tensor dUpW, Tensor dUpB, Tensor dDownW, Tensor dDownB) {}

    /**
     * Backward of {@link #forwardTraining}. With s = σ(g): d silu(g)/dg = s·(1 + g·(1 − s)), so
     * dg = dh·u·s·(1 + g(1 − s)) and du = dh·silu(g).
     *
     * @param dOut [rows, C]
     * @param dH   [rows, F] scratch; holds dg afterwards
     * @param dUp  [rows, F] scratch; holds du afterwards
     * @param dX   [rows, C] written (gate's and up's contributions summed)
     */
    public void backward(Kernels k, MemorySegment x, long xOff, int rows, MemorySegment gate, MemorySegment up, MemorySegment h,
                         MemorySegment dOut, long dOutOff, MemorySegment dH, MemorySegment dUp, MemorySegment dX, long dXOff,
                         Grads grads) {
        down.backward(k, h, 0, dOut, dOutOff, rows, dH, 0, false, grads.dDownW(), grads.dDownB());
        activationBackward(k, gate, up, dH, dUp, (long) rows * this.gate.out());
        this.gate.backward(k, x, xOff, dH, 0, rows, dX, dXOff, false, grads.dGateW(), grads.dGateB());
        this.up.backward(k, x, xOff, dUp, 0, rows, dX, dXOff, true, grads.dUpW(), grads.dUpB());
    }

    /**
     * Backward of h = silu(g)·u alone, for callers that run the projections themselves (LoRA-wrapped ones).
     * With s = σ(g): dg = dh·u·s·(1 + g(1 − s)), du = dh·silu(g) ({@link Kernels#swigluBackward}), split in
     * blocks of at least 4096 elements.
     *
     * @param dH  [n] dh on entry, dg on return
     * @param dUp [n] written: du
     */
    public static void activationBackward(Kernels k, MemorySegment gate, MemorySegment up, MemorySegment dH, MemorySegment dUp, long n) {
        Parallel.forRange(Math.toIntExact(n), 4096, (from, to) -> k.swigluBackward(gate, from, up, from, dH, from, dUp, from, to - from));
    }
}
