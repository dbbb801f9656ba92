// The list of a model's parameter tensors (Hugging Face names and shapes), computed from its config.
package dev.llamafit.model;

import java.util.ArrayList;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

import dev.llamafit.quant.Quantization;
import dev.llamafit.quant.QuantizedWeights;
import dev.llamafit.tensor.DType;
import dev.llamafit.tensor.Shape;
import dev.llamafit.tensor.TensorSpec;

/**
 * Every parameter of a LLaMA-family model as a {@link TensorSpec}, in Hugging Face naming
 * ({@code model.layers.{i}.self_attn.q_proj.weight}, …). With tied embeddings the LM head is not listed:
 * it is the embedding matrix. Loaders check files against this list, the planner sums it.
 */
public final class ParameterLayout {
    public static final String EMBED = "model.embed_tokens.weight";
    public static final String NORM = "model.norm.weight";
    public static final String LM_HEAD = "lm_head.weight";

    private final List<TensorSpec> specs;

    private ParameterLayout(List<TensorSpec> specs) { this.specs = Collections.unmodifiableList(specs); }

    /** The layout of {@code config} with every parameter stored as {@code dtype}. */
    public static ParameterLayout of(LlamaConfig config, DType dtype) {
        int c = config.hiddenSize(), v = config.vocabSize();
        List<TensorSpec> s = new ArrayList<>();
        s.add(new TensorSpec(EMBED, Shape.of(v, c), dtype, "embedding"));
        for (int l = 0; l < config.numLayers(); l++) {
            for (LinearModule m : LinearModule.ALL) {
                // Each sub-block's norm comes just before its first projection, as transformers lists them.
                if (m == LinearModule.Q) s.add(new TensorSpec(inputNorm(l), Shape.of(c), dtype, "norm"));
                if (m == LinearModule.GATE) s.add(new TensorSpec(postAttentionNorm(l), Shape.of(c), dtype, "norm"));
                String component = m.parent() == LinearModule.Parent.MLP ? "mlp" : "attention";
                s.add(new TensorSpec(m.weight(l), Shape.of(m.out(config), m.in(config)), dtype, component));
                if (m.hasBias(config)) s.add(new TensorSpec(m.bias(l), Shape.of(m.out(config)), dtype, component));
            }
        }
        s.add(new TensorSpec(NORM, Shape.of(c), dtype, "norm"));
        if (!config.tieWordEmbeddings()) s.add(new TensorSpec(LM_HEAD, Shape.of(v, c), dtype, "lm_head"));
        return new ParameterLayout(s);
    }

    public static String layerPrefix(int layer) { return "model.layers." + layer + "."; }

    /** The gain [C] of block {@code layer}'s attention norm. */
    public static String inputNorm(int layer) { return layerPrefix(layer) + "input_layernorm.weight"; }

    /** The gain [C] of block {@code layer}'s MLP norm. */
    public static String postAttentionNorm(int layer) { return layerPrefix(layer) + "post_attention_layernorm.weight"; }

    public List<TensorSpec> specs() { return specs; }

    /**
     * Whether a quantised base stores {@code spec} as int8/NF4: the weight matrices of the blocks' linear layers (attention
     * and MLP components, rank 2). Embeddings, the LM head, norms and biases keep their stored dtype, as transformers does
     * with bitsandbytes.
     */
    public static boolean isQuantizable(TensorSpec spec) {
        return spec.shape().rank() == 2 && (spec.component().equals("attention") || spec.component().equals("mlp"));
    }

    /**
     * The bytes of the parameters as a frozen base quantised as {@code q} holds them: the quantisable matrices in their
     * bitsandbytes tensors ({@link QuantizedWeights#specs}), every other matrix as {@code matrices} (the stored dtype),
     * vectors as F32.
     */
    public static List<TensorSpec> quantizedSpecs(LlamaConfig config, Quantization q, DType matrices) {
        List<TensorSpec> out = new ArrayList<>();
        for (TensorSpec s : of(config, DType.F32).specs()) {
            if (isQuantizable(s)) {
                String prefix = s.name().substring(0, s.name().length() - ".weight".length());
                out.addAll(QuantizedWeights.specs(q, prefix, s.shape().dim(0), s.shape().dim(1)));
            } else {
                out.add(new TensorSpec(s.name(), s.shape(), s.shape().rank() < 2 ? DType.F32 : matrices, s.component()));
            }
        }
        return out;
    }

    public long parameterCount() {
        long n = 0;
        for (TensorSpec t : specs) n = Math.addExact(n, t.elements());
        return n;
    }

    public long bytes() {
        long n = 0;
        for (TensorSpec t : specs) n = Math.addExact(n, t.bytes());
        return n;
    }

    /** Parameter counts by component (embedding, attention, mlp, norm, lm_head), in layout order. */
    public Map<String, Long> countsByComponent() {
        Map<String, Long> m = new LinkedHashMap<>();
        for (TensorSpec t : specs) m.merge(t.component(), t.elements(), Math::addExact);
        return m;
    }
}
