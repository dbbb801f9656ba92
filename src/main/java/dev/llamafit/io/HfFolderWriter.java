// Writes a Hugging Face model folder: config.json, model.safetensors and the tokenizer files of a source folder.
package dev.llamafit.io;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;

import dev.llamafit.io.safetensors.SafetensorsWriter;
import dev.llamafit.kernels.Kernels;
import dev.llamafit.memory.Category;
import dev.llamafit.memory.MemoryLedger;
import dev.llamafit.model.LlamaConfig;
import dev.llamafit.tensor.DType;
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
        writeAsIs(out, config, weights, source);
    }

    /**
     * As {@link #write(Path, LlamaConfig, List, Path)}, every tensor stored as {@code saveDtype} (F32, BF16, F16; null:
     * each in its own dtype), as PyTorch's {@code model.to(dtype)} would. Converted copies (fp32→bf16 rounds to nearest
     * even, fp32→f16 is IEEE's) are owned ledger buffers under weights, freed once the file is written.
     */
    public static void write(Path out, LlamaConfig config, List<Tensor> weights, Path source, DType saveDtype,
                             MemoryLedger ledger, Kernels kernels) throws IOException {
        if (saveDtype == null) {
            writeAsIs(out, config, weights, source);
            return;
        }
        List<Tensor> converted = new ArrayList<>();
        try {
            List<Tensor> toWrite = new ArrayList<>();
            for (Tensor t : weights) {
                if (t.dtype() == saveDtype) {
                    toWrite.add(t);
                } else {
                    Tensor c = Tensor.allocate(ledger, Category.WEIGHTS, t.name(), saveDtype, t.shape());
                    converted.add(c);
                    ModelFolder.convert(kernels, t.segment(), t.dtype(), c.segment(), saveDtype, t.elements());
                    toWrite.add(c);
                }
            }
            writeAsIs(out, config, toWrite, source);
        } finally {
            converted.forEach(Tensor::close);
        }
    }

    private static void writeAsIs(Path out, LlamaConfig config, List<Tensor> weights, Path source) throws IOException {
        Files.createDirectories(out);
        for (Tensor t : weights) {
            long bad = countNonFinite(t);
            if (bad > 0) throw new IllegalStateException("refusing to write " + out + ": tensor " + t.name() + " holds " + bad + " NaN/Inf values");
        }
        SafetensorsWriter.write(out.resolve("model.safetensors"), weights, Map.of("format", "pt"));
        var json = ConfigJson.toJson(config);
        // torch_dtype names what the matrices are stored in (transformers loads in it by default).
        weights.stream().filter(t -> t.shape().rank() == 2).findFirst()
                .ifPresent(t -> json.put("torch_dtype", torchDtype(t.dtype())));
        AtomicFiles.writeString(out.resolve("config.json"), Json.write(json) + "\n");
        if (source != null) {
            for (String f : TOKENIZER_FILES) {
                Path src = source.resolve(f);
                if (Files.isRegularFile(src)) AtomicFiles.copy(src, out.resolve(f));
            }
        }
    }

    private static String torchDtype(DType t) {
        return switch (t) {
            case F32 -> "float32";
            case BF16 -> "bfloat16";
            case F16 -> "float16";
            case I8 -> "int8";
            case U8 -> "uint8";
        };
    }

    private static long countNonFinite(Tensor t) {
        long bad = 0;
        for (long i = 0; i < t.elements(); i++) if (!Float.isFinite(t.getFloat(i))) bad++;
        return bad;
    }
}
