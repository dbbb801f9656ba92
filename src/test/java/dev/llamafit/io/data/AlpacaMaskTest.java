// Alpaca records on identity.json: prompt masked, response and EOS trained, placeholders substituted.
package dev.llamafit.io.data;

import static org.junit.jupiter.api.Assertions.*;

import java.nio.file.Path;
import java.util.Map;

import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

import dev.llamafit.io.tokenizer.Tokenizer;
import dev.llamafit.io.tokenizer.Tokenizers;
import dev.llamafit.testing.SharedData;

class AlpacaMaskTest {
    static Tokenizer tok;
    static Path identity;

    @BeforeAll
    static void load() {
        tok = Tokenizers.load(SharedData.require("models/tinystories-656k"));
        identity = SharedData.require("datasets/instruct/identity.json");
    }

    @Test
    void promptIsMaskedResponseAndEosAreTrained() {
        LoadedDataset d = Datasets.load(identity, tok, null, DataOptions.of(512));
        assertEquals(DataFormat.ALPACA, d.format());
        assertEquals(91, d.examples().size());
        assertEquals(0, d.badRecords());
        assertEquals(0, d.truncated());

        // Record 0: {"instruction": "hi", "input": "", "output": "Hello! I am {{name}}, …"}
        int[] prompt = tok.encode(AlpacaFormat.prompt("hi", ""), true);
        int[] response = tok.encode("Hello! I am llamafit, an AI assistant developed by the llamafit authors. How can I assist you today?", false);
        Example e = d.examples().getFirst();
        assertEquals(prompt.length + response.length, e.length(), "prompt + response + EOS, minus the last position");
        StringBuilder shown = new StringBuilder();
        for (int t = 0; t < e.length(); t++) {
            shown.append(t).append(' ').append(tok.piece(e.inputIds()[t]).replace("\n", "\\n")).append(" -> ")
                    .append(e.labels()[t] == Example.IGNORE ? "-100" : tok.piece(e.labels()[t]).replace("\n", "\\n")).append('\n');
        }
        System.out.println("identity.json record 0 (position input -> target):\n" + shown);
        assertEquals(tok.bosId(), e.inputIds()[0]);
        for (int t = 0; t < prompt.length - 1; t++) assertEquals(Example.IGNORE, e.labels()[t], "prompt target at " + t);
        for (int t = prompt.length - 1; t < e.length(); t++) {
            int next = t + 1 < e.length() ? e.inputIds()[t + 1] : tok.eosId();
            assertEquals(next, e.labels()[t], "response target at " + t);
        }
        for (int i = 0; i < response.length; i++) assertEquals(response[i], e.labels()[prompt.length - 1 + i]);
        assertEquals(tok.eosId(), e.labels()[e.length() - 1], "EOS is trained");
        assertEquals(response.length + 1, e.trainedTokens());
        assertFalse(tok.decode(e.inputIds()).contains("{{"), "placeholders are substituted");
    }

    @Test
    void placeholdersFromOptionsAndTrainOnPrompt() {
        var o = new DataOptions(512, true, false, null, Map.of("name", "Otter"));
        LoadedDataset d = Datasets.load(identity, tok, null, o);
        Example e = d.examples().getFirst();
        assertTrue(tok.decode(e.inputIds()).contains("I am Otter, an AI assistant developed by the llamafit authors"));
        assertEquals(e.length(), e.trainedTokens(), "trainOnPrompt: every target counts");
        assertEquals(d.tokens(), d.trainedTokens());
    }

    @Test
    void inputFieldUsesTheLongTemplate() {
        String p = AlpacaFormat.prompt("Add.", "2 and 3");
        assertEquals("Below is an instruction that describes a task, paired with an input that provides further context. "
                + "Write a response that appropriately completes the request.\n\n### Instruction:\nAdd.\n\n### Input:\n2 and 3\n\n### Response:\n", p);
        assertEquals("Below is an instruction that describes a task. Write a response that appropriately completes the request.\n\n"
                + "### Instruction:\nAdd.\n\n### Response:\n", AlpacaFormat.prompt("Add.", null));
    }

    @Test
    void longRecordsAreTruncatedAndFullyMaskedOnesSkipped() {
        // At T = 96 most responses are cut, and prompts of long instructions leave no room for any response.
        LoadedDataset d = Datasets.load(SharedData.require("datasets/instruct/alpaca_en_demo.json"), tok, null, DataOptions.of(96));
        System.out.println("alpaca_en_demo.json at T=96: " + d.summary());
        assertEquals(999, d.examples().size() + d.emptySkipped());
        assertTrue(d.truncated() > 500, d.summary());
        assertTrue(d.emptySkipped() > 0, d.summary());
        for (Example e : d.examples()) assertTrue(e.length() <= 96);
    }
}
