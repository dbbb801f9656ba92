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
        String act = root.path("hidden_act").asText("silu");
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
            int headDim = root.hasNonNull("head_dim") ? intField(root, "head_dim", file) : hidden / Math.max(1, heads);
            boolean attentionBias = root.path("attention_bias").asBoolean(false);
            boolean qkvBias = type.equals("qwen2") || attentionBias;
            boolean oBias = !type.equals("qwen2") && attentionBias;
            int window = 0;
            if (root.hasNonNull("sliding_window") && root.path("use_sliding_window").asBoolean(!type.equals("qwen2")))
                window = intField(root, "sliding_window", file);
            List<Integer> eos = new ArrayList<>();
            JsonNode eosNode = root.get("eos_token_id");
            if (eosNode != null && eosNode.isArray()) eosNode.forEach(n -> eos.add(n.asInt()));
            else if (eosNode != null && eosNode.isNumber()) eos.add(eosNode.asInt());
            return new LlamaConfig(type, hidden,
                    requiredInt(root, "intermediate_size", file),
                    requiredInt(root, "num_hidden_layers", file),
                    heads,
                    root.hasNonNull("num_key_value_heads") ? intField(root, "num_key_value_heads", file) : heads,
                    headDim,
                    requiredInt(root, "vocab_size", file),
                    root.hasNonNull("max_position_embeddings") ? intField(root, "max_position_embeddings", file) : defaultPositions,
                    root.path("rms_norm_eps").asDouble(1e-6),
                    root.path("rope_theta").asDouble(10000.0),
                    ropeScaling(root.get("rope_scaling"), file),
                    root.path("tie_word_embeddings").asBoolean(false),
                    qkvBias, oBias,
                    root.path("mlp_bias").asBoolean(false),
                    window,
                    root.hasNonNull("bos_token_id") ? root.get("bos_token_id").asInt() : -1,
                    eos);
        } catch (IllegalArgumentException e) {
            throw InputException.at(file, e.getMessage());
        }
    }

    private static RopeScaling ropeScaling(JsonNode n, Path file) {
        if (n == null || n.isNull()) return new RopeScaling.None();
        String type = n.has("rope_type") ? n.get("rope_type").asText() : n.path("type").asText("");
        return switch (type) {
            case "default" -> new RopeScaling.None();
            case "linear" -> new RopeScaling.Linear(n.path("factor").asDouble());
            case "llama3" -> new RopeScaling.Llama3(n.path("factor").asDouble(), n.path("low_freq_factor").asDouble(1),
                    n.path("high_freq_factor").asDouble(4), n.path("original_max_position_embeddings").asInt(8192));
            default -> throw InputException.at(file, "rope_scaling",
                    "unsupported rope_scaling type '" + type + "' (supported: linear, llama3)");
        };
    }

    private static int requiredInt(JsonNode root, String field, Path file) {
        if (!root.hasNonNull(field)) throw InputException.at(file, "missing required field '" + field + "'");
        return intField(root, field, file);
    }

    private static int intField(JsonNode root, String field, Path file) {
        JsonNode n = root.get(field);
        if (!n.canConvertToInt() || !n.isIntegralNumber())
            throw InputException.at(file, "field '" + field + "' must be an integer, got " + n);
        return n.asInt();
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
