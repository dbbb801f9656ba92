// A folder in transformers' bitsandbytes layout, written by an independent script, loads as it is and equals the model
// llamafit quantises on load.
package dev.llamafit.io;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;

import java.nio.file.Path;

import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

import dev.llamafit.kernels.KernelBackends;
import dev.llamafit.memory.MemoryLedger;
import dev.llamafit.model.LlamaModel;
import dev.llamafit.model.Technique;
import dev.llamafit.quant.Quantization;

class BitsandbytesFolderTest {
    private static final Path FIXTURES = Path.of("src/test/resources/fixtures");

    private static float[] logits(Path dir, Quantization quantize, Quantization expect) {
        MemoryLedger ledger = new MemoryLedger();
        try (ModelFolder f = ModelFolder.open(dir, ledger, KernelBackends.get(), null, quantize);
             LlamaModel m = new LlamaModel(f.config(), f.weights(), KernelBackends.get(), ledger, Technique.Attention.EAGER)) {
            assertEquals(expect, f.config().quantization());
            int[][] ids = {{1, 40, 20, 77, 95, 12, 9, 55, 3, 5, 60, 61}};
            return m.forward(ids, null, LlamaModel.Logits.ALL).toFloatArray();
        }
    }

    /** scripts/make_bnb_folders.py quantised the fp32 fixture from the papers and bitsandbytes' documented rules. */
    @ParameterizedTest
    @ValueSource(strings = {"nf4", "int8"})
    void aFolderWrittenForBitsandbytesLoadsAsTheModelQuantisedOnLoad(String kind) {
        Quantization q = kind.equals("nf4") ? Quantization.nf4(true) : Quantization.int8(6.0);
        float[] stored = logits(FIXTURES.resolve("tiny-llama-gqa-tied-bnb-" + kind), null, q);
        float[] onLoad = logits(FIXTURES.resolve("tiny-llama-gqa-tied"), q, q);
        assertArrayEquals(onLoad, stored);
        assertFalse(java.util.Arrays.equals(stored, logits(FIXTURES.resolve("tiny-llama-gqa-tied"), null, null)), "quantised");
    }
}
