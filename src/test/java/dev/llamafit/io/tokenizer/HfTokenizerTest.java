// Tests HfTokenizer: the TinyStories Llama-style tokenizer.json, a synthetic byte-level one, and bad files.
package dev.llamafit.io.tokenizer;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.llamafit.io.InputException;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;

import static org.junit.jupiter.api.Assertions.*;

class HfTokenizerTest {
    private static final ObjectMapper JSON = new ObjectMapper();

    static HfTokenizer tinyStories() {
        return HfTokenizer.load(SharedData.require("models/tinystories-656k/tokenizer.json"));
    }

    @Test
    void tinyStoriesHandChecked() {
        HfTokenizer tok = tinyStories();
        assertEquals(2048, tok.vocabSize());
        assertEquals(1, tok.bosId(), "BOS from the TemplateProcessing post-processor");
        assertEquals(0, tok.unkId());
        assertTrue(tok.isSpecial(1) && tok.isSpecial(2) && !tok.isSpecial(3));
        // "▁a" exists as merge 4 ("▁ a"); the normaliser prepends ▁, so "a" is one token.
        assertArrayEquals(new int[] {tok.tokenId("▁a").orElseThrow()}, tok.encode("a", false));
        assertArrayEquals(new int[] {1, tok.tokenId("▁a").orElseThrow()}, tok.encode("a", true));
        // Characters outside the vocabulary (no <0xNN> pieces in this file) become one fused <unk>.
        int[] ids = tok.encode("a\u201C\u201Db", false);
        assertEquals(0, ids[1], Arrays.toString(ids));
        assertEquals(3, ids.length, "two unknown chars fuse into one <unk>: " + Arrays.toString(ids));
        // Added tokens are matched verbatim and never merged with neighbours.
        ids = tok.encode("<|start_story|>Once", false);
        assertEquals(1, ids[0]);
        assertEquals("Once", tok.decode(ids));
        assertEquals("", tok.decode(new int[] {1, 2}));
        assertEquals("\n", tok.piece(3));
    }

    /** Pieces produced must concatenate to the normalised input: a merge never changes text. */
    @Test
    void tinyStoriesRoundTripOnStories() throws IOException {
        HfTokenizer tok = tinyStories();
        String stories = Files.readString(SharedData.require("datasets/text/tinystories_sample.txt"));
        int checked = 0;
        for (String line : stories.split("\n")) {
            if (line.isBlank() || line.contains("<|endoftext|>")) continue;
            int[] ids = tok.encode(line, true);
            StringBuilder pieces = new StringBuilder();
            for (int i = 1; i < ids.length; i++) pieces.append(ids[i] == 0 ? "?" : tok.piece(ids[i]));
            String expected = "▁" + line.replace(' ', '▁').replaceAll("[“”’‘—…]+", "?");
            assertEquals(expected, pieces.toString(), line);
            String ascii = line.replaceAll("[“”’‘—…]", "'");
            assertEquals(ascii, tok.decode(tok.encode(ascii, true)), ascii);
            checked++;
        }
        assertTrue(checked >= 10, "checked " + checked + " lines");
    }

    /**
     * The same file as a SentencePiece model: score = -(rank of the merge that makes the piece). For a
     * Llama-style BPE the two algorithms must then agree (the HF file was converted from one such model).
     */
    @Test
    void tinyStoriesAgreesWithSentencePieceSemantics() throws IOException {
        HfTokenizer hf = tinyStories();
        var root = JSON.readTree(SharedData.require("models/tinystories-656k/tokenizer.json").toFile());
        int n = hf.vocabSize();
        String[] pieces = new String[n];
        float[] scores = new float[n];
        byte[] types = new byte[n];
        for (int id = 0; id < n; id++) {
            pieces[id] = hf.piece(id);
            types[id] = id == 0 ? SentencePieceTokenizer.UNKNOWN : id <= 2 ? SentencePieceTokenizer.CONTROL : SentencePieceTokenizer.NORMAL;
            scores[id] = Float.NEGATIVE_INFINITY;
        }
        var merges = root.path("model").path("merges");
        for (int rank = merges.size() - 1; rank >= 0; rank--) {
            String m = merges.get(rank).asText();
            int id = hf.tokenId(m.replaceFirst(" ", "")).orElseThrow();
            scores[id] = -rank;
        }
        // No <0xNN> pieces in this file: without byte fallback both fuse a run of unknown chars into one <unk>.
        var options = new SentencePieceTokenizer.Options(true, false, true, false, false, 0, 1, 2);
        SentencePieceTokenizer sp = new SentencePieceTokenizer(pieces, scores, types, options);
        List<String> lines = new ArrayList<>(Arrays.asList(
                Files.readString(SharedData.require("datasets/text/tinystories_sample.txt")).split("\n")));
        lines.addAll(Files.readAllLines(SharedData.require("datasets/text/austen_emma.txt")).subList(0, 400));
        for (var c : SentencePieceTokenizerTest.llamaSpmCases()) lines.add(c.text());
        int compared = 0;
        for (String line : lines) {
            if (line.contains("<|")) continue;
            assertArrayEquals(sp.encode(line, true), hf.encode(line, true), SentencePieceTokenizerTest.quote(line));
            compared++;
        }
        assertTrue(compared > 400);
    }

    // ---- a synthetic byte-level tokenizer (GPT-2 byte map, Llama 3 split regex) -------------------------

    static final String LLAMA3_REGEX = "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}"
            + "| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

    /** Ids 0..255 are the 256 bytes (id = byte value) as GPT-2 chars, 256..261 six merges, 262/263 special tokens. */
    static ObjectNode byteLevelJson() {
        return byteLevelJson(false);
    }

    /** {@code gpt2}: GPT-2's own pre-tokenizer, ByteLevel(add_prefix_space, use_regex), instead of Llama 3's Split. */
    static ObjectNode byteLevelJson(boolean gpt2) {
        ObjectNode root = JSON.createObjectNode();
        root.put("version", "1.0");
        ArrayNode added = root.putArray("added_tokens");
        for (String[] t : new String[][] {{"262", "<|begin_of_text|>"}, {"263", "<|eot_id|>"}}) {
            added.addObject().put("id", Integer.parseInt(t[0])).put("content", t[1]).put("single_word", false)
                    .put("lstrip", false).put("rstrip", false).put("normalized", false).put("special", true);
        }
        root.putNull("normalizer");
        if (gpt2) {
            root.putObject("pre_tokenizer").put("type", "ByteLevel").put("add_prefix_space", true)
                    .put("trim_offsets", true).put("use_regex", true);
        }
        ObjectNode pre = gpt2 ? JSON.createObjectNode() : root.putObject("pre_tokenizer");
        pre.put("type", "Sequence");
        ArrayNode steps = pre.putArray("pretokenizers");
        ObjectNode split = steps.addObject();
        split.put("type", "Split");
        split.putObject("pattern").put("Regex", LLAMA3_REGEX);
        split.put("behavior", "Isolated").put("invert", false);
        steps.addObject().put("type", "ByteLevel").put("add_prefix_space", false).put("trim_offsets", true).put("use_regex", false);
        ObjectNode post = root.putObject("post_processor");
        post.put("type", "TemplateProcessing");
        ArrayNode single = post.putArray("single");
        single.addObject().putObject("SpecialToken").put("id", "<|begin_of_text|>").put("type_id", 0);
        single.addObject().putObject("Sequence").put("id", "A").put("type_id", 0);
        ArrayNode pair = post.putArray("pair");
        pair.addAll(single.deepCopy());
        pair.addObject().putObject("Sequence").put("id", "B").put("type_id", 1);
        ObjectNode bos = post.putObject("special_tokens").putObject("<|begin_of_text|>");
        bos.put("id", "<|begin_of_text|>");
        bos.putArray("ids").add(262);
        bos.putArray("tokens").add("<|begin_of_text|>");
        root.putObject("decoder").put("type", "ByteLevel").put("add_prefix_space", true).put("trim_offsets", true).put("use_regex", true);
        ObjectNode model = root.putObject("model");
        model.put("type", "BPE").putNull("unk_token").put("fuse_unk", false).put("byte_fallback", false).put("ignore_merges", false);
        ObjectNode vocab = model.putObject("vocab");
        for (int b = 0; b < 256; b++) vocab.put(String.valueOf(ByteLevelMap.charOf(b)), b);
        String[][] merges = {{"Ġ", "t"}, {"h", "e"}, {"Ġt", "he"}, {"1", "2"}, {"3", "4"}, {"Ċ", "Ċ"}};
        ArrayNode mergeList = model.putArray("merges");
        int id = 256;
        for (String[] m : merges) {
            vocab.put(m[0] + m[1], id++);
            mergeList.addArray().add(m[0]).add(m[1]); // the newer [left, right] form
        }
        return root;
    }

    static HfTokenizer byteLevel(Path dir) throws IOException {
        return byteLevel(dir, false);
    }

    static HfTokenizer byteLevel(Path dir, boolean gpt2) throws IOException {
        Path file = dir.resolve("tokenizer.json");
        JSON.writeValue(file.toFile(), byteLevelJson(gpt2));
        return HfTokenizer.load(file);
    }

    @Test
    void gpt2PreTokenizerHandComputed(@TempDir Path dir) throws IOException {
        HfTokenizer tok = byteLevel(dir, true);
        // add_prefix_space: "the" becomes " the" -> Ġt, he -> Ġthe; GPT-2's regex keeps digits together.
        assertArrayEquals(new int[] {258}, tok.encode("the", false));
        assertArrayEquals(new int[] {' ', 259, 260, '5'}, tok.encode("12345", false));
        assertEquals("the 12345", tok.decode(tok.encode("the 12345", false)).strip());
    }

    /** A third of a novel in one call: round trip, and no quadratic blow-up on long segments. */
    @Test
    void encodesANovel(@TempDir Path dir) throws IOException {
        String novel = Files.readString(SharedData.require("datasets/text/austen_emma.txt")).substring(0, 300_000);
        for (Tokenizer tok : List.of(tinyStories(), HfTokenizer.load(llama2Json(dir)), byteLevel(dir),
                SentencePieceTokenizerTest.llama2())) {
            long start = System.nanoTime();
            int[] ids = tok.encode(novel, true);
            long encodeNanos = System.nanoTime() - start;
            String back = tok.decode(ids);
            System.out.printf("%s: %d chars -> %d tokens in %.0f ms%n", tok.getClass().getSimpleName(), novel.length(),
                    ids.length, encodeNanos / 1e6);
            if (!(tok instanceof HfTokenizer h && h.vocabSize() == 2048)) assertEquals(novel, back);
        }
    }

    @Test
    void byteLevelHandComputed(@TempDir Path dir) throws IOException {
        HfTokenizer tok = byteLevel(dir);
        assertEquals(264, tok.vocabSize());
        assertEquals(262, tok.bosId());
        assertEquals("Ġ", tok.piece(' '));
        assertEquals("Ċ", tok.piece('\n'));
        // "the" -> t, he ; " theme" -> Ġt, he -> Ġthe, m, e
        assertArrayEquals(new int[] {262, 't', 257, 258, 'm', 'e'}, tok.encode("the theme", true));
        // Llama 3's regex splits digits in groups of three: "123","45" -> [12, 3], [4, 5] (not 12, 34, 5).
        assertArrayEquals(new int[] {259, '3', '4', '5'}, tok.encode("12345", false));
        assertArrayEquals(new int[] {259, '3', '4'}, tok.encode("1234", false), "\"123\",\"4\": the 3 and 4 never meet");
        assertArrayEquals(new int[] {260}, tok.encode("34", false));
        // Newlines: "\n\n" is one split and merges; special tokens pass through whole.
        assertArrayEquals(new int[] {'a', 261, 263}, tok.encode("a\n\n<|eot_id|>", false));
        assertEquals("a\n\n", tok.decode(tok.encode("a\n\n<|eot_id|>", true)));
    }

    @Test
    void byteLevelRoundTripsUnicode(@TempDir Path dir) throws IOException {
        HfTokenizer tok = byteLevel(dir);
        String[] texts = {"Hello, world! 123 4567", "Grüße aus Köln — naïve café", "emoji 🙂👍🏽 and 🇩🇪 flags",
                "tabs\tand\r\nnewlines\n\n\n", "  leading and trailing  ", "日本語のテキスト。", "ﬁ ligature, ½, Ⅻ", "'s 'LL I'm"};
        for (String text : texts) {
            int[] ids = tok.encode(text, true);
            assertEquals(text, tok.decode(ids), text);
            StringBuilder streamed = new StringBuilder();
            Tokenizer.StreamDecoder stream = tok.newStreamDecoder();
            for (int id : ids) streamed.append(stream.next(id));
            assertEquals(text, streamed.append(stream.flush()).toString(), text);
        }
        // A 4-byte emoji arrives as four byte tokens; nothing is emitted until the last.
        Tokenizer.StreamDecoder stream = tok.newStreamDecoder();
        int[] ids = tok.encode("🙂", false);
        assertEquals(4, ids.length);
        for (int i = 0; i < 3; i++) assertEquals("", stream.next(ids[i]));
        assertEquals("🙂", stream.next(ids[3]));
    }

    // ---- Llama 2 as a tokenizer.json (byte fallback, 32000 pieces) --------------------------------------

    /**
     * Writes Llama 2's tokenizer.model as the tokenizer.json that transformers' converter makes: merges are
     * every split of a piece into two pieces, ordered by the piece's score (then left id, right id).
     */
    static Path llama2Json(Path dir) throws IOException {
        SentencePieceTokenizer sp = SentencePieceTokenizerTest.llama2();
        ObjectNode root = JSON.createObjectNode();
        root.put("version", "1.0");
        ArrayNode added = root.putArray("added_tokens");
        for (int id = 0; id < 3; id++) {
            added.addObject().put("id", id).put("content", sp.piece(id)).put("single_word", false).put("lstrip", false)
                    .put("rstrip", false).put("normalized", false).put("special", true);
        }
        ObjectNode normalizer = root.putObject("normalizer");
        normalizer.put("type", "Sequence");
        ArrayNode ns = normalizer.putArray("normalizers");
        ns.addObject().put("type", "Prepend").put("prepend", "▁");
        ObjectNode replace = ns.addObject().put("type", "Replace");
        replace.putObject("pattern").put("String", " ");
        replace.put("content", "▁");
        root.putNull("pre_tokenizer");
        ObjectNode decoder = root.putObject("decoder");
        decoder.put("type", "Sequence");
        ArrayNode ds = decoder.putArray("decoders");
        ObjectNode dr = ds.addObject().put("type", "Replace");
        dr.putObject("pattern").put("String", "▁");
        dr.put("content", " ");
        ds.addObject().put("type", "ByteFallback");
        ds.addObject().put("type", "Fuse");
        ds.addObject().put("type", "Strip").put("content", " ").put("start", 1).put("stop", 0);
        ObjectNode model = root.putObject("model");
        model.put("type", "BPE").putNull("dropout").put("unk_token", "<unk>").putNull("continuing_subword_prefix")
                .putNull("end_of_word_suffix").put("fuse_unk", true).put("byte_fallback", true).put("ignore_merges", false);
        ObjectNode vocab = model.putObject("vocab");
        for (int id = 0; id < sp.vocabSize(); id++) vocab.put(sp.piece(id), id);
        record Merge(float score, int left, int right, String text) {}
        List<Merge> merges = new ArrayList<>();
        for (int id = 0; id < sp.vocabSize(); id++) {
            if (sp.pieceType(id) != SentencePieceTokenizer.NORMAL) continue;
            String piece = sp.piece(id);
            for (int i = piece.offsetByCodePoints(0, 1); i < piece.length(); i = piece.offsetByCodePoints(i, 1)) {
                var l = sp.tokenId(piece.substring(0, i));
                var r = sp.tokenId(piece.substring(i));
                if (l.isPresent() && r.isPresent()) merges.add(new Merge(sp.score(id), l.getAsInt(), r.getAsInt(), piece.substring(0, i) + " " + piece.substring(i)));
            }
        }
        merges.sort(java.util.Comparator.comparingDouble((Merge m) -> -m.score()).thenComparingInt(Merge::left).thenComparingInt(Merge::right));
        ArrayNode list = model.putArray("merges");
        for (Merge m : merges) list.add(m.text());
        Path file = dir.resolve("tokenizer.json");
        JSON.writeValue(file.toFile(), root);
        return file;
    }

    @Test
    void llama2JsonPassesLlamaSpmVectors(@TempDir Path dir) throws IOException {
        HfTokenizer tok = HfTokenizer.load(llama2Json(dir));
        assertEquals(32000, tok.vocabSize());
        List<String> failures = new ArrayList<>();
        for (var c : SentencePieceTokenizerTest.llamaSpmCases()) {
            int[] got = tok.encode(c.text(), false);
            if (!Arrays.equals(c.expected(), got)) {
                failures.add("case " + c.index() + " " + SentencePieceTokenizerTest.quote(c.text()) + "\n  expected "
                        + Arrays.toString(c.expected()) + "\n  got      " + Arrays.toString(got));
            }
            assertEquals(c.text(), tok.decode(tok.encode(c.text(), true)), SentencePieceTokenizerTest.quote(c.text()));
        }
        assertTrue(failures.isEmpty(), failures.size() + " cases fail:\n" + String.join("\n", failures));
    }

    // ---- errors -----------------------------------------------------------------------------------------

    @Test
    void unsupportedComponentsNameFileAndComponent(@TempDir Path dir) throws IOException {
        ObjectNode wordPiece = byteLevelJson();
        ((ObjectNode) wordPiece.get("model")).put("type", "WordPiece");
        assertMessage(dir, wordPiece, "model.type", "WordPiece");
        ObjectNode unigram = byteLevelJson();
        ((ObjectNode) unigram.get("model")).put("type", "Unigram");
        assertMessage(dir, unigram, "model.type", "Unigram");
        ObjectNode bert = byteLevelJson();
        bert.putObject("pre_tokenizer").put("type", "BertPreTokenizer");
        assertMessage(dir, bert, "pre_tokenizer", "BertPreTokenizer");
        ObjectNode badMerge = byteLevelJson();
        ((ArrayNode) badMerge.get("model").get("merges")).addArray().add("x").add("nope");
        assertMessage(dir, badMerge, "model.merges[6]", "nope");

        Path broken = dir.resolve("broken.json");
        Files.writeString(broken, "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0,,}}}");
        InputException e = assertThrows(InputException.class, () -> HfTokenizer.load(broken));
        assertTrue(e.getMessage().startsWith(broken + ":1:"), e.getMessage());
    }

    private static void assertMessage(Path dir, ObjectNode json, String where, String what) throws IOException {
        Path file = dir.resolve("tokenizer.json");
        JSON.writeValue(file.toFile(), json);
        InputException e = assertThrows(InputException.class, () -> HfTokenizer.load(file));
        assertTrue(e.getMessage().startsWith(file + ": " + where + ": ") && e.getMessage().contains(what), e.getMessage());
    }
}
