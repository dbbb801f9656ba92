// TrainingStep invariants: micro-batch accumulation, loss at init, ignored labels, and ledger == layout.
package dev.llamafit.model;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.Arrays;
import java.util.List;
import java.util.Map;
import java.util.SplittableRandom;

import org.junit.jupiter.api.Test;

import dev.llamafit.kernels.KernelBackends;
import dev.llamafit.kernels.Kernels;
import dev.llamafit.memory.Category;
import dev.llamafit.memory.MemoryLedger;
import dev.llamafit.tensor.Tensor;

class TrainingStepTest {
    /** Small, GQA, untied, with a sliding window and biases, so every code path of a block is exercised. */
    static LlamaConfig tiny(boolean tied) {
        return new LlamaConfig("mistral", 24, 40, 2, 4, 2, 6, 50, 32, 1e-5, 10000.0, new RopeScaling.None(), tied,
                true, false, false, 5, 1, List.of(2));
    }

    static int[][] randomIds(int b, int t, int vocab, long seed, boolean ignoreSome) {
        SplittableRandom r = new SplittableRandom(seed);
        int[][] ids = new int[b][t];
        for (int[] row : ids)
            for (int i = 0; i < t; i++) row[i] = ignoreSome && r.nextInt(4) == 0 ? -100 : r.nextInt(vocab);
        return ids;
    }

    @Test
    void fourMicroBatchesOfTwoEqualOneBatchOfEight() {
        LlamaConfig c = tiny(true);
        Kernels k = KernelBackends.get();
        MemoryLedger ledger = new MemoryLedger();
        Map<String, Tensor> w = RandomModels.weights(c, ledger, 7, 0.2);
        int t = 12;
        int[][] ids = randomIds(8, t, c.vocabSize(), 1, false), labels = randomIds(8, t, c.vocabSize(), 2, true);
        long counted = Arrays.stream(labels).flatMapToInt(Arrays::stream).filter(l -> l != -100).count();
        try (TrainingStep big = new TrainingStep(c, w, k, ledger, 8, t); TrainingStep small = new TrainingStep(c, w, k, ledger, 2, t)) {
            TrainingStep.Loss whole = big.forwardBackward(ids, labels, counted);
            double sum = 0;
            long tokens = 0;
            small.zeroGradients();
            for (int m = 0; m < 4; m++) {
                TrainingStep.Loss part = small.forwardBackward(Arrays.copyOfRange(ids, 2 * m, 2 * m + 2),
                        Arrays.copyOfRange(labels, 2 * m, 2 * m + 2), counted);
                sum += part.sum();
                tokens += part.tokens();
            }
            assertEquals(whole.tokens(), tokens);
            assertEquals(whole.sum(), sum, 1e-4 * Math.abs(whole.sum()));
            for (String name : big.gradients().keySet()) {
                float[] a = big.gradients().get(name).toFloatArray(), b = small.gradients().get(name).toFloatArray();
                double scale = 0, err = 0;
                for (int i = 0; i < a.length; i++) {
                    scale = Math.max(scale, Math.abs(a[i]));
                    err = Math.max(err, Math.abs(a[i] - b[i]));
                }
                assertTrue(scale > 0, name);
                assertTrue(err <= 1e-5 * scale + 1e-9, name + ": accumulated micro-batches differ by " + err + " (scale " + scale + ")");
            }
        } finally {
            w.values().forEach(Tensor::close);
        }
    }

    @Test
    void untrainedLossIsLnVocabAndAllIgnoredGivesNoNaN() {
        LlamaConfig c = tiny(false);
        Kernels k = KernelBackends.get();
        MemoryLedger ledger = new MemoryLedger();
        // Small weights: logits ≈ 0, so every token is ≈ uniform over V.
        Map<String, Tensor> w = RandomModels.weights(c, ledger, 3, 0.02);
        try (TrainingStep step = new TrainingStep(c, w, k, ledger, 2, 10)) {
            int[][] ids = randomIds(2, 10, c.vocabSize(), 4, false);
            TrainingStep.Loss eval = step.forwardLoss(ids, randomIds(2, 10, c.vocabSize(), 5, false));
            assertEquals(20, eval.tokens());
            assertEquals(Math.log(c.vocabSize()), eval.mean(), 0.05);

            int[][] none = new int[2][10];
            for (int[] row : none) Arrays.fill(row, -100);
            step.zeroGradients();
            TrainingStep.Loss l = step.forwardBackward(ids, none, 1);
            assertEquals(0, l.tokens());
            assertEquals(0.0, l.sum());
            assertEquals(0.0, l.mean());
            for (Tensor g : step.gradients().values())
                for (float v : g.toFloatArray()) assertEquals(0f, v, 0f, g.name() + " must stay zero (and not NaN)");
            assertEquals(0.0, step.forwardLoss(ids, none).mean());
            assertThrows(IllegalArgumentException.class, () -> step.forwardBackward(ids, none, 0));
        } finally {
            w.values().forEach(Tensor::close);
        }
    }

    @Test
    void ledgerHoldsExactlyTheLayout() {
        for (boolean tied : new boolean[] {true, false}) {
            LlamaConfig c = tiny(tied);
            MemoryLedger ledger = new MemoryLedger();
            Map<String, Tensor> w = RandomModels.weights(c, ledger, 1, 0.1);
            TrainingLayout layout = TrainingLayout.of(c, 3, 7);
            try (TrainingStep step = new TrainingStep(c, w, KernelBackends.get(), ledger, 3, 7)) {
                assertEquals(layout.bytes(Category.ACTIVATIONS), ledger.currentBytes(Category.ACTIVATIONS));
                assertEquals(layout.bytes(Category.WORKSPACE) + layout.ropeTableBytes(), ledger.currentBytes(Category.WORKSPACE));
                assertEquals(layout.bytes(Category.GRADIENTS), ledger.currentBytes(Category.GRADIENTS));
                assertEquals(ParameterLayout.of(c, dev.llamafit.tensor.DType.F32).bytes(), ledger.currentBytes(Category.GRADIENTS));
                step.forwardBackward(randomIds(3, 7, c.vocabSize(), 1, false), randomIds(3, 7, c.vocabSize(), 2, true), 10);
                assertEquals(layout.bytes(Category.ACTIVATIONS), ledger.peakBytes(Category.ACTIVATIONS), "nothing allocated during the step");
                assertEquals(w.keySet(), step.gradients().keySet());
            } finally {
                w.values().forEach(Tensor::close);
            }
            assertEquals(0, ledger.currentBytes(Category.ACTIVATIONS));
            assertEquals(0, ledger.currentBytes(Category.GRADIENTS));
            assertEquals(0, ledger.currentBytes(Category.WORKSPACE));
        }
    }

    @Test
    void ownedCopyIsWritableAndFiledUnderWeights() {
        LlamaConfig c = tiny(true);
        MemoryLedger ledger = new MemoryLedger();
        Map<String, Tensor> w = RandomModels.weights(c, ledger, 1, 0.1);
        long before = ledger.currentBytes(Category.WEIGHTS);
        Map<String, Tensor> copy = TrainingStep.ownedCopy(w, ledger);
        assertEquals(2 * before, ledger.currentBytes(Category.WEIGHTS));
        Tensor e = copy.get(ParameterLayout.EMBED);
        assertEquals(w.get(ParameterLayout.EMBED).getFloat(5), e.getFloat(5));
        e.setFloat(5, 42f);
        assertEquals(42f, e.getFloat(5));
        copy.values().forEach(Tensor::close);
        w.values().forEach(Tensor::close);
        assertEquals(0, ledger.currentBytes(Category.WEIGHTS));
    }
}
