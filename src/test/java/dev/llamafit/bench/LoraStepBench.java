// One-off measurement: full fine-tuning vs LoRA vs LoRA + checkpointing, tokens/s and activation peak, stories15M shape.
package dev.llamafit.bench;

import java.util.List;
import java.util.Map;
import java.util.SplittableRandom;

import dev.llamafit.kernels.KernelBackends;
import dev.llamafit.memory.ByteSize;
import dev.llamafit.memory.Category;
import dev.llamafit.memory.MemoryLedger;
import dev.llamafit.model.LlamaConfig;
import dev.llamafit.model.LoraConfig;
import dev.llamafit.model.RandomModels;
import dev.llamafit.model.TrainingStep;
import dev.llamafit.tensor.Tensor;

/**
 * Not a test (DESIGN §7: no timed unit tests). Run after {@code mvn test-compile} with the test classpath:
 * {@code java --add-modules jdk.incubator.vector -cp target/classes:target/test-classes dev.llamafit.bench.LoraStepBench [B T r steps]}.
 */
public final class LoraStepBench {
    public static void main(String[] args) {
        int b = args.length > 0 ? Integer.parseInt(args[0]) : 8, t = args.length > 1 ? Integer.parseInt(args[1]) : 256;
        int r = args.length > 2 ? Integer.parseInt(args[2]) : 8, steps = args.length > 3 ? Integer.parseInt(args[3]) : 3;
        LlamaConfig c = RandomModels.stories15M();
        LoraConfig lora = new LoraConfig(r, 2 * r, 0, List.of("q_proj", "v_proj"), false);
        SplittableRandom rnd = new SplittableRandom(1);
        int[][] ids = new int[b][t], labels = new int[b][t];
        for (int i = 0; i < b; i++)
            for (int j = 0; j < t; j++) { ids[i][j] = rnd.nextInt(c.vocabSize()); labels[i][j] = rnd.nextInt(c.vocabSize()); }
        record Mode(String name, TrainingStep.Options options) {}
        for (Mode m : List.of(new Mode("full FT", TrainingStep.Options.FULL),
                new Mode("LoRA r" + r + " q,v", new TrainingStep.Options(lora, false, 1, 1)),
                new Mode("LoRA + ckpt every 1", new TrainingStep.Options(lora, true, 1, 1)),
                new Mode("full FT + ckpt every 1", new TrainingStep.Options(null, true, 1, 1)))) {
            MemoryLedger ledger = new MemoryLedger();
            Map<String, Tensor> w = RandomModels.weights(c, ledger, 3, 0.02);
            try (TrainingStep step = new TrainingStep(c, w, KernelBackends.get(), ledger, b, t, m.options())) {
                step.forwardBackward(ids, labels, (double) b * t); // warm-up (JIT)
                long t0 = System.nanoTime();
                for (int s = 0; s < steps; s++) step.forwardBackward(ids, labels, (double) b * t);
                double sec = (System.nanoTime() - t0) / 1e9 / steps;
                System.out.printf("%-24s %7.3f s/step %8.0f tokens/s  activations peak %s  gradients %s%n", m.name(), sec, b * t / sec,
                        ByteSize.format(ledger.peakBytes(Category.ACTIVATIONS)), ByteSize.format(ledger.peakBytes(Category.GRADIENTS)));
            } finally {
                w.values().forEach(Tensor::close);
            }
        }
    }
}
