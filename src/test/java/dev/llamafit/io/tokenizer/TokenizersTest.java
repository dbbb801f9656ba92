// Tests Tokenizers.load: file choice, BOS/EOS from the config files, and the missing-tokenizer error.
package dev.llamafit.io.tokenizer;

import dev.llamafit.io.InputException;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Set;

import static org.junit.jupiter.api.Assertions.*;

class TokenizersTest {

    @Test
    void tinyStoriesFolder() {
        Tokenizer tok = Tokenizers.load(SharedData.require("models/tinystories-656k"));
        assertEquals(1, tok.bosId());
        assertEquals(2, tok.eosId());
        assertEquals(Set.of(2), tok.eosIds());
        assertTrue(tok.addBosByDefault());
        int[] ids = tok.encode("Once upon a time", true);
        assertEquals(1, ids[0]);
        assertEquals("Once upon a time", tok.decode(ids));
        int[] withEos = java.util.Arrays.copyOf(ids, ids.length + 1);
        withEos[ids.length] = 2;
        assertEquals("Once upon a time", tok.decode(withEos));
    }

    @Test
    void sentencePieceFolderPrefersModelOverBin() {
        Tokenizer tok = Tokenizers.load(SharedData.require("tokenizers/llama2"));
        assertEquals(32000, tok.vocabSize());
        assertEquals(1, tok.bosId());
        assertEquals(2, tok.eosId());
        assertTrue(tok.addBosByDefault());
        assertArrayEquals(new int[] {1, 15043, 3186}, tok.encode("Hello world", true));
    }

    @Test
    void llama2cBinAndConfigLists(@TempDir Path dir) throws IOException {
        Files.copy(SharedData.require("models/stories260k/tok512.bin"), dir.resolve("tokenizer.bin"));
        Files.writeString(dir.resolve("generation_config.json"), "{\"bos_token_id\": 1, \"eos_token_id\": [2, 0]}");
        Files.writeString(dir.resolve("tokenizer_config.json"),
                "{\"add_bos_token\": false, \"bos_token\": {\"content\": \"<s>\", \"lstrip\": false}}");
        Tokenizer tok = Tokenizers.load(dir);
        assertEquals(512, tok.vocabSize());
        assertEquals(1, tok.bosId());
        assertEquals(2, tok.eosId());
        assertEquals(Set.of(2, 0), tok.eosIds());
        assertFalse(tok.addBosByDefault());
        assertEquals("", tok.newStreamDecoder().next(0), "configured EOS ids are special: skipped");
    }

    @Test
    void missingTokenizerIsAnInputError(@TempDir Path dir) {
        InputException e = assertThrows(InputException.class, () -> Tokenizers.load(dir));
        assertEquals("no tokenizer in " + dir + ": expected tokenizer.json, tokenizer.model or tokenizer.bin", e.getMessage());
    }

    @Test
    void malformedConfigNamesFileAndLine(@TempDir Path dir) throws IOException {
        Files.copy(SharedData.require("models/stories260k/tok512.bin"), dir.resolve("tokenizer.bin"));
        Files.writeString(dir.resolve("config.json"), "{\n \"eos_token_id\": ,\n}");
        InputException e = assertThrows(InputException.class, () -> Tokenizers.load(dir));
        assertTrue(e.getMessage().startsWith(dir.resolve("config.json") + ":2:"), e.getMessage());
    }
}
