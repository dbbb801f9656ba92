// `llamafit generate`: stream a continuation of a prompt with greedy or sampled decoding.
package dev.llamafit.cli;

import java.io.PrintWriter;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.Callable;

import dev.llamafit.io.InputException;
import dev.llamafit.io.Json;
import dev.llamafit.io.ModelFolder;
import dev.llamafit.io.tokenizer.Tokenizer;
import dev.llamafit.io.tokenizer.Tokenizers;
import dev.llamafit.kernels.KernelBackends;
import dev.llamafit.kernels.Kernels;
import dev.llamafit.memory.MemoryLedger;
import dev.llamafit.model.Generator;
import dev.llamafit.model.LlamaModel;
import dev.llamafit.model.Sampler;
import dev.llamafit.peft.MergedFolders;
import dev.llamafit.quant.Quantization;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;
import picocli.CommandLine.Spec;
import picocli.CommandLine.Model.CommandSpec;

@Command(name = "generate", mixinStandardHelpOptions = true,
        description = "Generate text from a prompt (streams tokens as they are produced).")
final class GenerateCommand implements Callable<Integer> {
    @Spec CommandSpec spec;

    @Option(names = "--model", required = true, description = "Hugging Face model folder (config.json, safetensors, tokenizer).")
    Path model;

    @Option(names = "--adapter", description = "PEFT LoRA adapter folder, merged into the weights in memory.")
    Path adapter;

    @Option(names = "--dtype", paramLabel = "fp32|bf16|fp16",
            description = "Weights' dtype in memory: converted on load when it differs from the checkpoint's (default: the checkpoint's own; a bf16/fp16 checkpoint is memory-mapped and used in place). With --adapter, the adapted matrices are fp32 (merged).")
    WeightDtype dtype;

    @Option(names = "--prompt", defaultValue = "", description = "Prompt text (default: empty, start from BOS).")
    String prompt;

    @Option(names = "--max-new-tokens", defaultValue = "128", description = "Stop after this many new tokens (default: ${DEFAULT-VALUE}).")
    int maxNewTokens;

    @Option(names = "--temperature", defaultValue = "0.8", description = "Sampling temperature; 0 = greedy (default: ${DEFAULT-VALUE}).")
    double temperature;

    @Option(names = "--top-p", defaultValue = "1.0", description = "Nucleus sampling threshold in (0, 1] (default: ${DEFAULT-VALUE}, off).")
    double topP;

    @Option(names = "--top-k", defaultValue = "0", description = "Keep only the k most likely tokens; 0 = off (default: ${DEFAULT-VALUE}).")
    int topK;

    @Option(names = "--seed", defaultValue = "42", description = "Random seed for sampling (default: ${DEFAULT-VALUE}).")
    long seed;

    @Option(names = "--no-bos", description = "Do not prepend the BOS token.")
    boolean noBos;

    @Option(names = "--json", description = "Print one JSON object (prompt_ids, ids, text, tokens_per_s) instead of streaming.")
    boolean json;

    @picocli.CommandLine.Mixin NonFiniteOption nonFinite;
    @picocli.CommandLine.Mixin AttentionOption attention;
    @picocli.CommandLine.Mixin QuantizeOptions quantization;

    @Override
    public Integer call() throws Exception {
        return nonFinite.around(spec, this::run);
    }

    private Integer run() {
        if (maxNewTokens < 0) throw new InputException("--max-new-tokens must be >= 0, got " + maxNewTokens);
        Sampler sampler = Main.userInput(() -> new Sampler(temperature, topK, topP, seed));
        dev.llamafit.model.Technique.Attention attentionKind = Main.userInput(attention::attention);
        PrintWriter out = spec.commandLine().getOut();
        MemoryLedger ledger = MemoryLedger.global();
        Kernels kernels = KernelBackends.get();
        Tokenizer tokenizer = Tokenizers.load(model);
        Quantization quantize = Main.userInput(quantization::quantization);
        try (ModelFolder folder = openModel(model, adapter, WeightDtype.of(dtype), quantize, ledger, kernels);
             LlamaModel llama = new LlamaModel(folder.config(), folder.weights(), kernels, ledger, attentionKind)) {
            int[] promptIds = tokenizer.encode(prompt, !noBos && tokenizer.addBosByDefault());
            if (promptIds.length == 0)
                throw new InputException("empty prompt and no BOS token: nothing to condition on");
            Set<Integer> eos = new java.util.HashSet<>(folder.config().eosTokenIds());
            eos.addAll(tokenizer.eosIds());
            Tokenizer.StreamDecoder decoder = tokenizer.newStreamDecoder();
            StringBuilder text = new StringBuilder();
            List<Integer> generated = new ArrayList<>();
            Generator.Result r = new Generator(llama, sampler, eos).generate(promptIds, maxNewTokens, id -> {
                generated.add(id);
                // Special tokens (EOS, BOS, control pieces) stay in `ids` but are not printed as text.
                String piece = tokenizer.isSpecial(id) ? "" : decoder.next(id);
                text.append(piece);
                if (!json) {
                    out.print(piece);
                    out.flush();
                }
            });
            String tail = decoder.flush();
            text.append(tail);
            if (!json) out.print(tail);
            if (json) {
                Map<String, Object> o = new LinkedHashMap<>();
                o.put("prompt_ids", promptIds);
                o.put("ids", generated);
                o.put("text", text.toString());
                o.put("tokens_per_s", r.decodeTokensPerSecond());
                o.put("prefill_tokens_per_s", r.prefillTokensPerSecond());
                o.put("stop_reason", r.stopReason());
                out.println(Json.write(o));
            } else {
                out.println();
                System.err.printf("[%d prompt tokens, %d generated, prefill %.1f tok/s, decode %.1f tok/s, stop: %s]%n",
                        promptIds.length, generated.size(), r.prefillTokensPerSecond(), r.decodeTokensPerSecond(), r.stopReason());
            }
        }
        return Main.OK;
    }

    /**
     * The model, its matrices in {@code dtype} (null: the checkpoint's own) and its block linear layers quantised as
     * {@code quantize} (null: as stored); an adapter's matrices are merged into F32 copies, which a quantised base cannot take.
     */
    static ModelFolder openModel(Path model, Path adapter, dev.llamafit.tensor.DType dtype, Quantization quantize, MemoryLedger ledger, Kernels k) {
        if (adapter == null) return ModelFolder.open(model, ledger, k, dtype, quantize);
        if (quantize != null || ModelFolder.readConfig(model).quantization() != null)
            throw new InputException("--adapter merges W + scale·B·A into the base's matrices, which a quantised base (--base-dtype, or a"
                    + " bitsandbytes folder) cannot hold: merge into the unquantised model first (llamafit merge), then quantise that");
        return MergedFolders.open(model, adapter, ledger, k, dtype);
    }
}
