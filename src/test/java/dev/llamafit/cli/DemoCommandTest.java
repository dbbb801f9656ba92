// A short `llamafit demo --json` run: the report has every section, accuracies in [0, 1] and memory numbers.
package dev.llamafit.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import com.fasterxml.jackson.databind.JsonNode;

import dev.llamafit.io.Json;
import dev.llamafit.io.tokenizer.Tokenizer;
import dev.llamafit.io.tokenizer.Tokenizers;
import dev.llamafit.train.SyntheticTasks;

/** The structure of the demo's report on a few steps; the measured effect itself is the full demo's job. */
class DemoCommandTest {
    @TempDir Path tmp;

    @Test
    void shortDemoReportsPhasesAccuraciesAndMemory() throws Exception {
        Path work = tmp.resolve("demo");
        // --full-finetune-phase2 keeps this test green whether or not the Trainer does LoRA yet.
        BadInputTest.Run r = BadInputTest.run("demo", "--work", work.toString(), "--steps-pretrain", "3", "--steps-finetune", "2",
                "--eval-examples", "4", "--full-finetune-phase2", "--json");
        assertEquals(0, r.code(), r.err());
        JsonNode o = Json.MAPPER.readTree(r.out());
        assertEquals("synthetic", o.get("mode").asText());
        assertTrue(o.get("parameters").asLong() > 0);

        JsonNode phases = o.get("phases");
        assertEquals(2, phases.size());
        assertEquals("pretrain", phases.get(0).get("name").asText());
        assertEquals(3, phases.get(0).get("losses").size());
        assertEquals(2, phases.get(1).get("losses").size());
        for (JsonNode p : phases) {
            assertTrue(Double.isFinite(p.get("first_loss").asDouble()) && Double.isFinite(p.get("last_loss").asDouble()));
            assertTrue(Files.isRegularFile(Path.of(p.get("loss_plot").asText())), "loss.png of " + p.get("name"));
            assertTrue(Files.isRegularFile(Path.of(p.get("final_model").asText()).resolve("model.safetensors")));
        }

        for (String k : List.of("task_a_after_pretrain", "task_b_before", "task_b_after", "task_a_after_finetune")) {
            JsonNode a = o.get("accuracy").get(k);
            double acc = a.get("accuracy").asDouble();
            assertTrue(a.get("accuracy").isNumber() && acc >= 0 && acc <= 1, k + ": " + a);
            assertEquals(4, a.get("total").asInt(), k);
            assertFalse(a.get("samples").isEmpty(), k);
        }
        assertTrue(o.has("adapter_bytes"), "adapter_bytes is present (null until the Trainer writes adapters)");

        JsonNode mem = o.get("memory");
        assertTrue(mem.get("ledger_peak_bytes").get("weights").asLong() > 0);
        assertTrue(mem.get("ledger_peak_bytes").get("activations").asLong() > 0);
        assertTrue(mem.get("ledger_total_peak_bytes").asLong() > 0);
        assertTrue(mem.has("peak_rss_bytes"));
        assertTrue(o.get("seconds").asDouble() > 0);
    }

    @Test
    void theCharacterTokenizerGivesOneIdPerCharacterAndRoundTrips() throws Exception {
        Path work = tmp.resolve("tok");
        var config = dev.llamafit.train.TinyBaseModel.config(16, 1, 2, 1, 32, 64);
        dev.llamafit.train.TinyBaseModel.write(work, config, 1, dev.llamafit.memory.MemoryLedger.global());
        Tokenizer tok = Tokenizers.load(work);
        String prompt = SyntheticTasks.chatPrompt("sort dcba");
        int[] ids = tok.encode(prompt, true);
        // BOS, <|user|>, \n, 9 characters, \n, <|assistant|>, \n
        assertEquals(1 + 1 + 1 + 9 + 1 + 1 + 1, ids.length);
        assertEquals(1, ids[0]);
        assertEquals(prompt, tok.decode(ids));
        assertTrue(tok.eosIds().contains(2));
        assertEquals("abcd", SyntheticTasks.Task.SORT.apply("dcba"));
        assertEquals("abcd", SyntheticTasks.Task.REVERSE.apply("dcba"));
    }

    @Test
    void modelWithoutDataIsBadUsage() {
        BadInputTest.Run r = BadInputTest.run("demo", "--work", tmp.toString(), "--model", tmp.toString());
        assertEquals(2, r.code(), r.out() + r.err());
        assertTrue(r.err().contains("--model and --data go together"), r.err());
    }
}
