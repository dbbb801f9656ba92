// Issue 19, finding 6 (tokenizer half): wrong types and out-of-vocabulary ids in the files beside a model are refused.
package dev.llamafit.cli;

import static dev.llamafit.cli.BadInputTest.assertBadInput;
import static dev.llamafit.cli.BadInputTest.run;
import static org.junit.jupiter.api.Assertions.assertEquals;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.function.Consumer;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import com.fasterxml.jackson.databind.node.ObjectNode;

import dev.llamafit.io.Json;
import dev.llamafit.testing.SharedData;

/**
 * tokenizer.json, tokenizer_config.json and generation_config.json check the type of every field they read, and
 * every token id against config.json's vocab_size; each refusal is exit 2 naming the file and the field or id.
 */
class StrictRecordsTest {
    @TempDir Path tmp;

    /** A writable copy of tinystories-656k (vocab_size 2048). */
    static Path copyModel(Path tmp) throws IOException {
        Path src = SharedData.require("models/tinystories-656k");
        Path dir = Files.createDirectories(tmp.resolve("model"));
        try (var files = Files.list(src)) {
            for (Path f : files.toList()) {
                Files.copy(f, dir.resolve(f.getFileName().toString()));
                dir.resolve(f.getFileName().toString()).toFile().setWritable(true);
            }
        }
        return dir;
    }

    static void edit(Path file, Consumer<ObjectNode> change) throws IOException {
        ObjectNode root = (ObjectNode) Json.read(file);
        change.accept(root);
        Files.writeString(file, Json.write(root));
    }

    private static String[] tokenize(Path m) {
        return new String[] {"tokenize", "--model", m.toString(), "--text", "Once upon a time"};
    }

    private static String[] generate(Path m) {
        return new String[] {"generate", "--model", m.toString(), "--prompt", "Once", "--max-new-tokens", "4", "--temperature", "0"};
    }

    @Test
    void byteFallbackMustBeABoolean() throws IOException {
        Path m = copyModel(tmp);
        edit(m.resolve("tokenizer.json"), r -> ((ObjectNode) r.get("model")).put("byte_fallback", "yes"));
        assertBadInput(run(tokenize(m)), "tokenizer.json", "field 'model.byte_fallback' must be true or false, got \"yes\"");
    }

    @Test
    void addedTokenFlagMustBeABoolean() throws IOException {
        Path m = copyModel(tmp);
        edit(m.resolve("tokenizer.json"), r -> ((ObjectNode) r.get("added_tokens").get(1)).put("special", 1));
        assertBadInput(run(tokenize(m)), "tokenizer.json", "added_tokens[1].special");
    }

    /** An added token with id 50000 in a tokenizer.json beside a model of 2048 embedding rows. */
    private Path idBeyondVocab() throws IOException {
        Path m = copyModel(tmp);
        edit(m.resolve("tokenizer.json"), r -> r.withArray("added_tokens").addObject()
                .put("id", 50000).put("content", "<|far|>").put("special", true).put("normalized", false));
        return m;
    }

    @Test
    void tokenizeRefusesAnIdBeyondTheModelsVocabulary() throws IOException {
        assertBadInput(run(tokenize(idBeyondVocab())), "tokenizer.json", "50000", "vocab_size 2048");
    }

    @Test
    void generateNamesTokenizerJsonForAnIdBeyondTheVocabulary() throws IOException {
        assertBadInput(run(generate(idBeyondVocab())), "tokenizer.json", "50000", "vocab_size 2048");
    }

    /** Without a config.json there is no model vocabulary to compare with: the tokenizer alone is used as it is. */
    @Test
    void aTokenizerOnlyFolderHasNoVocabularyToCheckAgainst() throws IOException {
        Path m = idBeyondVocab();
        Files.delete(m.resolve("config.json"));
        assertEquals(0, run(tokenize(m)).code());
    }

    @Test
    void tokenizerConfigTypes() throws IOException {
        Path m = copyModel(tmp);
        edit(m.resolve("tokenizer_config.json"), r -> r.put("add_bos_token", "yes"));
        assertBadInput(run(tokenize(m)), "tokenizer_config.json", "field 'add_bos_token' must be true or false, got \"yes\"");
        edit(m.resolve("tokenizer_config.json"), r -> r.put("add_bos_token", true).put("bos_token", 1));
        assertBadInput(run(tokenize(m)), "tokenizer_config.json", "field 'bos_token'", "got 1");
    }

    @Test
    void tokenizerConfigAddedTokenIdBeyondVocab() throws IOException {
        Path m = copyModel(tmp);
        edit(m.resolve("tokenizer_config.json"), r -> r.withObject("added_tokens_decoder").putObject("9999").put("content", "<x>"));
        assertBadInput(run(tokenize(m)), "tokenizer_config.json", "9999", "vocab_size 2048");
    }

    @Test
    void generationConfigTypesAndIds() throws IOException {
        Path m = copyModel(tmp);
        edit(m.resolve("generation_config.json"), r -> r.put("eos_token_id", "2"));
        assertBadInput(run(generate(m)), "generation_config.json", "field 'eos_token_id'", "got \"2\"");
        edit(m.resolve("generation_config.json"), r -> r.put("eos_token_id", 50000));
        assertBadInput(run(generate(m)), "generation_config.json", "eos_token_id", "50000", "vocab_size 2048");
        edit(m.resolve("generation_config.json"), r -> r.put("eos_token_id", 2).put("pad_token_id", 2.5));
        assertBadInput(run(generate(m)), "generation_config.json", "field 'pad_token_id'");
    }

    /** The unmodified copy still works, so each refusal above is the edit's doing. */
    @Test
    void theCopyItselfIsAccepted() throws IOException {
        Path m = copyModel(tmp);
        assertEquals(0, run(tokenize(m)).code());
        assertEquals(0, run(generate(m)).code());
    }
}
