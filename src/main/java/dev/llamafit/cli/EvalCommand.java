// `llamafit eval`: mean loss, perplexity and token count of a model on a data file.
package dev.llamafit.cli;

import java.io.PrintWriter;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.Locale;
import java.util.Map;
import java.util.concurrent.Callable;

import dev.llamafit.io.InputException;
import dev.llamafit.io.Json;
import dev.llamafit.io.ModelFolder;
import dev.llamafit.io.data.DataOptions;
import dev.llamafit.io.data.Datasets;
import dev.llamafit.io.data.LoadedDataset;
import dev.llamafit.io.tokenizer.Tokenizer;
import dev.llamafit.io.tokenizer.Tokenizers;
import dev.llamafit.kernels.KernelBackends;
import dev.llamafit.kernels.Kernels;
import dev.llamafit.memory.MemoryLedger;
import dev.llamafit.model.TrainingStep;
import dev.llamafit.peft.MergedFolders;
import dev.llamafit.train.Trainer;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;
import picocli.CommandLine.Spec;
import picocli.CommandLine.Model.CommandSpec;

@Command(name = "eval", mixinStandardHelpOptions = true, description = "Mean loss and perplexity of a model on a data file.")
final class EvalCommand implements Callable<Integer> {
    @Spec CommandSpec spec;

    @Option(names = "--model", required = true, description = "Hugging Face model folder.") Path model;
    @Option(names = "--adapter", description = "PEFT LoRA adapter folder, merged into the weights in memory.") Path adapter;
    @Option(names = "--dtype", paramLabel = "fp32|bf16|fp16",
            description = "Weights' dtype in memory: converted on load when it differs from the checkpoint's (default: the checkpoint's own; a bf16/fp16 checkpoint is memory-mapped and used in place). With --adapter, the adapted matrices are fp32 (merged).")
    WeightDtype dtype;
    @Option(names = "--data", required = true, description = "Data file: .txt, Alpaca .json/.jsonl, or chat .jsonl.") Path data;
    @Option(names = "--seq-len", defaultValue = "256", description = "Tokens per sequence (default: ${DEFAULT-VALUE}).") int seqLen;
    @Option(names = "--batch-size", defaultValue = "4", description = "Sequences per batch (default: ${DEFAULT-VALUE}).") int batchSize;
    @Option(names = "--train-on-prompt", description = "Score prompt tokens of instruction and chat data too.") boolean trainOnPrompt;
    @Option(names = "--skip-bad-records", description = "Skip malformed records (and report how many) instead of stopping.") boolean skipBadRecords;
    @Option(names = "--max-record-bytes", defaultValue = "1048576", description = "Longest JSONL record (line) read; a longer one is a bad record (default: ${DEFAULT-VALUE}).") long maxRecordBytes;
    @Option(names = "--json", description = "Print one JSON object.") boolean json;

    @picocli.CommandLine.Mixin NonFiniteOption nonFinite;
    @picocli.CommandLine.Mixin AttentionOption attention;
    @picocli.CommandLine.Mixin QuantizeOptions quantization;

    @Override
    public Integer call() throws Exception {
        return nonFinite.around(spec, this::run);
    }

    private Integer run() {
        if (batchSize < 1 || seqLen < 2) throw new InputException("--batch-size must be >= 1 and --seq-len >= 2");
        // The engine indexes a batch's rows with an int: a larger batch is refused before anything is loaded.
        Main.userInput(() -> { dev.llamafit.plan.Planner.checkTokens(batchSize, seqLen); return null; });
        DataOptions dataOptions = Main.userInput(() -> new DataOptions(seqLen, trainOnPrompt, skipBadRecords, null, Map.of(), maxRecordBytes));
        MemoryLedger ledger = MemoryLedger.global();
        Kernels k = KernelBackends.get();
        Tokenizer tokenizer = Tokenizers.load(model);
        dev.llamafit.quant.Quantization quantize = Main.userInput(quantization::quantization);
        try (ModelFolder folder = GenerateCommand.openModel(model, adapter, WeightDtype.of(dtype), quantize, ledger, k)) {
            if (seqLen > folder.config().maxPositions())
                throw InputException.at(model.resolve("config.json"), "--seq-len " + seqLen + " exceeds max_position_embeddings "
                        + folder.config().maxPositions());
            LoadedDataset d = Datasets.load(data, tokenizer, model, dataOptions);
            int padId = tokenizer.eosId() >= 0 ? tokenizer.eosId() : 0;
            TrainingStep.Loss loss;
            dev.llamafit.model.Technique forward = dev.llamafit.model.Technique.FULL.withAttention(Main.userInput(attention::attention));
            try (TrainingStep step = new TrainingStep(folder.config(), folder.weights(), k, ledger, batchSize, seqLen, forward, 0)) {
                loss = Trainer.evaluate(step, d.examples(), batchSize, seqLen, padId);
            }
            double mean = loss.mean();
            PrintWriter out = spec.commandLine().getOut();
            if (json) {
                Map<String, Object> o = new LinkedHashMap<>();
                o.put("loss", mean);
                o.put("perplexity", Math.exp(mean));
                o.put("tokens", loss.tokens());
                o.put("sequences", d.examples().size());
                out.println(Json.write(o));
            } else {
                out.printf(Locale.ROOT, "loss %.4f  perplexity %.3f  tokens %,d  sequences %d%n", mean, Math.exp(mean), loss.tokens(),
                        d.examples().size());
            }
        }
        return Main.OK;
    }
}
