// Writes a Hugging Face model folder: config.json, model.safetensors and the tokenizer files of a source folder.
package dev.llamafit.io;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;

import dev.llamafit.io.safetensors.SafetensorsWriter;
import dev.llamafit.model.LlamaConfig;
import dev.llamafit.tensor.Tensor;

/** The output format every command loads back: what `generate`, `eval` and transformers read. */
public final class HfFolderWriter {
    /** Tokenizer and generation files copied verbatim from the source model folder when present. */
    public static final List<String> TOKENIZER_FILES = List.of("tokenizer.json", "tokenizer.model", "tokenizer.bin",
            "tokenizer_config.json", "special_tokens_map.json", "generation_config.json");

    private HfFolderWriter() {}

    /**
     * Writes {@code weights} (Hugging Face names; with tied embeddings no lm_head) and the config into {@code out},
     * each file atomically, and copies the tokenizer files of {@code source} (may be null).
     */
    public static void write(Path out, LlamaConfig config, List<Tensor> weights, Path source) throws IOException {
        Files.createDirectories(out);
        for (Tensor t : weights) {
            long bad = countNonFinite(t);
            if (bad > 0) throw new IllegalStateException("refusing to write " + out + ": tensor " + t.name() + " holds " + bad + " NaN/Inf values");
        }
        SafetensorsWriter.write(out.resolve("model.safetensors"), weights, Map.of("format", "pt"));
        AtomicFiles.writeString(out.resolve("config.json"), Json.write(ConfigJson.toJson(config)) + "\n");
        if (source != null) {
            for (String f : TOKENIZER_FILES) {
                Path src = source.resolve(f);
                if (Files.isRegularFile(src)) AtomicFiles.copy(src, out.resolve(f));
            }
        }
    }

    private static long countNonFinite(Tensor t) {
        long bad = 0;
        for (long i = 0; i < t.elements(); i++) if (!Float.isFinite(t.getFloat(i))) bad++;
        return bad;
    }
}
