// `train --resume` refuses a checkpoint made with other settings (exit 2, every differing field named) unless --resume-anyway.
package dev.llamafit.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;

import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ObjectNode;

import dev.llamafit.io.Json;
import dev.llamafit.train.Checkpoints;
import dev.llamafit.train.Metrics;
import dev.llamafit.testing.SharedData;

class ResumeMismatchTest {
    @TempDir Path tmp;
    Path model, data, run;

    @BeforeEach
    void setUp() {
        model = SharedData.require("models/tinystories-656k");
        data = SharedData.require("datasets/text/tinystories_sample.txt");
        run = tmp.resolve("run");
    }

    /** A short run's arguments: 2 steps, checkpointed at step 1; {@code extra} overrides or adds flags. */
    BadInputTest.Run train(long steps, String... extra) {
        List<String> args = new ArrayList<>(List.of("train", "--model", model.toString(), "--data", data.toString(),
                "--output", run.toString(), "--steps", Long.toString(steps), "--save-every", "1", "--batch-size", "1",
                "--seq-len", "32", "--seed", "7"));
        for (int i = 0; i < extra.length; i++) {
            int at = args.indexOf(extra[i]);
            boolean valued = i + 1 < extra.length && !extra[i + 1].startsWith("--");
            if (at >= 0 && valued) args.set(at + 1, extra[++i]);
            else {
                args.add(extra[i]);
                if (valued) args.add(extra[++i]);
            }
        }
        return BadInputTest.run(args.toArray(String[]::new));
    }

    BadInputTest.Run resume(String... extra) {
        List<String> e = new ArrayList<>(List.of("--resume", run.toString()));
        e.addAll(List.of(extra));
        return train(2, e.toArray(String[]::new));
    }

    void firstHalf(String... extra) {
        BadInputTest.Run r = train(1, extra);
        assertEquals(0, r.code(), r.err());
    }

    @Test
    void aDifferentSeedStopsTheResumeNamingOldAndNewValues() {
        firstHalf();
        BadInputTest.assertBadInput(resume("--seed", "8"), "seed: 7 (checkpoint) vs 8 (now)", "--resume-anyway");
    }

    @Test
    void aDifferentBatchSizeStopsTheResume() {
        firstHalf();
        BadInputTest.assertBadInput(resume("--batch-size", "2"), "batch_size: 1 (checkpoint) vs 2 (now)");
    }

    @Test
    void aDifferentDataFileStopsTheResumeNamingBothFiles() throws IOException {
        firstHalf();
        Path other = tmp.resolve("other.txt");
        Files.writeString(other, Files.readString(data) + "\nOne more story about a cat who liked the sun.\n");
        data = other;
        BadInputTest.assertBadInput(resume(), "data: ", "tinystories_sample.txt", "other.txt");
    }

    @Test
    void everyDifferingFieldIsNamedInOneMessage() {
        firstHalf();
        BadInputTest.Run r = resume("--seed", "8", "--batch-size", "2", "--seq-len", "16");
        BadInputTest.assertBadInput(r, "seed: 7", "batch_size: 1", "seq_len: 32");
    }

    @Test
    void aDifferentLoraRankStopsTheResume() {
        firstHalf("--lora-r", "4");
        BadInputTest.assertBadInput(resume("--lora-r", "8"), "lora_r: 4 (checkpoint) vs 8 (now)");
    }

    @Test
    void resumeAnywayContinuesAndMetricsRecordIt() throws IOException {
        firstHalf();
        BadInputTest.Run r = resume("--seed", "8", "--resume-anyway");
        assertEquals(0, r.code(), r.err());
        List<Metrics.Entry> entries = Metrics.readEntries(run.resolve(Metrics.FILE));
        List<Metrics.Event> events = entries.stream().filter(e -> e instanceof Metrics.Event).map(e -> (Metrics.Event) e).toList();
        assertEquals(1, events.size(), "one event: " + entries);
        Metrics.Event e = events.getFirst();
        assertEquals("resume_mismatch_accepted", e.name());
        assertEquals(1, e.step());
        assertEquals(List.of("seed"), List.copyOf(e.fields().keySet()));
        assertEquals(List.of(1L, 2L), Metrics.read(run).stream().map(Metrics.Step::step).toList(), "both steps recorded once");
        // The checkpoint the continued run wrote carries the new identity: resuming it with seed 8 is an unchanged resume.
        JsonNode state = Checkpoints.readState(Checkpoints.resolve(run));
        assertEquals("8", state.get("identity").get("seed").asText());
    }

    @Test
    void anUnchangedResumeContinuesWithoutEvents() throws IOException {
        firstHalf();
        BadInputTest.Run r = resume();
        assertEquals(0, r.code(), r.err());
        assertFalse(Files.readString(run.resolve(Metrics.FILE)).contains("event"));
    }

    @Test
    void aCheckpointFromBeforeTheChecksStillResumes() throws IOException {
        firstHalf();
        Path ck = Checkpoints.resolve(run);
        ObjectNode state = (ObjectNode) Checkpoints.readState(ck);
        state.remove("identity");
        state.put("format", 1);
        Files.writeString(ck.resolve(Checkpoints.STATE), Json.write(state) + "\n");
        // Only the seed is known from a format-1 state; other inputs cannot be compared and are let through.
        BadInputTest.assertBadInput(resume("--seed", "8"), "seed: 7 (checkpoint) vs 8 (now)");
        BadInputTest.Run r = resume("--batch-size", "2");
        assertEquals(0, r.code(), r.err());
        assertTrue(Files.isRegularFile(run.resolve("final/model.safetensors")));
    }
}
