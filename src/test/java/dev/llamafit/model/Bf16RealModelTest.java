// Acceptance of issue 15's typed weights on a real model: tinystories-656k converted to bf16 by llamafit's own writer.
package dev.llamafit.model;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Set;

import com.fasterxml.jackson.databind.JsonNode;
import dev.llamafit.io.HfFolderWriter;
import dev.llamafit.io.Json;
import dev.llamafit.io.ModelFolder;
import dev.llamafit.io.data.DataOptions;
import dev.llamafit.io.data.Datasets;
import dev.llamafit.io.data.LoadedDataset;
import dev.llamafit.io.tokenizer.Tokenizer;
import dev.llamafit.io.tokenizer.Tokenizers;
import dev.llamafit.kernels.KernelBackends;
import dev.llamafit.kernels.Kernels;
import dev.llamafit.memory.Category;
import dev.llamafit.memory.MemoryLedger;
import dev.llamafit.tensor.DType;
import dev.llamafit.tensor.Tensor;
import dev.llamafit.tensor.TensorSpec;
import dev.llamafit.testing.SharedData;
import dev.llamafit.train.Trainer;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class Bf16RealModelTest {
    static final int TOKENS = 40, B = 4, T = 128;

    @TempDir
    Path tmp;

    @Test
    void bf16CheckpointGeneratesEvaluatesAndIsAccountedAtTwoBytesPerParameter() throws IOException {
        Path fp32 = SharedData.require("models/tinystories-656k");
        Path text = SharedData.require("datasets/text/tinystories_sample.txt");
        Kernels k = KernelBackends.get();
        Path bf16 = tmp.resolve("bf16");
        try (ModelFolder f = ModelFolder.open(fp32, new MemoryLedger(), k)) {
            HfFolderWriter.write(bf16, f.config(), new ArrayList<>(f.weights().values()), fp32, DType.BF16, new MemoryLedger(), k);
        }
        JsonNode ref = Json.read(SharedData.fixture("tinystories-656k-greedy.json"));
        int[] prompt = {ref.get("prompt_ids").get(0).asInt()};
        Tokenizer tok = Tokenizers.load(fp32);
        LoadedDataset data = Datasets.load(text, tok, fp32, new DataOptions(T, false, false, null, Map.of()));
        int pad = tok.eosId() >= 0 ? tok.eosId() : 0;

        int[] tokens32, tokens16;
        double loss32, loss16;
        try (ModelFolder f = ModelFolder.open(fp32, new MemoryLedger(), k, null)) {
            tokens32 = greedy(f, k, prompt);
            loss32 = evalLoss(f, k, data, pad);
        }
        MemoryLedger ledger = new MemoryLedger();
        try (ModelFolder f = ModelFolder.open(bf16, ledger, k, null)) {
            // Used in place: every matrix is the mapped BF16 tensor; only the vectors (norm gains) are owned fp32 copies.
            long matrixParams = 0, vectorParams = 0;
            for (TensorSpec spec : ParameterLayout.of(f.config(), DType.F32).specs()) {
                Tensor t = f.weights().get(spec.name());
                if (spec.shape().rank() == 2) {
                    assertEquals(DType.BF16, t.dtype(), spec.name());
                    matrixParams += t.elements();
                } else {
                    assertEquals(DType.F32, t.dtype(), spec.name());
                    vectorParams += t.elements();
                }
            }
            long params = matrixParams + vectorParams;
            assertEquals(2 * params, ledger.mappedBytes(Category.WEIGHTS), "the mapped checkpoint: 2 bytes per parameter");
            long owned = ledger.currentBytes(Category.WEIGHTS) - ledger.mappedBytes(Category.WEIGHTS);
            assertEquals(4 * vectorParams, owned, "owned fp32 copies of the vectors only");
            System.out.printf("bf16 ledger: %d parameters (%d in matrices), weights %d bytes mapped (2/param) + %d owned fp32 vector bytes%n",
                    params, matrixParams, ledger.mappedBytes(Category.WEIGHTS), owned);
            tokens16 = greedy(f, k, prompt);
            loss16 = evalLoss(f, k, data, pad);
        }
        int same = 0;
        for (int i = 0; i < TOKENS; i++) if (tokens32[i] == tokens16[i]) same++;
        double rel = Math.abs(loss16 - loss32) / loss32;
        System.out.printf("bf16 vs fp32: greedy tokens matching %d of %d; eval loss fp32 %.6f bf16 %.6f (relative %.4f%%)%n",
                same, TOKENS, loss32, loss16, 100 * rel);
        assertTrue(same >= 35, "greedy bf16 matches fp32 on " + same + " of " + TOKENS + " tokens");
        assertTrue(rel < 0.005, "eval loss bf16 " + loss16 + " vs fp32 " + loss32);

        // This checkpoint's fp32 values are all bf16-exact (a bf16 model widened): then the typed GEMM, which widens
        // exactly while packing, must give the fp32 run's bits.
        if (bf16Exact(fp32, k)) {
            assertArrayEquals(tokens32, tokens16);
            assertEquals(loss32, loss16, "bf16-exact weights give the fp32 loss exactly");
        }

        // F16 rounds these weights (10-bit mantissa, smaller range): the same criteria, converted on load.
        try (ModelFolder f = ModelFolder.open(fp32, new MemoryLedger(), k, DType.F16)) {
            int[] t16 = greedy(f, k, prompt);
            double l16 = evalLoss(f, k, data, pad);
            int s16 = 0;
            for (int i = 0; i < TOKENS; i++) if (tokens32[i] == t16[i]) s16++;
            double r16 = Math.abs(l16 - loss32) / loss32;
            System.out.printf("fp16 vs fp32: greedy tokens matching %d of %d; eval loss fp16 %.6f (relative %.4f%%)%n", s16, TOKENS, l16, 100 * r16);
            assertTrue(s16 >= 35, "greedy fp16 matches fp32 on " + s16 + " of " + TOKENS + " tokens");
            assertTrue(r16 < 0.005, "eval loss fp16 " + l16 + " vs fp32 " + loss32);
        }

        // --dtype bf16 on the fp32 checkpoint converts on load with the same rounding as the writer: the same tokens.
        MemoryLedger l2 = new MemoryLedger();
        try (ModelFolder f = ModelFolder.open(fp32, l2, k, DType.BF16)) {
            assertEquals(DType.BF16, f.weights().get(ParameterLayout.EMBED).dtype());
            assertArrayEquals(tokens16, greedy(f, k, prompt));
        }
    }

    static boolean bf16Exact(Path dir, Kernels k) {
        try (ModelFolder f = ModelFolder.open(dir, new MemoryLedger(), k)) {
            for (Tensor t : f.weights().values())
                for (long i = 0; i < t.elements(); i++) if ((Float.floatToRawIntBits(t.getFloat(i)) & 0xFFFF) != 0) return false;
            return true;
        }
    }

    static int[] greedy(ModelFolder f, Kernels k, int[] prompt) {
        List<Integer> got = new ArrayList<>();
        try (LlamaModel m = f.newModel(k, new MemoryLedger())) {
            new Generator(m, new Sampler(0, 0, 1, 0), Set.of()).generate(prompt, TOKENS, got::add);
        }
        return got.stream().mapToInt(Integer::intValue).toArray();
    }

    static double evalLoss(ModelFolder f, Kernels k, LoadedDataset data, int pad) {
        try (TrainingStep step = new TrainingStep(f.config(), f.weights(), k, new MemoryLedger(), B, T)) {
            return Trainer.evaluate(step, data.examples(), B, T, pad).mean();
        }
    }
}
