// Loads a dataset file (text, Alpaca, chat) into training examples, detecting the format when not given.
package dev.llamafit.io.data;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;

import com.fasterxml.jackson.databind.JsonNode;

import dev.llamafit.io.InputException;
import dev.llamafit.io.tokenizer.Tokenizer;

/**
 * The entry point of the data pipeline. Format detection when {@link DataOptions#format()} is null:
 * {@code .txt}, {@code .text}, {@code .md} are text; {@code .json} and {@code .jsonl} are records; any other
 * name is records when its first non-blank character is {@code [} or {@code {}, else text. Records are chat
 * when the first one has a {@code messages} field, else Alpaca.
 */
public final class Datasets {
    private Datasets() {}

    /**
     * Examples of {@code file}.
     *
     * @param tok      the model's tokenizer
     * @param modelDir the model folder, for the chat template in tokenizer_config.json (may be null: default
     *                 template)
     * @throws InputException for a missing or malformed file (naming the file and line), or when no example
     *                        remains
     */
    public static LoadedDataset load(Path file, Tokenizer tok, Path modelDir, DataOptions o) {
        if (!Files.isRegularFile(file)) throw InputException.at(file, Files.isDirectory(file) ? "is a folder, expected a dataset file" : "file not found");
        DataFormat format = o.format() != null ? o.format() : detectByName(file);
        JsonRecords.Problems problems = new JsonRecords.Problems(file, o.skipBadRecords());
        LoadedDataset result;
        if (format == DataFormat.TEXT) {
            List<Example> ex = TextPacker.load(file, tok, o.seqLen());
            result = summarise(ex, problems, 0, 0, DataFormat.TEXT);
        } else {
            List<JsonRecords.Raw> records = JsonRecords.read(file);
            if (format == null) {
                JsonNode first = records.stream().map(JsonRecords.Raw::node).filter(n -> n != null).findFirst().orElse(null);
                format = first != null && first.has("messages") ? DataFormat.CHAT : DataFormat.ALPACA;
            }
            ChatTemplate template = format == DataFormat.CHAT
                    ? JinjaChatTemplate.load(modelDir, tok).<ChatTemplate>map(t -> t).orElseGet(() -> new ChatTemplate.Default(tok.addBosByDefault()))
                    : null;
            List<Example> ex = new ArrayList<>(records.size());
            int truncated = 0, empty = 0;
            for (JsonRecords.Raw raw : records) {
                if (raw.syntaxError() != null) {
                    problems.report(raw.position(), raw.syntaxError());
                    continue;
                }
                List<Segment> parts;
                try {
                    parts = format == DataFormat.CHAT ? ChatFormat.segments(raw, tok, template, o, problems)
                            : AlpacaFormat.segments(raw, tok, o, problems);
                } catch (JsonRecords.Skip skipped) {
                    continue;
                }
                Segment.Built b = Segment.build(parts, o.seqLen(), o.trainOnPrompt());
                if (b.truncated()) truncated++;
                if (b.example() == null) empty++;
                else ex.add(b.example());
            }
            result = summarise(ex, problems, truncated, empty, format);
        }
        if (result.examples().isEmpty()) {
            String why = result.badRecords() > 0 ? " (" + result.badRecords() + " bad records skipped; first: " + result.badReasons().getFirst() + ")"
                    : result.emptySkipped() > 0 ? " (" + result.emptySkipped() + " records had no trained tokens after masking)"
                    : "";
            throw InputException.at(file, "no training examples in this " + result.format().id() + " dataset" + why);
        }
        return result;
    }

    /** The format a file name implies, or null when the content decides (records: Alpaca vs chat). */
    static DataFormat detectByName(Path file) {
        String name = file.getFileName().toString().toLowerCase(Locale.ROOT);
        if (name.endsWith(".txt") || name.endsWith(".text") || name.endsWith(".md")) return DataFormat.TEXT;
        if (name.endsWith(".json") || name.endsWith(".jsonl")) return null;
        try {
            int c = JsonRecords.firstChar(file);
            return c == '[' || c == '{' ? null : DataFormat.TEXT;
        } catch (IOException e) {
            throw InputException.at(file, "cannot read: " + e.getMessage());
        }
    }

    private static LoadedDataset summarise(List<Example> ex, JsonRecords.Problems problems, int truncated, int empty, DataFormat format) {
        long tokens = 0, trained = 0;
        for (Example e : ex) {
            tokens += e.length();
            trained += e.trainedTokens();
        }
        return new LoadedDataset(ex, problems.count, problems.reasons, truncated, format, tokens, trained, empty);
    }
}
