package dev.llamafit.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import com.fasterxml.jackson.databind.JsonNode;

import dev.llamafit.io.Json;
import dev.llamafit.testing.SharedData;

/** The commands as a user runs them, on the real models in ../shared. */
class EndToEndTest {
    @TempDir Path tmp;

    @Test
    void convertStories260kThenGenerateGreedy() throws Exception {
        Path src = SharedData.require("models/stories260k");
        Path out = tmp.resolve("stories260k-hf");
        BadInputTest.Run conv = BadInputTest.run("convert", "--from", "llama2c", "--input", src.resolve("stories260K.bin").toString(),
                "--tokenizer", src.resolve("tok512.model").toString(), "--output", out.toString());
        assertEquals(0, conv.code(), conv.err());
        for (String f : new String[] {"config.json", "model.safetensors", "tokenizer.model", "tokenizer_config.json"})
            assertTrue(Files.isRegularFile(out.resolve(f)), f);
        BadInputTest.Run gen = BadInputTest.run("generate", "--model", out.toString(), "--temperature", "0",
                "--max-new-tokens", "40", "--json");
        assertEquals(0, gen.code(), gen.err());
        String text = Json.MAPPER.readTree(gen.out()).get("text").asText();
        assertTrue(text.startsWith("Once upon a time, there was a little girl named Lily. She loved to play outside in the park."),
                "got: " + text);
    }

    @Test
    void generateReproducesThePyTorchGreedyContinuation() throws Exception {
        Path model = SharedData.require("models/tinystories-656k");
        JsonNode ref = Json.read(SharedData.fixture("tinystories-656k-greedy.json"));
        BadInputTest.Run gen = BadInputTest.run("generate", "--model", model.toString(), "--temperature", "0",
                "--max-new-tokens", "40", "--json");
        assertEquals(0, gen.code(), gen.err());
        JsonNode o = Json.MAPPER.readTree(gen.out());
        assertEquals(ref.get("prompt_ids"), o.get("prompt_ids"), "prompt is BOS alone");
        List<Integer> expected = new ArrayList<>(), got = new ArrayList<>();
        ref.get("generated_ids").forEach(n -> expected.add(n.asInt()));
        o.get("ids").forEach(n -> got.add(n.asInt()));
        assertEquals(expected, got);
        assertTrue(o.get("tokens_per_s").asDouble() > 0);
        assertTrue(!o.get("text").asText().isEmpty());
    }

    @Test
    void sampledGenerationIsReproducibleWithASeed() throws Exception {
        Path model = SharedData.require("models/tinystories-656k");
        String[] args = {"generate", "--model", model.toString(), "--prompt", "The cat", "--temperature", "0.9",
                "--top-p", "0.9", "--top-k", "40", "--seed", "7", "--max-new-tokens", "20", "--json"};
        JsonNode a = Json.MAPPER.readTree(BadInputTest.run(args).out());
        JsonNode b = Json.MAPPER.readTree(BadInputTest.run(args).out());
        assertEquals(a.get("ids"), b.get("ids"));
        assertTrue(a.get("ids").size() > 0);
    }

    @Test
    void tokenizeAndInspect() throws Exception {
        Path model = SharedData.require("models/tinystories-656k");
        JsonNode t = Json.MAPPER.readTree(BadInputTest.run("tokenize", "--model", model.toString(), "--text", "Once upon a time", "--json").out());
        assertEquals(1, t.get("ids").get(0).asInt(), "BOS first");
        assertEquals(t.get("count").asInt(), t.get("pieces").size());
        BadInputTest.Run r = BadInputTest.run("inspect", "--model", model.toString(), "--json");
        assertEquals(0, r.code(), r.err());
        JsonNode i = Json.MAPPER.readTree(r.out());
        // 2048·128 tied embedding + 2 layers · (attention 2·128·128 + 2·64·128, mlp 3·128·384, norms 2·128) + final norm
        long expected = 2048L * 128 + 2L * (2 * 128 * 128 + 2 * 64 * 128 + 3 * 128 * 384 + 2 * 128) + 128;
        assertEquals(expected, i.get("parameters").asLong());
        assertEquals(20, i.get("tensors").size());
        assertTrue(i.get("memory").get("weights").get("mapped_bytes").asLong() > 0);
    }
}
