// One LLaMA decoder block, for inference (KV cache, nothing saved) and training (saved activations, backward).
package dev.llamafit.model;

import static dev.llamafit.model.LinearModule.DOWN;
import static dev.llamafit.model.LinearModule.GATE;
import static dev.llamafit.model.LinearModule.K;
import static dev.llamafit.model.LinearModule.O;
import static dev.llamafit.model.LinearModule.Q;
import static dev.llamafit.model.LinearModule.UP;
import static dev.llamafit.model.LinearModule.V;

import java.lang.foreign.MemorySegment;
import java.util.Map;

import dev.llamafit.kernels.Kernels;
import dev.llamafit.nn.Attention;
import dev.llamafit.nn.FlashAttention;
import dev.llamafit.nn.LoraLinear;
import dev.llamafit.nn.Projection;
import dev.llamafit.nn.RmsNorm;
import dev.llamafit.nn.Rope;
import dev.llamafit.nn.SwiGlu;
import dev.llamafit.tensor.DType;
import dev.llamafit.tensor.Tensor;

/**
 * x_mid = x_in + o(attention(rope(q(n1)), rope(k(n1)), v(n1))) with n1 = norm1(x_in);
 * x_out = x_mid + down(silu(gate(n2)) ⊙ up(n2)) with n2 = norm2(x_mid).
 *
 * <p>Both forwards run the same steps ({@link #queryKeyValue}, {@link #project}, {@link #mlp}; q/k/v and gate/up
 * each as one fused GEMM); they differ in where tensors live and in the attention core. Inference keeps the residual
 * stream in place, reuses one scratch row set for every block and attends over a KV cache; training writes each
 * tensor into the block's {@link BlockActivations} for backward and attends with saved probabilities.
 * Parameter gradients are accumulated into the tensors given at construction (null for none: a frozen base).
 * A module with a LoRA adapter adds scale·B·A·dropout(x) to its output, so the MLP runs its three projections
 * here, around the {@link SwiGlu} activation.
 *
 * <p>Mixed precision ({@link Context#half()} BF16 or F16) follows PyTorch's autocast: every tensor autocast holds in 16
 * bits is rounded to 16 bits where it is produced ({@link #round}), forward and backward, while the buffers and every
 * kernel stay fp32 (the GEMMs read 16-bit working weights); norms, softmax, the residual stream and weight gradients are
 * fp32. The values a block saves are then exactly representable in 16 bits, which is how {@link BlockActivations}
 * stores them.
 */
final class Block {
    private static final int MODULES = LinearModule.ALL.size();

    private final int layer;
    private final RmsNorm attnNorm, mlpNorm;
    private final Projection[] proj = new Projection[MODULES]; // by LinearModule ordinal
    private final Projection[] qkv, gateUp;                     // the fused groups
    private final Tensor[] dWeight = new Tensor[MODULES], dBias = new Tensor[MODULES];
    private final LoraLinear[] lora = new LoraLinear[MODULES];
    private final Tensor[] dA = new Tensor[MODULES], dB = new Tensor[MODULES];
    private final Tensor dAttnNorm, dMlpNorm;

    /**
     * @param w         weights by Hugging Face name
     * @param g         gradients by parameter name (full fine-tuning), or without base names (frozen base)
     * @param loraConfig adapters' settings, or null
     * @param adapters  LoRA A/B by PEFT key, or null
     * @param dAdapters their gradients, or null
     * @param half      mixed precision's 16-bit type (the adapters' rounding), or null
     */
    Block(LlamaConfig config, int layer, Map<String, Tensor> w, Map<String, Tensor> g, LoraConfig loraConfig,
          Map<String, Tensor> adapters, Map<String, Tensor> dAdapters, DType half) {
        this.layer = layer;
        attnNorm = new RmsNorm(w.get(ParameterLayout.inputNorm(layer)), config.rmsNormEps());
        mlpNorm = new RmsNorm(w.get(ParameterLayout.postAttentionNorm(layer)), config.rmsNormEps());
        dAttnNorm = g.get(ParameterLayout.inputNorm(layer));
        dMlpNorm = g.get(ParameterLayout.postAttentionNorm(layer));
        for (LinearModule m : LinearModule.ALL) {
            int i = m.ordinal();
            proj[i] = Projection.of(w, m.weight(layer), w.get(m.bias(layer)), config.quantization());
            dWeight[i] = g.get(m.weight(layer));
            dBias[i] = g.get(m.bias(layer));
            if (loraConfig != null && loraConfig.targets(m)) {
                String an = m.peftKey(layer, 'A'), bn = m.peftKey(layer, 'B');
                lora[i] = new LoraLinear(proj[i], adapters.get(an), adapters.get(bn), loraConfig.scale(), loraConfig.dropout(), half);
                dA[i] = dAdapters.get(an);
                dB[i] = dAdapters.get(bn);
            }
        }
        qkv = new Projection[] {proj[Q.ordinal()], proj[K.ordinal()], proj[V.ordinal()]};
        gateUp = new Projection[] {proj[GATE.ordinal()], proj[UP.ordinal()]};
    }

    /** A frozen block without adapters: what inference runs. */
    Block(LlamaConfig config, int layer, Map<String, Tensor> w) { this(config, layer, w, Map.of(), null, null, null, null); }

    /**
     * The call's shape and the pieces shared by all blocks.
     *
     * @param positions position of each of the N = B·T rows (RoPE)
     * @param train     dropout on (a training forward); off for evaluation and inference
     * @param seed      this step's dropout seed; each (layer, module) derives its own mask from it
     * @param half      mixed-precision training's 16-bit type, or null (fp32; inference)
     * @param flash     tiled attention (saves lse, not probs), or null for eager {@code attention}
     * @param attentionScratch training: flash attention's per-thread scratch (forward and backward); else unused
     */
    record Context(Kernels kernels, Rope rope, Attention attention, LlamaConfig config, int batch, int seqLen, int[] positions,
                   boolean train, long seed, DType half, FlashAttention flash, MemorySegment attentionScratch) {
        int rows() { return batch * seqLen; }
    }

    /** Mixed precision: x [n] rounded in place to the 16-bit type, as autocast stores this tensor; nothing in fp32. */
    private static void round(Context c, MemorySegment x, long n) {
        if (c.half() != null) c.kernels().round16(x, 0, n, c.half());
    }

    /** Mixed precision: dst [n] = src rounded to 16 bits (the 16-bit gradient of a linear output); else src itself. */
    private static MemorySegment rounded(Context c, MemorySegment src, MemorySegment dst, long n) {
        if (c.half() == null) return src;
        MemorySegment.copy(src, 0, dst, 0, n * 4);
        round(c, dst, n);
        return dst;
    }

    /** Inference scratch shared by all blocks (see ActivationLayout), N = B·T rows. */
    record Scratch(MemorySegment xn,     // [N, C] norm outputs, then branch outputs
                   MemorySegment q,      // [N, H·D]
                   MemorySegment k,      // [N, KvH·D]
                   MemorySegment v,      // [N, KvH·D]
                   MemorySegment att,    // [N, H·D]
                   MemorySegment scores, // attention scores, per thread
                   MemorySegment gate,   // [N, F]; silu(gate)·up in place
                   MemorySegment up) {}  // [N, F]

    /** Backward buffers shared by all blocks (see TrainingLayout's grad.* slots). */
    record Grads(MemorySegment dXn,    // [N, C]
                 MemorySegment dAtt,   // [N, H·D]
                 MemorySegment dQ,     // [N, H·D]
                 MemorySegment dK,     // [N, KvH·D]
                 MemorySegment dV,     // [N, KvH·D]
                 MemorySegment attention, // [threads, T·T]
                 MemorySegment loraDu, // [N, r] or null (no LoRA)
                 MemorySegment loraDx, // [N, max in] or null (no LoRA dropout)
                 MemorySegment weightGrad) {} // bf16-pure: fp32 [largest trainable matrix] for BF16 weight gradients; else null

    /** Mask seed of module m in this block: distinct per (step, layer, module), the same in a checkpoint recompute. */
    private long seed(Context c, LinearModule m) { return c.seed() ^ (0x632BE59BD9B4E019L * (layer * 8L + m.ordinal() + 1)); }

    // ---------------------------------------------------------------- forward

    /**
     * Inference: x [N, C] is the residual stream, updated in place to the block's output. With a cache the new keys
     * and values are stored at positions startPos… of this layer and attention reads all cached ones; without, the
     * sequence attends to itself (startPos 0).
     */
    void forward(Context c, MemorySegment x, Scratch s, KvCache cache, int startPos) {
        Kernels kk = c.kernels();
        int n = c.rows();
        long nc = (long) n * c.config().hiddenSize();
        attnNorm.forward(kk, x, 0, n, s.xn(), 0);
        queryKeyValue(c, null, s.xn(), s.q(), s.k(), s.v());
        Attention.KvView keys, values;
        if (cache != null) {
            keys = cache.keyView(layer);
            values = cache.valueView(layer);
            store(c, s.k(), keys, startPos);
            store(c, s.v(), values, startPos);
        } else {
            int kvDim = c.config().kvDim(), d = c.config().headDim();
            keys = new Attention.KvView(s.k(), 0, (long) c.seqLen() * kvDim, d, kvDim);
            values = new Attention.KvView(s.v(), 0, (long) c.seqLen() * kvDim, d, kvDim);
        }
        if (c.flash() != null) c.flash().forwardCached(kk, c.batch(), c.seqLen(), startPos, s.q(), keys, values, s.scores(), s.att());
        else c.attention().forward(kk, c.batch(), c.seqLen(), startPos, s.q(), keys, values, s.scores(), s.att());
        project(c, null, O, s.att(), s.xn());
        kk.add(x, 0, s.xn(), 0, nc);
        mlpNorm.forward(kk, x, 0, n, s.xn(), 0);
        mlp(c, null, s.xn(), s.gate(), s.up(), s.gate(), s.xn()); // down reads h before it writes xn
        kk.add(x, 0, s.xn(), 0, nc);
    }

    /** Training: runs the block on a.xIn(), filling a's saved activations, and writes the block output to out [N, C]. */
    void forward(Context c, BlockActivations a, MemorySegment out) {
        Kernels kk = c.kernels();
        int n = c.rows();
        long nc = (long) n * c.config().hiddenSize();
        attnNorm.forward(kk, a.xIn(), 0, n, a.xnAttn(), 0, a.invRmsAttn(), 0);
        round(c, a.xnAttn(), nc); // the q/k/v GEMMs' 16-bit input
        queryKeyValue(c, a, a.xnAttn(), a.q(), a.k(), a.v());
        if (c.flash() != null)
            c.flash().forward(kk, c.batch(), c.seqLen(), a.q(), a.k(), a.v(), a.att(), a.lse(), 0, c.attentionScratch());
        else c.attention().forwardTraining(kk, c.batch(), c.seqLen(), a.q(), a.k(), a.v(), a.probs(), 0, a.att());
        round(c, a.att(), (long) n * c.config().qDim());
        project(c, a, O, a.att(), a.xMid());
        round(c, a.xMid(), nc);   // o's 16-bit output, added to the fp32 residual
        kk.add(a.xMid(), 0, a.xIn(), 0, nc);
        mlpNorm.forward(kk, a.xMid(), 0, n, a.xnMlp(), 0, a.invRmsMlp(), 0);
        round(c, a.xnMlp(), nc);
        mlp(c, a, a.xnMlp(), a.gate(), a.up(), a.h(), out);
        round(c, out, nc);        // down's 16-bit output
        kk.add(out, 0, a.xMid(), 0, nc);
    }

    /** q, k, v = n1·Wqᵀ, n1·Wkᵀ, n1·Wvᵀ in one fused pass (+ adapters), then RoPE on q and k. a: null in inference. */
    private void queryKeyValue(Context c, BlockActivations a, MemorySegment xn, MemorySegment q, MemorySegment k, MemorySegment v) {
        Kernels kk = c.kernels();
        int n = c.rows();
        LlamaConfig cfg = c.config();
        Projection.forwardFused(kk, xn, 0, n, qkv, new MemorySegment[] {q, k, v});
        adapter(c, a, Q, xn, q);
        adapter(c, a, K, xn, k);
        adapter(c, a, V, xn, v);
        round(c, v, (long) n * cfg.kvDim());
        c.rope().apply(kk, q, 0, cfg.qDim(), n, cfg.numHeads(), c.positions());
        c.rope().apply(kk, k, 0, cfg.kvDim(), n, cfg.numKvHeads(), c.positions());
        round(c, q, (long) n * cfg.qDim()); // RoPE of a 16-bit q is 16-bit (rounded once, after it)
        round(c, k, (long) n * cfg.kvDim());
    }

    /** SwiGLU (Shazeer 2020): h = silu(gate(n2)) ⊙ up(n2), out = down(h); h may alias gate (inference keeps nothing). */
    private void mlp(Context c, BlockActivations a, MemorySegment xn, MemorySegment gate, MemorySegment up, MemorySegment h,
                     MemorySegment out) {
        Kernels kk = c.kernels();
        int n = c.rows();
        Projection.forwardFused(kk, xn, 0, n, gateUp, new MemorySegment[] {gate, up});
        adapter(c, a, GATE, xn, gate);
        adapter(c, a, UP, xn, up);
        long nf = (long) n * c.config().intermediateSize();
        round(c, gate, nf);
        round(c, up, nf);
        SwiGlu.forward(kk, h, gate, up, nf);
        round(c, h, nf);
        project(c, a, DOWN, h, out);
    }

    /** y [N, out] = module m of x (+ its adapter). */
    private void project(Context c, BlockActivations a, LinearModule m, MemorySegment x, MemorySegment y) {
        proj[m.ordinal()].forward(c.kernels(), x, 0, c.rows(), y, 0);
        adapter(c, a, m, x, y);
    }

    /** y [N, out] += module m's adapter term on input x, when m is targeted (training only: a holds its u and x). */
    private void adapter(Context c, BlockActivations a, LinearModule m, MemorySegment x, MemorySegment y) {
        int i = m.ordinal();
        if (lora[i] != null)
            lora[i].forwardAdapter(c.kernels(), x, 0, c.rows(), a.loraX()[i], a.loraU()[i], y, 0, c.train(), seed(c, m));
    }

    /** Copies new keys (or values) [B·T, KvH·D] into the cache at positions startPos…startPos+T−1. */
    private static void store(Context c, MemorySegment src, Attention.KvView dst, int startPos) {
        int d = c.config().headDim(), kvh = c.config().numKvHeads(), t = c.seqLen();
        long bytes = (long) d * 4;
        for (int b = 0; b < c.batch(); b++)
            for (int i = 0; i < t; i++)
                for (int h = 0; h < kvh; h++) {
                    long from = ((long) (b * t + i) * kvh + h) * d;
                    long to = dst.off() + b * dst.strideB() + h * dst.strideH() + (long) (startPos + i) * dst.strideT();
                    MemorySegment.copy(src, from * 4, dst.segment(), to * 4, bytes);
                }
    }

    // ---------------------------------------------------------------- backward

    /**
     * The training forward in reverse. On entry dX [N, C] holds dLoss/dx_out; on return, dLoss/dx_in (the residual
     * connections pass it through, each branch adds its part).
     */
    void backward(Context c, BlockActivations a, Grads s, MemorySegment dX) {
        Kernels kk = c.kernels();
        int n = c.rows();
        LlamaConfig cfg = c.config();
        long nc = (long) n * cfg.hiddenSize(), nf = (long) n * cfg.intermediateSize();
        long nq = (long) n * cfg.qDim(), nkv = (long) n * cfg.kvDim();
        // MLP branch: x_out = x_mid + down(silu(gate(n2)) ⊙ up(n2)). Under mixed precision every gradient of a 16-bit
        // tensor is rounded as autocast's would be: down's output gradient (a 16-bit copy of dX in dXn), dH, dGate, dUp, dXn.
        // dH overwrites h (read only for down's weight gradient, which comes first) and dUp overwrites up (SwiGLU's
        // backward reads each element before writing it): the MLP's backward needs no [N, F] buffers of its own.
        MemorySegment dH = a.h(), dUp = a.up();
        projectBackward(c, a, s, DOWN, a.h(), rounded(c, dX, s.dXn(), nc), dH, false);
        round(c, dH, nf);
        SwiGlu.backward(kk, a.gate(), a.up(), dH, dUp, nf);
        round(c, dH, nf);
        round(c, dUp, nf);
        projectBackward(c, a, s, GATE, a.xnMlp(), dH, s.dXn(), false);
        projectBackward(c, a, s, UP, a.xnMlp(), dUp, s.dXn(), true);
        round(c, s.dXn(), nc);
        mlpNorm.backward(kk, a.xMid(), 0, a.invRmsMlp(), 0, s.dXn(), 0, n, dX, 0, dMlpNorm);
        // Attention branch: x_mid = x_in + o(attention(...))
        projectBackward(c, a, s, O, a.att(), rounded(c, dX, s.dXn(), nc), s.dAtt(), false);
        round(c, s.dAtt(), nq);
        if (c.flash() != null)
            c.flash().backward(kk, c.batch(), c.seqLen(), a.q(), a.k(), a.v(), a.att(), a.lse(), 0, s.dAtt(),
                    s.dQ(), s.dK(), s.dV(), s.attention());
        else c.attention().backward(kk, c.batch(), c.seqLen(), a.q(), a.k(), a.v(), a.probs(), 0, s.dAtt(),
                s.dQ(), s.dK(), s.dV(), s.attention());
        c.rope().backward(kk, s.dQ(), 0, cfg.qDim(), n, cfg.numHeads(), c.positions());
        c.rope().backward(kk, s.dK(), 0, cfg.kvDim(), n, cfg.numKvHeads(), c.positions());
        round(c, s.dQ(), nq);
        round(c, s.dK(), nkv);
        round(c, s.dV(), nkv);
        projectBackward(c, a, s, Q, a.xnAttn(), s.dQ(), s.dXn(), false);
        projectBackward(c, a, s, K, a.xnAttn(), s.dK(), s.dXn(), true);
        projectBackward(c, a, s, V, a.xnAttn(), s.dV(), s.dXn(), true);
        round(c, s.dXn(), nc);
        attnNorm.backward(kk, a.xIn(), 0, a.invRmsAttn(), 0, s.dXn(), 0, n, dX, 0, dAttnNorm);
    }

    /**
     * Module m's backward: dXout = dY·W (+ the adapter's term), parameter gradients where there are buffers.
     * x is read only for a weight gradient, or as the adapter's input when there is no dropout buffer.
     */
    private void projectBackward(Context c, BlockActivations a, Grads s, LinearModule m, MemorySegment x, MemorySegment dY,
                                 MemorySegment dXout, boolean accumulate) {
        int i = m.ordinal(), n = c.rows();
        if (lora[i] == null) {
            proj[i].backward(c.kernels(), x, 0, dY, 0, n, dXout, 0, accumulate, dWeight[i], dBias[i], s.weightGrad());
            return;
        }
        MemorySegment xd = a.loraX()[i] != null ? a.loraX()[i] : x;
        lora[i].backward(c.kernels(), xd, a.loraU()[i], dY, 0, n, dXout, 0, accumulate, s.loraDu(), s.loraDx(), dA[i], dB[i], seed(c, m), s.weightGrad());
    }
}
