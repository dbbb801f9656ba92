// PEFT's tensor names for LoRA on LLaMA blocks, and the [out, in] shape each adapted linear layer has.
package dev.llamafit.peft;

import java.util.Optional;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

import dev.llamafit.model.LlamaConfig;
import dev.llamafit.model.LoraConfig;
import dev.llamafit.model.ParameterLayout;

/**
 * PEFT saves a LoRA adapter of a {@code LlamaForCausalLM} under the wrapped module's path, prefixed by
 * {@code base_model.model.} (PeftModel → LoraModel → the transformers model), with the adapter name removed:
 * {@code base_model.model.model.layers.{i}.self_attn.q_proj.lora_A.weight} holds A [r, in] and
 * {@code ….lora_B.weight} holds B [out, r]. Files from very old PEFT versions kept the adapter name
 * ({@code lora_A.default.weight}); {@link #parse} accepts that spelling too.
 */
public final class PeftKeys {
    /** What PeftModel and LoraModel add in front of the transformers module path. */
    public static final String PREFIX = "base_model.model.";

    private static final Pattern KEY = Pattern.compile(
            "base_model\\.model\\.model\\.layers\\.(\\d{1,9})\\.(self_attn|mlp)\\.([A-Za-z0-9_]+)\\.lora_([AB])(?:\\.default)?\\.weight");

    private PeftKeys() {}

    /** One adapter tensor's place: layer, module (q_proj …) and which factor ('A' or 'B'). */
    public record Key(int layer, String parent, String module, char factor) {
        /** The canonical PEFT name (no adapter name). */
        public String name() { return factor == 'A' ? loraA(layer, module) : loraB(layer, module); }

        /** Whether {@code parent} (self_attn or mlp) is where a LLaMA block keeps {@code module}. */
        public boolean knownModule() { return LoraConfig.ALL_LINEAR.contains(module) && parent.equals(parentOf(module)); }
    }

    /** Parses an adapter tensor name; empty if it is not a LoRA factor of a block linear layer. */
    public static Optional<Key> parse(String name) {
        Matcher m = KEY.matcher(name);
        if (!m.matches()) return Optional.empty();
        return Optional.of(new Key(Integer.parseInt(m.group(1)), m.group(2), m.group(3), m.group(4).charAt(0)));
    }

    /** "self_attn" for q/k/v/o_proj, "mlp" for gate/up/down_proj. */
    public static String parentOf(String module) {
        return switch (module) {
            case "q_proj", "k_proj", "v_proj", "o_proj" -> "self_attn";
            case "gate_proj", "up_proj", "down_proj" -> "mlp";
            default -> throw new IllegalArgumentException("not a LLaMA block linear layer: " + module);
        };
    }

    /** The transformers module path, e.g. {@code model.layers.0.self_attn.q_proj}. */
    public static String modulePath(int layer, String module) {
        return ParameterLayout.layerPrefix(layer) + parentOf(module) + "." + module;
    }

    /** The base weight the adapter changes (Hugging Face name). */
    public static String baseWeight(int layer, String module) { return modulePath(layer, module) + ".weight"; }

    public static String loraA(int layer, String module) { return PREFIX + modulePath(layer, module) + ".lora_A.weight"; }

    public static String loraB(int layer, String module) { return PREFIX + modulePath(layer, module) + ".lora_B.weight"; }

    /** {out, in} of the base linear layer: A is then [r, in] and B [out, r]. */
    public static int[] outIn(LlamaConfig c, String module) {
        return switch (module) {
            case "q_proj" -> new int[] {c.qDim(), c.hiddenSize()};
            case "k_proj", "v_proj" -> new int[] {c.kvDim(), c.hiddenSize()};
            case "o_proj" -> new int[] {c.hiddenSize(), c.qDim()};
            case "gate_proj", "up_proj" -> new int[] {c.intermediateSize(), c.hiddenSize()};
            case "down_proj" -> new int[] {c.hiddenSize(), c.intermediateSize()};
            default -> throw new IllegalArgumentException("not a LLaMA block linear layer: " + module);
        };
    }

    /** The dimension letters of {out, in} (DESIGN §9 alphabet), for messages: {"H·D", "C"} for q_proj. */
    public static String[] outInLetters(String module) {
        return switch (module) {
            case "q_proj" -> new String[] {"H·D", "C"};
            case "k_proj", "v_proj" -> new String[] {"KvH·D", "C"};
            case "o_proj" -> new String[] {"C", "H·D"};
            case "gate_proj", "up_proj" -> new String[] {"F", "C"};
            case "down_proj" -> new String[] {"C", "F"};
            default -> throw new IllegalArgumentException("not a LLaMA block linear layer: " + module);
        };
    }
}
