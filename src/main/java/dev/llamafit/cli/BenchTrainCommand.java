// `llamafit bench train`: full fp32 AdamW fine-tuning steps on random-weight models, against PyTorch in the same run.
package dev.llamafit.cli;

import java.io.PrintWriter;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.SplittableRandom;
import java.util.concurrent.Callable;

import com.fasterxml.jackson.databind.JsonNode;

import dev.llamafit.io.Json;
import dev.llamafit.kernels.GemmBenchmark;
import dev.llamafit.kernels.KernelBackends;
import dev.llamafit.kernels.Kernels;
import dev.llamafit.kernels.Parallel;
import dev.llamafit.memory.ByteSize;
import dev.llamafit.memory.MemoryLedger;
import dev.llamafit.memory.ProcessMemory;
import dev.llamafit.model.LlamaConfig;
import dev.llamafit.model.LoraConfig;
import dev.llamafit.model.Technique;
import dev.llamafit.model.ParameterLayout;
import dev.llamafit.model.RandomModels;
import dev.llamafit.model.TrainingStep;
import dev.llamafit.optim.AdamW;
import dev.llamafit.optim.Param;
import dev.llamafit.tensor.DType;
import dev.llamafit.tensor.Tensor;
import dev.llamafit.tensor.TensorSpec;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;
import picocli.CommandLine.Spec;
import picocli.CommandLine.Model.CommandSpec;

@Command(name = "train", mixinStandardHelpOptions = true,
        description = "Tokens/s, model FLOPs utilisation and peak memory of full fp32 AdamW fine-tuning steps on a"
                + " random-weight model, next to bench/torch_train.py (same shape, batch, optimizer) run in the same bench.")
final class BenchTrainCommand implements Callable<Integer> {
    /** Where Debian's libopenblas0-pthread puts its libblas.so.3; PyTorch uses it when found first. */
    static final Path OPENBLAS = Path.of("/usr/lib/x86_64-linux-gnu/openblas-pthread");

    @Spec CommandSpec spec;

    @Option(names = "--shape", defaultValue = "stories15M", description = "stories15M (B 8) or stories42M (B 4) (default: ${DEFAULT-VALUE}).")
    String shape;

    @Option(names = "--batch-size", description = "Sequences per step (default: 8 for stories15M, 4 for stories42M).")
    Integer batchSize;

    @Option(names = "--seq-len", defaultValue = "256", description = "Tokens per sequence (default: ${DEFAULT-VALUE}).")
    int seqLen;

    @Option(names = "--steps", defaultValue = "3", description = "Timed steps after one warm-up step; the best is reported (default: ${DEFAULT-VALUE}).")
    int steps;

    @Option(names = "--reference", defaultValue = "torch", description = "torch or none (default: ${DEFAULT-VALUE}).")
    String reference;

    @Option(names = "--python", defaultValue = "/usr/bin/python3", description = "Python with PyTorch (default: ${DEFAULT-VALUE}).")
    String python;

    @Option(names = "--lora-r", defaultValue = "0", description = "LoRA rank; 0 = full fine-tuning (default: ${DEFAULT-VALUE}).")
    int loraR;

    @Option(names = "--lora-targets", defaultValue = dev.llamafit.model.LinearModule.DEFAULT_LORA_TARGETS, description = "LoRA targets (default: ${DEFAULT-VALUE}).")
    String loraTargets;

    @Option(names = "--gradient-checkpointing", description = "Recompute every block in backward (both runtimes).")
    boolean checkpointing;

    @Option(names = "--json", description = "Print one JSON object.")
    boolean json;

    @Override
    public Integer call() throws Exception {
        LlamaConfig c = RandomModels.byName(shape);
        int batch = batchSize != null ? batchSize : shape.equals("stories15M") ? 8 : 4;
        if (seqLen > c.maxPositions()) throw new dev.llamafit.io.InputException("--seq-len above the shape's context " + c.maxPositions());
        if (!reference.equals("torch") && !reference.equals("none"))
            throw new dev.llamafit.io.InputException("--reference must be torch or none, got '" + reference + "'");
        MemoryLedger ledger = MemoryLedger.global();
        Kernels k = KernelBackends.get();
        // The machine's fp32 GEMM peak as llamafit reaches it, for the utilisation figure.
        GemmBenchmark gemm = new GemmBenchmark(k, ledger);
        double peakGflops = Math.max(gemm.run(1024, 1024, 1024, true, 2, 5).gflops(), gemm.run(2048, 2048, 2048, true, 1, 3).gflops());
        long params = ParameterLayout.of(c, DType.F32).parameterCount();
        Map<String, Tensor> w = RandomModels.weights(c, ledger, 11, 0.02);
        double best = Double.MAX_VALUE;
        double loss = Double.NaN;
        LoraConfig lora = loraR > 0 ? new LoraConfig(loraR, 16, 0, LoraConfig.parseTargets(loraTargets), false) : null;
        Technique technique = Technique.of(lora).withGradientCheckpointing(checkpointing, 1);
        long trainable;
        try (TrainingStep step = new TrainingStep(c, w, k, ledger, batch, seqLen, technique, 5);
             AdamW opt = new AdamW(0.9, 0.999, 1e-8, 0.0, ledger)) {
            List<Param> ps = new ArrayList<>();
            if (lora != null) {
                for (var e : step.adapterWeights().entrySet())
                    ps.add(new Param(e.getKey(), e.getValue(), step.adapterGradients().get(e.getKey()), true));
            } else {
                for (TensorSpec s : ParameterLayout.of(c, DType.F32).specs())
                    ps.add(new Param(s.name(), w.get(s.name()), step.gradients().get(s.name()), true));
            }
            trainable = ps.stream().mapToLong(Param::elements).sum();
            SplittableRandom rnd = new SplittableRandom(3);
            int[][] ids = new int[batch][seqLen], labels = new int[batch][seqLen];
            for (int b = 0; b < batch; b++) {
                int[] seq = rnd.ints(seqLen + 1, 0, c.vocabSize()).toArray();
                System.arraycopy(seq, 0, ids[b], 0, seqLen);
                System.arraycopy(seq, 1, labels[b], 0, seqLen);
            }
            for (int i = 0; i <= steps; i++) {
                long t0 = System.nanoTime();
                step.zeroGradients();
                loss = step.forwardBackward(ids, labels, (double) batch * seqLen).sum() / ((double) batch * seqLen);
                opt.step(ps, 1e-4);
                double secs = (System.nanoTime() - t0) / 1e9;
                if (i > 0) best = Math.min(best, secs);
            }
        } finally {
            w.values().forEach(Tensor::close);
        }
        double tokensPerSecond = batch * seqLen / best;
        // Model FLOPs per token (Kaplan et al. 2020; PaLM appendix B): 6·N for the matmuls of forward and
        // backward, plus 12·L·C·T for attention scores and their use (causal halving not applied, as PaLM).
        // LoRA skips the weight-gradient GEMMs of the frozen base (2·N of the 6·N); checkpointing adds a forward
        // (2·N) that is recomputation, not model work, so it is not counted (the usual MFU convention).
        double matmulFlops = lora == null ? 6.0 * params : 4.0 * params + 6.0 * trainable;
        double flopsPerToken = matmulFlops + 12.0 * c.numLayers() * c.hiddenSize() * seqLen;
        double mfu = tokensPerSecond * flopsPerToken / (peakGflops * 1e9);
        long ledgerPeak = ledger.totalPeakBytes();
        long rss = ProcessMemory.peakRssBytes().orElse(-1);

        Map<String, Object> o = new LinkedHashMap<>();
        o.put("bench", "train");
        o.put("shape", shape);
        o.put("backend", k.name());
        o.put("threads", Parallel.threads());
        o.put("batch_size", batch);
        o.put("seq_len", seqLen);
        o.put("parameters", params);
        o.put("method", lora == null ? "full" : "lora r=" + loraR + " " + String.join(",", lora.targets()));
        o.put("gradient_checkpointing", checkpointing);
        o.put("trainable_parameters", trainable);
        o.put("loss", BenchCommand.round(loss));
        o.put("step_seconds", BenchCommand.round(best));
        o.put("tokens_per_s", BenchCommand.round(tokensPerSecond));
        o.put("gemm_peak_gflops", BenchCommand.round(peakGflops));
        o.put("mfu", BenchCommand.round(mfu));
        o.put("ledger_peak_bytes", ledgerPeak);
        o.put("peak_rss_bytes", rss);
        if (reference.equals("torch")) {
            JsonNode t = torch(c, batch);
            o.put("torch_blas", Files.isDirectory(OPENBLAS) ? "openblas-pthread" : "system default");
            o.put("torch_tokens_per_s", t.get("tokens_per_s").asDouble());
            o.put("torch_peak_rss_bytes", t.get("peak_rss_bytes").asLong());
            o.put("ratio_tokens_per_s", BenchCommand.round(tokensPerSecond / t.get("tokens_per_s").asDouble()));
            o.put("ratio_peak_rss", BenchCommand.round((double) rss / t.get("peak_rss_bytes").asLong()));
        }
        PrintWriter out = spec.commandLine().getOut();
        if (json) {
            out.println(Json.write(o));
        } else {
            out.printf(Locale.ROOT, "%s, B %d, T %d, fp32 AdamW, %s%s, %s, %d threads%n", shape, batch, seqLen, o.get("method"),
                    checkpointing ? " + gradient checkpointing" : "", k.name(), Parallel.threads());
            out.printf(Locale.ROOT, "  llamafit: %8.1f tokens/s  (step %.2f s, MFU %.0f%% of %.0f GFLOPS)  peak ledger %s, RSS %s%n",
                    tokensPerSecond, best, 100 * mfu, peakGflops, ByteSize.format(ledgerPeak), ByteSize.format(rss));
            if (o.containsKey("torch_tokens_per_s"))
                out.printf(Locale.ROOT, "  pytorch:  %8.1f tokens/s  peak RSS %s   ratio %.2f× tokens/s, %.2f× RSS%n",
                        o.get("torch_tokens_per_s"), ByteSize.format((Long) o.get("torch_peak_rss_bytes")),
                        o.get("ratio_tokens_per_s"), o.get("ratio_peak_rss"));
        }
        return Main.OK;
    }

    private JsonNode torch(LlamaConfig c, int batch) throws Exception {
        Path script = BenchCommand.scriptPath("torch_train.py");
        List<String> cmd = new ArrayList<>(List.of(python, script.toString(), "--threads", String.valueOf(Parallel.threads()),
                "--dim", String.valueOf(c.hiddenSize()), "--layers", String.valueOf(c.numLayers()),
                "--heads", String.valueOf(c.numHeads()), "--kv-heads", String.valueOf(c.numKvHeads()),
                "--ffn", String.valueOf(c.intermediateSize()), "--vocab", String.valueOf(c.vocabSize()),
                "--batch", String.valueOf(batch), "--seq", String.valueOf(seqLen), "--steps", String.valueOf(steps)));
        if (loraR > 0) cmd.addAll(List.of("--lora-r", String.valueOf(loraR), "--lora-alpha", "16", "--lora-targets", loraTargets));
        if (checkpointing) cmd.add("--checkpointing");
        Map<String, String> env = new LinkedHashMap<>();
        if (Files.isDirectory(OPENBLAS)) env.put("LD_LIBRARY_PATH", OPENBLAS.toString());
        List<JsonNode> lines = BenchCommand.runJsonLines(cmd, env);
        if (lines.isEmpty()) throw new IllegalStateException("bench/torch_train.py printed no result");
        return lines.getLast();
    }
}
