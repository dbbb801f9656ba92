// Entry point for Hugging Face model folders: picks model.safetensors or the sharded index.
package dev.llamafit.io.safetensors;

import java.nio.file.Files;
import java.nio.file.Path;

import dev.llamafit.io.InputException;
import dev.llamafit.memory.MemoryLedger;

/** File names of Hugging Face checkpoints, and opening a model folder's weights. */
public final class Safetensors {
    /** The single-file checkpoint name transformers writes (its {@code SAFE_WEIGHTS_NAME}). */
    public static final String SINGLE_FILE = "model.safetensors";

    /** The index of a sharded checkpoint (transformers' {@code SAFE_WEIGHTS_INDEX_NAME}). */
    public static final String INDEX_FILE = "model.safetensors.index.json";

    private Safetensors() {}

    /**
     * The weights of the model folder {@code dir}: {@code model.safetensors} if present (transformers prefers it
     * too), else the shards listed by {@code model.safetensors.index.json}.
     *
     * @throws InputException if {@code dir} is not a folder, holds neither file, or a file is invalid
     */
    public static TensorSource openModelFolder(Path dir, MemoryLedger ledger) {
        if (!Files.isDirectory(dir)) {
            throw InputException.at(dir, Files.exists(dir) ? "is not a folder (expected a model folder)" : "folder not found");
        }
        Path single = dir.resolve(SINGLE_FILE);
        if (Files.isRegularFile(single)) return SafetensorsFile.open(single, ledger);
        Path index = dir.resolve(INDEX_FILE);
        if (Files.isRegularFile(index)) return ShardedSafetensors.open(index, ledger);
        throw InputException.at(dir, "no " + SINGLE_FILE + " or " + INDEX_FILE + " in " + dir);
    }

    /** The shard name transformers uses: {@code model-00001-of-00003.safetensors} (1-based, 5 digits). */
    public static String shardName(int shard, int shards) {
        return String.format("model-%05d-of-%05d.safetensors", shard, shards);
    }
}
