// Packing of the TinyStories sample: document boundaries, chunk counts, shifted labels, tail rule.
package dev.llamafit.io.data;

import static org.junit.jupiter.api.Assertions.*;

import java.nio.file.Path;
import java.util.List;

import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

import dev.llamafit.io.tokenizer.Tokenizer;
import dev.llamafit.io.tokenizer.Tokenizers;
import dev.llamafit.testing.SharedData;

class TextPackingTest {
    static Tokenizer tok;
    static Path sample;

    @BeforeAll
    static void load() {
        tok = Tokenizers.load(SharedData.require("models/tinystories-656k"));
        sample = SharedData.require("datasets/text/tinystories_sample.txt");
    }

    @Test
    void streamHasFiveDocumentsEachWithBosAndEos() {
        int[] stream = TextPacker.tokenize(sample, tok);
        assertTrue(tok.addBosByDefault());
        int bos = 0, eos = 0;
        for (int id : stream) {
            if (id == tok.bosId()) bos++;
            if (id == tok.eosId()) eos++;
        }
        assertEquals(5, bos, "one BOS per story (the trailing separator makes no empty document)");
        assertEquals(5, eos, "one EOS after each story");
        assertEquals(tok.bosId(), stream[0]);
        assertEquals(tok.eosId(), stream[stream.length - 1]);
        // EOS is followed by the next story's BOS.
        for (int i = 0; i + 1 < stream.length; i++) if (stream[i] == tok.eosId()) assertEquals(tok.bosId(), stream[i + 1]);
        assertTrue(tok.decode(stream).startsWith("Once upon a time there was a little boy named Ben."));
    }

    @Test
    void chunksAreTheStreamWithLabelsShiftedByOne() {
        int seqLen = 64;
        int[] stream = TextPacker.tokenize(sample, tok);
        LoadedDataset d = Datasets.load(sample, tok, null, DataOptions.of(seqLen));
        assertEquals(DataFormat.TEXT, d.format());
        int full = (stream.length - 1) / seqLen;
        int tail = (stream.length - 1) % seqLen;
        int expected = full + (tail >= seqLen / 4 ? 1 : 0);
        assertEquals(expected, d.examples().size(), "stream of " + stream.length + " ids");
        for (int k = 0; k < d.examples().size(); k++) {
            Example e = d.examples().get(k);
            assertEquals(k < full ? seqLen : tail, e.length());
            for (int t = 0; t < e.length(); t++) {
                assertEquals(stream[k * seqLen + t], e.inputIds()[t]);
                assertEquals(stream[k * seqLen + t + 1], e.labels()[t], "labels are inputs shifted by one");
            }
        }
        assertEquals(d.tokens(), d.trainedTokens(), "every label counts in packed text");
        assertEquals(0, d.truncated());
    }

    @Test
    void tailRule() {
        int[] stream = new int[1 + 10 + 3];
        for (int i = 0; i < stream.length; i++) stream[i] = i;
        // 13 targets, T = 10: one full chunk, a tail of 3 < 10/4? no: 3 >= 2, kept.
        List<Example> ex = TextPacker.pack(stream, 10);
        assertEquals(2, ex.size());
        assertArrayEquals(new int[] {10, 11, 12}, ex.get(1).inputIds());
        assertArrayEquals(new int[] {11, 12, 13}, ex.get(1).labels());
        // T = 12: tail of 1 < 3 is dropped.
        assertEquals(1, TextPacker.pack(stream, 12).size());
        // A stream shorter than one chunk still gives its one example.
        assertEquals(1, TextPacker.pack(new int[] {5, 6}, 100).size());
    }

    @Test
    void fileWithoutSeparatorsIsOneDocument(@org.junit.jupiter.api.io.TempDir Path dir) throws Exception {
        Path f = dir.resolve("one.txt");
        java.nio.file.Files.writeString(f, "Once upon a time.\nThe end.\n");
        int[] stream = TextPacker.tokenize(f, tok);
        assertEquals(tok.bosId(), stream[0]);
        assertEquals(1, java.util.Arrays.stream(stream).filter(i -> i == tok.eosId()).count());
    }
}
