// Sharded checkpoints: writing shards plus index, reading them back, opening model folders, and index errors.
package dev.llamafit.io.safetensors;

import static dev.llamafit.io.safetensors.TestFiles.assertInputError;
import static dev.llamafit.io.safetensors.TestFiles.f32;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;

import java.io.IOException;
import java.lang.foreign.MemorySegment;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.json.JsonMapper;

import dev.llamafit.memory.Category;
import dev.llamafit.memory.MemoryLedger;
import dev.llamafit.tensor.DType;
import dev.llamafit.tensor.Shape;
import dev.llamafit.tensor.Tensor;

class ShardedSafetensorsTest {
    @TempDir
    Path dir;

    private final MemoryLedger ledger = new MemoryLedger();

    private static Tensor f32Tensor(String name, int elements, float base) {
        float[] v = new float[elements];
        for (int i = 0; i < elements; i++) v[i] = base + i;
        return new Tensor(name, DType.F32, Shape.of(elements), MemorySegment.ofArray(f32(v)));
    }

    /** Five tensors of 16, 16, 32, 8, 8 bytes with a 32-byte limit: shards {a, b}, {c}, {d, e}. */
    private List<Tensor> tensors() {
        return List.of(f32Tensor("layer.0.b", 4, 0), f32Tensor("layer.0.a", 4, 10), f32Tensor("layer.1.big", 8, 20),
                f32Tensor("norm", 2, 30), f32Tensor("head", 2, 40));
    }

    @Test
    void shardedRoundTrip() throws IOException {
        SafetensorsWriter.ShardedOutput out = SafetensorsWriter.writeSharded(dir, tensors(), Map.of("format", "pt"), 32);
        assertEquals(List.of(dir.resolve("model-00001-of-00003.safetensors"), dir.resolve("model-00002-of-00003.safetensors"),
                dir.resolve("model-00003-of-00003.safetensors")), out.shards());
        assertEquals(dir.resolve(Safetensors.INDEX_FILE), out.index());
        assertEquals(80, out.totalBytes());

        JsonNode index = JsonMapper.builder().build().readTree(Files.readAllBytes(out.index()));
        assertEquals(80, index.get("metadata").get("total_size").longValue());
        assertEquals("model-00002-of-00003.safetensors", index.get("weight_map").get("layer.1.big").textValue());
        assertEquals("model-00003-of-00003.safetensors", index.get("weight_map").get("head").textValue());

        try (TensorSource src = Safetensors.openModelFolder(dir, ledger)) {
            ShardedSafetensors sharded = assertInstanceOf(ShardedSafetensors.class, src);
            assertEquals(List.of("layer.0.b", "layer.0.a", "layer.1.big", "norm", "head"), List.copyOf(src.names()));
            assertEquals(Map.of("format", "pt"), src.metadata());
            assertEquals("80", sharded.indexMetadata().get("total_size"));
            assertEquals(out.shards(), sharded.shardFiles());
            for (Tensor t : tensors()) {
                assertArrayEquals(t.toFloatArray(), src.find(t.name()).orElseThrow().toFloatArray(), t.name());
            }
            assertEquals(dir.resolve("model-00002-of-00003.safetensors"), src.fileOf("layer.1.big"));
            assertEquals(80, ledger.mappedBytes(Category.WEIGHTS), "each shard mapped once");
        }
        assertEquals(0, ledger.currentBytes(Category.WEIGHTS));
    }

    @Test
    void modelFolderPrefersSingleFileAndExplainsWhenEmpty() throws IOException {
        assertInputError(dir, () -> Safetensors.openModelFolder(dir, ledger),
                "no model.safetensors or model.safetensors.index.json in " + dir);
        SafetensorsWriter.write(dir.resolve(Safetensors.SINGLE_FILE), List.of(f32Tensor("w", 3, 1)), null);
        try (TensorSource src = Safetensors.openModelFolder(dir, ledger)) {
            assertInstanceOf(SafetensorsFile.class, src);
            assertArrayEquals(new float[] {1, 2, 3}, src.find("w").orElseThrow().toFloatArray());
        }
    }

    private Path index(String weightMapJson) throws IOException {
        Path index = dir.resolve(Safetensors.INDEX_FILE);
        Files.writeString(index, "{\"metadata\": {\"total_size\": 8}, \"weight_map\": " + weightMapJson + "}");
        return index;
    }

    @Test
    void indexNamingMissingShard() throws IOException {
        Path index = index("{\"w\": \"model-00001-of-00001.safetensors\"}");
        assertInputError(index, () -> ShardedSafetensors.open(index, ledger),
                "model-00001-of-00001.safetensors", "does not exist");
    }

    @Test
    void indexNamingTensorMissingFromShard() throws IOException {
        SafetensorsWriter.write(dir.resolve("model-00001-of-00001.safetensors"), List.of(f32Tensor("w", 2, 0)), null);
        Path index = index("{\"w\": \"model-00001-of-00001.safetensors\", \"v\": \"model-00001-of-00001.safetensors\"}");
        assertInputError(index, () -> ShardedSafetensors.open(index, ledger),
                "tensor v", "model-00001-of-00001.safetensors", "has no tensor v");
        assertEquals(0, ledger.currentBytes(Category.WEIGHTS), "shards opened before the error are closed");
    }

    @Test
    void indexWithPathEscapingShardNames() throws IOException {
        for (String bad : List.of("../model.safetensors", "sub/model.safetensors", "/etc/passwd", "..", "a\\\\b.safetensors")) {
            Path index = index("{\"w\": \"" + bad + "\"}");
            assertInputError(index, () -> ShardedSafetensors.open(index, ledger), "must be a plain file name");
        }
    }

    @Test
    void indexWithoutWeightMapOrMalformed() throws IOException {
        Path index = dir.resolve(Safetensors.INDEX_FILE);
        Files.writeString(index, "{\"metadata\": {}}");
        assertInputError(index, () -> ShardedSafetensors.open(index, ledger), "weight_map");
        Files.writeString(index, "{\"weight_map\": {\"w\": \"x\",}");
        assertInputError(index, () -> ShardedSafetensors.open(index, ledger), "malformed JSON", "index.json:1:");
    }
}
