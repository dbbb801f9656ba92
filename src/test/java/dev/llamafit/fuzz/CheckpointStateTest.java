// Hand-picked trainer_state.json values the fuzz suite reaches only by chance: each is refused with exit 2 naming the field.
package dev.llamafit.fuzz;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.io.PrintWriter;
import java.io.StringWriter;
import java.nio.file.Files;
import java.nio.file.Path;

import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;
import org.junit.jupiter.api.io.TempDir;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;

import dev.llamafit.cli.Main;

/**
 * Before the strict reader, a negative step and a data position past the epoch were internal errors (the records'
 * IllegalArgumentException), and a non-object identity was ignored, so the resume check silently compared nothing.
 */
@Tag("fuzz")
class CheckpointStateTest {
    @TempDir static Path root;
    static Fixtures fx;

    @BeforeAll
    static void fixtures() throws IOException {
        fx = Fixtures.create(Files.createDirectories(root.resolve("fixtures")));
    }

    @ParameterizedTest
    @CsvSource(delimiter = '|', value = {
            "step|-1|field 'step' must be an integer >= 0, got -1",
            "optimizer_steps|\"3\"|field 'optimizer_steps' must be an integer, got \"3\"",
            "data_batch|1000000|'data_batch' = 1000000 is past the",
            "data_epoch|1e400|field 'data_epoch' must be an integer, got",
            "identity|5|field 'identity' must be an object, got 5",
            "format|true|field 'format' must be an integer, got true"})
    void refused(String key, String json, String expected) throws IOException {
        Path ckpt = Reader.linkCopy(fx.checkpoint(), root.resolve(key + "-ckpt"));
        Path state = ckpt.resolve("trainer_state.json");
        ObjectMapper m = new ObjectMapper();
        ObjectNode n = (ObjectNode) m.readTree(fx.checkpoint().resolve("trainer_state.json").toFile());
        n.set(key, m.readTree(json));
        Files.delete(state);
        Files.writeString(state, n.toString());
        StringWriter out = new StringWriter(), err = new StringWriter();
        int code = Main.run(new String[] {"train", "--model", fx.model().toString(), "--data", fx.text().toString(),
                "--output", root.resolve(key + "-out").toString(), "--resume", ckpt.toString(), "--steps", "3",
                "--batch-size", "1", "--seq-len", "32", "--seed", "1"}, new PrintWriter(out, true), new PrintWriter(err, true));
        assertEquals(2, code, err.toString());
        assertTrue(err.toString().contains(state.toString()) && err.toString().contains(expected), err.toString());
    }
}
