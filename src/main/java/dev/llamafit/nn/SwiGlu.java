// The SwiGLU feed-forward block (Shazeer 2020): down(silu(gate(x)) ⊙ up(x)).
package dev.llamafit.nn;

import java.lang.foreign.MemorySegment;

import dev.llamafit.kernels.Kernels;

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
}
