// llamafit merge over a bf16 base: W + scale·B·A in fp32, stored in the base's dtype unless --save-dtype says otherwise.
package dev.llamafit.peft;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Map;

import dev.llamafit.io.HfFolderWriter;
import dev.llamafit.io.Json;
import dev.llamafit.io.ModelFolder;
import dev.llamafit.kernels.KernelBackends;
import dev.llamafit.kernels.Kernels;
import dev.llamafit.kernels.ScalarKernels;
import dev.llamafit.memory.MemoryLedger;
import dev.llamafit.tensor.DType;
import dev.llamafit.tensor.Tensor;
import dev.llamafit.testing.SharedData;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class TypedMergeTest {
    @Test
    void mergeKeepsTheBaseDtypeUnlessSaveDtypeSaysOtherwise(@TempDir Path tmp) throws IOException {
        Path fixture = SharedData.fixture("tiny-llama-gqa-tied");
        Kernels k = KernelBackends.get();
        MemoryLedger ledger = new MemoryLedger();
        Path bf16 = tmp.resolve("bf16");
        try (ModelFolder f = ModelFolder.open(fixture, ledger, k)) {
            HfFolderWriter.write(bf16, f.config(), new ArrayList<>(f.weights().values()), fixture, DType.BF16, ledger, k);
        }
        assertEquals("bfloat16", Json.read(bf16.resolve("config.json")).get("torch_dtype").asText());

        Path asBase = tmp.resolve("as-base"), asF32 = tmp.resolve("as-f32");
        MergedFolders.write(bf16, fixture.resolve("lora"), asBase, k, ledger, null, null);
        MergedFolders.write(bf16, fixture.resolve("lora"), asF32, k, ledger, null, DType.F32);
        try (ModelFolder inMemory = MergedFolders.open(bf16, fixture.resolve("lora"), ledger, k, null);
             ModelFolder base = ModelFolder.open(asBase, ledger, k, null);
             ModelFolder f32 = ModelFolder.open(asF32, ledger, k, null)) {
            assertEquals(DType.BF16, base.storedDtype());
            assertEquals(DType.F32, f32.storedDtype());
            int adapted = 0;
            for (Map.Entry<String, Tensor> e : inMemory.weights().entrySet()) {
                Tensor merged = e.getValue(), stored = base.weights().get(e.getKey()), wide = f32.weights().get(e.getKey());
                if (merged.shape().rank() < 2) continue;
                // In memory, adapted matrices are F32 sums and the rest stays the mapped BF16 base.
                if (merged.dtype() == DType.F32) adapted++;
                for (long i = 0; i < merged.elements(); i++) {
                    float m = merged.getFloat(i);
                    assertEquals(Float.floatToRawIntBits(m), Float.floatToRawIntBits(wide.getFloat(i)), e.getKey() + " as F32 at " + i);
                    float rounded = ScalarKernels.bf16ToFloat(ScalarKernels.floatToBf16(m));
                    assertEquals(Float.floatToRawIntBits(rounded), Float.floatToRawIntBits(stored.getFloat(i)), e.getKey() + " as BF16 at " + i);
                }
            }
            assertTrue(adapted > 0, "the adapter adapts some matrices");
        }
        assertEquals(0, ledger.currentBytes(dev.llamafit.memory.Category.WEIGHTS), "everything freed");
    }
}
