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
import dev.llamafit.quant.Quantization;

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
        String type = JsonFields.optionalString(root, "model_type", null, file, "");
        if (type == null)
            throw InputException.at(file, "missing required field 'model_type' (expected one of " + LlamaConfig.SUPPORTED_TYPES + ")");
        if (!LlamaConfig.SUPPORTED_TYPES.contains(type)) {
            String arch = root.path("architectures").path(0).asText("");
            throw InputException.at(file, "unsupported architecture '" + type + "'" + (arch.isEmpty() ? "" : " (" + arch + ")")
                    + ": llamafit runs LLaMA-family models with model_type " + LlamaConfig.SUPPORTED_TYPES);
        }
        String act = JsonFields.optionalString(root, "hidden_act", "silu", file, "");
        if (!act.equals("silu"))
            throw InputException.at(file, "hidden_act '" + act + "' is not supported (LLaMA-family models use silu)");
        List<String> missing = new ArrayList<>();
        for (String f : REQUIRED) if (!root.hasNonNull(f)) missing.add("'" + f + "'");
        if (!missing.isEmpty())
            throw InputException.at(file, "missing required field" + (missing.size() > 1 ? "s " : " ") + String.join(", ", missing)
                    + " for model_type '" + type + "'");
        try {
            int hidden = integer(root, "hidden_size", file);
            int heads = integer(root, "num_attention_heads", file);
            int defaultPositions = type.equals("llama") ? 2048 : 32768;
            int headDim;
            if (JsonFields.value(root, "head_dim") != null) headDim = integer(root, "head_dim", file);
            else {
                // transformers derives head_dim as hidden_size // num_attention_heads and requires them to divide.
                if (heads > 0 && hidden % heads != 0)
                    throw InputException.at(file, "hidden_size (" + hidden + ") must be a multiple of num_attention_heads (" + heads
                            + ") when head_dim is not given");
                headDim = hidden / Math.max(1, heads);
            }
            boolean attentionBias = JsonFields.optionalBoolean(root, "attention_bias", false, file, "");
            boolean qkvBias = type.equals("qwen2") || attentionBias;
            boolean oBias = !type.equals("qwen2") && attentionBias;
            boolean useWindow = JsonFields.optionalBoolean(root, "use_sliding_window", !type.equals("qwen2"), file, "");
            int window = useWindow ? optionalInt(root, "sliding_window", 0, file) : 0;
            return new LlamaConfig(type, hidden,
                    integer(root, "intermediate_size", file),
                    integer(root, "num_hidden_layers", file),
                    heads,
                    optionalInt(root, "num_key_value_heads", heads, file),
                    headDim,
                    integer(root, "vocab_size", file),
                    optionalInt(root, "max_position_embeddings", defaultPositions, file),
                    JsonFields.optionalNumber(root, "rms_norm_eps", 1e-6, file, ""),
                    JsonFields.optionalNumber(root, "rope_theta", 10000.0, file, ""),
                    ropeScaling(root, file),
                    JsonFields.optionalBoolean(root, "tie_word_embeddings", false, file, ""),
                    qkvBias, oBias,
                    JsonFields.optionalBoolean(root, "mlp_bias", false, file, ""),
                    window,
                    optionalInt(root, "bos_token_id", -1, file),
                    eosTokenIds(root, file),
                    quantization(root, file));
        } catch (IllegalArgumentException e) {
            throw InputException.at(file, e.getMessage());
        }
    }

    // Integer fields take any int here: LlamaConfig and its limits check the ranges, with messages that say why.

    private static int integer(JsonNode obj, String field, Path file) {
        return JsonFields.requiredInt(obj, field, Integer.MIN_VALUE, Integer.MAX_VALUE, file, "");
    }

    private static int optionalInt(JsonNode obj, String field, int dflt, Path file) {
        return JsonFields.optionalInt(obj, field, dflt, Integer.MIN_VALUE, Integer.MAX_VALUE, file, "");
    }

    /** One id or a list of ids; absent or null is none. */
    private static List<Integer> eosTokenIds(JsonNode root, Path file) {
        JsonNode n = JsonFields.value(root, "eos_token_id");
        List<Integer> eos = new ArrayList<>();
        if (n == null) return eos;
        if (n.isArray()) {
            for (int i = 0; i < n.size(); i++)
                eos.add(JsonFields.intIn(n.get(i), Integer.MIN_VALUE, Integer.MAX_VALUE, file, "eos_token_id[" + i + "]"));
        } else if (n.isNumber()) {
            eos.add(JsonFields.intIn(n, Integer.MIN_VALUE, Integer.MAX_VALUE, file, "eos_token_id"));
        } else {
            throw JsonFields.wrong(file, "", "eos_token_id", "an integer or a list of integers", n);
        }
        return eos;
    }

    /**
     * transformers' {@code quantization_config} for bitsandbytes (BitsAndBytesConfig): load_in_8bit is LLM.int8() with
     * llm_int8_threshold, load_in_4bit with bnb_4bit_quant_type nf4 is NF4 with bnb_4bit_use_double_quant. Absent:
     * not quantised. Other methods (GPTQ, AWQ, …) and fp4 are refused by name.
     */
    private static Quantization quantization(JsonNode root, Path file) {
        JsonNode n = JsonFields.optionalObject(root, "quantization_config", file, "");
        if (n == null) return null;
        String where = "quantization_config";
        String method = JsonFields.optionalString(n, "quant_method", "bitsandbytes", file, where);
        if (!method.equals("bitsandbytes"))
            throw InputException.at(file, where, "quant_method '" + method + "' is not supported (llamafit reads bitsandbytes int8 and nf4 folders)");
        boolean int8 = JsonFields.optionalBoolean(n, "load_in_8bit", false, file, where);
        boolean four = JsonFields.optionalBoolean(n, "load_in_4bit", false, file, where);
        if (int8 == four)
            throw InputException.at(file, where, "exactly one of load_in_8bit and load_in_4bit must be true, got "
                    + int8 + " and " + four);
        if (int8) return Quantization.int8(JsonFields.optionalNumber(n, "llm_int8_threshold", Quantization.DEFAULT_INT8_THRESHOLD, file, where));
        String type = JsonFields.optionalString(n, "bnb_4bit_quant_type", "fp4", file, where);
        if (!type.equals("nf4"))
            throw InputException.at(file, where, "bnb_4bit_quant_type '" + type + "' is not supported (llamafit reads nf4)");
        return Quantization.nf4(JsonFields.optionalBoolean(n, "bnb_4bit_use_double_quant", false, file, where));
    }

    private static RopeScaling ropeScaling(JsonNode root, Path file) {
        JsonNode n = JsonFields.optionalObject(root, "rope_scaling", file, "");
        if (n == null) return new RopeScaling.None();
        String where = "rope_scaling";
        String type = JsonFields.value(n, "rope_type") != null ? JsonFields.optionalString(n, "rope_type", "", file, where)
                : JsonFields.optionalString(n, "type", "", file, where);
        return switch (type) {
            case "default" -> new RopeScaling.None();
            case "linear" -> new RopeScaling.Linear(JsonFields.requiredNumber(n, "factor", file, where));
            case "llama3" -> new RopeScaling.Llama3(JsonFields.requiredNumber(n, "factor", file, where),
                    JsonFields.optionalNumber(n, "low_freq_factor", 1, file, where),
                    JsonFields.optionalNumber(n, "high_freq_factor", 4, file, where),
                    JsonFields.optionalInt(n, "original_max_position_embeddings", 8192, Integer.MIN_VALUE, Integer.MAX_VALUE, file, where));
            default -> throw InputException.at(file, "rope_scaling",
                    "unsupported rope_scaling type '" + type + "' (supported: linear, llama3)");
        };
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
        if (c.quantization() != null) m.put("quantization_config", c.quantization().toConfig("float32"));
        return m;
    }
}
