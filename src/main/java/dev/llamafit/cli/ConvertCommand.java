// `llamafit convert`: import a llama2.c checkpoint, or quantise a Hugging Face folder into a bitsandbytes one.
package dev.llamafit.cli;

import java.nio.file.Path;
import java.util.ArrayList;
import java.util.concurrent.Callable;

import dev.llamafit.io.HfFolderWriter;
import dev.llamafit.io.InputException;
import dev.llamafit.io.Llama2cImporter;
import dev.llamafit.io.ModelFolder;
import dev.llamafit.io.OutputFolder;
import dev.llamafit.kernels.KernelBackends;
import dev.llamafit.memory.ByteSize;
import dev.llamafit.memory.MemoryLedger;
import dev.llamafit.model.LlamaConfig;
import dev.llamafit.model.ParameterLayout;
import dev.llamafit.quant.Quantization;
import dev.llamafit.tensor.DType;
import dev.llamafit.tensor.Tensor;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;
import picocli.CommandLine.Spec;
import picocli.CommandLine.Model.CommandSpec;

@Command(name = "convert", mixinStandardHelpOptions = true,
        description = "Convert a model into a Hugging Face folder (config.json, model.safetensors, tokenizer): import a llama2.c"
                + " checkpoint, or quantise a Hugging Face folder (--from hf --quantize nf4|int8) into the layout transformers"
                + " writes for bitsandbytes.")
final class ConvertCommand implements Callable<Integer> {
    enum Format { llama2c, hf }

    @Spec CommandSpec spec;

    @Option(names = "--from", required = true, description = "Input format: ${COMPLETION-CANDIDATES}.")
    Format from;

    @Option(names = "--input", required = true, description = "Input checkpoint (llama2.c .bin, version 0) or Hugging Face model folder.")
    Path input;

    @Option(names = "--tokenizer", description = "llama2c: tokenizer to include: SentencePiece tokenizer.model or llama2.c tokenizer.bin.")
    Path tokenizer;

    @Option(names = "--output", required = true, description = "Output folder (created).")
    Path output;

    @Option(names = "--quantize", paramLabel = "nf4|int8", description = "hf: store the block linear layers as NF4 (QLoRA's 4-bit,"
            + " double-quantised unless --no-double-quant) or int8 (LLM.int8()), with config.json's quantization_config, as"
            + " transformers saves a bitsandbytes model; embeddings, LM head and norms stay as stored.")
    String quantize;

    @Mixin QuantizeOptions quantization;

    @Override
    public Integer call() throws Exception {
        if (from == Format.hf) return quantize();
        if (quantize != null) throw new InputException("--quantize applies to --from hf (convert the llama2.c checkpoint first, then quantise it)");
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

    /** A Hugging Face folder quantised on load and written back with its bitsandbytes tensors, config and tokenizer. */
    private Integer quantize() throws Exception {
        if (quantize == null) throw new InputException("--from hf converts a Hugging Face folder by quantising it: give --quantize nf4|int8");
        if (tokenizer != null) throw new InputException("--tokenizer applies to --from llama2c (a Hugging Face folder's tokenizer files are copied)");
        if (quantization.baseDtype != null) throw new InputException("convert names the format with --quantize, not --base-dtype");
        Quantization q = Main.userInput(() -> quantization.quantization(quantize));
        Quantization stored = ModelFolder.readConfig(input).quantization();
        if (stored != null)
            throw InputException.at(input.resolve("config.json"), "quantization_config", "the folder is quantised already ("
                    + stored.describe() + "); convert the unquantised model");
        if (output.toAbsolutePath().normalize().equals(input.toAbsolutePath().normalize()))
            throw InputException.at(output, "the output folder must differ from the input folder (it is read while writing)");
        MemoryLedger ledger = MemoryLedger.global();
        try (OutputFolder.Lock lock = OutputFolder.lock(output, "--output", System.out);
             ModelFolder folder = ModelFolder.open(input, ledger, KernelBackends.get(), null, q)) {
            HfFolderWriter.write(output, folder.config(), new ArrayList<Tensor>(folder.weights().values()), input);
            long bytes = folder.weights().values().stream().mapToLong(Tensor::bytes).sum();
            spec.commandLine().getOut().printf("wrote %s: %s, %s of tensors%n", output, q.describe(), ByteSize.format(bytes));
        }
        return Main.OK;
    }
}
