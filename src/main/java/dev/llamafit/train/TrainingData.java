// A run's sequences: the training and evaluation examples, tokenised once, the pad id, and the run's length in steps.
package dev.llamafit.train;

import java.io.PrintStream;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;

import dev.llamafit.io.InputException;
import dev.llamafit.io.data.Batches;
import dev.llamafit.io.data.DataOptions;
import dev.llamafit.io.data.Datasets;
import dev.llamafit.io.data.Example;
import dev.llamafit.io.data.ExampleViews;
import dev.llamafit.io.data.LoadedDataset;
import dev.llamafit.io.tokenizer.Tokenizer;
import dev.llamafit.model.LlamaConfig;

/**
 * @param train      training sequences (after holding out the eval split, if any)
 * @param eval       evaluation sequences; empty when the run does not evaluate
 * @param padId      token that fills short rows (the tokenizer's EOS, else 0); its labels are masked anyway
 * @param totalSteps optimizer steps of the whole run: --steps, or --epochs passes of B·k sequences each
 */
record TrainingData(List<Example> train, List<Example> eval, int padId, long totalSteps) {
    TrainingData {
        train = ExampleViews.copyOf(train); // a view over packed text stays a view (one token stream, not every example)
        eval = ExampleViews.copyOf(eval);
        if (totalSteps < 1) throw new IllegalArgumentException("a run has at least one step, got " + totalSteps);
    }

    /** {@link #load(TrainOptions, int, Tokenizer, LlamaConfig, PrintStream)} for one process. */
    static TrainingData load(TrainOptions o, Tokenizer tokenizer, LlamaConfig config, PrintStream log) {
        return load(o, 1, tokenizer, config, log);
    }

    /**
     * Loads and tokenises the data of {@code o} for a job of {@code ranks} ranks, whose batch is ranks × --batch-size
     * sequences (so an epoch has the steps of one process with that batch); too little data for one batch is bad input.
     */
    static TrainingData load(TrainOptions o, int ranks, Tokenizer tokenizer, LlamaConfig config, PrintStream log) {
        if (o.seqLen() > config.maxPositions())
            throw InputException.at(o.model().resolve("config.json"), "--seq-len " + o.seqLen()
                    + " exceeds the model's max_position_embeddings " + config.maxPositions());
        DataOptions dataOptions = new DataOptions(o.seqLen(), o.trainOnPrompt(), o.skipBadRecords(), null, Map.of(), o.maxRecordBytes());
        LoadedDataset loaded = Datasets.load(o.data(), tokenizer, o.model(), dataOptions);
        report(log, loaded, o.data());
        List<Example> train = loaded.examples();
        List<Example> eval = List.of();
        if (o.evalData() != null) {
            LoadedDataset ev = Datasets.load(o.evalData(), tokenizer, o.model(), dataOptions);
            report(log, ev, o.evalData());
            eval = ev.examples();
        } else if (o.evalSplit() > 0) {
            Batches.Split split = Batches.split(train, o.evalSplit(), o.seed());
            train = split.train();
            eval = split.eval();
        }
        int batch = Math.multiplyExact(o.batchSize(), ranks);
        if (train.size() < batch)
            throw InputException.at(o.data(), "only " + train.size() + " training sequences, fewer than --batch-size "
                    + o.batchSize() + (ranks > 1 ? " × " + ranks + " ranks" : "") + " (lower --batch-size or --seq-len, or add data)");
        int padId = tokenizer.eosId() >= 0 ? tokenizer.eosId() : 0;
        long batchesPerEpoch = train.size() / batch;
        long totalSteps = o.steps() > 0 ? o.steps() : Math.max(1, (long) Math.ceil(o.epochs() * batchesPerEpoch / o.gradAccum()));
        return new TrainingData(train, eval, padId, totalSteps);
    }

    private static void report(PrintStream log, LoadedDataset d, Path file) {
        log.printf("data %s: %s, %d sequences, %,d tokens (%,d trained)%s%s%n", file.getFileName(), d.format(),
                d.examples().size(), d.tokens(), d.trainedTokens(),
                d.badRecords() > 0 ? ", skipped " + d.badRecords() + " bad records (first: " + d.badReasons().getFirst() + ")" : "",
                d.truncated() > 0 ? ", truncated " + d.truncated() + " to --seq-len" : "");
    }
}
