// Loads the tokenizer of a model folder and applies the folder's BOS/EOS settings.
package dev.llamafit.io.tokenizer;

import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.llamafit.io.InputException;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.LinkedHashSet;
import java.util.OptionalInt;
import java.util.Set;

/**
 * Picks the tokenizer file of a model folder: {@code tokenizer.json} (Hugging Face), else
 * {@code tokenizer.model} (SentencePiece), else {@code tokenizer.bin} (llama2.c). Special tokens come from,
 * in order: {@code tokenizer_config.json} (bos_token / eos_token as a string or {"content": ...},
 * add_bos_token), {@code special_tokens_map.json}, then {@code config.json} / {@code generation_config.json}
 * (bos_token_id, eos_token_id as a number or a list), then what the tokenizer file itself says.
 */
public final class Tokenizers {
    private static final ObjectMapper JSON = new ObjectMapper();

    private Tokenizers() {}

    /** The model folder's tokenizer with its BOS, EOS set and add-BOS default. */
    public static Tokenizer load(Path modelDir) {
        if (!Files.isDirectory(modelDir)) throw InputException.at(modelDir, "model folder not found");
        Tokenizer base;
        if (Files.exists(modelDir.resolve("tokenizer.json"))) base = HfTokenizer.load(modelDir.resolve("tokenizer.json"));
        else if (Files.exists(modelDir.resolve("tokenizer.model"))) base = SentencePieceTokenizer.load(modelDir.resolve("tokenizer.model"));
        else if (Files.exists(modelDir.resolve("tokenizer.bin"))) base = SentencePieceTokenizer.loadLlama2c(modelDir.resolve("tokenizer.bin"), 0);
        else throw new InputException("no tokenizer in " + modelDir + ": expected tokenizer.json, tokenizer.model or tokenizer.bin");

        JsonNode tokenizerConfig = readJson(modelDir.resolve("tokenizer_config.json"));
        JsonNode specialMap = readJson(modelDir.resolve("special_tokens_map.json"));
        JsonNode config = readJson(modelDir.resolve("config.json"));
        JsonNode generation = readJson(modelDir.resolve("generation_config.json"));

        int bos = tokenByName(base, tokenizerConfig, "bos_token");
        if (bos < 0) bos = tokenByName(base, specialMap, "bos_token");
        if (bos < 0) bos = firstId(base, generation, "bos_token_id");
        if (bos < 0) bos = firstId(base, config, "bos_token_id");
        if (bos < 0) bos = base.bosId();

        Set<Integer> eos = new LinkedHashSet<>();
        int eosByName = tokenByName(base, tokenizerConfig, "eos_token");
        if (eosByName < 0) eosByName = tokenByName(base, specialMap, "eos_token");
        if (eosByName >= 0) eos.add(eosByName);
        // generation_config.json's list is what generation stops on (Llama 3: <|end_of_text|>, <|eot_id|>, …).
        addIds(base, generation, "eos_token_id", eos);
        addIds(base, config, "eos_token_id", eos);
        if (eos.isEmpty() && base.eosId() >= 0) eos.add(base.eosId());

        JsonNode addBosNode = tokenizerConfig == null ? null : tokenizerConfig.get("add_bos_token");
        boolean addBos = addBosNode != null && addBosNode.isBoolean() ? addBosNode.asBoolean() : bos >= 0;
        return new ConfiguredTokenizer(base, bos, Set.copyOf(eos), eos.isEmpty() ? -1 : eos.iterator().next(), addBos);
    }

    private static JsonNode readJson(Path file) {
        if (!Files.exists(file)) return null;
        try {
            return JSON.readTree(file.toFile());
        } catch (JsonProcessingException e) {
            var loc = e.getLocation();
            throw InputException.at(file, loc == null ? null : "line " + loc.getLineNr() + ", column " + loc.getColumnNr(),
                    "malformed JSON: " + e.getOriginalMessage());
        } catch (IOException e) {
            throw InputException.at(file, "cannot read: " + e.getMessage());
        }
    }

    /** "bos_token": "&lt;s&gt;" or {"content": "&lt;s&gt;", ...}, looked up in the vocabulary. */
    private static int tokenByName(Tokenizer base, JsonNode json, String field) {
        if (json == null) return -1;
        JsonNode v = json.get(field);
        if (v == null || v.isNull()) return -1;
        String name = v.isTextual() ? v.asText() : v.path("content").asText(null);
        if (name == null) return -1;
        OptionalInt id = base.tokenId(name);
        return id.isPresent() ? id.getAsInt() : -1;
    }

    private static int firstId(Tokenizer base, JsonNode json, String field) {
        Set<Integer> ids = new LinkedHashSet<>();
        addIds(base, json, field, ids);
        return ids.isEmpty() ? -1 : ids.iterator().next();
    }

    private static void addIds(Tokenizer base, JsonNode json, String field, Set<Integer> out) {
        if (json == null || json.get(field) == null) return;
        JsonNode v = json.get(field);
        for (JsonNode n : v.isArray() ? v : java.util.List.of(v)) {
            if (n.canConvertToInt() && n.asInt() >= 0 && n.asInt() < base.vocabSize()) out.add(n.asInt());
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
