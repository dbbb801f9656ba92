// A sharded Hugging Face checkpoint: model.safetensors.index.json plus the shard files it names.
package dev.llamafit.io.safetensors;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.Set;
import java.util.TreeMap;

import com.fasterxml.jackson.core.JsonLocation;
import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.core.StreamReadFeature;
import com.fasterxml.jackson.databind.DeserializationFeature;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.json.JsonMapper;

import dev.llamafit.io.InputException;
import dev.llamafit.memory.MemoryLedger;
import dev.llamafit.tensor.Tensor;

/**
 * The union of the shards of a checkpoint, as listed by its index ({@code {"metadata": {"total_size": N, ...},
 * "weight_map": {"TENSOR": "model-00001-of-00002.safetensors", ...}}}, the layout transformers' {@code
 * save_pretrained} writes). Each shard is opened once. Only tensors named in {@code weight_map} are exposed, each
 * from the shard the index names; every such name must exist in its shard. Names are in shard order (shards sorted
 * by file name), then in file order within a shard.
 */
public final class ShardedSafetensors implements TensorSource {
    private static final JsonMapper JSON = JsonMapper.builder()
            .enable(StreamReadFeature.STRICT_DUPLICATE_DETECTION)
            .enable(DeserializationFeature.FAIL_ON_TRAILING_TOKENS)
            .build();

    /** An index file is small (about 100 bytes per tensor); refuse absurd ones before reading them into memory. */
    private static final long MAX_INDEX_BYTES = 100_000_000L;

    private final Path index;
    private final List<SafetensorsFile> shards;
    private final Map<String, SafetensorsFile> byName;
    private final Map<String, String> indexMetadata;

    private ShardedSafetensors(Path index, List<SafetensorsFile> shards, Map<String, SafetensorsFile> byName,
                               Map<String, String> indexMetadata) {
        this.index = index;
        this.shards = shards;
        this.byName = byName;
        this.indexMetadata = indexMetadata;
    }

    /**
     * Opens the checkpoint described by {@code index} (a {@code model.safetensors.index.json}).
     *
     * @throws InputException if the index or a shard is missing or invalid, or they disagree
     */
    public static ShardedSafetensors open(Path index, MemoryLedger ledger) {
        JsonNode root = readIndex(index);
        JsonNode weightMap = root.get("weight_map");
        if (weightMap == null || !weightMap.isObject()) {
            throw InputException.at(index, "expected a \"weight_map\" object mapping tensor names to shard files");
        }
        if (weightMap.isEmpty()) throw InputException.at(index, "weight_map", "weight_map is empty: no tensors");
        Map<String, String> indexMetadata = readIndexMetadata(index, root.get("metadata"));

        // Shard file name -> tensor names the index assigns to it, in index order; shards sorted by file name.
        Map<String, List<String>> namesByShard = new TreeMap<>();
        for (Map.Entry<String, JsonNode> e : weightMap.properties()) {
            String where = "weight_map." + e.getKey();
            if (!e.getValue().isTextual()) {
                throw InputException.at(index, where, "expected a shard file name (string), found " + e.getValue());
            }
            String shard = e.getValue().textValue();
            checkShardName(index, where, shard);
            namesByShard.computeIfAbsent(shard, k -> new ArrayList<>()).add(e.getKey());
        }

        Path dir = index.toAbsolutePath().getParent();
        List<SafetensorsFile> opened = new ArrayList<>();
        try {
            Map<String, SafetensorsFile> byName = new LinkedHashMap<>();
            for (Map.Entry<String, List<String>> e : namesByShard.entrySet()) {
                Path shardPath = dir.resolve(e.getKey());
                if (!Files.isRegularFile(shardPath)) {
                    throw InputException.at(index, "weight_map", "names shard " + e.getKey() + " (for tensor "
                            + e.getValue().getFirst() + "), which does not exist in " + dir);
                }
                SafetensorsFile shard = SafetensorsFile.open(shardPath, ledger);
                opened.add(shard);
                for (String name : e.getValue()) {
                    if (!shard.names().contains(name)) {
                        throw InputException.at(index, "weight_map." + name, "maps tensor " + name + " to shard "
                                + shardPath + ", but that shard has no tensor " + name);
                    }
                }
                // File order within the shard, restricted to the names the index gives this shard.
                Set<String> wanted = Set.copyOf(e.getValue());
                for (String name : shard.names()) if (wanted.contains(name)) byName.put(name, shard);
            }
            return new ShardedSafetensors(index, List.copyOf(opened), Collections.unmodifiableMap(byName), indexMetadata);
        } catch (RuntimeException e) {
            for (SafetensorsFile f : opened) f.close();
            throw e;
        }
    }

    private static JsonNode readIndex(Path index) {
        try {
            long bytes = Files.size(index);
            if (bytes > MAX_INDEX_BYTES) {
                throw InputException.at(index, "index is " + bytes + " bytes, above the " + MAX_INDEX_BYTES + "-byte limit");
            }
            JsonNode root = JSON.readTree(Files.readAllBytes(index));
            if (root == null || !root.isObject()) {
                throw InputException.at(index, "expected a JSON object with \"weight_map\"");
            }
            return root;
        } catch (JsonProcessingException e) {
            JsonLocation at = e.getLocation();
            String where = at == null ? null : "line " + at.getLineNr() + ", column " + at.getColumnNr();
            throw InputException.at(index, where, "malformed JSON: " + e.getOriginalMessage());
        } catch (NoSuchFileException e) {
            throw InputException.at(index, "file not found");
        } catch (IOException e) {
            throw new UncheckedIOException("reading " + index + ": " + e.getMessage(), e);
        }
    }

    /** The index's "metadata" object with values as text (total_size is a number there, not a string). */
    private static Map<String, String> readIndexMetadata(Path index, JsonNode node) {
        Map<String, String> out = new LinkedHashMap<>();
        if (node == null || node.isNull()) return out;
        if (!node.isObject()) throw InputException.at(index, "metadata", "expected an object, found " + node.getNodeType());
        for (Map.Entry<String, JsonNode> e : node.properties()) {
            out.put(e.getKey(), e.getValue().isTextual() ? e.getValue().textValue() : e.getValue().toString());
        }
        return Collections.unmodifiableMap(out);
    }

    /** Shards must sit next to the index: a name with a separator or ".." could read any file on the machine. */
    private static void checkShardName(Path index, String where, String shard) {
        if (shard.isEmpty() || shard.contains("/") || shard.contains("\\") || shard.contains("..")
                || shard.indexOf('\0') >= 0 || Path.of(shard).isAbsolute()) {
            throw InputException.at(index, where, "shard file name \"" + shard
                    + "\" must be a plain file name in the index's folder (no \"/\", \"\\\" or \"..\")");
        }
    }

    /** The index file. */
    public Path index() { return index; }

    /** The shard files, sorted by name. */
    public List<Path> shardFiles() { return shards.stream().map(SafetensorsFile::file).toList(); }

    /** The index's "metadata" object (e.g. total_size), values as text. */
    public Map<String, String> indexMetadata() { return indexMetadata; }

    @Override
    public Set<String> names() { return byName.keySet(); }

    @Override
    public Optional<Tensor> find(String name) {
        SafetensorsFile shard = byName.get(name);
        return shard == null ? Optional.empty() : shard.find(name);
    }

    /** The shard holding {@code name}, or the index if no shard does (where the name would have been listed). */
    @Override
    public Path fileOf(String name) {
        SafetensorsFile shard = byName.get(name);
        return shard == null ? index : shard.file();
    }

    /** The {@code __metadata__} of the first shard (transformers writes the same map into every shard). */
    @Override
    public Map<String, String> metadata() { return shards.getFirst().metadata(); }

    @Override
    public void close() {
        for (SafetensorsFile shard : shards) shard.close();
    }

    @Override
    public String toString() { return "ShardedSafetensors[" + index + ", " + shards.size() + " shards, " + byName.size() + " tensors]"; }
}
