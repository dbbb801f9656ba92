// Issue 19 findings 1, 2 and 6 (config.json half): absurd sizes and wrong types are refused at once, with exit 2.
package dev.llamafit.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTimeoutPreemptively;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;

import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

import com.fasterxml.jackson.databind.node.ObjectNode;

import dev.llamafit.io.Json;
import dev.llamafit.testing.SharedData;

/**
 * A hostile config.json or flag value: every size is checked in long arithmetic against stated limits before anything
 * that grows with it is built, and every field has its JSON type. Each case exits 2 with one line naming the file (or
 * flag), the field and the value, in well under a second; none is an internal error.
 */
class HostileSizesTest {
    @TempDir Path tmp;
    int models;

    /** Loads the CLI's classes once, so that the timed runs measure the checks, not class loading. */
    @BeforeAll
    static void warmUp() {
        BadInputTest.run("plan", "--model", "llama-3.1-8b", "--json");
    }

    /** tinystories-656k with {@code edits} (a JSON object) merged into its config.json. */
    Path model(String edits) throws IOException {
        Path src = SharedData.require("models/tinystories-656k");
        Path dir = Files.createDirectories(tmp.resolve("model" + models++));
        try (var files = Files.list(src)) {
            for (Path f : files.toList()) Files.copy(f, dir.resolve(f.getFileName()));
        }
        ObjectNode config = (ObjectNode) Json.read(dir.resolve("config.json"));
        config.setAll((ObjectNode) Json.MAPPER.readTree(edits));
        Files.writeString(dir.resolve("config.json"), Json.MAPPER.writeValueAsString(config));
        return dir;
    }

    /** Runs the CLI, at most 10 s (a hang fails instead of stalling the suite), and returns the run and its wall time. */
    static BadInputTest.Run timed(long[] millis, String... args) {
        return assertTimeoutPreemptively(Duration.ofSeconds(10), () -> {
            long t0 = System.nanoTime();
            BadInputTest.Run r = BadInputTest.run(args);
            millis[0] = (System.nanoTime() - t0) / 1_000_000;
            return r;
        });
    }

    @ParameterizedTest
    @CsvSource(delimiter = '|', value = {
            "inspect | {\"num_hidden_layers\": 1000000000} | num_hidden_layers | 1000000000",
            "generate | {\"num_hidden_layers\": 1000000000} | num_hidden_layers | 1000000000",
            "inspect | {\"vocab_size\": 2147483647} | vocab_size | 2147483647",
            "generate | {\"vocab_size\": 2147483647} | vocab_size | 2147483647",
            "inspect | {\"hidden_size\": 2147483647, \"num_attention_heads\": 1, \"num_key_value_heads\": 1, \"head_dim\": 2} | hidden_size | 2147483647",
            "inspect | {\"intermediate_size\": 2000000000} | intermediate_size | 2000000000",
            "inspect | {\"num_attention_heads\": 1073741824, \"num_key_value_heads\": 1} | num_attention_heads | 1073741824",
            "inspect | {\"max_position_embeddings\": 2147483647} | max_position_embeddings | 2147483647",
            // Each within its own limit, together past the one on a model's parameters.
            "inspect | {\"num_hidden_layers\": 4096, \"hidden_size\": 16384, \"intermediate_size\": 65536, \"num_attention_heads\": 128, \"num_key_value_heads\": 8} | parameters | 4096",
    })
    void absurdConfigSizesAreRefusedAtOnce(String command, String edits, String field, String value) throws IOException {
        Path m = model(edits);
        long[] ms = {0};
        BadInputTest.Run r = command.equals("inspect") ? timed(ms, "inspect", "--model", m.toString())
                : timed(ms, "generate", "--model", m.toString(), "--prompt", "Once", "--max-new-tokens", "2", "--temperature", "0");
        BadInputTest.assertBadInput(r, "config.json", field, value);
        assertTrue(ms[0] < 1000, "refused in " + ms[0] + " ms, not under a second");
    }

    @ParameterizedTest
    @CsvSource(delimiter = '|', value = {
            "{\"rms_norm_eps\": \"tiny\"} | field 'rms_norm_eps' must be a number, got \"tiny\"",
            "{\"rope_theta\": true} | field 'rope_theta' must be a number, got true",
            "{\"hidden_size\": \"128\"} | field 'hidden_size' must be an integer",
            "{\"num_hidden_layers\": 2.5} | field 'num_hidden_layers' must be an integer, got 2.5",
            "{\"num_key_value_heads\": [4]} | field 'num_key_value_heads' must be an integer",
            "{\"tie_word_embeddings\": \"yes\"} | field 'tie_word_embeddings' must be true or false, got \"yes\"",
            "{\"attention_bias\": 1} | field 'attention_bias' must be true or false, got 1",
            "{\"mlp_bias\": \"false\"} | field 'mlp_bias' must be true or false",
            "{\"hidden_act\": 5} | field 'hidden_act' must be a string, got 5",
            "{\"bos_token_id\": \"1\"} | field 'bos_token_id' must be an integer",
            "{\"eos_token_id\": \"2\"} | field 'eos_token_id' must be an integer or a list of integers",
            "{\"eos_token_id\": [2, \"x\"]} | field 'eos_token_id[1]' must be an integer",
            "{\"rope_scaling\": {\"rope_type\": \"linear\", \"factor\": \"big\"}} | field 'rope_scaling.factor' must be a number, got \"big\"",
            "{\"rope_scaling\": {\"rope_type\": \"linear\"}} | 'rope_scaling.factor'",
            "{\"rope_scaling\": \"linear\"} | field 'rope_scaling' must be an object",
            "{\"rope_scaling\": {\"rope_type\": \"llama3\", \"factor\": 8, \"original_max_position_embeddings\": \"8192\"}} | field 'rope_scaling.original_max_position_embeddings' must be an integer",
            "{\"sliding_window\": \"4096\", \"use_sliding_window\": true} | field 'sliding_window' must be an integer",
            "{\"use_sliding_window\": \"no\", \"sliding_window\": 64} | field 'use_sliding_window' must be true or false",
            "{\"rms_norm_eps\": -1} | rms_norm_eps",
            "{\"rms_norm_eps\": 5} | rms_norm_eps",
            "{\"rope_theta\": 0} | rope_theta",
            "{\"bos_token_id\": -7} | bos_token_id",
            "{\"hidden_size\": 130} | hidden_size",
    })
    void wrongTypesAndRangesNameTheField(String edits, String message) throws IOException {
        Path m = model(edits);
        BadInputTest.assertBadInput(BadInputTest.run("inspect", "--model", m.toString()), "config.json", message);
    }

    /** The same configs through `plan`, which reads a config.json file without a model folder. */
    @Test
    void planReadsConfigFilesAsStrictly() throws IOException {
        Path m = model("{\"rms_norm_eps\": \"tiny\"}");
        BadInputTest.assertBadInput(BadInputTest.run("plan", "--model", m.resolve("config.json").toString()),
                "config.json", "'rms_norm_eps' must be a number, got \"tiny\"");
        m = model("{\"num_hidden_layers\": 1000000000}");
        long[] ms = {0};
        BadInputTest.assertBadInput(timed(ms, "plan", "--model", m.toString()), "config.json", "num_hidden_layers", "1000000000");
        assertTrue(ms[0] < 1000, "refused in " + ms[0] + " ms");
    }

    BadInputTest.Run train(String... extra) throws IOException {
        Path model = SharedData.require("models/tinystories-656k");
        Path data = tmp.resolve("data.txt");
        Files.writeString(data, "Once upon a time there was a cat.\n".repeat(20));
        List<String> args = new ArrayList<>(List.of("train", "--model", model.toString(), "--data", data.toString(),
                "--output", tmp.resolve("out").toString(), "--steps", "1"));
        args.addAll(List.of(extra));
        long[] ms = {0};
        BadInputTest.Run r = timed(ms, args.toArray(String[]::new));
        assertTrue(ms[0] < 2000, "refused in " + ms[0] + " ms");
        return r;
    }

    @ParameterizedTest
    @CsvSource({"1000000000, 64", "40000000, 64", "100000, 64", "2147483647, 2", "1, 2147483647"})
    void trainGateRefusesAnyBatch(String batch, String seqLen) throws IOException {
        BadInputTest.Run r = train("--batch-size", batch, "--seq-len", seqLen);
        assertEquals(2, r.code(), r.err());
        assertTrue(r.err().contains("--seq-len") || r.err().contains("does not fit") || r.err().contains("needs"), r.err());
        assertTrue(!r.err().contains("internal error") && !r.err().contains("Exception"), r.err());
    }

    @Test
    void trainGateRefusesHugeBatchEvenWithForce() throws IOException {
        BadInputTest.assertBadInput(train("--batch-size", "1000000000", "--seq-len", "64", "--force"),
                "--batch-size 1000000000", "--seq-len 64", "does not fit");
    }

    @Test
    void trainGateRefusesHugeGradientAccumulation() throws IOException {
        BadInputTest.assertBadInput(train("--batch-size", "1", "--seq-len", "16", "--grad-accum", "2147483647"),
                "--grad-accum 2147483647", "does not fit");
    }

    @ParameterizedTest
    @CsvSource({"1000000000, 64", "40000000, 64", "2147483647, 512"})
    void planRefusesHugeBatches(String batch, String seqLen) {
        Path model = SharedData.require("models/tinystories-656k");
        long[] ms = {0};
        BadInputTest.Run r = timed(ms, "plan", "--model", model.toString(), "--batch-size", batch, "--seq-len", seqLen);
        BadInputTest.assertBadInput(r, "--batch-size " + batch, "does not fit");
        r = timed(ms, "plan", "--model", model.toString(), "--batch-size", batch, "--seq-len", seqLen, "--max-batch", "--max-seq-len", "--recommend");
        BadInputTest.assertBadInput(r, "--batch-size " + batch, "does not fit");
    }

    @Test
    void planInferenceWithHugeCountsIsNoInternalError() {
        Path model = SharedData.require("models/tinystories-656k");
        BadInputTest.Run r = BadInputTest.run("plan", "--model", model.toString(), "--inference", "--seq-len", "8", "--max-new-tokens", "2147483647");
        assertEquals(0, r.code(), r.err());
        assertTrue(r.out().contains("KV capacity 512"), r.out());
        r = BadInputTest.run("plan", "--model", model.toString(), "--inference", "--batch-size", "2147483647", "--seq-len", "512");
        BadInputTest.assertBadInput(r, "--batch-size 2147483647", "does not fit");
    }

    @Test
    void planPytorchWithHugeCountsIsNoInternalError() {
        Path model = SharedData.require("models/tinystories-656k");
        for (String[] flags : List.of(new String[] {"--batch-size", "2147483647", "--seq-len", "512"},
                new String[] {"--workers", "2147483647"}, new String[] {"--grad-accum", "2147483647"})) {
            List<String> args = new ArrayList<>(List.of("plan", "--model", model.toString(), "--device", "a100-80gb"));
            args.addAll(List.of(flags));
            BadInputTest.Run r = BadInputTest.run(args.toArray(String[]::new));
            assertTrue(r.code() == 0 || r.code() == 2, String.join(" ", flags) + ": " + r.err());
            assertTrue(!r.err().contains("internal error"), r.err());
        }
    }

    @Test
    void generateWithHugeMaxNewTokensStopsAtTheContext() {
        Path model = SharedData.require("models/tinystories-656k");
        BadInputTest.Run r = BadInputTest.run("generate", "--model", model.toString(), "--prompt", "Once upon a time",
                "--max-new-tokens", "2147483647", "--temperature", "0", "--json", "--no-bos");
        assertEquals(0, r.code(), r.err());
    }

    /** A llama2.c header within the importer's plausibility bound but past LlamaConfig's limits names the header field. */
    @ParameterizedTest
    @CsvSource({"1000000, 32, num_hidden_layers", "64, -2147483648, vocab_size"})
    void llama2cHeaderSizesAreBadInput(int layers, int vocab, String field) throws IOException {
        java.nio.ByteBuffer b = java.nio.ByteBuffer.allocate(28 + 64).order(java.nio.ByteOrder.LITTLE_ENDIAN);
        for (int v : new int[] {64, 128, layers, 4, 4, vocab, 64}) b.putInt(v);
        Path bin = tmp.resolve("huge.bin");
        Files.write(bin, b.array());
        BadInputTest.assertBadInput(BadInputTest.run("convert", "--from", "llama2c", "--input", bin.toString(),
                "--output", tmp.resolve("converted").toString()), "huge.bin", field);
    }

    @ParameterizedTest
    @CsvSource({"1000000000, 64", "40000000, 64", "2147483647, 512"})
    void evalRefusesHugeBatches(String batch, String seqLen) throws IOException {
        Path model = SharedData.require("models/tinystories-656k");
        Path data = tmp.resolve("data.txt");
        Files.writeString(data, "Once upon a time there was a cat.\n".repeat(20));
        long[] ms = {0};
        BadInputTest.Run r = timed(ms, "eval", "--model", model.toString(), "--data", data.toString(), "--batch-size", batch, "--seq-len", seqLen);
        BadInputTest.assertBadInput(r, "--batch-size " + batch, "does not fit");
    }
}
