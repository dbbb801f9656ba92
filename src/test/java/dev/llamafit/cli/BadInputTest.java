package dev.llamafit.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.io.PrintWriter;
import java.io.StringWriter;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import dev.llamafit.testing.SharedData;

/** Every malformed input gives exit code 2 and one message naming the file and the problem. */
class BadInputTest {
    @TempDir Path tmp;

    record Run(int code, String out, String err) {}

    static Run run(String... args) {
        StringWriter out = new StringWriter(), err = new StringWriter();
        int code = Main.run(args, new PrintWriter(out, true), new PrintWriter(err, true));
        return new Run(code, out.toString(), err.toString());
    }

    /** A copy of the tiny GQA fixture model that a test can break. */
    Path model() throws IOException {
        Path src = SharedData.fixture("tiny-llama-gqa-tied");
        Path dir = Files.createDirectories(tmp.resolve("model"));
        for (String f : new String[] {"config.json", "model.safetensors"}) Files.copy(src.resolve(f), dir.resolve(f));
        return dir;
    }

    /** Writes a safetensors file with the given header JSON and {@code dataBytes} zero bytes of data. */
    static void safetensors(Path file, String header, int dataBytes) throws IOException {
        byte[] h = header.getBytes(StandardCharsets.UTF_8);
        ByteBuffer b = ByteBuffer.allocate(8 + h.length + dataBytes).order(ByteOrder.LITTLE_ENDIAN);
        b.putLong(h.length).put(h);
        Files.write(file, b.array());
    }

    static void assertBadInput(Run r, String... mustContain) {
        assertEquals(2, r.code(), "exit code; stderr was: " + r.err());
        String msg = r.err().strip();
        assertEquals(1, msg.lines().count(), "one message line, got:\n" + msg);
        assertTrue(msg.startsWith("llamafit: error: "), msg);
        for (String s : mustContain) assertTrue(msg.contains(s), "message should mention '" + s + "': " + msg);
    }

    @Test
    void truncatedSafetensors() throws IOException {
        Path m = model();
        Files.write(m.resolve("model.safetensors"), new byte[] {1, 2, 3});
        assertBadInput(run("inspect", "--model", m.toString()), "model.safetensors", "8");
    }

    @Test
    void headerLongerThanFile() throws IOException {
        Path m = model();
        ByteBuffer b = ByteBuffer.allocate(16).order(ByteOrder.LITTLE_ENDIAN).putLong(1000).putLong(0);
        Files.write(m.resolve("model.safetensors"), b.array());
        assertBadInput(run("inspect", "--model", m.toString()), "model.safetensors", "header");
    }

    @Test
    void spanOutOfRange() throws IOException {
        Path m = model();
        safetensors(m.resolve("model.safetensors"), "{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}", 8);
        assertBadInput(run("inspect", "--model", m.toString()), "model.safetensors", "a");
    }

    @Test
    void overlappingSpans() throws IOException {
        Path m = model();
        safetensors(m.resolve("model.safetensors"), "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                + "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}", 12);
        assertBadInput(run("inspect", "--model", m.toString()), "model.safetensors", "overlap");
    }

    @Test
    void unknownDtype() throws IOException {
        Path m = model();
        safetensors(m.resolve("model.safetensors"), "{\"a\":{\"dtype\":\"Q9\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8);
        assertBadInput(run("inspect", "--model", m.toString()), "model.safetensors", "Q9");
    }

    @Test
    void shapeSizeMismatch() throws IOException {
        Path m = model();
        safetensors(m.resolve("model.safetensors"), "{\"a\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", 8);
        assertBadInput(run("inspect", "--model", m.toString()), "model.safetensors", "a");
    }

    @Test
    void missingTensor() throws IOException {
        Path m = model();
        safetensors(m.resolve("model.safetensors"), "{\"model.norm.weight\":{\"dtype\":\"F32\",\"shape\":[32],\"data_offsets\":[0,128]}}", 128);
        assertBadInput(run("inspect", "--model", m.toString()), m.toString(), "missing tensor model.embed_tokens.weight");
    }

    @Test
    void configWithoutRequiredField() throws IOException {
        Path m = model();
        Files.writeString(m.resolve("config.json"), "{\"model_type\": \"llama\", \"hidden_size\": 32}");
        assertBadInput(run("inspect", "--model", m.toString()), "config.json", "intermediate_size");
    }

    @Test
    void malformedConfigJson() throws IOException {
        Path m = model();
        Files.writeString(m.resolve("config.json"), "{\"model_type\": \"llama\",\n \"hidden_size\": }");
        assertBadInput(run("inspect", "--model", m.toString()), "config.json:2:");
    }

    @Test
    void unsupportedArchitecture() throws IOException {
        Path m = model();
        Files.writeString(m.resolve("config.json"), "{\"model_type\": \"gpt2\", \"architectures\": [\"GPT2LMHeadModel\"]}");
        assertBadInput(run("inspect", "--model", m.toString()), "config.json", "gpt2");
    }

    @Test
    void tokenizerMissing() throws IOException {
        Path m = model();
        assertBadInput(run("generate", "--model", m.toString(), "--prompt", "hi"), "tokenizer");
    }

    @Test
    void modelFolderMissing() {
        assertBadInput(run("inspect", "--model", tmp.resolve("nope").toString()), "nope", "not found");
    }

    @Test
    void badFlagValue() {
        Run r = run("generate", "--model", "x", "--max-new-tokens", "many");
        assertEquals(2, r.code());
        assertTrue(r.err().contains("many"), r.err());
    }

    @Test
    void truncatedLlama2cCheckpoint() throws IOException {
        Path bin = SharedData.require("models/stories260k/stories260K.bin");
        Path cut = tmp.resolve("cut.bin");
        Files.write(cut, java.util.Arrays.copyOf(Files.readAllBytes(bin), 5000));
        assertBadInput(run("convert", "--from", "llama2c", "--input", cut.toString(), "--output", tmp.resolve("out").toString()),
                "cut.bin", "truncated");
    }
}
