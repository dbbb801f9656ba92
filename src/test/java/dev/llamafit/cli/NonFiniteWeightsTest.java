// Issue 19, finding 7: a base whose weights hold NaN/Inf is refused on load (exit 2), reported by inspect, and loadable with a flag.
package dev.llamafit.cli;

import static dev.llamafit.cli.BadInputTest.assertBadInput;
import static dev.llamafit.cli.BadInputTest.run;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.channels.FileChannel;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import com.fasterxml.jackson.databind.JsonNode;

import dev.llamafit.io.Json;

class NonFiniteWeightsTest {
    static final String Q0 = "model.layers.0.self_attn.q_proj.weight";

    @TempDir Path tmp;

    /** Overwrites every F32 value of {@code tensor} in a safetensors file with {@code value}; returns how many. */
    static long fill(Path file, String tensor, float value) throws IOException {
        try (FileChannel ch = FileChannel.open(file, StandardOpenOption.READ, StandardOpenOption.WRITE)) {
            ByteBuffer len = ByteBuffer.allocate(8).order(ByteOrder.LITTLE_ENDIAN);
            ch.read(len, 0);
            long headerLen = len.getLong(0);
            ByteBuffer header = ByteBuffer.allocate((int) headerLen);
            ch.read(header, 8);
            JsonNode t = Json.MAPPER.readTree(new String(header.array(), java.nio.charset.StandardCharsets.UTF_8)).get(tensor);
            assertEquals("F32", t.get("dtype").asText());
            long begin = t.get("data_offsets").get(0).asLong(), end = t.get("data_offsets").get(1).asLong();
            ByteBuffer data = ByteBuffer.allocate((int) (end - begin)).order(ByteOrder.LITTLE_ENDIAN);
            while (data.hasRemaining()) data.putFloat(value);
            data.flip();
            ch.write(data, 8 + headerLen + begin);
            return (end - begin) / 4;
        }
    }

    private Path nanModel() throws IOException {
        Path m = StrictRecordsTest.copyModel(tmp);
        assertEquals(128 * 128, fill(m.resolve("model.safetensors"), Q0, Float.NaN));
        return m;
    }

    private static String[] generate(Path m, String... more) {
        String[] base = {"generate", "--model", m.toString(), "--prompt", "Once", "--max-new-tokens", "4", "--temperature", "0"};
        String[] all = java.util.Arrays.copyOf(base, base.length + more.length);
        System.arraycopy(more, 0, all, base.length, more.length);
        return all;
    }

    @Test
    void generateRefusesNaNWeightsNamingTheTensorAndCount() throws IOException {
        assertBadInput(run(generate(nanModel())), "model.safetensors", "tensor '" + Q0 + "' has 16384 non-finite values", "--allow-non-finite");
    }

    @Test
    void infinityCountsToo() throws IOException {
        Path m = StrictRecordsTest.copyModel(tmp);
        fill(m.resolve("model.safetensors"), "model.layers.1.mlp.down_proj.weight", Float.NEGATIVE_INFINITY);
        assertBadInput(run("eval", "--model", m.toString(), "--data", m.resolve("config.json").toString()),
                "model.layers.1.mlp.down_proj.weight", "49152 non-finite");
    }

    @Test
    void inspectReportsNonFiniteCountsWithoutFailing() throws IOException {
        Path m = nanModel();
        BadInputTest.Run text = run("inspect", "--model", m.toString());
        assertEquals(0, text.code(), text.err());
        assertTrue(text.out().lines().anyMatch(l -> l.contains(Q0) && l.contains("16384 non-finite")), text.out());
        assertTrue(text.out().contains("16384 NaN/Inf values in 1 tensors"), text.out());
        BadInputTest.Run json = run("inspect", "--model", m.toString(), "--json");
        assertEquals(0, json.code(), json.err());
        JsonNode o = Json.MAPPER.readTree(json.out());
        assertEquals(16384, o.get("non_finite_values").asLong());
        for (JsonNode t : o.get("tensors"))
            assertEquals(t.get("name").asText().equals(Q0) ? 16384 : 0, t.get("non_finite").asLong(), t.get("name").asText());
    }

    @Test
    void theFlagLetsGenerateProceedWithAWarning() throws IOException {
        BadInputTest.Run r = run(generate(nanModel(), "--allow-non-finite"));
        assertEquals(0, r.code(), r.err());
        assertTrue(r.err().contains("llamafit: warning: model.safetensors: tensor '" + Q0 + "' has 16384 non-finite values"), r.err());
    }

    @Test
    void aCleanModelInspectsAsFinite() throws IOException {
        BadInputTest.Run r = run("inspect", "--model", StrictRecordsTest.copyModel(tmp).toString());
        assertEquals(0, r.code(), r.err());
        assertTrue(r.out().contains("non-finite   none"), r.out());
    }
}
