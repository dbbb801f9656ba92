// U8 tensors are readable (8-bit optimizer checkpoints) but a U8 model weight is refused as bad input, naming it.
package dev.llamafit.io;

import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.SequencedMap;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import dev.llamafit.io.safetensors.SafetensorsFile;
import dev.llamafit.io.safetensors.SafetensorsWriter;
import dev.llamafit.kernels.KernelBackends;
import dev.llamafit.memory.Category;
import dev.llamafit.memory.MemoryLedger;
import dev.llamafit.tensor.DType;
import dev.llamafit.tensor.Tensor;
import dev.llamafit.testing.SharedData;

class U8WeightTest {
    @TempDir Path tmp;

    @Test
    void aU8ModelWeightIsBadInputNotAnInternalError() throws IOException {
        Path src = SharedData.require("models/tinystories-656k"), dir = tmp.resolve("m");
        Files.createDirectories(dir);
        try (var files = Files.list(src)) {
            for (Path f : files.toList()) if (!f.getFileName().toString().equals("model.safetensors")) Files.copy(f, dir.resolve(f.getFileName()));
        }
        MemoryLedger ledger = new MemoryLedger();
        String victim = "model.norm.weight";
        try (SafetensorsFile f = SafetensorsFile.open(src.resolve("model.safetensors"), ledger)) {
            SequencedMap<String, Tensor> out = new LinkedHashMap<>();
            for (String name : f.names()) {
                Tensor t = f.find(name).orElseThrow();
                out.put(name, name.equals(victim) ? Tensor.allocate(ledger, Category.WEIGHTS, name, DType.U8, t.shape()) : t);
            }
            SafetensorsWriter.write(dir.resolve("model.safetensors"), out, Map.of());
        }
        var e = assertThrows(InputException.class, () -> ModelFolder.open(dir, new MemoryLedger(), KernelBackends.get()).close());
        assertTrue(e.getMessage().contains(victim) && e.getMessage().contains("dtype U8 is a quantised weight's, but config.json has no quantization_config"), e.getMessage());
    }
}
