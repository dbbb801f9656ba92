// The unmutated seed files of the fuzz suite: shared test data, plus an adapter and a checkpoint made by real runs.
package dev.llamafit.fuzz;

import static org.junit.jupiter.api.Assertions.assertEquals;

import java.io.IOException;
import java.io.PrintWriter;
import java.io.StringWriter;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;

import dev.llamafit.cli.Main;
import dev.llamafit.testing.SharedData;

/**
 * Seeds: the real files under ../shared, read only (cases copy what they mutate). The data seeds are small slices of
 * the shared datasets (20 records), so that one case stays cheap. The adapter and the checkpoint come from short
 * training runs made once per test class: the state files a user would really hand back to {@code --resume}.
 */
record Fixtures(Path model, Path tok512Model, Path llama2TokenizerModel, Path stories260kBin, Path text, Path alpaca,
                Path alpacaJsonl, Path chat, Path adapter, Path checkpoint) {

    static Fixtures create(Path dir) throws IOException {
        Path model = SharedData.require("models/tinystories-656k");
        Path text = SharedData.require("datasets/text/tinystories_sample.txt");
        ObjectMapper json = new ObjectMapper();
        JsonNode identity = json.readTree(SharedData.require("datasets/instruct/identity.json").toFile());
        ArrayNode slice = json.createArrayNode();
        for (int i = 0; i < 20; i++) slice.add(identity.get(i));
        Path alpaca = Files.writeString(dir.resolve("alpaca.json"), slice.toPrettyString());
        StringBuilder lines = new StringBuilder();
        for (JsonNode r : slice) lines.append(r).append('\n');
        Path alpacaJsonl = Files.writeString(dir.resolve("alpaca.jsonl"), lines);
        List<String> chatLines = Files.readAllLines(SharedData.require("datasets/instruct/alpaca_en_demo_chat.jsonl"),
                StandardCharsets.UTF_8).subList(0, 12);
        Path chat = Files.writeString(dir.resolve("chat.jsonl"), String.join("\n", chatLines) + "\n");

        Path full = dir.resolve("run-full");
        train("--model", model, "--data", text, "--output", full, "--steps", "2", "--save-every", "2", "--batch-size", "1",
                "--seq-len", "32", "--seed", "1");
        Path lora = dir.resolve("run-lora");
        train("--model", model, "--data", text, "--output", lora, "--steps", "1", "--batch-size", "1", "--seq-len", "32",
                "--lora-r", "2", "--lora-targets", "q_proj,v_proj", "--seed", "1");
        return new Fixtures(model, SharedData.require("models/stories260k/tok512.model"),
                SharedData.require("tokenizers/llama2/tokenizer.model"),
                SharedData.require("models/stories260k/stories260K.bin"), text, alpaca, alpacaJsonl, chat,
                lora.resolve("adapter"), full.resolve("checkpoints/step-00000002"));
    }

    private static void train(Object... flags) {
        String[] args = new String[flags.length + 1];
        args[0] = "train";
        for (int i = 0; i < flags.length; i++) args[i + 1] = flags[i].toString();
        StringWriter out = new StringWriter(), err = new StringWriter();
        int code = Main.run(args, new PrintWriter(out, true), new PrintWriter(err, true));
        assertEquals(0, code, "fixture run failed: " + String.join(" ", args) + "\n" + err);
    }
}
