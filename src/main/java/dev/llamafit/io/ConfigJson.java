// Hugging Face config.json <-> LlamaConfig, for the llama, mistral and qwen2 model types.
package dev.llamafit.io;

import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

import com.fasterxml.jackson.databind.JsonNode;

import dev.llamafit.model.LlamaConfig;
import dev.llamafit.model.RopeScaling;

/**
 * Reads and writes the model part of a Hugging Face {@code config.json}. Fields follow transformers'
 * LlamaConfig, MistralConfig and Qwen2Config, with their defaults where a field is optional.
 */
public final class ConfigJson {
    /** Fields without a default in transformers' configs that llamafit needs. */
    private static final List<String> REQUIRED = List.of("hidden_size", "intermediate_size", "num_hidden_layers",
            "num_attention_heads", "vocab_size");

    private ConfigJson() {}

    public static LlamaConfig read(Path file) {
        return parse(Json.read(file), file);
    }

    public static LlamaConfig parse(JsonNode root, Path file) {
        if (!root.isObject()) throw InputException.at(file, "expected a JSON object");
        JsonNode typeNode = root.get("model_type");
        if (typeNode == null || !typeNode.isTextual())
            throw InputException.at(file, "missing required field 'model_type' (expected one of " + LlamaConfig.SUPPORTED_TYPES + ")");
        String type = typeNode.asText();
        if (!LlamaConfig.SUPPORTED_TYPES.contains(type)) {
            String arch = root.path("architectures").path(0).asText("");
            throw InputException.at(file, "unsupported architecture '" + type + "'" + (arch.isEmpty() ? "" : " (" + arch + ")")
                    + ": llamafit runs LLaMA-family models with model_type " + LlamaConfig.SUPPORTED_TYPES);
        }
        String act = string(root, "hidden_act", "silu", file);
        if (!act.equals("silu"))
            throw InputException.at(file, "hidden_act '" + act + "' is not supported (LLaMA-family models use silu)");
        List<String> missing = new ArrayList<>();
        for (String f : REQUIRED) if (!root.hasNonNull(f)) missing.add("'" + f + "'");
        if (!missing.isEmpty())
            throw InputException.at(file, "missing required field" + (missing.size() > 1 ? "s " : " ") + String.join(", ", missing)
                    + " for model_type '" + type + "'");
        try {
            int hidden = requiredInt(root, "hidden_size", file);
            int heads = requiredInt(root, "num_attention_heads", file);
            int defaultPositions = type.equals("llama") ? 2048 : 32768;
            int headDim;
            if (root.hasNonNull("head_dim")) headDim = intField(root, "head_dim", file);
            else {
                // transformers derives head_dim as hidden_size // num_attention_heads and requires them to divide.
                if (heads > 0 && hidden % heads != 0)
                    throw InputException.at(file, "hidden_size (" + hidden + ") must be a multiple of num_attention_heads (" + heads
                            + ") when head_dim is not given");
                headDim = hidden / Math.max(1, heads);
            }
            boolean attentionBias = bool(root, "attention_bias", false, file);
            boolean qkvBias = type.equals("qwen2") || attentionBias;
            boolean oBias = !type.equals("qwen2") && attentionBias;
            int window = 0;
            boolean useWindow = bool(root, "use_sliding_window", !type.equals("qwen2"), file);
            if (root.hasNonNull("sliding_window") && useWindow) window = intField(root, "sliding_window", file);
            List<Integer> eos = new ArrayList<>();
            JsonNode eosNode = root.get("eos_token_id");
            if (eosNode != null && eosNode.isArray()) {
                for (int i = 0; i < eosNode.size(); i++) eos.add(intValue(eosNode.get(i), "eos_token_id[" + i + "]", file));
            } else if (eosNode != null && !eosNode.isNull()) {
                if (!eosNode.isIntegralNumber())
                    throw InputException.at(file, "field 'eos_token_id' must be an integer or a list of integers, got " + eosNode);
                eos.add(intValue(eosNode, "eos_token_id", file));
            }
            return new LlamaConfig(type, hidden,
                    requiredInt(root, "intermediate_size", file),
                    requiredInt(root, "num_hidden_layers", file),
                    heads,
                    root.hasNonNull("num_key_value_heads") ? intField(root, "num_key_value_heads", file) : heads,
                    headDim,
                    requiredInt(root, "vocab_size", file),
                    root.hasNonNull("max_position_embeddings") ? intField(root, "max_position_embeddings", file) : defaultPositions,
                    number(root, "rms_norm_eps", 1e-6, file),
                    number(root, "rope_theta", 10000.0, file),
                    ropeScaling(root.get("rope_scaling"), file),
                    bool(root, "tie_word_embeddings", false, file),
                    qkvBias, oBias,
                    bool(root, "mlp_bias", false, file),
                    window,
                    root.hasNonNull("bos_token_id") ? intField(root, "bos_token_id", file) : -1,
                    eos);
        } catch (IllegalArgumentException e) {
            throw InputException.at(file, e.getMessage());
        }
    }

    private static RopeScaling ropeScaling(JsonNode n, Path file) {
        if (n == null || n.isNull()) return new RopeScaling.None();
        if (!n.isObject()) throw InputException.at(file, "field 'rope_scaling' must be an object or null, got " + n);
        String type = n.hasNonNull("rope_type") ? string(n, "rope_type", "", "rope_scaling.", file) : string(n, "type", "", "rope_scaling.", file);
        return switch (type) {
            case "default" -> new RopeScaling.None();
            case "linear" -> new RopeScaling.Linear(requiredNumber(n, "factor", "rope_scaling.", file));
            case "llama3" -> new RopeScaling.Llama3(requiredNumber(n, "factor", "rope_scaling.", file),
                    number(n, "low_freq_factor", 1, "rope_scaling.", file), number(n, "high_freq_factor", 4, "rope_scaling.", file),
                    n.hasNonNull("original_max_position_embeddings")
                            ? intValue(n.get("original_max_position_embeddings"), "rope_scaling.original_max_position_embeddings", file) : 8192);
            default -> throw InputException.at(file, "rope_scaling",
                    "unsupported rope_scaling type '" + type + "' (supported: linear, llama3)");
        };
    }

    // Strict field readers: null or absent gives the default, any other JSON type than the field's is bad input that
    // names the file, the field and the value (Jackson's asDouble/asBoolean/asInt would turn "tiny" into 0 silently).

    private static int requiredInt(JsonNode root, String field, Path file) {
        if (!root.hasNonNull(field)) throw InputException.at(file, "missing required field '" + field + "'");
        return intField(root, field, file);
    }

    private static int intField(JsonNode root, String field, Path file) {
        return intValue(root.get(field), field, file);
    }

    private static int intValue(JsonNode n, String field, Path file) {
        if (n == null || !n.isIntegralNumber())
            throw InputException.at(file, "field '" + field + "' must be an integer, got " + n);
        if (!n.canConvertToInt())
            throw InputException.at(file, "field '" + field + "' must be an integer between " + Integer.MIN_VALUE + " and "
                    + Integer.MAX_VALUE + ", got " + n);
        return n.intValue();
    }

    private static double number(JsonNode root, String field, double dflt, Path file) {
        return number(root, field, dflt, "", file);
    }

    private static double number(JsonNode obj, String field, double dflt, String prefix, Path file) {
        return obj.hasNonNull(field) ? requiredNumber(obj, field, prefix, file) : dflt;
    }

    private static double requiredNumber(JsonNode obj, String field, String prefix, Path file) {
        JsonNode n = obj.get(field);
        if (n == null || n.isNull()) throw InputException.at(file, "missing required field '" + prefix + field + "'");
        if (!n.isNumber()) throw InputException.at(file, "field '" + prefix + field + "' must be a number, got " + n);
        double v = n.doubleValue();
        if (!Double.isFinite(v)) throw InputException.at(file, "field '" + prefix + field + "' must be a finite number, got " + n);
        return v;
    }

    private static boolean bool(JsonNode root, String field, boolean dflt, Path file) {
        JsonNode n = root.get(field);
        if (n == null || n.isNull()) return dflt;
        if (!n.isBoolean()) throw InputException.at(file, "field '" + field + "' must be true or false, got " + n);
        return n.booleanValue();
    }

    private static String string(JsonNode root, String field, String dflt, Path file) {
        return string(root, field, dflt, "", file);
    }

    private static String string(JsonNode obj, String field, String dflt, String prefix, Path file) {
        JsonNode n = obj.get(field);
        if (n == null || n.isNull()) return dflt;
        if (!n.isTextual()) throw InputException.at(file, "field '" + prefix + field + "' must be a string, got " + n);
        return n.textValue();
    }

    /** The config.json of a model, in transformers' field names. */
    public static Map<String, Object> toJson(LlamaConfig c) {
        Map<String, Object> m = new LinkedHashMap<>();
        m.put("architectures", List.of(switch (c.modelType()) {
            case "mistral" -> "MistralForCausalLM";
            case "qwen2" -> "Qwen2ForCausalLM";
            default -> "LlamaForCausalLM";
        }));
        m.put("model_type", c.modelType());
        m.put("hidden_size", c.hiddenSize());
        m.put("intermediate_size", c.intermediateSize());
        m.put("num_hidden_layers", c.numLayers());
        m.put("num_attention_heads", c.numHeads());
        m.put("num_key_value_heads", c.numKvHeads());
        if (c.headDim() != c.hiddenSize() / c.numHeads()) m.put("head_dim", c.headDim());
        m.put("vocab_size", c.vocabSize());
        m.put("max_position_embeddings", c.maxPositions());
        m.put("rms_norm_eps", c.rmsNormEps());
        m.put("rope_theta", c.ropeTheta());
        m.put("rope_scaling", switch (c.ropeScaling()) {
            case RopeScaling.None n -> null;
            case RopeScaling.Linear l -> Map.of("rope_type", "linear", "factor", l.factor());
            case RopeScaling.Llama3 l -> Map.of("rope_type", "llama3", "factor", l.factor(), "low_freq_factor", l.lowFreqFactor(),
                    "high_freq_factor", l.highFreqFactor(), "original_max_position_embeddings", l.originalMaxPositions());
        });
        m.put("tie_word_embeddings", c.tieWordEmbeddings());
        if (!c.modelType().equals("qwen2")) m.put("attention_bias", c.oBias());
        m.put("mlp_bias", c.mlpBias());
        if (c.slidingWindow() > 0) m.put("sliding_window", c.slidingWindow());
        m.put("hidden_act", "silu");
        if (c.bosTokenId() >= 0) m.put("bos_token_id", c.bosTokenId());
        if (c.eosTokenIds().size() == 1) m.put("eos_token_id", c.eosTokenIds().get(0));
        else if (!c.eosTokenIds().isEmpty()) m.put("eos_token_id", c.eosTokenIds());
        m.put("torch_dtype", "float32");
        return m;
    }
}
