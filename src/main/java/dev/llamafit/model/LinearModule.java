// The seven linear modules of a LLaMA decoder block: the one table of their names, parents, shapes and PEFT keys.
package dev.llamafit.model;

import java.util.List;
import java.util.Optional;

/**
 * Every linear layer inside a decoder block, in the order the block runs them (PEFT's "all-linear" for LLaMA, which
 * leaves out the LM head). Parameter layouts, adapter layouts, the PEFT adapter reader and writer, the block and the
 * PyTorch profile all read names and shapes from here, so each module name is spelled in this file only.
 *
 * <p>Weights are stored [out, in] as in PyTorch and safetensors; a LoRA adapter of the module has A [r, in] and
 * B [out, r]. Hugging Face names the weight {@code model.layers.{i}.{parent}.{name}.weight}; PEFT saves the adapter
 * of a {@code LlamaForCausalLM} under {@code base_model.model.} + that module path + {@code .lora_A.weight}.
 */
public enum LinearModule {
    Q("q_proj", Parent.SELF_ATTN, Dim.Q, Dim.C),
    K("k_proj", Parent.SELF_ATTN, Dim.KV, Dim.C),
    V("v_proj", Parent.SELF_ATTN, Dim.KV, Dim.C),
    O("o_proj", Parent.SELF_ATTN, Dim.C, Dim.Q),
    GATE("gate_proj", Parent.MLP, Dim.F, Dim.C),
    UP("up_proj", Parent.MLP, Dim.F, Dim.C),
    DOWN("down_proj", Parent.MLP, Dim.C, Dim.F);

    /** What PeftModel and LoraModel put in front of the transformers module path. */
    public static final String PEFT_PREFIX = "base_model.model.";

    /** PEFT's default LoRA targets for LLaMA, as a flag value (a constant, so command-line defaults can name it). */
    public static final String DEFAULT_LORA_TARGETS = "q_proj,v_proj";

    /** All seven, in block order. */
    public static final List<LinearModule> ALL = List.of(values());

    /** The submodule of a decoder block that holds a linear layer, with its transformers attribute name. */
    public enum Parent {
        SELF_ATTN("self_attn"), MLP("mlp");

        private final String key;

        Parent(String key) { this.key = key; }

        /** "self_attn" or "mlp". */
        public String key() { return key; }
    }

    /** A size of the config, in the dimension alphabet of DESIGN §9. */
    private enum Dim {
        C("C"), Q("H·D"), KV("KvH·D"), F("F");

        final String letters;

        Dim(String letters) { this.letters = letters; }

        int of(LlamaConfig c) {
            return switch (this) {
                case C -> c.hiddenSize();
                case Q -> c.qDim();
                case KV -> c.kvDim();
                case F -> c.intermediateSize();
            };
        }
    }

    private final String key;
    private final Parent parent;
    private final Dim out, in;

    LinearModule(String key, Parent parent, Dim out, Dim in) {
        this.key = key;
        this.parent = parent;
        this.out = out;
        this.in = in;
    }

    /** The transformers attribute name, e.g. "q_proj" (also the PEFT target name). */
    public String key() { return key; }

    public Parent parent() { return parent; }

    /** Output features: rows of the [out, in] weight. */
    public int out(LlamaConfig c) { return out.of(c); }

    /** Input features: columns of the [out, in] weight. */
    public int in(LlamaConfig c) { return in.of(c); }

    /** The dimension letters of out and in, for messages: "H·D" and "C" for q_proj. */
    public String outLetters() { return out.letters; }

    public String inLetters() { return in.letters; }

    /** Whether the config gives this module a bias (Qwen2's q/k/v; Llama's attention_bias and mlp_bias). */
    public boolean hasBias(LlamaConfig c) {
        return switch (this) {
            case Q, K, V -> c.qkvBias();
            case O -> c.oBias();
            case GATE, UP, DOWN -> c.mlpBias();
        };
    }

    /** The transformers module path, e.g. {@code model.layers.3.self_attn.q_proj}. */
    public String path(int layer) { return ParameterLayout.layerPrefix(layer) + parent.key + "." + key; }

    /** The Hugging Face name of the weight [out, in]. */
    public String weight(int layer) { return path(layer) + ".weight"; }

    /** The Hugging Face name of the bias [out]. */
    public String bias(int layer) { return path(layer) + ".bias"; }

    /** PEFT's key of LoRA factor {@code factor} ('A' [r, in] or 'B' [out, r]) of this module in {@code layer}. */
    public String peftKey(int layer, char factor) {
        if (factor != 'A' && factor != 'B') throw new IllegalArgumentException("LoRA factor must be A or B, got " + factor);
        return PEFT_PREFIX + path(layer) + ".lora_" + factor + ".weight";
    }

    /** The module named {@code key} ("q_proj" …), if it is one of the seven. */
    public static Optional<LinearModule> byKey(String key) {
        for (LinearModule m : values()) if (m.key.equals(key)) return Optional.of(m);
        return Optional.empty();
    }

    /** The keys of all seven, in block order. */
    public static List<String> keys() { return ALL.stream().map(LinearModule::key).toList(); }
}
