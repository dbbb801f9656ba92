// Issue 19 findings 3, 8, 9: a huge JSONL record is refused while reading, invalid UTF-8 is located, short --seq-len is explained.
package dev.llamafit.io.data;

import static org.junit.jupiter.api.Assertions.*;

import java.io.OutputStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;

import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import dev.llamafit.io.InputException;
import dev.llamafit.io.tokenizer.Tokenizer;
import dev.llamafit.io.tokenizer.Tokenizers;
import dev.llamafit.testing.SharedData;

class DataHardeningTest {
    static Tokenizer tok;
    static final String GOOD = "{\"instruction\": \"Say hi.\", \"output\": \"Hi there, friend.\"}\n";

    @TempDir Path tmp;

    @BeforeAll
    static void load() {
        tok = Tokenizers.load(SharedData.require("models/tinystories-656k"));
    }

    /** GOOD, then one record of about 50 MB on line 2, then GOOD. */
    private Path hugeRecordFile() throws Exception {
        Path f = tmp.resolve("huge.jsonl");
        byte[] block = new byte[1 << 20];
        Arrays.fill(block, (byte) 'a');
        try (OutputStream o = Files.newOutputStream(f)) {
            o.write(GOOD.getBytes(StandardCharsets.UTF_8));
            o.write("{\"instruction\": \"x\", \"output\": \"".getBytes(StandardCharsets.UTF_8));
            for (int i = 0; i < 50; i++) o.write(block);
            o.write("\"}\n".getBytes(StandardCharsets.UTF_8));
            o.write(GOOD.getBytes(StandardCharsets.UTF_8));
        }
        return f;
    }

    @Test
    void fiftyMegabyteRecordIsABadRecordFoundFastAndSkippable() throws Exception {
        Path f = hugeRecordFile();
        long t0 = System.nanoTime();
        InputException e = assertThrows(InputException.class, () -> Datasets.load(f, tok, null, DataOptions.of(64)));
        double seconds = (System.nanoTime() - t0) / 1e9;
        assertTrue(seconds < 5, "took " + seconds + " s");
        assertEquals(f + ":2: record is " + (50L * (1 << 20) + 34) + " bytes, over the limit of 1048576 (raise with --max-record-bytes)",
                e.getMessage());

        LoadedDataset d = Datasets.load(f, tok, null, DataOptions.of(256).withSkipBadRecords(true));
        assertEquals(2, d.examples().size());
        assertEquals(1, d.badRecords());
        assertTrue(d.badReasons().getFirst().contains(":2: record is"), d.badReasons().getFirst());
    }

    @Test
    void aRaisedLimitReadsTheRecord() throws Exception {
        Path f = tmp.resolve("long.jsonl");
        String big = "{\"instruction\": \"x\", \"output\": \"" + "a".repeat(3000) + "\"}\n";
        Files.writeString(f, GOOD + big);
        InputException e = assertThrows(InputException.class, () -> Datasets.load(f, tok, null, DataOptions.of(64).withMaxRecordBytes(1000)));
        assertTrue(e.getMessage().startsWith(f + ":2: record is 3034 bytes, over the limit of 1000"), e.getMessage());
        assertEquals(2, Datasets.load(f, tok, null, DataOptions.of(256).withMaxRecordBytes(4000)).examples().size());
    }

    @Test
    void invalidUtf8InJsonlIsLocatedAndSkippable() throws Exception {
        Path f = tmp.resolve("bad-utf8.jsonl");
        byte[] good = GOOD.getBytes(StandardCharsets.UTF_8);
        byte[] bad = "{\"instruction\": \"caf\u00e9 \", \"output\": \"x\"}\n".getBytes(StandardCharsets.UTF_8);
        int lead = "{\"instruction\": \"caf".length(); // "é" is 0xC3 0xA9 there; its 0xA9 becomes 0xFF
        assertEquals((byte) 0xC3, bad[lead]);
        bad[lead + 1] = (byte) 0xFF;
        try (OutputStream o = Files.newOutputStream(f)) {
            o.write(good);
            o.write(bad);
            o.write(good);
        }
        InputException e = assertThrows(InputException.class, () -> Datasets.load(f, tok, null, DataOptions.of(64)));
        assertEquals(f + ":2: invalid UTF-8 at byte offset " + lead + " of the line (offset " + (good.length + lead)
                + " of the file, counting from 0): 0xC3 0xFF", e.getMessage());
        LoadedDataset d = Datasets.load(f, tok, null, DataOptions.of(256).withSkipBadRecords(true));
        assertEquals(2, d.examples().size());
        assertEquals(1, d.badRecords());
    }

    @Test
    void invalidUtf8InTextIsLocated() throws Exception {
        Path f = tmp.resolve("bad.txt");
        byte[] head = "Once upon a time.\nThere was a cat.\nIt sat ".getBytes(StandardCharsets.UTF_8);
        try (OutputStream o = Files.newOutputStream(f)) {
            o.write(head);
            o.write(0x80);
            o.write("on a mat.\n".getBytes(StandardCharsets.UTF_8));
        }
        InputException e = assertThrows(InputException.class, () -> Datasets.load(f, tok, null, DataOptions.of(64)));
        assertTrue(e.getMessage().startsWith(f + ":3: invalid UTF-8 at byte offset " + head.length + " of the file (0x80)"), e.getMessage());
    }

    @Test
    void seqLenShorterThanThePromptSaysWhyAndWhatToRaise() {
        Path identity = SharedData.require("datasets/instruct/identity.json");
        InputException e = assertThrows(InputException.class, () -> Datasets.load(identity, tok, null, DataOptions.of(64)));
        String m = e.getMessage();
        assertTrue(m.contains("91 records had no trained tokens after masking"), m);
        assertTrue(m.matches(".*their prompts are \\d+ to \\d+ tokens \\(template included\\), which fills --seq-len 64 before any response token; "
                + "raise --seq-len to at least \\d+.*"), m);
        int least = Integer.parseInt(m.replaceAll(".*raise --seq-len to at least (\\d+).*", "$1"));
        // At that length every record keeps at least its first response token.
        LoadedDataset d = Datasets.load(identity, tok, null, DataOptions.of(least));
        assertEquals(0, d.emptySkipped());
        assertEquals(91, d.examples().size());
    }

    @Test
    void aDocumentLongerThanTheWholeDocumentLimitIsTokenizedInPiecesNearlyAsWhole() throws Exception {
        String story = Files.readString(SharedData.require("datasets/text/tinystories_sample.txt"))
                .replace("<|endoftext|>", " ").replaceAll("\\s+", " ").strip() + " ";
        StringBuilder sb = new StringBuilder();
        while (sb.length() < TextPacker.WHOLE_DOCUMENT_CHARS + 5 * TextPacker.PIECE_CHARS) sb.append(story);
        Path f = tmp.resolve("long.txt");
        Files.writeString(f, sb);
        int[] pieces = TextPacker.tokenize(f, tok);
        int[] whole = tok.encode(sb.toString().strip(), true);
        assertEquals(tok.bosId(), pieces[0]);
        assertEquals(tok.eosId(), pieces[pieces.length - 1]);
        assertEquals(1, Arrays.stream(pieces).filter(id -> id == tok.bosId()).count(), "one document: one BOS");
        // Only the few ids at each of the ~20 cuts may differ.
        assertTrue(Math.abs(pieces.length - 1 - whole.length) < 60, pieces.length + " vs " + whole.length);
        assertEquals(tok.decode(whole), tok.decode(pieces), "the same text");
    }
}
