package dev.llamafit.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import dev.llamafit.testing.SharedData;

/** `train` and `eval` reject bad data and flags with exit code 2 and a message naming the file and line. */
class TrainBadInputTest {
    @TempDir Path tmp;

    BadInputTest.Run train(Path data, String... extra) {
        Path model = SharedData.require("models/tinystories-656k");
        java.util.List<String> args = new java.util.ArrayList<>(java.util.List.of("train", "--model", model.toString(), "--data",
                data.toString(), "--output", tmp.resolve("out").toString(), "--steps", "1", "--batch-size", "1"));
        if (!java.util.List.of(extra).contains("--seq-len")) args.addAll(java.util.List.of("--seq-len", "32"));
        if (java.util.List.of(extra).contains("--batch-size")) { int i = args.indexOf("--batch-size"); args.remove(i + 1); args.remove(i); }
        args.addAll(java.util.List.of(extra));
        return BadInputTest.run(args.toArray(String[]::new));
    }

    @Test
    void malformedJsonLine() throws IOException {
        Path f = tmp.resolve("bad.jsonl");
        Files.writeString(f, "{\"instruction\": \"a\", \"output\": \"b\"}\n{\"instruction\": \"c\", \"output\": }\n");
        BadInputTest.assertBadInput(train(f), "bad.jsonl:2");
    }

    @Test
    void recordMissingOutput() throws IOException {
        Path f = tmp.resolve("missing.jsonl");
        Files.writeString(f, "{\"instruction\": \"a\", \"output\": \"b\"}\n{\"instruction\": \"c\"}\n");
        BadInputTest.assertBadInput(train(f), "missing.jsonl:2", "output");
    }

    @Test
    void skippingBadRecordsTrains() throws IOException {
        Path f = tmp.resolve("mixed.jsonl");
        StringBuilder sb = new StringBuilder();
        for (int i = 0; i < 4; i++) sb.append("{\"instruction\": \"say hi ").append(i).append("\", \"output\": \"hi there friend\"}\n");
        sb.append("{\"instruction\": \"c\"}\n");
        Files.writeString(f, sb.toString());
        BadInputTest.Run r = train(f, "--skip-bad-records", "--seq-len", "128");
        assertEquals(0, r.code(), r.err());
    }

    @Test
    void emptyDataset() throws IOException {
        Path f = tmp.resolve("empty.txt");
        Files.writeString(f, "");
        BadInputTest.assertBadInput(train(f), "empty.txt");
    }

    @Test
    void sequenceLengthAboveTheModelsMaximum() throws IOException {
        Path data = SharedData.require("datasets/text/tinystories_sample.txt");
        Path model = SharedData.require("models/tinystories-656k");
        BadInputTest.Run r = BadInputTest.run("train", "--model", model.toString(), "--data", data.toString(), "--output",
                tmp.resolve("o").toString(), "--steps", "1", "--seq-len", "4096");
        BadInputTest.assertBadInput(r, "4096", "512");
    }

    @Test
    void unknownFlagValue() {
        Path data = SharedData.require("datasets/text/tinystories_sample.txt");
        BadInputTest.Run r = train(data, "--optimizer", "adam");
        assertEquals(2, r.code());
        assertTrue(r.err().contains("adam"), r.err());
    }

    @Test
    void evalReportsLossAndPerplexity() throws Exception {
        Path data = SharedData.require("datasets/text/tinystories_sample.txt");
        Path model = SharedData.require("models/tinystories-656k");
        BadInputTest.Run r = BadInputTest.run("eval", "--model", model.toString(), "--data", data.toString(), "--seq-len", "128", "--json");
        assertEquals(0, r.code(), r.err());
        var o = dev.llamafit.io.Json.MAPPER.readTree(r.out());
        double loss = o.get("loss").asDouble();
        assertTrue(loss > 0.5 && loss < 4, "a trained model's loss on its own domain: " + loss);
        assertEquals(Math.exp(loss), o.get("perplexity").asDouble(), 1e-6 * Math.exp(loss));
        assertTrue(o.get("tokens").asLong() > 500);
    }

    @Test
    void thePlanGatesTheRunUnlessForced() {
        Path data = SharedData.require("datasets/text/tinystories_sample.txt");
        BadInputTest.Run r = train(data, "--batch-size", "16", "--seq-len", "256", "--max-memory", "300MiB");
        BadInputTest.assertBadInput(r, "--max-memory", "try:");
        // Below what the JVM itself takes: the same refusal, saying so, not an internal error.
        BadInputTest.assertBadInput(train(data, "--max-memory", "20MiB"), "--max-memory is 20.00 MiB", "less than the JVM alone takes");
        BadInputTest.Run forced = train(data, "--seq-len", "64", "--max-memory", "260MiB", "--force");
        assertEquals(0, forced.code(), forced.err());
        assertTrue(forced.out().contains("planned vs measured"), forced.out());
    }

    @Test
    void techniquesTheRuntimeDoesNotImplementAreRefusedByName() {
        Path data = SharedData.require("datasets/text/tinystories_sample.txt");
        // A value `plan` knows for PyTorch but the engine does not run is refused by name, all of them in one message.
        BadInputTest.assertBadInput(train(data, "--precision", "bf16-pure", "--optimizer", "adamw8bit"), "adamw8bit",
                "not implemented in the llamafit runtime yet");
        // bf16-pure runs with AdamW only (its BF16 optimizer states).
        BadInputTest.assertBadInput(train(data, "--precision", "bf16-pure", "--optimizer", "sgd"), "--optimizer sgd with --precision bf16-pure",
                "not implemented in the llamafit runtime yet");
        BadInputTest.assertBadInput(train(data, "--method", "qlora", "--precision", "bf16-pure", "--optimizer", "adamw8bit"),
                "--optimizer adamw8bit with --precision bf16-pure is not implemented");
        // A quantised base is frozen: full fine-tuning on it is refused, naming what to do.
        BadInputTest.assertBadInput(train(data, "--base-dtype", "nf4"), "--base-dtype nf4", "train adapters on it");
        BadInputTest.assertBadInput(train(data, "--method", "full", "--lora-r", "8"), "--lora-r 8", "--method is full");
        // ZeRO stages 0-3 are the engine's; another stage is refused.
        BadInputTest.assertBadInput(train(data, "--zero", "4"), "--zero must be 0, 1, 2 or 3, got 4");
        // Plan-only values are not train's: --offload cpu needs a GPU backend (bad input naming it; --offload disk and
        // --workers N are train's, see OffloadWorkersFlagsTest), and plan-only flags are usage errors naming the flag.
        BadInputTest.assertBadInput(train(data, "--offload", "cpu"), "--offload cpu");
        BadInputTest.Run r = train(data, "--sharding", "fsdp");
        assertEquals(2, r.code(), r.err());
        assertTrue(r.err().contains("Unknown option") && r.err().contains("--sharding"), r.err());
    }

    @Test
    void zeroStagesWithoutMpirunAreTheSingleProcessRun() throws IOException {
        Path data = SharedData.require("datasets/text/tinystories_sample.txt");
        for (String stage : new String[]{"0", "1", "2", "3"}) {
            BadInputTest.Run r = train(data, "--zero", stage);
            assertEquals(0, r.code(), r.err());
            assertTrue(r.out().contains("final model:") && !r.out().contains("data-parallel"), r.out());
        }
    }

    @Test
    void methodLoraWithoutARankTrainsRankEight() throws IOException {
        Path data = SharedData.require("datasets/text/tinystories_sample.txt");
        BadInputTest.Run r = train(data, "--method", "lora");
        assertEquals(0, r.code(), r.err());
        assertTrue(r.out().contains("adapter:"), r.out());
        assertEquals(8, dev.llamafit.io.Json.MAPPER.readTree(tmp.resolve("out/adapter/adapter_config.json").toFile()).get("r").asInt());
    }
}
