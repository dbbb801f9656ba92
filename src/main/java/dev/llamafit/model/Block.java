// One decoder block for training: forward saving its activations, and backward reading them in reverse.
package dev.llamafit.model;

import java.lang.foreign.MemorySegment;
import java.util.Map;

import dev.llamafit.kernels.Kernels;
import dev.llamafit.nn.Attention;
import dev.llamafit.nn.Linear;
import dev.llamafit.nn.RmsNorm;
import dev.llamafit.nn.Rope;
import dev.llamafit.nn.SwiGlu;
import dev.llamafit.tensor.Tensor;

/**
 * x_mid = x_in + o(attention(rope(q(n1)), rope(k(n1)), v(n1))) with n1 = norm1(x_in);
 * x_out = x_mid + down(silu(gate(n2)) ⊙ up(n2)) with n2 = norm2(x_mid).
 * Parameter gradients are accumulated into the tensors given at construction (null for none).
 */
final class Block {
    private final RmsNorm attnNorm, mlpNorm;
    private final Linear q, k, v, o;
    private final SwiGlu mlp;
    private final Tensor dAttnNorm, dMlpNorm, dQw, dQb, dKw, dKb, dVw, dVb, dOw, dOb;
    private final SwiGlu.Grads dMlp;

    Block(LlamaConfig config, int layer, Map<String, Tensor> w, Map<String, Tensor> g) {
        String p = ParameterLayout.layerPrefix(layer);
        attnNorm = new RmsNorm(w.get(p + "input_layernorm.weight"), config.rmsNormEps());
        mlpNorm = new RmsNorm(w.get(p + "post_attention_layernorm.weight"), config.rmsNormEps());
        q = linear(w, p + "self_attn.q_proj");
        k = linear(w, p + "self_attn.k_proj");
        v = linear(w, p + "self_attn.v_proj");
        o = linear(w, p + "self_attn.o_proj");
        mlp = new SwiGlu(linear(w, p + "mlp.gate_proj"), linear(w, p + "mlp.up_proj"), linear(w, p + "mlp.down_proj"));
        dAttnNorm = g.get(p + "input_layernorm.weight");
        dMlpNorm = g.get(p + "post_attention_layernorm.weight");
        dQw = g.get(p + "self_attn.q_proj.weight");
        dQb = g.get(p + "self_attn.q_proj.bias");
        dKw = g.get(p + "self_attn.k_proj.weight");
        dKb = g.get(p + "self_attn.k_proj.bias");
        dVw = g.get(p + "self_attn.v_proj.weight");
        dVb = g.get(p + "self_attn.v_proj.bias");
        dOw = g.get(p + "self_attn.o_proj.weight");
        dOb = g.get(p + "self_attn.o_proj.bias");
        dMlp = new SwiGlu.Grads(g.get(p + "mlp.gate_proj.weight"), g.get(p + "mlp.gate_proj.bias"),
                g.get(p + "mlp.up_proj.weight"), g.get(p + "mlp.up_proj.bias"),
                g.get(p + "mlp.down_proj.weight"), g.get(p + "mlp.down_proj.bias"));
    }

    private static Linear linear(Map<String, Tensor> w, String name) {
        return new Linear(w.get(name + ".weight"), w.get(name + ".bias"));
    }

    /** The call's shape and the pieces shared by all blocks. */
    record Context(Kernels kernels, Rope rope, Attention attention, LlamaConfig config, int batch, int seqLen, int[] positions) {
        int rows() { return batch * seqLen; }
    }

    /** Backward buffers shared by all blocks (see TrainingLayout's grad.* slots). */
    record Scratch(MemorySegment dXn,   // [N, C]
                   MemorySegment dAtt,  // [N, H·D]
                   MemorySegment dQ,    // [N, H·D]
                   MemorySegment dK,    // [N, KvH·D]
                   MemorySegment dV,    // [N, KvH·D]
                   MemorySegment dH,    // [N, F]
                   MemorySegment dUp,   // [N, F]
                   MemorySegment attention) {} // [threads, T·T]

    /** Runs the block on a.xIn(), filling a's saved activations, and writes the block output to out [N, C]. */
    void forward(Context c, BlockActivations a, MemorySegment out) {
        Kernels kk = c.kernels();
        int n = c.rows();
        LlamaConfig cfg = c.config();
        attnNorm.forward(kk, a.xIn(), 0, n, a.xnAttn(), 0, a.invRmsAttn(), 0);
        Linear.forwardFused(kk, a.xnAttn(), 0, n, new Linear[] {q, k, v}, new MemorySegment[] {a.q(), a.k(), a.v()});
        c.rope().apply(kk, a.q(), 0, cfg.qDim(), n, cfg.numHeads(), c.positions());
        c.rope().apply(kk, a.k(), 0, cfg.kvDim(), n, cfg.numKvHeads(), c.positions());
        c.attention().forwardTraining(kk, c.batch(), c.seqLen(), a.q(), a.k(), a.v(), a.probs(), 0, a.att());
        o.forward(kk, a.att(), 0, n, a.xMid(), 0);
        kk.add(a.xMid(), 0, a.xIn(), 0, (long) n * cfg.hiddenSize());
        mlpNorm.forward(kk, a.xMid(), 0, n, a.xnMlp(), 0, a.invRmsMlp(), 0);
        mlp.forwardTraining(kk, a.xnMlp(), 0, n, a.gate(), a.up(), a.h(), out, 0);
        kk.add(out, 0, a.xMid(), 0, (long) n * cfg.hiddenSize());
    }

    /**
     * The forward in reverse. On entry dX [N, C] holds dLoss/dx_out; on return, dLoss/dx_in (the residual
     * connections pass it through, each branch adds its part).
     */
    void backward(Context c, BlockActivations a, Scratch s, MemorySegment dX) {
        Kernels kk = c.kernels();
        int n = c.rows();
        LlamaConfig cfg = c.config();
        // MLP branch: x_out = x_mid + mlp(norm2(x_mid))
        mlp.backward(kk, a.xnMlp(), 0, n, a.gate(), a.up(), a.h(), dX, 0, s.dH(), s.dUp(), s.dXn(), 0, dMlp);
        mlpNorm.backward(a.xMid(), 0, a.invRmsMlp(), 0, s.dXn(), 0, n, dX, 0, dMlpNorm);
        // Attention branch: x_mid = x_in + o(attention(...))
        o.backward(kk, a.att(), 0, dX, 0, n, s.dAtt(), 0, false, dOw, dOb);
        c.attention().backward(kk, c.batch(), c.seqLen(), a.q(), a.k(), a.v(), a.probs(), 0, s.dAtt(),
                s.dQ(), s.dK(), s.dV(), s.attention());
        c.rope().backward(s.dQ(), 0, cfg.qDim(), n, cfg.numHeads(), c.positions());
        c.rope().backward(s.dK(), 0, cfg.kvDim(), n, cfg.numKvHeads(), c.positions());
        q.backward(kk, a.xnAttn(), 0, s.dQ(), 0, n, s.dXn(), 0, false, dQw, dQb);
        k.backward(kk, a.xnAttn(), 0, s.dK(), 0, n, s.dXn(), 0, true, dKw, dKb);
        v.backward(kk, a.xnAttn(), 0, s.dV(), 0, n, s.dXn(), 0, true, dVw, dVb);
        attnNorm.backward(a.xIn(), 0, a.invRmsAttn(), 0, s.dXn(), 0, n, dX, 0, dAttnNorm);
    }
}
