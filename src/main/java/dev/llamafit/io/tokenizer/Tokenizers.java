// Loads the tokenizer of a model folder and applies the folder's BOS/EOS settings.
package dev.llamafit.io.tokenizer;

import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.llamafit.io.InputException;
import dev.llamafit.io.JsonFields;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.OptionalInt;
import java.util.Set;

/**
 * Picks the tokenizer file of a model folder: {@code tokenizer.json} (Hugging Face), else
 * {@code tokenizer.model} (SentencePiece), else {@code tokenizer.bin} (llama2.c). Special tokens come from,
 * in order: {@code tokenizer_config.json} (bos_token / eos_token as a string or {"content": ...},
 * add_bos_token), {@code special_tokens_map.json}, then {@code config.json} / {@code generation_config.json}
 * (bos_token_id, eos_token_id as a number or a list), then what the tokenizer file itself says.
 *
 * <p>Every field read is type-checked ({@link JsonFields}), and when the folder's config.json gives a vocab_size,
 * every token id (the tokenizer's vocabulary, added tokens, special-token ids in the config files) must lie below
 * it: an id the model has no embedding row for would otherwise fail later, far from the file that holds it.
 */
public final class Tokenizers {
    private static final ObjectMapper JSON = new ObjectMapper();

    private Tokenizers() {}

    /** The model folder's tokenizer with its BOS, EOS set and add-BOS default. */
    public static Tokenizer load(Path modelDir) {
        if (!Files.isDirectory(modelDir)) throw InputException.at(modelDir, "model folder not found");
        Tokenizer base;
        Path file;
        if (Files.exists(file = modelDir.resolve("tokenizer.json"))) base = HfTokenizer.load(file);
        else if (Files.exists(file = modelDir.resolve("tokenizer.model"))) base = SentencePieceTokenizer.load(file);
        else if (Files.exists(file = modelDir.resolve("tokenizer.bin"))) base = SentencePieceTokenizer.loadLlama2c(file, 0);
        else throw new InputException("no tokenizer in " + modelDir + ": expected tokenizer.json, tokenizer.model or tokenizer.bin");

        Path tokenizerConfigFile = modelDir.resolve("tokenizer_config.json"), specialMapFile = modelDir.resolve("special_tokens_map.json");
        Path configFile = modelDir.resolve("config.json"), generationFile = modelDir.resolve("generation_config.json");
        JsonNode tokenizerConfig = readJson(tokenizerConfigFile);
        JsonNode specialMap = readJson(specialMapFile);
        JsonNode config = readJson(configFile);
        JsonNode generation = readJson(generationFile);

        // The model's vocabulary bounds every id; without a config.json (a tokenizer-only folder) the tokenizer's own does.
        int modelVocab = modelVocab(config);
        if (modelVocab > 0 && base.vocabSize() > modelVocab) {
            int id = base.vocabSize() - 1;
            throw InputException.at(file, "token id " + id + " (\"" + base.piece(id) + "\") is beyond the model's vocabulary: "
                    + "config.json has vocab_size " + modelVocab + " (ids 0.." + (modelVocab - 1) + "); this tokenizer does not belong to this model");
        }
        Ids ids = new Ids(base, modelVocab);
        checkTokenizerConfig(tokenizerConfig, tokenizerConfigFile, ids);
        checkTokenizerConfig(specialMap, specialMapFile, ids);
        ids.check(generation, generationFile, "pad_token_id");
        ids.check(config, configFile, "pad_token_id");

        int bos = tokenByName(base, tokenizerConfig, tokenizerConfigFile, "bos_token");
        if (bos < 0) bos = tokenByName(base, specialMap, specialMapFile, "bos_token");
        if (bos < 0) bos = ids.first(generation, generationFile, "bos_token_id");
        if (bos < 0) bos = ids.first(config, configFile, "bos_token_id");
        if (bos < 0) bos = base.bosId();

        Set<Integer> eos = new LinkedHashSet<>();
        int eosByName = tokenByName(base, tokenizerConfig, tokenizerConfigFile, "eos_token");
        if (eosByName < 0) eosByName = tokenByName(base, specialMap, specialMapFile, "eos_token");
        if (eosByName >= 0) eos.add(eosByName);
        // generation_config.json's list is what generation stops on (Llama 3: <|end_of_text|>, <|eot_id|>, …).
        ids.add(generation, generationFile, "eos_token_id", eos);
        ids.add(config, configFile, "eos_token_id", eos);
        if (eos.isEmpty() && base.eosId() >= 0) eos.add(base.eosId());

        boolean addBos = JsonFields.optionalBoolean(tokenizerConfig, "add_bos_token", bos >= 0, tokenizerConfigFile, "");
        return new ConfiguredTokenizer(base, bos, Set.copyOf(eos), eos.isEmpty() ? -1 : eos.iterator().next(), addBos);
    }

    private static JsonNode readJson(Path file) {
        if (!Files.exists(file)) return null;
        try {
            JsonNode root = JSON.readTree(file.toFile());
            if (root == null || root.isNull()) return null;
            if (!root.isObject()) throw InputException.at(file, "expected a JSON object, got " + (root.isArray() ? "an array" : root.getNodeType().toString().toLowerCase(java.util.Locale.ROOT)));
            return root;
        } catch (JsonProcessingException e) {
            var loc = e.getLocation();
            throw InputException.at(file, loc == null ? null : "line " + loc.getLineNr() + ", column " + loc.getColumnNr(),
                    "malformed JSON: " + e.getOriginalMessage());
        } catch (IOException e) {
            throw InputException.at(file, "cannot read: " + e.getMessage());
        }
    }

    /** config.json's vocab_size when it is a positive integer; 0 otherwise (config.json's own reader judges it). */
    private static int modelVocab(JsonNode config) {
        JsonNode v = JsonFields.value(config, "vocab_size");
        return v != null && v.isIntegralNumber() && v.canConvertToInt() && v.intValue() > 0 ? v.intValue() : 0;
    }

    /** The special-token names of tokenizer_config.json / special_tokens_map.json, and added_tokens_decoder's ids. */
    private static void checkTokenizerConfig(JsonNode json, Path file, Ids ids) {
        if (json == null) return;
        for (String field : new String[] {"bos_token", "eos_token", "pad_token", "unk_token"}) tokenName(json, file, field);
        JsonFields.optionalBoolean(json, "add_eos_token", false, file, "");
        JsonNode decoder = JsonFields.optionalObject(json, "added_tokens_decoder", file, "");
        if (decoder == null) return;
        for (var it = decoder.properties().iterator(); it.hasNext(); ) {
            var e = it.next();
            String where = "added_tokens_decoder[\"" + e.getKey() + "\"]";
            int id;
            try {
                id = Integer.parseInt(e.getKey());
            } catch (NumberFormatException x) {
                throw InputException.at(file, "field '" + where + "': key must be a token id, got \"" + e.getKey() + "\"");
            }
            ids.checkId(id, file, where);
            if (!e.getValue().isObject()) throw JsonFields.wrong(file, "", where, "an object", e.getValue());
            JsonFields.optionalString(e.getValue(), "content", null, file, where);
        }
    }

    /** "bos_token": "&lt;s&gt;" or {"content": "&lt;s&gt;", ...} or null; null when absent. */
    private static String tokenName(JsonNode json, Path file, String field) {
        JsonNode v = JsonFields.value(json, field);
        if (v == null) return null;
        if (v.isTextual()) return v.textValue();
        if (v.isObject()) return JsonFields.optionalString(v, "content", null, file, field);
        throw JsonFields.wrong(file, "", field, "a string or an object with \"content\"", v);
    }

    /** The named token's id in the vocabulary; -1 when the field is absent or names no token. */
    private static int tokenByName(Tokenizer base, JsonNode json, Path file, String field) {
        if (json == null) return -1;
        String name = tokenName(json, file, field);
        if (name == null) return -1;
        OptionalInt id = base.tokenId(name);
        return id.isPresent() ? id.getAsInt() : -1;
    }

    /** Token-id fields (a number, or a list for eos_token_id), checked against the model's vocabulary. */
    private record Ids(Tokenizer base, int modelVocab) {
        void checkId(long id, Path file, String where) {
            if (id < 0 || modelVocab > 0 && id >= modelVocab)
                throw InputException.at(file, "field '" + where + "': token id " + id + (id < 0 ? " is negative"
                        : " is beyond the model's vocabulary: config.json has vocab_size " + modelVocab + " (ids 0.." + (modelVocab - 1) + ")"));
        }

        /** The ids of a field (none when absent or null); each must be an integer within the vocabulary. */
        List<Integer> check(JsonNode json, Path file, String field) {
            JsonNode v = JsonFields.value(json, field);
            if (v == null) return List.of();
            List<Integer> out = new ArrayList<>();
            List<JsonNode> items = new ArrayList<>();
            if (v.isArray()) v.forEach(items::add);
            else items.add(v);
            for (int i = 0; i < items.size(); i++) {
                String where = v.isArray() ? field + "[" + i + "]" : field;
                JsonNode n = items.get(i);
                // pad_token_id -1 is the old "none" of transformers configs.
                if (field.equals("pad_token_id") && n.isIntegralNumber() && n.longValue() == -1) continue;
                if (!n.isIntegralNumber() || !n.canConvertToInt())
                    throw InputException.at(file, "field '" + where + "' must be a token id (an integer"
                            + (v.isArray() || !field.equals("eos_token_id") ? "" : " or a list of them") + "), got " + n);
                checkId(n.intValue(), file, where);
                out.add(n.intValue());
            }
            return out;
        }

        /** Adds the field's ids that the tokenizer names (an id past its pieces, inside the model's rows, is skipped). */
        void add(JsonNode json, Path file, String field, Set<Integer> out) {
            for (int id : check(json, file, field)) if (id < base.vocabSize()) out.add(id);
        }

        int first(JsonNode json, Path file, String field) {
            Set<Integer> ids = new LinkedHashSet<>();
            add(json, file, field, ids);
            return ids.isEmpty() ? -1 : ids.iterator().next();
        }
    }

    /** A tokenizer whose special ids come from the model folder's config files. */
    private record ConfiguredTokenizer(Tokenizer base, int bosId, Set<Integer> eosIds, int eosId, boolean addBosByDefault)
            implements Tokenizer {

        @Override
        public int[] encode(String text, boolean addBos) {
            int[] ids = base.encode(text, false);
            if (!addBos || bosId < 0) return ids;
            int[] withBos = new int[ids.length + 1];
            withBos[0] = bosId;
            System.arraycopy(ids, 0, withBos, 1, ids.length);
            return withBos;
        }

        @Override
        public String decode(int[] ids) {
            return base.decode(java.util.Arrays.stream(ids).filter(id -> !isSpecial(id)).toArray());
        }

        @Override
        public StreamDecoder newStreamDecoder() {
            StreamDecoder inner = base.newStreamDecoder();
            return new StreamDecoder() {
                public String next(int id) {
                    return isSpecial(id) ? "" : inner.next(id);
                }

                public String flush() {
                    return inner.flush();
                }
            };
        }

        @Override
        public boolean isSpecial(int id) {
            return id == bosId || eosIds.contains(id) || base.isSpecial(id);
        }

        @Override
        public String piece(int id) {
            return base.piece(id);
        }

        @Override
        public int vocabSize() {
            return base.vocabSize();
        }

        @Override
        public OptionalInt tokenId(String piece) {
            return base.tokenId(piece);
        }
    }
}
