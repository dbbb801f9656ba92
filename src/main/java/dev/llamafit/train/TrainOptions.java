// Every option of a training run, validated together (the same record later feeds the memory planner).
package dev.llamafit.train;

import java.nio.file.Path;

import dev.llamafit.io.data.DataOptions;
import dev.llamafit.model.LoraConfig;
import dev.llamafit.model.Technique;
import dev.llamafit.tensor.DType;

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
 * @param seqLen         tokens per sequence (T)
 * @param lr             peak learning rate
 * @param schedule       constant, linear or cosine (all with warmup)
 * @param warmup         warmup steps
 * @param weightDecay    decoupled weight decay (AdamW) or L2 (SGD); never applied to norms and biases
 * @param maxGradNorm    global-norm clipping threshold; 0 = off
 * @param evalEvery      evaluate every N steps (0 = only at the end, if there is eval data)
 * @param saveEvery      checkpoint every N steps (0 = only at the end)
 * @param resume         a run folder or one checkpoint folder to continue from, or null
 * @param seed           seed for data order and anything random
 * @param evalData       separate eval file, or null
 * @param evalSplit      fraction of the training data held out for evaluation when evalData is null
 * @param trainOnPrompt  also train on prompt tokens of instruction/chat data
 * @param skipBadRecords skip malformed records instead of stopping
 * @param technique      method, LoRA settings, optimizer, checkpointing, accumulation (what the engine planner also takes)
 * @param adapter        an existing PEFT adapter folder to continue training (LoRA only), or null
 * @param resumeAnyway   resume even where the checkpoint was made with other settings (model, data, seed, shape, technique)
 * @param saveDtype      dtype of the tensors in final/ (full fine-tuning): F32, BF16 or F16; null = the base checkpoint's own
 * @param maxRecordBytes the longest JSONL record read (--max-record-bytes); a longer one is a bad record
 */
public record TrainOptions(
        Path model, Path data, Path output,
        long steps, double epochs, int batchSize, int seqLen,
        double lr, String schedule, long warmup, double weightDecay, double maxGradNorm,
        long evalEvery, long saveEvery, Path resume, long seed,
        Path evalData, double evalSplit, boolean trainOnPrompt, boolean skipBadRecords,
        Technique technique, Path adapter, boolean resumeAnyway, DType saveDtype, long maxRecordBytes) {

    public TrainOptions {
        if (model == null || data == null || output == null) throw new IllegalArgumentException("--model, --data and --output are required");
        if (technique == null) throw new IllegalArgumentException("a technique is required");
        if (steps < 0) throw new IllegalArgumentException("--steps must be >= 0, got " + steps);
        if (steps == 0 && !(epochs > 0)) throw new IllegalArgumentException("give --steps N or --epochs E (> 0)");
        if (batchSize < 1) throw new IllegalArgumentException("--batch-size must be >= 1, got " + batchSize);
        if (seqLen < 2) throw new IllegalArgumentException("--seq-len must be >= 2, got " + seqLen);
        if (!(lr > 0) || Double.isInfinite(lr)) throw new IllegalArgumentException("--lr must be > 0, got " + lr);
        if (warmup < 0) throw new IllegalArgumentException("--warmup must be >= 0, got " + warmup);
        if (!(weightDecay >= 0)) throw new IllegalArgumentException("--weight-decay must be >= 0, got " + weightDecay);
        if (!(maxGradNorm >= 0)) throw new IllegalArgumentException("--max-grad-norm must be >= 0 (0 = off), got " + maxGradNorm);
        if (evalEvery < 0 || saveEvery < 0) throw new IllegalArgumentException("--eval-every and --save-every must be >= 0");
        if (!(evalSplit >= 0 && evalSplit < 1)) throw new IllegalArgumentException("--eval-split must be in [0, 1), got " + evalSplit);
        if (evalData != null && evalSplit > 0) throw new IllegalArgumentException("give --eval-data or --eval-split, not both");
        if (adapter != null && technique.lora() == null) throw new IllegalArgumentException("--adapter needs LoRA training (--lora-r)");
        if (saveDtype != null && technique.lora() != null)
            throw new IllegalArgumentException("--save-dtype sets the dtype of a full fine-tuning's final/ model; a LoRA run writes its "
                    + "adapter in fp32, as PEFT does (llamafit merge --save-dtype sets a merged model's)");
        if (saveDtype != null && saveDtype != DType.F32 && saveDtype != DType.BF16 && saveDtype != DType.F16)
            throw new IllegalArgumentException("--save-dtype must be fp32, bf16 or fp16, got " + saveDtype);
        if (maxRecordBytes < 1 || maxRecordBytes > DataOptions.MAX_MAX_RECORD_BYTES)
            throw new IllegalArgumentException("--max-record-bytes must be in [1, " + DataOptions.MAX_MAX_RECORD_BYTES + "], got " + maxRecordBytes);
    }

    /** With the default JSONL record limit ({@link DataOptions#DEFAULT_MAX_RECORD_BYTES}). */
    public TrainOptions(Path model, Path data, Path output, long steps, double epochs, int batchSize, int seqLen,
                        double lr, String schedule, long warmup, double weightDecay, double maxGradNorm,
                        long evalEvery, long saveEvery, Path resume, long seed,
                        Path evalData, double evalSplit, boolean trainOnPrompt, boolean skipBadRecords,
                        Technique technique, Path adapter, boolean resumeAnyway, DType saveDtype) {
        this(model, data, output, steps, epochs, batchSize, seqLen, lr, schedule, warmup, weightDecay, maxGradNorm, evalEvery, saveEvery,
                resume, seed, evalData, evalSplit, trainOnPrompt, skipBadRecords, technique, adapter, resumeAnyway, saveDtype,
                DataOptions.DEFAULT_MAX_RECORD_BYTES);
    }

    /** Full fine-tuning with AdamW or SGD and {@code gradAccum} micro-batches per step (tests and library callers). */
    public TrainOptions(Path model, Path data, Path output, long steps, double epochs, int batchSize, int gradAccum, int seqLen,
                        double lr, String schedule, long warmup, double weightDecay, double maxGradNorm, String optimizer,
                        long evalEvery, long saveEvery, Path resume, long seed, Path evalData, double evalSplit,
                        boolean trainOnPrompt, boolean skipBadRecords) {
        this(model, data, output, steps, epochs, batchSize, seqLen, lr, schedule, warmup, weightDecay, maxGradNorm,
                evalEvery, saveEvery, resume, seed, evalData, evalSplit, trainOnPrompt, skipBadRecords,
                Technique.FULL.withOptimizer(Technique.parse(Technique.Optimizer.class, "--optimizer", optimizer)).withGradAccum(gradAccum), null, false, null);
    }

    /** LoRA settings, or null for full fine-tuning. */
    public LoraConfig lora() { return technique.lora(); }

    /** Micro-batches per optimizer step (k); the effective batch is B·k. */
    public int gradAccum() { return technique.gradAccum(); }

    /** Sequences per optimizer step (B·k). */
    public int effectiveBatch() { return Math.multiplyExact(batchSize, technique.gradAccum()); }
}
