// Compares HfTokenizer with Hugging Face's own tokenizers library (Rust, through DJL's bundled native library).
package dev.llamafit.io.tokenizer;

import ai.djl.huggingface.tokenizers.HuggingFaceTokenizer;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Map;

import static org.junit.jupiter.api.Assertions.*;

/**
 * The reference is the real huggingface/tokenizers (DJL 0.33.0 wraps it, native library inside the jar).
 * If the native library cannot load on this platform the test is skipped with the reason.
 */
class HfTokenizerReferenceTest {

    static HuggingFaceTokenizer reference(Path tokenizerJson) throws IOException {
        try {
            return HuggingFaceTokenizer.newInstance(tokenizerJson, Map.of("addSpecialTokens", "false"));
        } catch (UnsatisfiedLinkError | ExceptionInInitializerError | NoClassDefFoundError e) {
            Assumptions.abort("DJL tokenizers native library does not load here: " + e);
            throw new AssertionError(e);
        }
    }

    static List<String> texts() throws IOException {
        List<String> texts = new ArrayList<>();
        for (var c : SentencePieceTokenizerTest.llamaSpmCases()) texts.add(c.text());
        texts.addAll(Arrays.asList(Files.readString(SharedData.require("datasets/text/tinystories_sample.txt")).split("\n")));
        List<String> austen = Files.readAllLines(SharedData.require("datasets/text/austen_persuasion.txt"));
        texts.addAll(austen.subList(1000, 1300));
        texts.add("a\n\nb  c\t\td 🙂👍🏽 <|start_story|>x<|end_story|> <unk>");
        return texts;
    }

    private static void compare(HfTokenizer ours, HuggingFaceTokenizer theirs, List<String> texts) {
        List<String> failures = new ArrayList<>();
        for (String text : texts) {
            long[] expected = theirs.encode(text, false, false).getIds();
            int[] got = ours.encode(text, false);
            if (!Arrays.equals(Arrays.stream(expected).mapToInt(Math::toIntExact).toArray(), got)) {
                failures.add(SentencePieceTokenizerTest.quote(text) + "\n  tokenizers " + Arrays.toString(expected)
                        + "\n  llamafit   " + Arrays.toString(got));
                continue;
            }
            String expectedText = theirs.decode(expected, true);
            String gotText = ours.decode(got);
            if (!expectedText.equals(gotText)) {
                failures.add("decode " + SentencePieceTokenizerTest.quote(text) + ": tokenizers "
                        + SentencePieceTokenizerTest.quote(expectedText) + ", llamafit " + SentencePieceTokenizerTest.quote(gotText));
            }
        }
        assertTrue(failures.isEmpty(), failures.size() + "/" + texts.size() + " differ:\n" + String.join("\n", failures));
    }

    @Test
    void tinyStoriesMatchesTokenizers() throws IOException {
        Path file = SharedData.require("models/tinystories-656k/tokenizer.json");
        try (HuggingFaceTokenizer theirs = reference(file)) {
            compare(HfTokenizer.load(file), theirs, texts());
        }
    }

    @Test
    void gpt2StyleMatchesTokenizers(@TempDir Path dir) throws IOException {
        HfTokenizer ours = HfTokenizerTest.byteLevel(dir, true);
        List<String> texts = texts();
        texts.addAll(List.of("Grüße aus Köln — naïve café", "1234567 12 1", "I'M HERE'S 'RE", "x\r\n\r\ny", "   spaces   "));
        try (HuggingFaceTokenizer theirs = reference(dir.resolve("tokenizer.json"))) {
            compare(ours, theirs, texts);
        }
    }

    @Test
    void llama2JsonMatchesTokenizers(@TempDir Path dir) throws IOException {
        Path file = HfTokenizerTest.llama2Json(dir);
        try (HuggingFaceTokenizer theirs = reference(file)) {
            compare(HfTokenizer.load(file), theirs, texts());
        }
    }

    @Test
    void byteLevelMatchesTokenizers(@TempDir Path dir) throws IOException {
        HfTokenizer ours = HfTokenizerTest.byteLevel(dir);
        List<String> texts = texts();
        texts.addAll(List.of("Grüße aus Köln — naïve café", "1234567 12 1", "I'M HERE'S 'RE", "日本語", "x\r\n\r\ny",
                "<|begin_of_text|>hi<|eot_id|>", "   spaces   "));
        try (HuggingFaceTokenizer theirs = reference(dir.resolve("tokenizer.json"))) {
            compare(ours, theirs, texts);
        }
    }
}
