// `llamafit train`: full fine-tuning with checkpoints, exact resume, metrics and a final Hugging Face folder.
package dev.llamafit.cli;

import java.io.PrintWriter;
import java.nio.file.Path;
import java.util.Locale;
import java.util.concurrent.Callable;

import dev.llamafit.kernels.KernelBackends;
import dev.llamafit.memory.ByteSize;
import dev.llamafit.memory.Category;
import dev.llamafit.memory.MemoryLedger;
import dev.llamafit.memory.ProcessMemory;
import dev.llamafit.model.LoraConfig;
import dev.llamafit.train.TrainOptions;
import dev.llamafit.train.Trainer;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;
import picocli.CommandLine.Spec;
import picocli.CommandLine.Model.CommandSpec;

@Command(name = "train", mixinStandardHelpOptions = true, sortOptions = false,
        description = "Fine-tune a model (full or LoRA, fp32, optional gradient checkpointing) on text, Alpaca or chat data.")
final class TrainCommand implements Callable<Integer> {
    enum OptimizerName { adamw, sgd }

    enum ScheduleName { constant, linear, cosine }

    @Spec CommandSpec spec;

    @Option(names = "--model", required = true, description = "Hugging Face model folder to start from.") Path model;
    @Option(names = "--data", required = true, description = "Training data: .txt, Alpaca .json/.jsonl, or chat .jsonl.") Path data;
    @Option(names = "--output", required = true, description = "Run folder: checkpoints/, metrics.jsonl, loss.png, final/.") Path output;
    @Option(names = "--steps", defaultValue = "0", description = "Optimizer steps in the whole run (counted from its start).") long steps;
    @Option(names = "--epochs", defaultValue = "0", description = "Passes over the data, when --steps is not given.") double epochs;
    @Option(names = "--batch-size", defaultValue = "4", description = "Sequences per micro-batch (default: ${DEFAULT-VALUE}).") int batchSize;
    @Option(names = "--grad-accum", defaultValue = "1", description = "Micro-batches per optimizer step (default: ${DEFAULT-VALUE}).") int gradAccum;
    @Option(names = "--seq-len", defaultValue = "256", description = "Tokens per sequence (default: ${DEFAULT-VALUE}).") int seqLen;
    @Option(names = "--lr", defaultValue = "3e-4", description = "Peak learning rate (default: ${DEFAULT-VALUE}).") double lr;
    @Option(names = "--schedule", defaultValue = "cosine", description = "constant, linear or cosine, all with warmup (default: ${DEFAULT-VALUE}).") ScheduleName schedule;
    @Option(names = "--warmup", defaultValue = "0", description = "Warmup steps (default: ${DEFAULT-VALUE}).") long warmup;
    @Option(names = "--weight-decay", defaultValue = "0", description = "Weight decay, not applied to norms and biases (default: ${DEFAULT-VALUE}).") double weightDecay;
    @Option(names = "--max-grad-norm", defaultValue = "1.0", description = "Global gradient-norm clipping; 0 = off (default: ${DEFAULT-VALUE}).") double maxGradNorm;
    @Option(names = "--optimizer", defaultValue = "adamw", description = "adamw or sgd (momentum 0.9) (default: ${DEFAULT-VALUE}).") OptimizerName optimizer;
    @Option(names = "--eval-every", defaultValue = "0", description = "Evaluate every N steps; 0 = at the end only (default: ${DEFAULT-VALUE}).") long evalEvery;
    @Option(names = "--save-every", defaultValue = "0", description = "Checkpoint every N steps; 0 = at the end only (default: ${DEFAULT-VALUE}).") long saveEvery;
    @Option(names = "--resume", description = "Continue from a run folder (its newest checkpoint) or a checkpoint folder.") Path resume;
    @Option(names = "--seed", defaultValue = "42", description = "Seed for data order (default: ${DEFAULT-VALUE}).") long seed;
    @Option(names = "--eval-data", description = "Separate evaluation data file.") Path evalData;
    @Option(names = "--eval-split", defaultValue = "0", description = "Fraction of the data held out for evaluation, e.g. 0.05.") double evalSplit;
    @Option(names = "--train-on-prompt", description = "Also train on prompt tokens of instruction and chat data.") boolean trainOnPrompt;
    @Option(names = "--skip-bad-records", description = "Skip malformed records (and report how many) instead of stopping.") boolean skipBadRecords;
    @Option(names = "--lora-r", defaultValue = "0", description = "LoRA rank; 0 = full fine-tuning (default: ${DEFAULT-VALUE}).") int loraR;
    @Option(names = "--lora-alpha", defaultValue = "16", description = "LoRA alpha; scale = alpha/r (default: ${DEFAULT-VALUE}).") double loraAlpha;
    @Option(names = "--lora-dropout", defaultValue = "0", description = "Dropout on the adapters' input (default: ${DEFAULT-VALUE}).") double loraDropout;
    @Option(names = "--lora-targets", defaultValue = "q_proj,v_proj", description = "Adapted layers: comma list of q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj, or all-linear (default: ${DEFAULT-VALUE}).") String loraTargets;
    @Option(names = "--use-rslora", description = "Scale adapters by alpha/√r (rsLoRA) instead of alpha/r.") boolean useRslora;
    @Option(names = "--adapter", description = "Start LoRA training from this PEFT adapter folder.") Path adapter;
    @Option(names = "--gradient-checkpointing", description = "Keep only block inputs; recompute each block in backward.") boolean gradientCheckpointing;
    @Option(names = "--checkpoint-every", defaultValue = "1", description = "With --gradient-checkpointing: checkpoint every N-th block (default: ${DEFAULT-VALUE}).") int checkpointEvery;

    @Override
    public Integer call() throws Exception {
        if (loraR < 0) throw new IllegalArgumentException("--lora-r must be >= 0, got " + loraR);
        LoraConfig lora = loraR == 0 ? null : new LoraConfig(loraR, loraAlpha, loraDropout, LoraConfig.parseTargets(loraTargets), useRslora);
        TrainOptions o = new TrainOptions(model, data, output, steps, epochs, batchSize, gradAccum, seqLen, lr, schedule.name(),
                warmup, weightDecay, maxGradNorm, optimizer.name(), evalEvery, saveEvery, resume, seed, evalData, evalSplit,
                trainOnPrompt, skipBadRecords, lora, adapter, gradientCheckpointing, checkpointEvery);
        MemoryLedger ledger = MemoryLedger.global();
        Trainer.Result r = new Trainer(o, KernelBackends.get(), ledger, System.out).run();
        PrintWriter out = spec.commandLine().getOut();
        out.printf(Locale.ROOT, "trained %d steps in %.1f s (%,d tokens): loss %.4f -> %.4f%s%n", r.steps(), r.seconds(), r.tokens(),
                r.firstLoss(), r.lastLoss(), Double.isNaN(r.evalLoss()) ? "" : String.format(Locale.ROOT, ", eval loss %.4f", r.evalLoss()));
        out.printf("%s: %s%n", lora == null ? "final model" : "adapter", r.finalModel());
        out.println("memory (ledger peak by category):");
        for (Category c : Category.values()) {
            long peak = r.memory().lines().get(c).peakBytes();
            if (peak > 0) out.printf("  %-14s %12s%n", c.key(), ByteSize.format(peak));
        }
        out.printf("  %-14s %12s%n", "total", ByteSize.format(r.memory().totalPeakBytes()));
        ProcessMemory.peakRssBytes().ifPresent(b -> out.printf("  %-14s %12s%n", "process RSS", ByteSize.format(b)));
        return Main.OK;
    }
}
