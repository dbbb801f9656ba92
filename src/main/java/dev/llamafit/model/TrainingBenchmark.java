// Measures one training step (forward + chunked loss + backward) on a random model of a known shape.
package dev.llamafit.model;

import java.util.Map;
import java.util.SplittableRandom;

import dev.llamafit.kernels.KernelBackends;
import dev.llamafit.kernels.Kernels;
import dev.llamafit.kernels.Parallel;
import dev.llamafit.memory.Category;
import dev.llamafit.memory.MemoryLedger;
import dev.llamafit.tensor.Tensor;

/**
 * {@code java … dev.llamafit.model.TrainingBenchmark [B] [T] [steps]}: stories15M-shaped random model, prints
 * seconds per step and tokens/s, and the ledger's activation and gradient bytes. A measurement, not a test.
 */
public final class TrainingBenchmark {
    private TrainingBenchmark() {}

    public static void main(String[] args) {
        int b = args.length > 0 ? Integer.parseInt(args[0]) : 8;
        int t = args.length > 1 ? Integer.parseInt(args[1]) : 256;
        int steps = args.length > 2 ? Integer.parseInt(args[2]) : 3;
        LlamaConfig c = RandomModels.stories15M();
        Kernels k = KernelBackends.get();
        MemoryLedger ledger = new MemoryLedger();
        Map<String, Tensor> w = RandomModels.weights(c, ledger, 1, 0.02);
        SplittableRandom r = new SplittableRandom(2);
        int[][] ids = new int[b][t], labels = new int[b][t];
        for (int i = 0; i < b; i++)
            for (int j = 0; j < t; j++) {
                ids[i][j] = r.nextInt(c.vocabSize());
                labels[i][j] = r.nextInt(c.vocabSize());
            }
        try (TrainingStep step = new TrainingStep(c, w, k, ledger, b, t)) {
            System.out.printf("stories15M shape, B=%d T=%d, kernels %s, %d threads; activations %.1f MB, workspace %.1f MB, gradients %.1f MB%n",
                    b, t, k.name(), Parallel.threads(), ledger.currentBytes(Category.ACTIVATIONS) / 1e6,
                    ledger.currentBytes(Category.WORKSPACE) / 1e6, ledger.currentBytes(Category.GRADIENTS) / 1e6);
            for (int s = -1; s < steps; s++) { // step −1 warms the JIT
                step.zeroGradients();
                long t0 = System.nanoTime();
                TrainingStep.Loss loss = step.forwardBackward(ids, labels, (double) b * t);
                double sec = (System.nanoTime() - t0) / 1e9;
                long t1 = System.nanoTime();
                step.forwardLoss(ids, labels);
                double fwd = (System.nanoTime() - t1) / 1e9;
                System.out.printf("step %d: loss %.4f, forward+backward %.3f s (%.0f tokens/s), forward+loss only %.3f s%n",
                        s, loss.mean(), sec, b * t / sec, fwd);
            }
        } finally {
            w.values().forEach(Tensor::close);
        }
    }
}
