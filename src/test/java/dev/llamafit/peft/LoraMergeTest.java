// LoRA merge invariants: merged == unmerged per layer, unmerge undoes merge, untouched tensors shared, NaN refused.
package dev.llamafit.peft;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotSame;
import static org.junit.jupiter.api.Assertions.assertSame;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.Random;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

import dev.llamafit.io.ModelFolder;
import dev.llamafit.io.PeftAdapters;
import dev.llamafit.kernels.KernelBackends;
import dev.llamafit.kernels.Kernels;
import dev.llamafit.memory.Category;
import dev.llamafit.memory.MemoryLedger;
import dev.llamafit.model.LinearModule;
import dev.llamafit.model.LoraConfig;
import dev.llamafit.tensor.DType;
import dev.llamafit.tensor.Shape;
import dev.llamafit.tensor.Tensor;
import dev.llamafit.testing.SharedData;

class LoraMergeTest {
    final Kernels k = KernelBackends.get();

    @ParameterizedTest
    @ValueSource(strings = {"tiny-llama-gqa-tied", "tiny-llama3-untied", "tiny-qwen2", "tiny-mistral-window"})
    void mergedEqualsUnmergedAndUnmergeUndoesMerge(String name) {
        Path dir = SharedData.fixture(name);
        MemoryLedger ledger = new MemoryLedger();
        try (ModelFolder folder = ModelFolder.open(dir, ledger, k);
             PeftAdapters.Adapter a = PeftAdapters.read(dir.resolve("lora"), folder.config(), ledger);
             LoraMerge.Merged merged = LoraMerge.merge(folder.weights(), a.config(), a.weights(), k, ledger);
             LoraMerge.Merged back = LoraMerge.unmerge(merged.weights(), a.config(), a.weights(), k, ledger)) {
            LoraConfig cfg = a.config();
            assertEquals(2 * cfg.targets().size() * folder.config().numLayers(), a.weights().size());
            assertEquals(cfg.targets().size() * folder.config().numLayers(), merged.owned().size());
            Random rnd = new Random(7);
            for (String wName : folder.weights().keySet()) {
                Tensor w = folder.weights().get(wName), m = merged.weights().get(wName);
                Adapted key = adaptedBy(wName, cfg);
                if (key == null) {
                    assertSame(w, m, wName + " is not adapted: the base tensor itself");
                    continue;
                }
                assertNotSame(w, m);
                // unmerge(merge(W)) ≈ W
                float[] w0 = w.toFloatArray(), w1 = back.weights().get(wName).toFloatArray();
                for (int i = 0; i < w0.length; i++) assertEquals(w0[i], w1[i], 1e-5, wName + " element " + i);
                // x·W'ᵀ == x·Wᵀ + scale·(x·Aᵀ)·Bᵀ for a random batch x [n, in]
                Tensor A = a.weights().get(key.module().peftKey(key.layer(), 'A'));
                Tensor B = a.weights().get(key.module().peftKey(key.layer(), 'B'));
                int out = (int) w.shape().dim(0), in = (int) w.shape().dim(1), r = cfg.rank(), n = 5;
                try (Tensor x = rand(ledger, rnd, n, in); Tensor yMerged = zeros(ledger, n, out); Tensor yUnmerged = zeros(ledger, n, out);
                     Tensor xa = zeros(ledger, n, r)) {
                    k.gemm(false, true, n, out, in, 1f, x.segment(), 0, in, m.segment(), 0, in, 0f, yMerged.segment(), 0, out);
                    k.gemm(false, true, n, out, in, 1f, x.segment(), 0, in, w.segment(), 0, in, 0f, yUnmerged.segment(), 0, out);
                    k.gemm(false, true, n, r, in, 1f, x.segment(), 0, in, A.segment(), 0, in, 0f, xa.segment(), 0, r);
                    k.gemm(false, true, n, out, r, (float) cfg.scale(), xa.segment(), 0, r, B.segment(), 0, r, 1f, yUnmerged.segment(), 0, out);
                    float[] p = yMerged.toFloatArray(), q = yUnmerged.toFloatArray();
                    for (int i = 0; i < p.length; i++) assertEquals(q[i], p[i], 1e-5 * Math.max(1, Math.abs(q[i])), wName + " output " + i);
                }
            }
        }
        assertEquals(0, ledger.currentBytes(Category.WEIGHTS));
    }

    /** The layer and module whose weight is {@code weightName}, when the adapter targets it. */
    private record Adapted(int layer, LinearModule module) {}

    private static Adapted adaptedBy(String weightName, LoraConfig cfg) {
        for (int l = 0; l < 64; l++)
            for (LinearModule m : cfg.modules())
                if (m.weight(l).equals(weightName)) return new Adapted(l, m);
        return null;
    }

    private static Tensor rand(MemoryLedger ledger, Random rnd, int rows, int cols) {
        Tensor t = zeros(ledger, rows, cols);
        for (long i = 0; i < t.elements(); i++) t.setFloat(i, (float) rnd.nextGaussian());
        return t;
    }

    private static Tensor zeros(MemoryLedger ledger, long... dims) {
        return Tensor.allocate(ledger, Category.WORKSPACE, "t", DType.F32, Shape.of(dims));
    }

    /** One 3×2 layer with a rank-1 adapter: a small case whose merged value is known exactly. */
    private record Tiny(Map<String, Tensor> base, Map<String, Tensor> adapter, LoraConfig cfg) {}

    private static Tiny tiny(MemoryLedger ledger, float bValue) {
        Tensor w = Tensor.allocate(ledger, Category.WORKSPACE, "w", DType.F32, Shape.of(3, 2));
        Tensor a = Tensor.allocate(ledger, Category.WORKSPACE, "a", DType.F32, Shape.of(1, 2));
        Tensor b = Tensor.allocate(ledger, Category.WORKSPACE, "b", DType.F32, Shape.of(3, 1));
        for (int i = 0; i < 6; i++) w.setFloat(i, i);
        a.setFloat(0, 1);
        a.setFloat(1, 2);
        for (int i = 0; i < 3; i++) b.setFloat(i, bValue);
        Map<String, Tensor> base = new LinkedHashMap<>();
        base.put(LinearModule.O.weight(0), w);
        Map<String, Tensor> adapter = new LinkedHashMap<>();
        adapter.put(LinearModule.O.peftKey(0, 'A'), a);
        adapter.put(LinearModule.O.peftKey(0, 'B'), b);
        return new Tiny(base, adapter, new LoraConfig(1, 2, 0, java.util.List.of(LinearModule.O.key()), false));
    }

    @Test
    void mergeIsWPlusScaleTimesBA() {
        MemoryLedger ledger = new MemoryLedger();
        Tiny t = tiny(ledger, 0.5f);
        try (LoraMerge.Merged m = LoraMerge.merge(t.base(), t.cfg(), t.adapter(), k, ledger)) {
            float[] got = m.weights().get(LinearModule.O.weight(0)).toFloatArray();
            // scale 2/1 = 2; B·A = 0.5·[1, 2] per row.
            float[] want = {0 + 1, 1 + 2, 2 + 1, 3 + 2, 4 + 1, 5 + 2};
            for (int i = 0; i < 6; i++) assertEquals(want[i], got[i], 0f);
        }
    }

    @Test
    void nanInAnAdapterIsRefusedNamingTheTensor() {
        MemoryLedger ledger = new MemoryLedger();
        Tiny t = tiny(ledger, 0.5f);
        t.adapter().get(LinearModule.O.peftKey(0, 'B')).setFloat(1, Float.NaN);
        long before = ledger.currentBytes(Category.WEIGHTS);
        LoraMerge.NonFiniteException e = assertThrows(LoraMerge.NonFiniteException.class,
                () -> LoraMerge.merge(t.base(), t.cfg(), t.adapter(), k, ledger));
        assertTrue(e.getMessage().contains(LinearModule.O.peftKey(0, 'B')) && e.getMessage().contains("NaN"), e.getMessage());
        assertEquals(LinearModule.O.peftKey(0, 'B'), e.tensor());
        assertEquals(before, ledger.currentBytes(Category.WEIGHTS), "nothing stays allocated");
    }

    @Test
    void overflowToInfinityIsRefusedNamingTheMergedWeight() {
        MemoryLedger ledger = new MemoryLedger();
        Tiny t = tiny(ledger, 3e38f);
        LoraMerge.NonFiniteException e = assertThrows(LoraMerge.NonFiniteException.class,
                () -> LoraMerge.merge(t.base(), t.cfg(), t.adapter(), k, ledger));
        assertTrue(e.getMessage().contains(LinearModule.O.weight(0)), e.getMessage());
        assertEquals(0, ledger.currentBytes(Category.WEIGHTS));
    }
}
