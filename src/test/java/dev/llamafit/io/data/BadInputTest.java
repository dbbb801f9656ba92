// Malformed dataset files: each gives an InputException naming the file and the line; skipBadRecords counts.
package dev.llamafit.io.data;

import static org.junit.jupiter.api.Assertions.*;

import java.nio.file.Files;
import java.nio.file.Path;

import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import dev.llamafit.io.InputException;
import dev.llamafit.io.tokenizer.Tokenizer;
import dev.llamafit.io.tokenizer.Tokenizers;
import dev.llamafit.testing.SharedData;

class BadInputTest {
    static Tokenizer tok;
    @TempDir
    Path dir;

    @BeforeAll
    static void load() {
        tok = Tokenizers.load(SharedData.require("models/tinystories-656k"));
    }

    private String error(String name, String content) throws Exception {
        Path f = dir.resolve(name);
        Files.writeString(f, content);
        InputException e = assertThrows(InputException.class, () -> Datasets.load(f, tok, null, DataOptions.of(128)));
        String m = e.getMessage();
        assertTrue(m.startsWith(f + ":"), m);
        // FILE:LINE:COL: and FILE:LINE: (compiler style) read back as "line L, column C: " and "line L: ".
        String rest = m.substring(f.toString().length());
        java.util.regex.Matcher pos = java.util.regex.Pattern.compile("^:(\\d+)(?::(\\d+))?: ").matcher(rest);
        if (pos.find())
            return "line " + pos.group(1) + (pos.group(2) != null ? ", column " + pos.group(2) : "") + ": " + rest.substring(pos.end());
        assertTrue(rest.startsWith(": "), m);
        return rest.substring(2);
    }

    static final String GOOD = "{\"instruction\": \"a\", \"output\": \"b\"}\n";

    @Test
    void badJsonLine() throws Exception {
        String m = error("d.jsonl", GOOD + "{\"instruction\": \"a\", \"output\": \n" + GOOD);
        assertTrue(m.startsWith("line 2, column "), m);
        assertTrue(m.contains("malformed JSON"), m);
    }

    @Test
    void missingOutputAndInstruction() throws Exception {
        assertEquals("line 2: missing 'output' (an Alpaca record needs instruction and output; input is optional)",
                error("d.jsonl", GOOD + "{\"instruction\": \"a\"}\n"));
        assertTrue(error("e.jsonl", "\n" + GOOD + "{\"output\": \"a\"}\n").startsWith("line 3: missing 'instruction'"));
        assertEquals("line 1: 'output' must be a string, found number", error("f.jsonl", "{\"instruction\": \"a\", \"output\": 3}\n"));
    }

    @Test
    void jsonArrayReportsRecordIndexAndLine() throws Exception {
        String m = error("d.json", "[\n  {\"instruction\": \"a\", \"output\": \"b\"},\n  {\"instruction\": \"a\",\n   \"input\": \"\"}\n]\n");
        assertTrue(m.startsWith("record 1 (line 3): missing 'output'"), m);
        String syntax = error("e.json", "[\n  {\"instruction\": \"a\", \"output\": \"b\"},\n  {\"instruction\" \"a\"}\n]\n");
        assertTrue(syntax.startsWith("line 3, column "), syntax);
    }

    @Test
    void chatErrors() throws Exception {
        String user = "{\"role\": \"user\", \"content\": \"hi\"}";
        assertEquals("line 1: messages[1]: unknown role 'bot' (expected one of system, user, assistant)",
                error("c.jsonl", "{\"messages\": [" + user + ", {\"role\": \"bot\", \"content\": \"x\"}]}\n"));
        assertEquals("line 2: 'messages' must be a list, found string",
                error("d.jsonl", "{\"messages\": [" + user + "]}\n{\"messages\": \"hi\"}\n"));
        assertEquals("line 1: messages[0].content must be a string, found array",
                error("e.jsonl", "{\"messages\": [{\"role\": \"user\", \"content\": [\"x\"]}]}\n"));
    }

    @Test
    void emptyAndMissingFiles() throws Exception {
        assertEquals("no training examples in this alpaca dataset", error("empty.jsonl", "\n\n"));
        assertEquals("no training examples in this text dataset", error("empty.txt", "<|endoftext|>\n"));
        assertEquals("no training examples in this alpaca dataset", error("empty.json", "[]"));
        Path missing = dir.resolve("nope.jsonl");
        InputException e = assertThrows(InputException.class, () -> Datasets.load(missing, tok, null, DataOptions.of(8)));
        assertEquals(missing + ": file not found", e.getMessage());
    }

    @Test
    void skipBadRecordsCountsAndKeepsReasons() throws Exception {
        Path f = dir.resolve("mixed.jsonl");
        StringBuilder s = new StringBuilder();
        for (int i = 0; i < 4; i++) s.append(GOOD);
        s.append("{\"instruction\": \"a\"}\n").append("not json\n").append(GOOD);
        for (int i = 0; i < 6; i++) s.append("{\"output\": \"b\"}\n");
        Files.writeString(f, s);
        LoadedDataset d = Datasets.load(f, tok, null, DataOptions.of(128).withSkipBadRecords(true));
        assertEquals(5, d.examples().size());
        assertEquals(8, d.badRecords());
        assertEquals(LoadedDataset.MAX_REASONS, d.badReasons().size());
        assertEquals(f + ":5: missing 'output' (an Alpaca record needs instruction and output; input is optional)", d.badReasons().get(0));
        assertTrue(d.badReasons().get(1).startsWith(f + ":6:1: malformed JSON"), d.badReasons().get(1));

        Path allBad = dir.resolve("bad.jsonl");
        Files.writeString(allBad, "{\"output\": \"b\"}\n");
        InputException e = assertThrows(InputException.class,
                () -> Datasets.load(allBad, tok, null, DataOptions.of(128).withSkipBadRecords(true)));
        assertTrue(e.getMessage().startsWith(allBad + ": no training examples in this alpaca dataset (1 bad records skipped; first: "), e.getMessage());
    }

    @Test
    void formatParsingAndOptionChecks() {
        assertEquals(DataFormat.CHAT, DataFormat.parse("Chat"));
        InputException e = assertThrows(InputException.class, () -> DataFormat.parse("csv"));
        assertEquals("unknown data format 'csv': expected one of text, alpaca, chat", e.getMessage());
        assertThrows(IllegalArgumentException.class, () -> DataOptions.of(0));
    }
}
