// PEFT LoRA adapter folders (adapter_config.json + adapter_model.safetensors): read, validate, write.
package dev.llamafit.io;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.SequencedMap;
import java.util.Set;
import java.util.TreeMap;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import java.util.regex.PatternSyntaxException;

import com.fasterxml.jackson.databind.JsonNode;

import dev.llamafit.io.safetensors.SafetensorsFile;
import dev.llamafit.io.safetensors.SafetensorsWriter;
import dev.llamafit.memory.Category;
import dev.llamafit.memory.MemoryLedger;
import dev.llamafit.model.LinearModule;
import dev.llamafit.model.LlamaConfig;
import dev.llamafit.model.LoraConfig;
import dev.llamafit.tensor.DType;
import dev.llamafit.tensor.Shape;
import dev.llamafit.tensor.Tensor;

/**
 * The folder PEFT's {@code PeftModel.save_pretrained} writes for a LoRA adapter and {@code PeftModel.from_pretrained}
 * reads: {@code adapter_config.json} (the LoraConfig dataclass as JSON, sorted keys) and {@code adapter_model.safetensors}
 * (keys as {@link LinearModule#peftKey} spells them, {@code __metadata__ {"format": "pt"}}). Everything read is
 * checked against the base model's config before use; a mismatch names the file, the key and the expected and found
 * shapes. Merging an adapter into a model happens above this package (in peft).
 */
public final class PeftAdapters {
    public static final String CONFIG_FILE = "adapter_config.json";
    public static final String WEIGHTS_FILE = "adapter_model.safetensors";
    /** Written by PEFT before safetensors became its default (a pickle; llamafit does not read pickles). */
    static final String LEGACY_WEIGHTS_FILE = "adapter_model.bin";

    /** PEFT's default target_modules for llama, mistral and qwen2 when the config has none. */
    static final List<String> DEFAULT_TARGETS = LoraConfig.parseTargets(LinearModule.DEFAULT_LORA_TARGETS);

    /**
     * PEFT saves a LoRA adapter of a {@code LlamaForCausalLM} under the wrapped module's path, prefixed by
     * {@code base_model.model.}: {@code base_model.model.model.layers.{i}.self_attn.q_proj.lora_A.weight}. Files from
     * very old PEFT versions kept the adapter name ({@code lora_A.default.weight}); this accepts that spelling too.
     */
    private static final Pattern KEY = Pattern.compile(Pattern.quote(LinearModule.PEFT_PREFIX)
            + "model\\.layers\\.(\\d{1,9})\\.(" + String.join("|", parents()) + ")\\.([A-Za-z0-9_]+)\\.lora_([AB])(?:\\.default)?\\.weight");

    private static List<String> parents() {
        return java.util.Arrays.stream(LinearModule.Parent.values()).map(LinearModule.Parent::key).toList();
    }

    private PeftAdapters() {}

    /** One adapter tensor's place as its key names it: layer, parent (self_attn, mlp …), module name and factor ('A' or 'B'). */
    public record Key(int layer, String parent, String name, char factor) {
        /** The block linear layer it adapts, if parent.name is one of {@link LinearModule}'s. */
        public Optional<LinearModule> module() {
            return LinearModule.byKey(name).filter(m -> m.parent().key().equals(parent));
        }

        /** The canonical PEFT key (no adapter name) of a known module. */
        public String canonical() { return module().orElseThrow().peftKey(layer, factor); }
    }

    /** Parses an adapter tensor's key; empty if it is not a LoRA factor of a module inside a block. */
    public static Optional<Key> parseKey(String key) {
        Matcher m = KEY.matcher(key);
        if (!m.matches()) return Optional.empty();
        return Optional.of(new Key(Integer.parseInt(m.group(1)), m.group(2), m.group(3), m.group(4).charAt(0)));
    }

    /**
     * An adapter in memory: the LoRA settings, its factors as owned F32 tensors by PEFT key, and the
     * {@code base_model_name_or_path} it was trained on (may be empty). Close it to free the factors.
     */
    public record Adapter(LoraConfig config, Map<String, Tensor> weights, String baseModel) implements AutoCloseable {
        public Adapter {
            weights = Collections.unmodifiableMap(new LinkedHashMap<>(weights));
        }

        @Override
        public void close() { weights.values().forEach(Tensor::close); }
    }

    /** The settings and base-model name of an adapter_config.json. */
    public record AdapterConfig(LoraConfig lora, String baseModel) {}

    // ------------------------------------------------------------------ reading

    /**
     * Reads and validates {@code adapterDir} against {@code base}: every declared target has an A [r, in] and a
     * B [out, r] in every layer, and nothing else is in the file. F16/BF16 factors are converted to F32.
     *
     * @throws InputException naming the file (and key) for any missing, malformed or mismatching part
     */
    public static Adapter read(Path adapterDir, LlamaConfig base, MemoryLedger ledger) {
        AdapterConfig ac = readConfig(adapterDir, base);
        LoraConfig cfg = ac.lora();
        Path file = weightsFile(adapterDir);
        Map<String, Tensor> out = new LinkedHashMap<>();
        try (SafetensorsFile st = SafetensorsFile.open(file, ledger)) {
            Map<String, Tensor> byKey = new TreeMap<>();
            for (String name : st.names()) {
                Tensor t = st.find(name).orElseThrow();
                LinearModule m = checkKey(file, name, base, cfg);
                Key k = parseKey(name).orElseThrow();
                if (byKey.put(k.canonical(), t) != null)
                    throw InputException.at(file, "tensor " + name, "duplicate: " + k.canonical() + " appears twice (with and without '.default')");
                checkShape(file, name, m, k.factor(), t, base, cfg);
            }
            for (int l = 0; l < base.numLayers(); l++)
                for (LinearModule m : cfg.modules())
                    for (String key : List.of(m.peftKey(l, 'A'), m.peftKey(l, 'B')))
                        if (!byKey.containsKey(key))
                            throw InputException.at(file, "tensor " + key, "missing: " + CONFIG_FILE + " targets " + m.key()
                                    + " and the base has " + base.numLayers() + " layers, so every layer needs its lora_A and lora_B");
            // Canonical order (layer, module, A then B); owned F32 copies so the file can be closed now.
            for (int l = 0; l < base.numLayers(); l++)
                for (LinearModule m : cfg.modules())
                    for (String key : List.of(m.peftKey(l, 'A'), m.peftKey(l, 'B')))
                        out.put(key, toF32(file, key, byKey.get(key), ledger));
            return new Adapter(cfg, out, ac.baseModel());
        } catch (RuntimeException e) {
            out.values().forEach(Tensor::close);
            throw e;
        }
    }

    private static Path weightsFile(Path adapterDir) {
        Path file = adapterDir.resolve(WEIGHTS_FILE);
        if (!Files.isRegularFile(file)) {
            if (Files.isRegularFile(adapterDir.resolve(LEGACY_WEIGHTS_FILE)))
                throw InputException.at(file, "not found; the folder has " + LEGACY_WEIGHTS_FILE
                        + " (a PyTorch pickle, which llamafit does not read): re-save the adapter with safe_serialization=True");
            throw InputException.at(file, "not found (a PEFT LoRA adapter folder holds " + CONFIG_FILE + " and " + WEIGHTS_FILE + ")");
        }
        return file;
    }

    /** The module a tensor key of the file adapts, after checking it belongs to this base and adapter config. */
    private static LinearModule checkKey(Path file, String name, LlamaConfig base, LoraConfig cfg) {
        Key k = parseKey(name).orElseThrow(() -> InputException.at(file, "tensor " + name,
                "unexpected tensor: not a LoRA factor of a LLaMA block linear layer (expected "
                        + LinearModule.PEFT_PREFIX + "model.layers.{i}.{self_attn|mlp}.{module}.lora_{A|B}.weight)"));
        LinearModule m = k.module().orElseThrow(() -> InputException.at(file, "tensor " + name, "unknown module " + k.parent()
                + "." + k.name() + " (LLaMA blocks have " + String.join(", ", LinearModule.ALL.stream()
                .map(x -> x.parent().key() + "." + x.key()).toList()) + ")"));
        if (k.layer() >= base.numLayers())
            throw InputException.at(file, "tensor " + name, "layer " + k.layer() + " is out of range: the base model has num_hidden_layers = "
                    + base.numLayers() + " (layers 0.." + (base.numLayers() - 1) + "); adapter for a different model?");
        if (!cfg.targets(m))
            throw InputException.at(file, "tensor " + name, "extra tensor: " + m.key() + " is not in " + CONFIG_FILE
                    + "'s target_modules " + cfg.targets());
        return m;
    }

    private static void checkShape(Path file, String name, LinearModule m, char factor, Tensor t, LlamaConfig base, LoraConfig cfg) {
        if (t.dtype() != DType.F32 && t.dtype() != DType.F16 && t.dtype() != DType.BF16)
            throw InputException.at(file, "tensor " + name, "dtype " + t.dtype() + " is not supported for LoRA factors (F32, F16 or BF16)");
        int out = m.out(base), in = m.in(base), r = cfg.rank();
        Shape expected = factor == 'A' ? Shape.of(r, in) : Shape.of(out, r);
        if (t.shape().equals(expected)) return;
        String baseShape = m.key() + " is [" + m.outLetters() + "=" + out + ", " + m.inLetters() + "=" + in + "] in the base";
        String why;
        if (t.shape().rank() != 2) why = "lora_" + factor + " has " + t.shape().rank() + " dimensions, expected 2";
        else if (factor == 'A' && t.shape().dim(0) != r) why = "adapter r " + r + " (" + CONFIG_FILE + ") but lora_A is " + t.shape();
        else if (factor == 'B' && t.shape().dim(1) != r) why = "adapter r " + r + " (" + CONFIG_FILE + ") but lora_B is " + t.shape();
        else if (factor == 'A') why = baseShape + ", lora_A has " + t.shape().dim(1) + " columns";
        else why = baseShape + ", lora_B has " + t.shape().dim(0) + " rows";
        throw InputException.at(file, "tensor " + name, why + " (expected " + expected + "; adapter for a different model?)");
    }

    private static Tensor toF32(Path file, String key, Tensor t, MemoryLedger ledger) {
        Tensor f = Tensor.allocate(ledger, Category.WEIGHTS, key, DType.F32, t.shape());
        long bad = 0;
        for (long i = 0, n = t.elements(); i < n; i++) {
            float v = t.getFloat(i);
            if (!Float.isFinite(v)) bad++;
            f.setFloat(i, v);
        }
        if (bad > 0) {
            f.close();
            throw InputException.at(file, "tensor " + key, "holds " + bad + " NaN/Inf values (a diverged training run?)");
        }
        return f;
    }

    // ------------------------------------------------------------------ adapter_config.json

    /** Reads {@code adapterDir/adapter_config.json}, resolving target_modules against {@code base}'s layers. */
    public static AdapterConfig readConfig(Path adapterDir, LlamaConfig base) {
        if (!Files.isDirectory(adapterDir)) throw InputException.at(adapterDir, "adapter folder not found");
        Path file = adapterDir.resolve(CONFIG_FILE);
        if (!Files.isRegularFile(file))
            throw InputException.at(file, "not found (a PEFT LoRA adapter folder holds " + CONFIG_FILE + " and " + WEIGHTS_FILE + ")");
        return parseConfig(Json.read(file), file, base);
    }

    /** The LoraConfig of a PEFT adapter_config.json object; {@code file} is for messages. */
    public static AdapterConfig parseConfig(JsonNode root, Path file, LlamaConfig base) {
        if (!root.isObject()) throw InputException.at(file, "expected a JSON object");
        String type = JsonFields.optionalString(root, "peft_type", "", file, "");
        if (!type.equals("LORA"))
            throw InputException.at(file, "peft_type", type.isEmpty() ? "missing peft_type (expected \"LORA\")"
                    : "peft_type \"" + type + "\" is not supported: llamafit reads LoRA adapters (\"LORA\")");
        String task = JsonFields.optionalString(root, "task_type", "CAUSAL_LM", file, "");
        if (!task.equals("CAUSAL_LM"))
            throw InputException.at(file, "task_type", "task_type \"" + task + "\" is not supported (expected \"CAUSAL_LM\": "
                    + "the adapter's keys are laid out for a causal language model)");
        String bias = JsonFields.optionalString(root, "bias", "none", file, "");
        if (!bias.equals("none"))
            throw InputException.at(file, "bias", "bias \"" + bias + "\" is not supported: llamafit's LoRA trains and merges "
                    + "no biases (PEFT bias=\"none\")");
        unsupportedUnlessEmpty(root, file, "rank_pattern", "per-module ranks");
        unsupportedUnlessEmpty(root, file, "alpha_pattern", "per-module alphas");
        unsupportedUnlessEmpty(root, file, "modules_to_save", "fully trained extra modules");
        unsupportedUnlessEmpty(root, file, "layers_to_transform", "adapting only some layers");
        unsupportedUnlessEmpty(root, file, "layer_replication", "layer replication");
        unsupportedUnlessEmpty(root, file, "exclude_modules", "excluded modules");
        unsupportedUnlessEmpty(root, file, "target_parameters", "LoRA on parameters");
        unsupportedUnlessEmpty(root, file, "trainable_token_indices", "trainable tokens");
        for (String flag : List.of("use_dora", "lora_bias", "fan_in_fan_out", "use_qalora"))
            if (JsonFields.optionalBoolean(root, flag, false, file, ""))
                throw InputException.at(file, flag, flag + " = true is not supported (llamafit reads plain LoRA: "
                        + "W + scale·B·A with W stored [out, in])");
        // Ranges are LoraConfig's, whose messages below say why.
        int r = JsonFields.requiredInt(root, "r", Integer.MIN_VALUE, Integer.MAX_VALUE, file, "");
        double alpha = JsonFields.optionalNumber(root, "lora_alpha", 8, file, "");
        double dropout = JsonFields.optionalNumber(root, "lora_dropout", 0, file, "");
        boolean rslora = JsonFields.optionalBoolean(root, "use_rslora", false, file, "");
        String baseName = JsonFields.optionalString(root, "base_model_name_or_path", "", file, "");
        List<String> targets = resolveTargets(root.get("target_modules"), file, base);
        try {
            LoraConfig cfg = new LoraConfig(r, alpha, dropout, targets, rslora);
            return new AdapterConfig(cfg, baseName);
        } catch (IllegalArgumentException e) {
            throw InputException.at(file, e.getMessage().replace("--lora-r", "r").replace("--lora-alpha", "lora_alpha")
                    .replace("--lora-dropout", "lora_dropout"));
        }
    }

    private static void unsupportedUnlessEmpty(JsonNode root, Path file, String field, String what) {
        JsonNode n = root.get(field);
        if (n == null || n.isNull() || (n.isContainerNode() && n.isEmpty())) return;
        throw InputException.at(file, field, field + " " + n + " is not supported (" + what + "); llamafit reads adapters "
                + "where " + field + " is empty or null");
    }

    /**
     * PEFT's matching (tuners_utils.check_target_module_exists): a list entry matches a module whose full path equals
     * it or ends with "." + entry; a string is "all-linear" or a regular expression that must match the whole path.
     * llamafit's adapters are the same in every layer, so a target set that differs between layers is refused.
     */
    static List<String> resolveTargets(JsonNode node, Path file, LlamaConfig base) {
        if (node == null || node.isNull()) return DEFAULT_TARGETS;
        if (node.isTextual() && node.asText().equals(LoraConfig.ALL_LINEAR_SPEC)) return LinearModule.keys();
        List<java.util.function.Predicate<String>> matchers = new ArrayList<>();
        List<String> specs = new ArrayList<>();
        if (node.isTextual()) {
            try {
                Pattern p = Pattern.compile(node.asText());
                matchers.add(path -> p.matcher(path).matches());
                specs.add(node.asText());
            } catch (PatternSyntaxException e) {
                throw InputException.at(file, "target_modules", "target_modules \"" + node.asText() + "\" is not a valid regular expression: "
                        + e.getDescription());
            }
        } else if (node.isArray() && !node.isEmpty()) {
            for (JsonNode e : node) {
                if (!e.isTextual()) throw InputException.at(file, "target_modules", "target_modules entries must be strings, got " + e);
                String s = e.asText();
                matchers.add(path -> path.equals(s) || path.endsWith("." + s));
                specs.add(s);
            }
        } else {
            throw InputException.at(file, "target_modules", "target_modules must be a list of module names, a regular expression "
                    + "or \"all-linear\", got " + node);
        }
        Set<String> first = null;
        boolean[] used = new boolean[matchers.size()];
        for (int l = 0; l < base.numLayers(); l++) {
            Set<String> here = new LinkedHashSet<>();
            for (LinearModule m : LinearModule.ALL) {
                String path = m.path(l);
                for (int i = 0; i < matchers.size(); i++)
                    if (matchers.get(i).test(path)) {
                        here.add(m.key());
                        used[i] = true;
                    }
            }
            if (first == null) first = here;
            else if (!first.equals(here))
                throw InputException.at(file, "target_modules", "target_modules " + specs + " selects " + first + " in layer 0 but "
                        + here + " in layer " + l + ": adapters that differ between layers are not supported");
        }
        for (String other : List.of("lm_head", "model.embed_tokens"))
            for (int i = 0; i < matchers.size(); i++)
                if (matchers.get(i).test(other))
                    throw InputException.at(file, "target_modules", "target_modules entry \"" + specs.get(i) + "\" selects " + other
                            + ", which llamafit does not adapt (only block linear layers: " + String.join(", ", LinearModule.keys()) + ")");
        for (int i = 0; i < matchers.size(); i++)
            if (!used[i])
                throw InputException.at(file, "target_modules", "unknown target module \"" + specs.get(i) + "\": it matches no linear layer "
                        + "of the model's blocks (" + String.join(", ", LinearModule.keys()) + ")");
        return List.copyOf(first);
    }

    /** adapter_config.json as PEFT (0.13) writes it: every LoraConfig field, keys sorted. */
    public static Map<String, Object> configToJson(LoraConfig c, String baseModelNameOrPath) {
        Map<String, Object> m = new TreeMap<>();
        m.put("alpha_pattern", Map.of());
        m.put("auto_mapping", null);
        m.put("base_model_name_or_path", baseModelNameOrPath);
        m.put("bias", "none");
        m.put("fan_in_fan_out", false);
        m.put("inference_mode", true);
        m.put("init_lora_weights", true);
        m.put("layer_replication", null);
        m.put("layers_pattern", null);
        m.put("layers_to_transform", null);
        m.put("loftq_config", Map.of());
        // PEFT writes lora_alpha as the int it usually is; keep 16 as 16, not 16.0.
        m.put("lora_alpha", c.alpha() == Math.rint(c.alpha()) && Math.abs(c.alpha()) < 1e15 ? (Object) (long) c.alpha() : c.alpha());
        m.put("lora_dropout", c.dropout());
        m.put("megatron_config", null);
        m.put("megatron_core", "megatron.core");
        m.put("modules_to_save", null);
        m.put("peft_type", "LORA");
        m.put("r", c.rank());
        m.put("rank_pattern", Map.of());
        m.put("revision", null);
        m.put("target_modules", c.targets());
        m.put("task_type", "CAUSAL_LM");
        m.put("use_dora", false);
        m.put("use_rslora", c.useRslora());
        return m;
    }

    // ------------------------------------------------------------------ writing

    /**
     * Writes {@code weights} (PEFT keys, any order; written in canonical order) and the config into {@code adapterDir},
     * each file atomically; the config goes last, so a folder with a config always has its weights.
     *
     * @throws IllegalArgumentException if a key is not a LoRA key of a target in {@code config}, a factor's rank is not
     *                                  r, a target lacks a factor, or a tensor holds NaN/Inf
     */
    public static void write(Path adapterDir, LoraConfig config, Map<String, Tensor> weights, String baseModelNameOrPath)
            throws IOException {
        SequencedMap<String, Tensor> ordered = new TreeMap<>((x, y) -> compareKeys(x, y));
        Map<String, Integer> layersByModule = new TreeMap<>();
        for (Map.Entry<String, Tensor> e : weights.entrySet()) {
            String key = e.getKey();
            Tensor t = e.getValue();
            Key k = parseKey(key).filter(x -> x.module().isPresent())
                    .orElseThrow(() -> new IllegalArgumentException("not a PEFT LoRA key: " + key));
            LinearModule m = k.module().orElseThrow();
            if (!config.targets(m)) throw new IllegalArgumentException(key + ": " + m.key() + " is not a target " + config.targets());
            if (t.shape().rank() != 2 || t.shape().dim(k.factor() == 'A' ? 0 : 1) != config.rank())
                throw new IllegalArgumentException(key + " is " + t.shape() + ", but r = " + config.rank());
            for (long i = 0; i < t.elements(); i++)
                if (!Float.isFinite(t.getFloat(i))) throw new IllegalArgumentException("refusing to write " + key + ": it holds NaN/Inf");
            if (ordered.put(k.canonical(), t) != null) throw new IllegalArgumentException("duplicate key " + k.canonical());
            layersByModule.merge(m.key(), 1, Integer::sum);
        }
        for (String m : config.targets())
            if (!layersByModule.containsKey(m)) throw new IllegalArgumentException("no tensors for target " + m);
        for (String key : ordered.keySet()) {
            Key k = parseKey(key).orElseThrow();
            String pair = k.module().orElseThrow().peftKey(k.layer(), k.factor() == 'A' ? 'B' : 'A');
            if (!ordered.containsKey(pair)) throw new IllegalArgumentException(key + " has no matching " + pair);
        }
        Files.createDirectories(adapterDir);
        SafetensorsWriter.write(adapterDir.resolve(WEIGHTS_FILE), ordered, Map.of("format", "pt"));
        AtomicFiles.writeString(adapterDir.resolve(CONFIG_FILE), Json.write(configToJson(config, baseModelNameOrPath)) + "\n");
    }

    /** Layer, then module in block order, then A before B. */
    private static int compareKeys(String x, String y) {
        Key a = parseKey(x).orElseThrow(), b = parseKey(y).orElseThrow();
        if (a.layer() != b.layer()) return Integer.compare(a.layer(), b.layer());
        int m = a.module().orElseThrow().compareTo(b.module().orElseThrow());
        return m != 0 ? m : Character.compare(a.factor(), b.factor());
    }
}
