// Chat records: loss only on assistant replies, with the default template and with a Jinja chat template.
package dev.llamafit.io.data;

import static org.junit.jupiter.api.Assertions.*;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.Map;

import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import dev.llamafit.io.InputException;
import dev.llamafit.io.Json;
import dev.llamafit.io.tokenizer.Tokenizer;
import dev.llamafit.io.tokenizer.Tokenizers;
import dev.llamafit.testing.SharedData;

class ChatMaskTest {
    /** Zephyr's template, as in HuggingFaceH4/zephyr-7b-beta's tokenizer_config.json. */
    static final String ZEPHYR = "{% for message in messages %}\n{% if message['role'] == 'user' %}\n"
            + "{{ '<|user|>\\n' + message['content'] + eos_token }}{% elif message['role'] == 'system' %}\n"
            + "{{ '<|system|>\\n' + message['content'] + eos_token }}{% elif message['role'] == 'assistant' %}\n"
            + "{{ '<|assistant|>\\n'  + message['content'] + eos_token }}{% endif %}\n"
            + "{% if loop.last and add_generation_prompt %}\n{{ '<|assistant|>' }}{% endif %}\n{% endfor %}";

    /** A Llama-2-style template with bos_token and raise_exception on non-alternating roles. */
    static final String LLAMA2 = "{{ bos_token }}{% for message in messages %}"
            + "{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
            + "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
            + "{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] | trim + ' [/INST]' }}"
            + "{% elif message['role'] == 'assistant' %}{{ ' ' + message['content'] | trim + ' ' + eos_token }}{% endif %}{% endfor %}";

    static Tokenizer tok;
    static Path model;
    static Path chat;

    @BeforeAll
    static void load() {
        model = SharedData.require("models/tinystories-656k");
        tok = Tokenizers.load(model);
        chat = SharedData.require("datasets/instruct/alpaca_en_demo_chat.jsonl");
    }

    @Test
    void defaultTemplateTrainsRepliesOnly() {
        LoadedDataset d = Datasets.load(chat, tok, model, DataOptions.of(2048));
        assertEquals(DataFormat.CHAT, d.format());
        assertEquals(300, d.examples().size());
        // Line 2: user "Transform the following sentence using a synonym: The car sped quickly.", assistant "The car accelerated rapidly."
        Example e = d.examples().get(1);
        int[] prompt = tok.encode("<|user|>\nTransform the following sentence using a synonym: The car sped quickly.\n<|assistant|>\n", true);
        int[] reply = tok.encode("The car accelerated rapidly.", false);
        assertEquals(prompt.length + reply.length, e.length());
        assertArrayEquals(prompt, Arrays.copyOf(e.inputIds(), prompt.length));
        for (int t = 0; t < prompt.length - 1; t++) assertEquals(Example.IGNORE, e.labels()[t]);
        assertArrayEquals(reply, Arrays.copyOfRange(e.labels(), prompt.length - 1, e.length() - 1));
        assertEquals(tok.eosId(), e.labels()[e.length() - 1]);
        assertEquals(reply.length + 1, e.trainedTokens());
    }

    @Test
    void jinjaTemplateFromTokenizerConfig(@TempDir Path dir) throws Exception {
        Path m = modelWithTemplate(dir, ZEPHYR);
        LoadedDataset d = Datasets.load(chat, tok, m, DataOptions.of(2048));
        assertEquals(300, d.examples().size());
        Example e = d.examples().get(1);
        String eos = "<|end_story|>";
        int[] prompt = tok.encode("<|user|>\nTransform the following sentence using a synonym: The car sped quickly." + eos + "<|assistant|>", false);
        int[] reply = tok.encode("\nThe car accelerated rapidly." + eos, false);
        assertEquals(prompt.length + reply.length - 1, e.length());
        assertNotEquals(tok.bosId(), e.inputIds()[0], "Zephyr's template writes no bos_token");
        for (int t = 0; t < prompt.length - 1; t++) assertEquals(Example.IGNORE, e.labels()[t]);
        assertArrayEquals(reply, Arrays.copyOfRange(e.labels(), prompt.length - 1, e.length()));
        // The reply's tokens, eos_token text included, are the trained targets. (This tokenizer matches its
        // "normalized" special tokens only after a space, as huggingface/tokenizers does with its Prepend("▁")
        // normalizer, so "rapidly.<|end_story|>" does not end in the EOS id; the Llama-2 template below, with
        // ' ' + eos_token, does.)
        assertEquals(reply.length, e.trainedTokens());
    }

    @Test
    void multiTurnWithSystemAndRaiseException(@TempDir Path dir) throws Exception {
        Path m = modelWithTemplate(dir, LLAMA2);
        Path f = dir.resolve("conv.jsonl");
        Files.writeString(f, """
                {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello."}, {"role": "user", "content": "Bye"}, {"role": "assistant", "content": "Bye now."}]}
                {"messages": [{"role": "user", "content": "Hi"}, {"role": "user", "content": "Again"}, {"role": "assistant", "content": "Yes."}]}
                """);
        InputException err = assertThrows(InputException.class, () -> Datasets.load(f, tok, m, DataOptions.of(256)));
        assertTrue(err.getMessage().contains(f + ":2: chat template rejected the conversation: Conversation roles must alternate"),
                err.getMessage());

        LoadedDataset d = Datasets.load(f, tok, m, DataOptions.of(256).withSkipBadRecords(true));
        assertEquals(1, d.examples().size());
        assertEquals(1, d.badRecords());
        Example e = d.examples().getFirst();
        assertEquals(tok.bosId(), e.inputIds()[0], "bos_token in the template is the BOS id");
        // Two replies trained, each ending with EOS; "[INST] Bye [/INST]" between them is not.
        String trained = tok.decode(Arrays.stream(e.labels()).filter(l -> l != Example.IGNORE).toArray());
        assertEquals(2, Arrays.stream(e.labels()).filter(l -> l == tok.eosId()).count());
        assertTrue(trained.contains("Hello.") && trained.contains("Bye now.") && !trained.contains("INST"), trained);
    }

    @Test
    void trainOnPromptTrainsEverything() {
        LoadedDataset d = Datasets.load(chat, tok, model, DataOptions.of(2048).withTrainOnPrompt(true));
        assertEquals(d.tokens(), d.trainedTokens());
        LoadedDataset masked = Datasets.load(chat, tok, model, DataOptions.of(2048));
        assertEquals(d.tokens(), masked.tokens());
        assertTrue(masked.trainedTokens() < masked.tokens());
    }

    @Test
    void noAssistantTurnIsEmptyAndSkipped(@TempDir Path dir) throws Exception {
        Path f = dir.resolve("c.jsonl");
        Files.writeString(f, """
                {"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]}
                {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello."}]}
                """);
        LoadedDataset d = Datasets.load(f, tok, null, DataOptions.of(64));
        assertEquals(1, d.examples().size());
        assertEquals(1, d.emptySkipped());
    }

    static Path modelWithTemplate(Path dir, String template) throws Exception {
        Path m = Files.createDirectories(dir.resolve("model"));
        Files.writeString(m.resolve("tokenizer_config.json"), Json.write(Map.of(
                "bos_token", "<|start_story|>", "eos_token", "<|end_story|>", "chat_template", template)));
        return m;
    }

}
