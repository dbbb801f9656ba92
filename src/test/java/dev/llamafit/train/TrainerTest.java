package dev.llamafit.train;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.PrintStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import com.fasterxml.jackson.databind.JsonNode;

import dev.llamafit.io.Json;
import dev.llamafit.kernels.KernelBackends;
import dev.llamafit.memory.MemoryLedger;
import dev.llamafit.model.Technique;
import dev.llamafit.testing.SharedData;

/** The trainer on the real tinystories-656k model: learning, exact resume, crash safety. */
class TrainerTest {
    @TempDir Path tmp;

    static TrainOptions options(Path model, Path data, Path out, long steps, long saveEvery, Path resume) {
        // A constant schedule (after warmup): the 10-step run's learning rates equal the 20-step run's first ten.
        return new TrainOptions(model, data, out, steps, 0, 2, 2, 32, 2e-3, "constant", 3, 0.01, 1.0, "adamw",
                0, saveEvery, resume, 7, null, 0, false, false);
    }

    static Trainer.Result train(TrainOptions o) throws IOException {
        return new Trainer(o, KernelBackends.get(), new MemoryLedger(), new PrintStream(new ByteArrayOutputStream())).run();
    }

    static List<Double> losses(Path run) throws IOException {
        return Metrics.read(run).stream().map(Metrics.Step::loss).toList();
    }

    @Test
    void resumedRunReproducesTheUninterruptedOneBitForBit() throws IOException {
        Path model = SharedData.require("models/tinystories-656k");
        Path data = SharedData.require("datasets/text/tinystories_sample.txt");
        Path straight = tmp.resolve("straight"), split = tmp.resolve("split");
        train(options(model, data, straight, 20, 0, null));
        train(options(model, data, split, 10, 10, null));
        // The second half is asked for as 20 steps in total: --steps counts from the start of the run.
        train(options(model, data, split, 20, 10, split));
        List<Double> a = losses(straight), b = losses(split);
        assertEquals(20, a.size());
        assertEquals(20, b.size(), "metrics.jsonl holds the whole run once");
        for (int i = 0; i < 20; i++)
            assertEquals(Double.doubleToLongBits(a.get(i)), Double.doubleToLongBits(b.get(i)), "step " + (i + 1) + ": " + a.get(i) + " vs " + b.get(i));
        assertTrue(Files.isRegularFile(split.resolve("final/model.safetensors")));
        assertTrue(Files.isRegularFile(split.resolve(Metrics.PLOT)));
    }

    @Test
    void fineTuningLowersTheLossAndTheFinalFolderLoads() throws IOException {
        Path model = SharedData.require("models/tinystories-656k");
        Path data = SharedData.require("datasets/text/tinystories_sample.txt");
        Path out = tmp.resolve("run");
        Trainer.Result r = train(new TrainOptions(model, data, out, 30, 0, 4, 1, 64, 1e-3, "cosine", 3, 0.0, 1.0, "adamw",
                10, 0, null, 1, null, 0.2, false, false));
        List<Double> l = losses(out);
        double first = (l.get(0) + l.get(1) + l.get(2)) / 3, last = (l.get(27) + l.get(28) + l.get(29)) / 3;
        assertTrue(last < first - 0.1, "loss should fall: first steps " + first + ", last steps " + last);
        assertTrue(Double.isFinite(r.evalLoss()));
        JsonNode evalLine = Json.MAPPER.readTree(Files.readAllLines(out.resolve(Metrics.FILE)).get(9));
        assertTrue(evalLine.has("eval_loss"), "eval every 10 steps is recorded: " + evalLine);
        for (String f : new String[] {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"})
            assertTrue(Files.isRegularFile(out.resolve("final").resolve(f)), f);
    }

    @Test
    void overfittingOneBatchDrivesTheLossBelowPointOne() throws IOException {
        Path model = SharedData.require("models/tinystories-656k");
        Path data = tmp.resolve("one.txt");
        Files.writeString(data, "Tom had a red ball. He liked to throw it high in the sky and catch it with both hands.");
        Path out = tmp.resolve("overfit");
        Trainer.Result r = train(new TrainOptions(model, data, out, 60, 0, 1, 1, 16, 3e-3, "constant", 0, 0.0, 1.0, "adamw",
                0, 0, null, 1, null, 0, false, false));
        assertTrue(r.lastLoss() < 0.1, "final loss " + r.lastLoss());
    }

    @Test
    void instructionAndChatDataTrainWithPromptsMasked() throws IOException {
        Path model = SharedData.require("models/tinystories-656k");
        for (String file : new String[] {"datasets/instruct/identity.json", "datasets/instruct/alpaca_en_demo_chat.jsonl"}) {
            Path data = SharedData.require(file);
            Path out = tmp.resolve(Path.of(file).getFileName().toString());
            Trainer.Result r = train(new TrainOptions(model, data, out, 12, 0, 4, 1, 128, 2e-3, "constant", 2, 0.0, 1.0, "adamw",
                    0, 0, null, 1, null, 0.1, false, false));
            List<Double> l = losses(out);
            assertTrue(l.getLast() < l.getFirst(), file + ": loss " + l.getFirst() + " -> " + l.getLast());
            assertTrue(Double.isFinite(r.evalLoss()), file);
        }
    }

    @Test
    void loraOnIdentityLowersEvalLossBelowTheBaseAndTheAdapterReloads() throws IOException {
        Path model = SharedData.require("models/tinystories-656k");
        Path data = SharedData.require("datasets/instruct/identity.json");
        Path out = tmp.resolve("lora");
        var lora = new dev.llamafit.model.LoraConfig(8, 16, 0, java.util.List.of("q_proj", "v_proj"), false);
        Trainer.Result r = train(new TrainOptions(model, data, out, 25, 0, 8, 256, 3e-3, "cosine", 3, 0.0, 1.0,
                0, 0, null, 1, data, 0, false, false, Technique.lora(lora).withGradientCheckpointing(true, 1), null, false, null));
        assertEquals(out.resolve("adapter"), r.finalModel());
        MemoryLedger ledger = new MemoryLedger();
        var k = KernelBackends.get();
        var tok = dev.llamafit.io.tokenizer.Tokenizers.load(model);
        var examples = dev.llamafit.io.data.Datasets.load(data, tok, model, dev.llamafit.io.data.DataOptions.of(256)).examples();
        int pad = tok.eosId();
        double base, adapted;
        try (var f = dev.llamafit.io.ModelFolder.open(model, ledger, k);
             var s = new dev.llamafit.model.TrainingStep(f.config(), f.weights(), k, ledger, 8, 256)) {
            base = Trainer.evaluate(s, examples, 8, 256, pad).mean();
        }
        try (var f = dev.llamafit.peft.MergedFolders.open(model, out.resolve("adapter"), ledger, k);
             var s = new dev.llamafit.model.TrainingStep(f.config(), f.weights(), k, ledger, 8, 256)) {
            adapted = Trainer.evaluate(s, examples, 8, 256, pad).mean();
        }
        assertTrue(adapted < base - 1, "eval loss with the adapter " + adapted + " vs base " + base);
        // The run evaluated the same data in the LoRA (unmerged) form at its end; the reloaded, merged adapter agrees.
        assertEquals(r.evalLoss(), adapted, 1e-4);
    }

    @Test
    void resumedLoraRunWithDropoutAndCheckpointingRepeatsTheUninterruptedOne() throws IOException {
        Path model = SharedData.require("models/tinystories-656k");
        Path data = SharedData.require("datasets/text/tinystories_sample.txt");
        var lora = new dev.llamafit.model.LoraConfig(4, 8, 0.1, dev.llamafit.model.LinearModule.keys(), true);
        java.util.function.BiFunction<Path, long[], TrainOptions> opts = (out, a) -> new TrainOptions(model, data, out, a[0], 0, 2, 32,
                2e-3, "constant", 2, 0.0, 1.0, 0, a[1], a[2] == 1 ? out : null, 9, null, 0, false, false,
                Technique.lora(lora).withGradientCheckpointing(true, 2), null, false, null);
        Path straight = tmp.resolve("lora-straight"), split = tmp.resolve("lora-split");
        train(opts.apply(straight, new long[] {12, 0, 0}));
        train(opts.apply(split, new long[] {6, 6, 0}));
        train(opts.apply(split, new long[] {12, 6, 1}));
        List<Double> a = losses(straight), b = losses(split);
        assertEquals(12, b.size());
        for (int i = 0; i < 12; i++)
            assertEquals(Double.doubleToLongBits(a.get(i)), Double.doubleToLongBits(b.get(i)), "step " + (i + 1));
        assertTrue(Files.isRegularFile(split.resolve("adapter/adapter_model.safetensors")));
    }
}
