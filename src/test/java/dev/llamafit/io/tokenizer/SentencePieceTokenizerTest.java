// Tests the SentencePiece BPE tokenizer against llama.cpp's Llama 2 test vectors and the llama2.c format.
package dev.llamafit.io.tokenizer;

import dev.llamafit.io.InputException;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;

import static org.junit.jupiter.api.Assertions.*;

class SentencePieceTokenizerTest {

    /** One llama.cpp test case: input text and the ids expected without BOS. */
    record Case(int index, String text, int[] expected) {}

    /** Inputs are separated by a line "__ggml_vocab_test__"; .out has one line of ids per input. */
    static List<Case> llamaSpmCases() throws IOException {
        Path dir = SharedData.require("testvectors/tokenizer");
        String inp = Files.readString(dir.resolve("ggml-vocab-llama-spm.gguf.inp"), StandardCharsets.UTF_8);
        List<String> out = Files.readAllLines(dir.resolve("ggml-vocab-llama-spm.gguf.out"), StandardCharsets.UTF_8);
        String[] texts = inp.split("\n__ggml_vocab_test__\n", -1);
        int n = texts[texts.length - 1].isEmpty() ? texts.length - 1 : texts.length;
        if (n != out.size()) throw new IllegalStateException(n + " inputs but " + out.size() + " expected-id lines");
        List<Case> cases = new ArrayList<>();
        for (int i = 0; i < n; i++) {
            String line = i < out.size() ? out.get(i).strip() : "";
            int[] ids = line.isEmpty() ? new int[0] : Arrays.stream(line.split("\\s+")).mapToInt(Integer::parseInt).toArray();
            cases.add(new Case(i, texts[i], ids));
        }
        return cases;
    }

    static SentencePieceTokenizer llama2() {
        return SentencePieceTokenizer.load(SharedData.require("tokenizers/llama2/tokenizer.model"));
    }

    @Test
    void llama2ModelHeader() {
        SentencePieceTokenizer tok = llama2();
        assertEquals(32000, tok.vocabSize());
        assertEquals(1, tok.bosId());
        assertEquals(2, tok.eosId());
        assertEquals(0, tok.unkId());
        assertEquals("<s>", tok.piece(1));
        assertEquals("<0x0A>", tok.piece(13));
        assertEquals(13, tok.tokenId("<0x0A>").orElseThrow());
        assertTrue(tok.isSpecial(1) && tok.isSpecial(2) && !tok.isSpecial(13));
    }

    @Test
    void allLlamaSpmVectorsPass() throws IOException {
        SentencePieceTokenizer tok = llama2();
        List<Case> cases = llamaSpmCases();
        // The shared copy holds 46 inputs (46 separators, 46 output lines); every one must pass.
        assertEquals(46, cases.size(), "number of test inputs");
        List<String> failures = new ArrayList<>();
        for (Case c : cases) {
            int[] got = tok.encode(c.text(), false);
            if (!Arrays.equals(c.expected(), got)) {
                failures.add("case " + c.index() + " input " + quote(c.text()) + "\n  expected " + Arrays.toString(c.expected())
                        + "\n  got      " + Arrays.toString(got));
            }
        }
        assertTrue(failures.isEmpty(), failures.size() + "/" + cases.size() + " cases fail:\n" + String.join("\n", failures));
    }

    @Test
    void llamaSpmVectorsRoundTrip() throws IOException {
        SentencePieceTokenizer tok = llama2();
        List<String> failures = new ArrayList<>();
        for (Case c : llamaSpmCases()) {
            int[] ids = tok.encode(c.text(), true);
            String decoded = tok.decode(ids);
            StringBuilder streamed = new StringBuilder();
            Tokenizer.StreamDecoder stream = tok.newStreamDecoder();
            for (int id : ids) streamed.append(stream.next(id));
            streamed.append(stream.flush());
            if (!decoded.equals(c.text()) || !streamed.toString().equals(c.text())) {
                failures.add("case " + c.index() + " " + quote(c.text()) + " decoded " + quote(decoded) + " streamed " + quote(streamed.toString()));
            }
        }
        assertTrue(failures.isEmpty(), String.join("\n", failures));
    }

    @Test
    void streamDecoderHoldsIncompleteUtf8() {
        SentencePieceTokenizer tok = llama2();
        // "€" is E2 82 AC; as byte-fallback pieces it arrives in three tokens.
        int e2 = tok.tokenId("<0xE2>").orElseThrow(), x82 = tok.tokenId("<0x82>").orElseThrow(),
                xac = tok.tokenId("<0xAC>").orElseThrow();
        Tokenizer.StreamDecoder stream = tok.newStreamDecoder();
        int hello = tok.tokenId("▁Hello").orElseThrow();
        assertEquals("Hello", stream.next(hello), "dummy-prefix space of the first token is dropped");
        assertEquals("", stream.next(e2));
        assertEquals("", stream.next(x82));
        assertEquals("€", stream.next(xac));
        assertEquals(" world", stream.next(tok.tokenId("▁world").orElseThrow()));
        assertEquals("", stream.next(tok.eosId()));
        assertEquals("", stream.flush());
    }

    @Test
    void tok512ModelAndBinAgree() throws IOException {
        SentencePieceTokenizer model = SentencePieceTokenizer.load(SharedData.require("models/stories260k/tok512.model"));
        SentencePieceTokenizer bin = SentencePieceTokenizer.loadLlama2c(SharedData.require("models/stories260k/tok512.bin"), 512);
        SentencePieceTokenizer binInferred = SentencePieceTokenizer.loadLlama2c(SharedData.require("models/stories260k/tok512.bin"), 0);
        assertEquals(512, model.vocabSize());
        assertEquals(512, binInferred.vocabSize());
        String story = Files.readString(SharedData.require("datasets/text/tinystories_sample.txt"));
        List<String> sentences = new ArrayList<>(List.of("Once upon a time, there was a little girl named Lily.",
                "She loved to play outside in the park.", "Tom said: \"Wow!\" 123 €5 🙂", "a\nb\tc"));
        sentences.addAll(Arrays.asList(story.split("\n")).subList(0, 10));
        for (String s : sentences) {
            int[] expected = model.encode(s, true);
            assertArrayEquals(expected, bin.encode(s, true), s);
            assertArrayEquals(expected, binInferred.encode(s, true), s);
            assertEquals(s, model.decode(expected), s);
            assertEquals(s, bin.decode(expected), s);
        }
    }

    @Test
    void llama2BinMatchesModel() throws IOException {
        SentencePieceTokenizer model = llama2();
        SentencePieceTokenizer bin = SentencePieceTokenizer.loadLlama2c(SharedData.require("tokenizers/llama2/tokenizer.bin"), 32000);
        for (Case c : llamaSpmCases()) assertArrayEquals(c.expected(), bin.encode(c.text(), false), quote(c.text()));
    }

    @Test
    void truncatedModelNamesFileAndOffset(@TempDir Path dir) throws IOException {
        byte[] data = Files.readAllBytes(SharedData.require("tokenizers/llama2/tokenizer.model"));
        Path truncated = dir.resolve("tokenizer.model");
        Files.write(truncated, Arrays.copyOf(data, 1000));
        InputException e = assertThrows(InputException.class, () -> SentencePieceTokenizer.load(truncated));
        assertTrue(e.getMessage().startsWith(truncated + ": byte "), e.getMessage());

        Path garbage = dir.resolve("garbage.model");
        Files.write(garbage, "this is not a protobuf at all, just text".getBytes(StandardCharsets.UTF_8));
        e = assertThrows(InputException.class, () -> SentencePieceTokenizer.load(garbage));
        assertTrue(e.getMessage().contains("garbage.model: byte "), e.getMessage());

        Path missing = dir.resolve("nope.model");
        e = assertThrows(InputException.class, () -> SentencePieceTokenizer.load(missing));
        assertTrue(e.getMessage().contains("nope.model"), e.getMessage());

        Path badBin = dir.resolve("tokenizer.bin");
        Files.write(badBin, new byte[] {16, 0, 0, 0, 0, 0, (byte) 0x80, 0x3f, 100, 0, 0, 0, 'a'});
        e = assertThrows(InputException.class, () -> SentencePieceTokenizer.loadLlama2c(badBin, 0));
        assertTrue(e.getMessage().startsWith(badBin + ": byte 8: "), e.getMessage());
    }

    static String quote(String s) {
        StringBuilder b = new StringBuilder("\"");
        s.codePoints().forEach(cp -> {
            if (cp == '\n') b.append("\\n");
            else if (cp == '\t') b.append("\\t");
            else if (cp == '"') b.append("\\\"");
            else b.appendCodePoint(cp);
        });
        return b.append('"').toString();
    }
}
