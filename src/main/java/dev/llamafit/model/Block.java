// One decoder block for training: forward saving its activations, and backward reading them in reverse.
package dev.llamafit.model;

import java.lang.foreign.MemorySegment;
import java.util.Map;

import dev.llamafit.kernels.Kernels;
import dev.llamafit.nn.Attention;
import dev.llamafit.nn.Linear;
import dev.llamafit.nn.LoraLinear;
import dev.llamafit.nn.RmsNorm;
import dev.llamafit.nn.Rope;
import dev.llamafit.nn.SwiGlu;
import dev.llamafit.tensor.Tensor;

/**
 * x_mid = x_in + o(attention(rope(q(n1)), rope(k(n1)), v(n1))) with n1 = norm1(x_in);
 * x_out = x_mid + down(silu(gate(n2)) ⊙ up(n2)) with n2 = norm2(x_mid).
 * Parameter gradients are accumulated into the tensors given at construction (null for none: a frozen base).
 * A module with a LoRA adapter adds scale·B·A·dropout(x) to its output; the SwiGLU is spelled out here (instead of
 * {@link SwiGlu#forwardTraining}) so each of its projections can carry one.
 */
final class Block {
    static final int Q = 0, K = 1, V = 2, O = 3, GATE = 4, UP = 5, DOWN = 6; // LoraConfig.ALL_LINEAR order

    private final int layer;
    private final RmsNorm attnNorm, mlpNorm;
    private final Linear[] linear = new Linear[7];
    private final Tensor[] dWeight = new Tensor[7], dBias = new Tensor[7];
    private final LoraLinear[] lora = new LoraLinear[7];
    private final Tensor[] dA = new Tensor[7], dB = new Tensor[7];
    private final Tensor dAttnNorm, dMlpNorm;

    /**
     * @param g        gradients by parameter name (full fine-tuning), or without base names (frozen base)
     * @param adapters LoRA A/B by PEFT name, or null
     * @param dAdapters their gradients, or null
     */
    Block(LlamaConfig config, int layer, Map<String, Tensor> w, Map<String, Tensor> g, LoraConfig loraConfig,
          Map<String, Tensor> adapters, Map<String, Tensor> dAdapters) {
        this.layer = layer;
        String p = ParameterLayout.layerPrefix(layer);
        attnNorm = new RmsNorm(w.get(p + "input_layernorm.weight"), config.rmsNormEps());
        mlpNorm = new RmsNorm(w.get(p + "post_attention_layernorm.weight"), config.rmsNormEps());
        dAttnNorm = g.get(p + "input_layernorm.weight");
        dMlpNorm = g.get(p + "post_attention_layernorm.weight");
        for (int m = 0; m < 7; m++) {
            String module = LoraConfig.ALL_LINEAR.get(m), name = p + TrainingLayout.modulePath(module);
            linear[m] = new Linear(w.get(name + ".weight"), w.get(name + ".bias"));
            dWeight[m] = g.get(name + ".weight");
            dBias[m] = g.get(name + ".bias");
            if (loraConfig != null && loraConfig.targets(module)) {
                String an = TrainingLayout.adapterName(layer, module, "A"), bn = TrainingLayout.adapterName(layer, module, "B");
                lora[m] = new LoraLinear(linear[m], adapters.get(an), adapters.get(bn), loraConfig.scale(), loraConfig.dropout());
                dA[m] = dAdapters.get(an);
                dB[m] = dAdapters.get(bn);
            }
        }
    }

    /**
     * The call's shape and the pieces shared by all blocks.
     *
     * @param train dropout on (a training forward); off for evaluation
     * @param seed  this step's dropout seed; each (layer, module) derives its own mask from it
     */
    record Context(Kernels kernels, Rope rope, Attention attention, LlamaConfig config, int batch, int seqLen, int[] positions,
                   boolean train, long seed) {
        int rows() { return batch * seqLen; }
    }

    /** Backward buffers shared by all blocks (see TrainingLayout's grad.* slots). */
    record Scratch(MemorySegment dXn,    // [N, C]
                   MemorySegment dAtt,   // [N, H·D]
                   MemorySegment dQ,     // [N, H·D]
                   MemorySegment dK,     // [N, KvH·D]
                   MemorySegment dV,     // [N, KvH·D]
                   MemorySegment dH,     // [N, F]
                   MemorySegment dUp,    // [N, F]
                   MemorySegment attention, // [threads, T·T]
                   MemorySegment loraDu, // [N, r] or null (no LoRA)
                   MemorySegment loraDx) {} // [N, max in] or null (no LoRA dropout)

    /** Mask seed of module m in this block: distinct per (step, layer, module), the same in a checkpoint recompute. */
    private long seed(Context c, int m) { return c.seed() ^ (0x632BE59BD9B4E019L * (layer * 8L + m + 1)); }

    /** Runs the block on a.xIn(), filling a's saved activations, and writes the block output to out [N, C]. */
    void forward(Context c, BlockActivations a, MemorySegment out) {
        Kernels kk = c.kernels();
        int n = c.rows();
        LlamaConfig cfg = c.config();
        attnNorm.forward(kk, a.xIn(), 0, n, a.xnAttn(), 0, a.invRmsAttn(), 0);
        Linear.forwardFused(kk, a.xnAttn(), 0, n, new Linear[] {linear[Q], linear[K], linear[V]}, new MemorySegment[] {a.q(), a.k(), a.v()});
        adapter(c, a, Q, a.xnAttn(), a.q());
        adapter(c, a, K, a.xnAttn(), a.k());
        adapter(c, a, V, a.xnAttn(), a.v());
        c.rope().apply(kk, a.q(), 0, cfg.qDim(), n, cfg.numHeads(), c.positions());
        c.rope().apply(kk, a.k(), 0, cfg.kvDim(), n, cfg.numKvHeads(), c.positions());
        c.attention().forwardTraining(kk, c.batch(), c.seqLen(), a.q(), a.k(), a.v(), a.probs(), 0, a.att());
        linear[O].forward(kk, a.att(), 0, n, a.xMid(), 0);
        adapter(c, a, O, a.att(), a.xMid());
        kk.add(a.xMid(), 0, a.xIn(), 0, (long) n * cfg.hiddenSize());
        mlpNorm.forward(kk, a.xMid(), 0, n, a.xnMlp(), 0, a.invRmsMlp(), 0);
        // SwiGLU (Shazeer 2020): h = silu(gate(n2)) ⊙ up(n2), out = down(h); gate and up keep their outputs for backward.
        Linear.forwardFused(kk, a.xnMlp(), 0, n, new Linear[] {linear[GATE], linear[UP]}, new MemorySegment[] {a.gate(), a.up()});
        adapter(c, a, GATE, a.xnMlp(), a.gate());
        adapter(c, a, UP, a.xnMlp(), a.up());
        kk.swiglu(a.h(), 0, a.gate(), 0, a.up(), 0, (long) n * cfg.intermediateSize());
        linear[DOWN].forward(kk, a.h(), 0, n, out, 0);
        adapter(c, a, DOWN, a.h(), out);
        kk.add(out, 0, a.xMid(), 0, (long) n * cfg.hiddenSize());
    }

    /** y [N, out] += module m's adapter term on input x, when m is targeted. */
    private void adapter(Context c, BlockActivations a, int m, MemorySegment x, MemorySegment y) {
        if (lora[m] != null) lora[m].forwardAdapter(c.kernels(), x, 0, c.rows(), a.loraX()[m], a.loraU()[m], y, 0, c.train(), seed(c, m));
    }

    /**
     * The forward in reverse. On entry dX [N, C] holds dLoss/dx_out; on return, dLoss/dx_in (the residual
     * connections pass it through, each branch adds its part).
     */
    void backward(Context c, BlockActivations a, Scratch s, MemorySegment dX) {
        Kernels kk = c.kernels();
        int n = c.rows();
        LlamaConfig cfg = c.config();
        // MLP branch: x_out = x_mid + down(silu(gate(n2)) ⊙ up(n2))
        linearBackward(c, a, s, DOWN, a.h(), dX, s.dH(), false);
        SwiGlu.activationBackward(a.gate(), a.up(), s.dH(), s.dUp(), (long) n * cfg.intermediateSize());
        linearBackward(c, a, s, GATE, a.xnMlp(), s.dH(), s.dXn(), false);
        linearBackward(c, a, s, UP, a.xnMlp(), s.dUp(), s.dXn(), true);
        mlpNorm.backward(a.xMid(), 0, a.invRmsMlp(), 0, s.dXn(), 0, n, dX, 0, dMlpNorm);
        // Attention branch: x_mid = x_in + o(attention(...))
        linearBackward(c, a, s, O, a.att(), dX, s.dAtt(), false);
        c.attention().backward(kk, c.batch(), c.seqLen(), a.q(), a.k(), a.v(), a.probs(), 0, s.dAtt(),
                s.dQ(), s.dK(), s.dV(), s.attention());
        c.rope().backward(s.dQ(), 0, cfg.qDim(), n, cfg.numHeads(), c.positions());
        c.rope().backward(s.dK(), 0, cfg.kvDim(), n, cfg.numKvHeads(), c.positions());
        linearBackward(c, a, s, Q, a.xnAttn(), s.dQ(), s.dXn(), false);
        linearBackward(c, a, s, K, a.xnAttn(), s.dK(), s.dXn(), true);
        linearBackward(c, a, s, V, a.xnAttn(), s.dV(), s.dXn(), true);
        attnNorm.backward(a.xIn(), 0, a.invRmsAttn(), 0, s.dXn(), 0, n, dX, 0, dAttnNorm);
    }

    /**
     * Module m's backward: dXout = dY·W (+ the adapter's term), parameter gradients where there are buffers.
     * x is read only for a weight gradient, or as the adapter's input when there is no dropout buffer.
     */
    private void linearBackward(Context c, BlockActivations a, Scratch s, int m, MemorySegment x, MemorySegment dY,
                                MemorySegment dXout, boolean accumulate) {
        int n = c.rows();
        if (lora[m] == null) {
            linear[m].backward(c.kernels(), x, 0, dY, 0, n, dXout, 0, accumulate, dWeight[m], dBias[m]);
            return;
        }
        MemorySegment xd = a.loraX()[m] != null ? a.loraX()[m] : x;
        lora[m].backward(c.kernels(), xd, a.loraU()[m], dY, 0, n, dXout, 0, accumulate, s.loraDu(), s.loraDx(), dA[m], dB[m], seed(c, m));
    }
}
