// LlamaConfig's size limits: real models up to 405B pass, absurd ones are refused at once and by name.
package dev.llamafit.model;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTimeoutPreemptively;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.file.Path;
import java.time.Duration;
import java.util.List;

import org.junit.jupiter.api.Test;

import dev.llamafit.io.ConfigJson;
import dev.llamafit.io.ModelPresets;
import dev.llamafit.tensor.DType;

class ConfigLimitsTest {
    static LlamaConfig config(int hidden, int inter, int layers, int heads, int kvHeads, int headDim, int vocab, int positions, boolean tied) {
        return new LlamaConfig("llama", hidden, inter, layers, heads, kvHeads, headDim, vocab, positions, 1e-5, 10000.0,
                new RopeScaling.None(), tied, false, false, false, 0, -1, List.of());
    }

    /** The closed form the constructor checks is the layout's own count, for every preset and fixture. */
    @Test
    void closedFormCountIsTheLayoutsCount() {
        for (String name : ModelPresets.names()) {
            LlamaConfig c = ModelPresets.load(name);
            assertEquals(ParameterLayout.of(c, DType.F32).parameterCount(), c.parameterCount(), name);
        }
        for (String f : List.of("tiny-llama-gqa-tied", "tiny-llama3-untied", "tiny-mistral-window", "tiny-qwen2")) {
            LlamaConfig c = ConfigJson.read(Path.of("src/test/resources/fixtures", f, "config.json"));
            assertEquals(ParameterLayout.of(c, DType.F32).parameterCount(), c.parameterCount(), f);
        }
        LlamaConfig biased = new LlamaConfig("llama", 64, 96, 3, 4, 2, 16, 100, 64, 1e-5, 10000.0, new RopeScaling.None(), false,
                true, true, true, 0, -1, List.of());
        assertEquals(ParameterLayout.of(biased, DType.F32).parameterCount(), biased.parameterCount());
    }

    @Test
    void realModelSizesPass() {
        // Llama 3.1 405B with a 1M context, a 256k vocabulary at 4096 wide, a 10M context: inside every limit.
        LlamaConfig big = config(16384, 53248, 126, 128, 8, 128, 128256, 1 << 20, false);
        assertTrue(big.parameterCount() > 400_000_000_000L && big.parameterCount() < LlamaConfig.MAX_PARAMETERS);
        config(4096, 14336, 32, 32, 8, 128, 256_000, 10_485_760, false);
        config(2, 2, LlamaConfig.MAX_LAYERS, 1, 1, 2, 2, 1, true);
    }

    @Test
    void absurdSizesAreRefusedByNameAtOnce() {
        assertTimeoutPreemptively(Duration.ofMillis(500), () -> {
            String m = assertThrows(IllegalArgumentException.class, () -> config(128, 384, 1_000_000_000, 8, 4, 16, 2048, 512, true)).getMessage();
            assertTrue(m.contains("num_hidden_layers 1000000000") && m.contains("4,096"), m);
            m = assertThrows(IllegalArgumentException.class, () -> config(2, 2, LlamaConfig.MAX_LAYERS + 1, 1, 1, 2, 2, 1, true)).getMessage();
            assertTrue(m.contains("num_hidden_layers"), m);
            m = assertThrows(IllegalArgumentException.class, () -> config(128, 384, 2, 8, 4, 16, Integer.MAX_VALUE, 512, true)).getMessage();
            assertTrue(m.contains("vocab_size 2147483647"), m);
            m = assertThrows(IllegalArgumentException.class, () -> config(65536, 65536, 2, 8, 4, 16, 2048, 512, true)).getMessage();
            assertTrue(m.contains("intermediate_size 65536") && m.contains("elements"), m);
            m = assertThrows(IllegalArgumentException.class, () -> config(16384, 65536, 4096, 128, 8, 128, 2048, 512, true)).getMessage();
            assertTrue(m.contains("parameters") && m.contains("2^40"), m);
            m = assertThrows(IllegalArgumentException.class, () -> config(128, 384, 2, 1 << 19, 1, 4, 2048, 512, true)).getMessage();
            assertTrue(m.contains("head_dim"), m);
        });
    }

    @Test
    void batchesPastAnIntAreRefusedNotOverflowed() {
        LlamaConfig c = config(128, 384, 2, 8, 4, 16, 2048, 512, true);
        String m = assertThrows(IllegalArgumentException.class, () -> TrainingLayout.of(c, 40_000_000, 64)).getMessage();
        assertTrue(m.contains("2560000000"), m);
        assertThrows(IllegalArgumentException.class, () -> new ActivationLayout(c, 1 << 20, 4096, 4096, 1, 1));
    }
}
