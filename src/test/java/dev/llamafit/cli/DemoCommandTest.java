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
import dev.llamafit.testing.SharedData;
import dev.llamafit.demo.SyntheticTasks;

/** The structure of the demo's report on a few steps; the measured effect itself is the full demo's job. */
class DemoCommandTest {
    @TempDir Path tmp;

    @Test
    void shortDemoReportsPhasesAccuraciesAdapterAndMemory() throws Exception {
        Path work = tmp.resolve("demo");
        BadInputTest.Run r = BadInputTest.run("demo", "--work", work.toString(), "--steps-pretrain", "3", "--steps-finetune", "2",
                "--eval-examples", "4", "--json");
        assertEquals(0, r.code(), r.err());
        JsonNode o = Json.MAPPER.readTree(r.out());
        assertEquals("synthetic", o.get("mode").asText());
        long parameters = o.get("parameters").asLong();
        assertTrue(parameters > 0);

        JsonNode phases = o.get("phases");
        assertEquals(2, phases.size());
        assertEquals("pretrain", phases.get(0).get("name").asText());
        assertEquals("full", phases.get(0).get("method").asText());
        assertEquals("lora", phases.get(1).get("method").asText());
        assertEquals(3, phases.get(0).get("losses").size());
        assertEquals(2, phases.get(1).get("losses").size());
        assertEquals(parameters, phases.get(0).get("trainable_parameters").asLong());
        for (JsonNode p : phases) {
            assertTrue(Double.isFinite(p.get("first_loss").asDouble()) && Double.isFinite(p.get("last_loss").asDouble()));
            assertTrue(Files.isRegularFile(Path.of(p.get("loss_plot").asText())), "loss.png of " + p.get("name"));
            assertTrue(p.get("ledger_peak_bytes").get("activations").asLong() > 0, p.toString());
        }
        assertTrue(Files.isRegularFile(Path.of(phases.get(0).get("product").asText()).resolve("model.safetensors")));
        // The pretraining phase holds gradients and AdamW moments for every weight; the LoRA phase only for the adapter.
        JsonNode prePeak = phases.get(0).get("ledger_peak_bytes"), loraPeak = phases.get(1).get("ledger_peak_bytes");
        assertTrue(loraPeak.get("gradients").asLong() < prePeak.get("gradients").asLong() / 4, loraPeak + " vs " + prePeak);
        assertTrue(loraPeak.get("optimizer").asLong() < prePeak.get("optimizer").asLong() / 4, loraPeak + " vs " + prePeak);

        for (String k : List.of("task_a_after_pretrain", "task_b_before", "task_b_after", "task_a_after_finetune")) {
            JsonNode a = o.get("accuracy").get(k);
            double acc = a.get("accuracy").asDouble();
            assertTrue(a.get("accuracy").isNumber() && acc >= 0 && acc <= 1, k + ": " + a);
            assertEquals(4, a.get("total").asInt(), k);
            assertFalse(a.get("samples").isEmpty(), k);
        }

        // Phase 2's product is a PEFT adapter, and the report counts exactly its two files.
        JsonNode adapter = o.get("adapter");
        Path adapterDir = Path.of(adapter.get("path").asText());
        assertEquals(adapterDir, Path.of(phases.get(1).get("product").asText()));
        assertEquals(Files.size(adapterDir.resolve("adapter_config.json")) + Files.size(adapterDir.resolve("adapter_model.safetensors")),
                adapter.get("bytes").asLong());
        long trainable = adapter.get("trainable_parameters").asLong();
        assertEquals(trainable, phases.get(1).get("trainable_parameters").asLong());
        assertTrue(trainable > 0 && trainable < parameters / 2, trainable + " of " + parameters);
        // F32 adapter weights plus a small header and config.
        assertTrue(adapter.get("bytes").asLong() >= 4 * trainable, adapter.toString());

        assertTrue(o.has("peak_rss_bytes"));
        assertTrue(o.get("wall_seconds").has("pretrain") && o.get("wall_seconds").has("finetune"));
        assertTrue(o.get("seconds").asDouble() > 0);
    }

    @Test
    void theCharacterTokenizerGivesOneIdPerCharacterAndRoundTrips() throws Exception {
        Path work = tmp.resolve("tok");
        var config = dev.llamafit.demo.TinyBaseModel.config(16, 1, 2, 1, 32, 64);
        dev.llamafit.demo.TinyBaseModel.write(work, config, 1, dev.llamafit.memory.MemoryLedger.global());
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
    void realModeFineTunesARealModelWithLoraAndReportsHeldOutLoss() throws Exception {
        Path model = SharedData.require("models/tinystories-656k");
        Path data = SharedData.require("datasets/instruct/identity.json");
        BadInputTest.Run r = BadInputTest.run("demo", "--work", tmp.resolve("real").toString(), "--model", model.toString(),
                "--data", data.toString(), "--steps-finetune", "3", "--json");
        assertEquals(0, r.code(), r.err());
        JsonNode o = Json.MAPPER.readTree(r.out());
        assertEquals("real", o.get("mode").asText());
        assertTrue(o.get("accuracy").isNull());
        assertEquals(1, o.get("phases").size());
        assertEquals("lora", o.get("phases").get(0).get("method").asText());
        double before = o.get("eval_loss_before").asDouble(), after = o.get("eval_loss_after").asDouble();
        assertTrue(Double.isFinite(before) && Double.isFinite(after), o.toString());
        // After is measured on base + the written adapter; it must agree with the Trainer's own final eval of the live adapter.
        assertEquals(o.get("phases").get(0).get("eval_loss").asDouble(), after, 1e-3);
        assertTrue(Files.isRegularFile(Path.of(o.get("adapter").get("path").asText()).resolve("adapter_model.safetensors")));
    }

    @Test
    void modelWithoutDataIsBadUsage() {
        BadInputTest.Run r = BadInputTest.run("demo", "--work", tmp.toString(), "--model", tmp.toString());
        assertEquals(2, r.code(), r.out() + r.err());
        assertTrue(r.err().contains("--model and --data go together"), r.err());
    }
}
