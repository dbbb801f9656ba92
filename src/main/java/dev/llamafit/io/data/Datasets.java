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
            List<JsonRecords.Raw> records = JsonRecords.read(file, o.maxRecordBytes());
            if (format == null) {
                JsonNode first = records.stream().map(JsonRecords.Raw::node).filter(n -> n != null).findFirst().orElse(null);
                format = first != null && first.has("messages") ? DataFormat.CHAT : DataFormat.ALPACA;
            }
            ChatTemplate template = format == DataFormat.CHAT
                    ? JinjaChatTemplate.load(modelDir, tok).<ChatTemplate>map(t -> t).orElseGet(() -> new ChatTemplate.Default(tok.addBosByDefault()))
                    : null;
            List<Example> ex = new ArrayList<>(records.size());
            int truncated = 0, empty = 0;
            Prompts prompts = new Prompts();
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
                if (b.example() == null) {
                    empty++;
                    prompts.add(parts, o.trainOnPrompt());
                } else ex.add(b.example());
            }
            result = summarise(ex, problems, truncated, empty, format);
            if (result.examples().isEmpty() && result.badRecords() == 0 && empty > 0)
                throw InputException.at(file, "no training examples in this " + format.id() + " dataset: " + prompts.why(empty, o.seqLen()));
        }
        if (result.examples().isEmpty()) {
            String why = result.badRecords() > 0 ? " (" + result.badRecords() + " bad records skipped; first: " + result.badReasons().getFirst() + ")"
                    : result.emptySkipped() > 0 ? " (" + result.emptySkipped() + " records had no trained tokens after masking)"
                    : "";
            throw InputException.at(file, "no training examples in this " + result.format().id() + " dataset" + why);
        }
        return result;
    }

    /**
     * An upper bound on what {@link #load} holds for {@code file} beyond the JVM's baseline, for the memory plan:
     * packed text keeps one token stream of 2 bytes an id (4 above a 64 Ki vocabulary), and a tokenizer consumes at
     * least one byte of text an id (BOS and EOS aside, each document also spends a separator line), so the file's
     * size in ids bounds it; English text uses about a third of that. Record datasets are bounded by
     * {@link dev.llamafit.io.Json#MAX_FILE_BYTES} and covered by the baseline: 0.
     */
    public static long plannedBytes(Path file, int vocabSize, DataFormat format) {
        try {
            if (!Files.isRegularFile(file)) return 0;
            DataFormat f = format != null ? format : detectByName(file);
            if (f != DataFormat.TEXT) return 0;
            long ids = Math.min(Files.size(file), TextPacker.MAX_FILE_BYTES) + 2;
            return Math.multiplyExact(ids, vocabSize > 0x10000 ? 4L : 2L);
        } catch (IOException | InputException e) {
            return 0; // reported with its position when the data is loaded
        }
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

    /**
     * Why records had nothing to train on: the untrained tokens before their first trained one (the prompt, template
     * included) against --seq-len, or no trained part at all (a conversation without an assistant turn).
     */
    private static final class Prompts {
        int shortest = Integer.MAX_VALUE, longest, withoutResponse;

        void add(List<Segment> parts, boolean trainOnPrompt) {
            int before = 0;
            for (Segment s : parts) {
                if (s.trained() || trainOnPrompt) {
                    shortest = Math.min(shortest, before);
                    longest = Math.max(longest, before);
                    return;
                }
                before += s.ids().length;
            }
            withoutResponse++;
        }

        String why(int empty, int seqLen) {
            int withPrompt = empty - withoutResponse;
            StringBuilder sb = new StringBuilder(empty + " records had no trained tokens after masking");
            if (withPrompt > 0) {
                // The first trained token at index p is the target of position p-1, which exists only when p <= seqLen.
                sb.append(": ").append(withPrompt == 1 ? "its prompt is " + longest + " tokens"
                                : "their prompts are " + shortest + " to " + longest + " tokens")
                        .append(" (template included), which fills --seq-len ").append(seqLen)
                        .append(" before any response token; raise --seq-len to at least ").append(longest)
                        .append(" (more to keep whole responses), or shorten the prompts");
            }
            if (withoutResponse > 0)
                sb.append(withPrompt > 0 ? "; " : ": ").append(withoutResponse).append(withoutResponse == 1 ? " has" : " have")
                        .append(" no response to train on (e.g. a conversation without an assistant turn)");
            return sb.toString();
        }
    }

    private static LoadedDataset summarise(List<Example> ex, JsonRecords.Problems problems, int truncated, int empty, DataFormat format) {
        long tokens = 0, trained = 0;
        if (ex instanceof PackedText packed) {
            tokens = trained = packed.tokens(); // every position of packed text takes loss
        } else {
            for (Example e : ex) {
                tokens += e.length();
                trained += e.trainedTokens();
            }
        }
        return new LoadedDataset(ex, problems.count, problems.reasons, truncated, format, tokens, trained, empty);
    }
}
