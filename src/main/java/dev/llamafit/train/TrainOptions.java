// Every option of a training run, validated together (the same record later feeds the memory planner).
package dev.llamafit.train;

import java.nio.file.Path;

/**
 * What a {@code train} run does. Either {@code steps} or {@code epochs} sets its length (steps win when both
 * are given). Cross-field rules are checked here so the command line and the library reject the same things.
 *
 * @param model          Hugging Face model folder to fine-tune
 * @param data           training data file (.txt, Alpaca .json/.jsonl, chat .jsonl)
 * @param output         run folder: checkpoints/, metrics.jsonl, loss.png, final/
 * @param steps          optimizer steps in the whole run (counted from its start, also after a resume); 0 = use epochs
 * @param epochs         passes over the data when steps == 0
 * @param batchSize      sequences per micro-batch (B)
 * @param gradAccum      micro-batches per optimizer step (k); the effective batch is B·k
 * @param seqLen         tokens per sequence (T)
 * @param lr             peak learning rate
 * @param schedule       constant, linear or cosine (all with warmup)
 * @param warmup         warmup steps
 * @param weightDecay    decoupled weight decay (AdamW) or L2 (SGD); never applied to norms and biases
 * @param maxGradNorm    global-norm clipping threshold; 0 = off
 * @param optimizer      adamw or sgd
 * @param evalEvery      evaluate every N steps (0 = only at the end, if there is eval data)
 * @param saveEvery      checkpoint every N steps (0 = only at the end)
 * @param resume         a run folder or one checkpoint folder to continue from, or null
 * @param seed           seed for data order and anything random
 * @param evalData       separate eval file, or null
 * @param evalSplit      fraction of the training data held out for eval when evalData is null
 * @param trainOnPrompt  also train on prompt tokens of instruction/chat data
 * @param skipBadRecords skip malformed records instead of stopping
 * @param lora           LoRA settings, or null for full fine-tuning
 * @param adapter        an existing PEFT adapter folder to continue training (LoRA only), or null
 * @param gradientCheckpointing keep only block inputs and recompute blocks in backward
 * @param checkpointEvery with checkpointing, checkpoint every N-th block (1 = every block)
 */
public record TrainOptions(
        Path model, Path data, Path output,
        long steps, double epochs, int batchSize, int gradAccum, int seqLen,
        double lr, String schedule, long warmup, double weightDecay, double maxGradNorm, String optimizer,
        long evalEvery, long saveEvery, Path resume, long seed,
        Path evalData, double evalSplit, boolean trainOnPrompt, boolean skipBadRecords,
        dev.llamafit.model.LoraConfig lora, Path adapter, boolean gradientCheckpointing, int checkpointEvery) {

    public TrainOptions {
        if (model == null || data == null || output == null) throw new IllegalArgumentException("--model, --data and --output are required");
        if (steps < 0) throw new IllegalArgumentException("--steps must be >= 0, got " + steps);
        if (steps == 0 && !(epochs > 0)) throw new IllegalArgumentException("give --steps N or --epochs E (> 0)");
        if (batchSize < 1) throw new IllegalArgumentException("--batch-size must be >= 1, got " + batchSize);
        if (gradAccum < 1) throw new IllegalArgumentException("--grad-accum must be >= 1, got " + gradAccum);
        if (seqLen < 2) throw new IllegalArgumentException("--seq-len must be >= 2, got " + seqLen);
        if (!(lr > 0) || Double.isInfinite(lr)) throw new IllegalArgumentException("--lr must be > 0, got " + lr);
        if (warmup < 0) throw new IllegalArgumentException("--warmup must be >= 0, got " + warmup);
        if (!(weightDecay >= 0)) throw new IllegalArgumentException("--weight-decay must be >= 0, got " + weightDecay);
        if (!(maxGradNorm >= 0)) throw new IllegalArgumentException("--max-grad-norm must be >= 0 (0 = off), got " + maxGradNorm);
        if (!optimizer.equals("adamw") && !optimizer.equals("sgd"))
            throw new IllegalArgumentException("--optimizer must be adamw or sgd, got '" + optimizer + "'");
        if (evalEvery < 0 || saveEvery < 0) throw new IllegalArgumentException("--eval-every and --save-every must be >= 0");
        if (!(evalSplit >= 0 && evalSplit < 1)) throw new IllegalArgumentException("--eval-split must be in [0, 1), got " + evalSplit);
        if (evalData != null && evalSplit > 0) throw new IllegalArgumentException("give --eval-data or --eval-split, not both");
        if (adapter != null && lora == null) throw new IllegalArgumentException("--adapter needs LoRA training (--lora-r)");
        if (checkpointEvery < 1) throw new IllegalArgumentException("--checkpoint-every must be >= 1, got " + checkpointEvery);
    }

    /** Full fine-tuning options as before LoRA and checkpointing existed (tests and library callers). */
    public TrainOptions(Path model, Path data, Path output, long steps, double epochs, int batchSize, int gradAccum, int seqLen,
                        double lr, String schedule, long warmup, double weightDecay, double maxGradNorm, String optimizer,
                        long evalEvery, long saveEvery, Path resume, long seed, Path evalData, double evalSplit,
                        boolean trainOnPrompt, boolean skipBadRecords) {
        this(model, data, output, steps, epochs, batchSize, gradAccum, seqLen, lr, schedule, warmup, weightDecay, maxGradNorm,
                optimizer, evalEvery, saveEvery, resume, seed, evalData, evalSplit, trainOnPrompt, skipBadRecords, null, null, false, 1);
    }

    /** Sequences per optimizer step (B·k). */
    public int effectiveBatch() { return Math.multiplyExact(batchSize, gradAccum); }
}
