// `llamafit merge`: fold a LoRA adapter into its base model and write a full Hugging Face folder.
package dev.llamafit.cli;

import java.nio.file.Path;
import java.util.concurrent.Callable;

import dev.llamafit.io.OutputFolder;
import dev.llamafit.kernels.KernelBackends;
import dev.llamafit.memory.MemoryLedger;
import dev.llamafit.peft.MergedFolders;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;
import picocli.CommandLine.Spec;
import picocli.CommandLine.Model.CommandSpec;

@Command(name = "merge", mixinStandardHelpOptions = true,
        description = "Write W + scale·B·A for every adapted matrix into a full Hugging Face folder (refuses NaN/Inf).")
final class MergeCommand implements Callable<Integer> {
    @Spec CommandSpec spec;

    @Option(names = "--model", required = true, description = "Base model folder.") Path model;
    @Option(names = "--adapter", required = true, description = "PEFT LoRA adapter folder (adapter_config.json, adapter_model.safetensors).") Path adapter;
    @Option(names = "--output", required = true, description = "Output folder for the merged model.") Path output;

    @Option(names = "--dtype", paramLabel = "fp32|bf16|fp16",
            description = "Convert the base's matrices to this dtype on load (default: as stored). W + scale·B·A is computed in fp32.")
    WeightDtype dtype;
    @Option(names = "--save-dtype", paramLabel = "fp32|bf16|fp16",
            description = "Dtype of every tensor written (default: the base's: --dtype, or else the checkpoint's own).")
    WeightDtype saveDtype;

    @picocli.CommandLine.Mixin NonFiniteOption nonFinite;

    @Override
    public Integer call() throws Exception {
        return nonFinite.around(spec, this::run);
    }

    private Integer run() throws Exception {
        MergedFolders.checkOutput(model, adapter, output); // before the lock, which would leave a lock file in an input folder
        try (OutputFolder.Lock lock = OutputFolder.lock(output, "--output", System.out)) {
            MergedFolders.write(model, adapter, output, KernelBackends.get(), MemoryLedger.global(), WeightDtype.of(dtype), WeightDtype.of(saveDtype));
        }
        spec.commandLine().getOut().printf("wrote merged model %s (base %s + adapter %s)%n", output, model, adapter);
        return Main.OK;
    }
}
