// --max-record-bytes and --skip-bad-records on the command line: a record over the limit is exit 2 naming file:line, or skipped.
package dev.llamafit.cli;

import static org.junit.jupiter.api.Assertions.*;

import java.io.PrintWriter;
import java.io.StringWriter;
import java.nio.file.Files;
import java.nio.file.Path;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import dev.llamafit.testing.SharedData;

class DataFlagsTest {
    @TempDir Path tmp;

    private record Run(int code, String out, String err) {}

    private static Run run(String... args) {
        StringWriter out = new StringWriter(), err = new StringWriter();
        int code = Main.run(args, new PrintWriter(out, true), new PrintWriter(err, true));
        return new Run(code, out.toString(), err.toString());
    }

    @Test
    void evalHonoursTheRecordLimitAndSkipping() throws Exception {
        String model = SharedData.require("models/tinystories-656k").toString();
        Path f = tmp.resolve("d.jsonl");
        String good = "{\"instruction\": \"Say hi.\", \"output\": \"Hi there, friend.\"}\n";
        Files.writeString(f, good + "{\"instruction\": \"x\", \"output\": \"" + "a".repeat(5000) + "\"}\n" + good);
        Run r = run("eval", "--model", model, "--data", f.toString(), "--seq-len", "256", "--max-record-bytes", "2000");
        assertEquals(2, r.code(), r.err());
        assertTrue(r.err().contains(f + ":2: record is 5034 bytes, over the limit of 2000 (raise with --max-record-bytes)"), r.err());
        assertFalse(r.err().contains("Exception"), r.err());
        assertEquals(0, run("eval", "--model", model, "--data", f.toString(), "--seq-len", "256", "--max-record-bytes", "2000",
                "--skip-bad-records").code());
        assertEquals(0, run("eval", "--model", model, "--data", f.toString(), "--seq-len", "256").code(), "5 KB is under the 1 MiB default");
        Run bad = run("eval", "--model", model, "--data", f.toString(), "--max-record-bytes", "0");
        assertEquals(2, bad.code(), bad.err());
        assertTrue(bad.err().contains("--max-record-bytes"), bad.err());
    }
}
