// Reads the real tinystories-656k checkpoint from the shared test data folder.
package dev.llamafit.io.safetensors;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;

import org.junit.jupiter.api.Test;

import dev.llamafit.memory.Category;
import dev.llamafit.memory.MemoryLedger;
import dev.llamafit.tensor.DType;
import dev.llamafit.tensor.Shape;
import dev.llamafit.tensor.Tensor;

class SafetensorsRealModelTest {
    @Test
    void readsTinyStories656k() throws Exception {
        Path dir = TestFiles.shared("models/tinystories-656k");
        MemoryLedger ledger = new MemoryLedger();
        try (TensorSource src = Safetensors.openModelFolder(dir, ledger)) {
            assertEquals(20, src.names().size(), "2 layers x 9 tensors + lm_head + final norm");
            // Tied embeddings: transformers stores lm_head.weight only and records the alias in __metadata__.
            assertEquals(Map.of("format", "pt", "model.embed_tokens.weight", "lm_head.weight"), src.metadata());
            assertFalse(src.names().contains("model.embed_tokens.weight"));
            assertEquals("lm_head.weight", List.copyOf(src.names()).getFirst());

            Tensor head = src.find("lm_head.weight").orElseThrow();
            assertEquals(DType.F32, head.dtype());
            assertEquals(Shape.of(2048, 128), head.shape());
            assertEquals(Shape.of(128, 384), src.find("model.layers.0.mlp.down_proj.weight").orElseThrow().shape());
            Tensor norm = src.find("model.norm.weight").orElseThrow();
            assertEquals(Shape.of(128), norm.shape());
            for (float v : norm.toFloatArray()) assertTrue(Float.isFinite(v));

            long elements = 0;
            for (String name : src.names()) elements += src.find(name).orElseThrow().elements();
            long fileBytes = Files.size(dir.resolve("model.safetensors"));
            assertEquals(elements * 4, ledger.mappedBytes(Category.WEIGHTS), "the whole data section, mapped once");
            assertTrue(fileBytes > elements * 4 && fileBytes - elements * 4 < 4096, "file = 8 + header + data");
        }
    }
}
