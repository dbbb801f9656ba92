// `llamafit convert`: import a llama2.c checkpoint into a Hugging Face model folder.
package dev.llamafit.cli;

import java.nio.file.Path;
import java.util.concurrent.Callable;

import dev.llamafit.io.Llama2cImporter;
import dev.llamafit.io.OutputFolder;
import dev.llamafit.memory.MemoryLedger;
import dev.llamafit.model.LlamaConfig;
import dev.llamafit.model.ParameterLayout;
import dev.llamafit.tensor.DType;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;
import picocli.CommandLine.Spec;
import picocli.CommandLine.Model.CommandSpec;

@Command(name = "convert", mixinStandardHelpOptions = true,
        description = "Convert a model into a Hugging Face folder (config.json, model.safetensors, tokenizer).")
final class ConvertCommand implements Callable<Integer> {
    enum Format { llama2c }

    @Spec CommandSpec spec;

    @Option(names = "--from", required = true, description = "Input format: ${COMPLETION-CANDIDATES}.")
    Format from;

    @Option(names = "--input", required = true, description = "Input checkpoint (llama2.c .bin, version 0).")
    Path input;

    @Option(names = "--tokenizer", description = "Tokenizer to include: SentencePiece tokenizer.model or llama2.c tokenizer.bin.")
    Path tokenizer;

    @Option(names = "--output", required = true, description = "Output folder (created).")
    Path output;

    @Override
    public Integer call() throws Exception {
        LlamaConfig c;
        try (OutputFolder.Lock lock = OutputFolder.lock(output, "--output", System.out)) {
            c = Llama2cImporter.convert(input, tokenizer, output, MemoryLedger.global());
        }
        long params = ParameterLayout.of(c, DType.F32).parameterCount();
        spec.commandLine().getOut().printf("wrote %s: llama, dim %d, %d layers, %d heads (%d kv), vocab %d, %,d parameters%s%n",
                output, c.hiddenSize(), c.numLayers(), c.numHeads(), c.numKvHeads(), c.vocabSize(), params,
                tokenizer == null ? " (no tokenizer: pass --tokenizer to include one)" : "");
        return Main.OK;
    }
}
