// `llamafit bench train`: AdamW fine-tuning steps (fp32 or mixed precision) on random-weight models, against PyTorch in the same run.
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
import dev.llamafit.quant.Quantization;
import dev.llamafit.quant.QuantizedWeights;
import dev.llamafit.tensor.DType;
import dev.llamafit.tensor.Tensor;
import dev.llamafit.tensor.TensorSpec;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;
import picocli.CommandLine.Spec;
import picocli.CommandLine.Model.CommandSpec;

@Command(name = "train", mixinStandardHelpOptions = true,
        description = "Tokens/s, model FLOPs utilisation and peak memory of AdamW fine-tuning steps (fp32, or bf16/fp16 mixed precision) on a"
                + " random-weight model, next to bench/torch_train.py (same shape, batch, optimizer) run in the same bench.")
final class BenchTrainCommand implements Callable<Integer> {
    /** Where Debian's libopenblas0-pthread puts its libblas.so.3; PyTorch uses it when found first. */
    static final Path OPENBLAS = Path.of("/usr/lib/x86_64-linux-gnu/openblas-pthread");

    @Spec CommandSpec spec;

    @Option(names = "--shape", defaultValue = "stories15M", description = "stories15M (B 8) or stories42M (B 4) (default: ${DEFAULT-VALUE}).")
    String shape;

    @Option(names = "--batch-size", description = "Sequences per step (default: 8 for stories15M, 4 for stories42M; with --workers: 4 per rank).")
    Integer batchSize;

    @Option(names = "--seq-len", defaultValue = "256", description = "Tokens per sequence (default: ${DEFAULT-VALUE}).")
    int seqLen;

    @Option(names = "--steps", defaultValue = "3", description = "Timed steps after one warm-up step; the best is reported (with --workers: their median) (default: ${DEFAULT-VALUE}).")
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

    @Option(names = "--precision", defaultValue = "fp32", description = "fp32, bf16 or fp16 (mixed precision: fp32 master"
            + " weights, 16-bit GEMM operands), or bf16-pure (bf16 weights, gradients and AdamW states). With bf16/fp16 llamafit's fp32 step is also measured, interleaved, and PyTorch"
            + " runs torch.autocast(\"cpu\", dtype=torch.bfloat16) around forward and loss; torch 1.13's CPU autocast has no"
            + " fp16, so fp16 is compared with that bf16 reference (default: ${DEFAULT-VALUE}).")
    String precision;

    @Option(names = "--fp32-step", negatable = true, defaultValue = "true", fallbackValue = "true",
            description = "With bf16/fp16: also time llamafit's fp32 step, interleaved (default); --no-fp32-step times the 16-bit"
                    + " step alone, so the process's peak RSS is comparable with PyTorch's.")
    boolean fp32Step;

    @Option(names = "--attention", defaultValue = "eager", split = ",", description = "eager or flash (llamafit's step), or"
            + " both (e.g. flash,eager): the first is the step measured, each other one is timed too, its steps interleaved with"
            + " the first's, for a same-run ratio (default: ${DEFAULT-VALUE}).")
    List<String> attention;

    @Option(names = "--base-dtype", split = ",", description = "With --lora-r: the frozen base's storage, int8 or nf4 (its block"
            + " linear layers quantised from the random weights, as on load), or the unquantised base (fp32/bf16/fp16, whichever"
            + " --precision computes in); several (e.g. nf4,bf16): the first is the step measured, each other one is timed too,"
            + " its steps interleaved with the first's, for a same-run ratio (default: the compute dtype).")
    List<String> baseDtypes;

    @Option(names = "--json", description = "Print one JSON object.")
    boolean json;

    @Option(names = "--workers", paramLabel = "N", description = "Train --model on --data with N ranks through mpirun instead (as train --workers"
            + " N does), once per --zero stage: global tokens/s (median of the --steps after a warm-up step), each rank's seconds per step in"
            + " collectives (max and mean over ranks) and their share of the step, and each rank's ledger peak against its plan. No PyTorch reference.")
    Integer workers;

    @Option(names = "--zero", split = ",", defaultValue = "0", description = "With --workers: ZeRO stages, e.g. 0,1,2,3; the first is the"
            + " baseline of the tokens/s ratios (default: ${DEFAULT-VALUE}).")
    List<Integer> zero;

    @Option(names = "--prefetch", split = ",", defaultValue = "on", description = "With --workers and ZeRO-3: on, off or on,off (stage 3 run"
            + " with and without the next block's all-gather prefetched, for the communication ratio) (default: ${DEFAULT-VALUE}).")
    List<String> prefetch;

    @Option(names = "--model", description = "With --workers: the Hugging Face model folder the ranks train (e.g. ../shared/models/tinystories-656k).")
    Path model;

    @Option(names = "--data", description = "With --workers: training text (default: a generated corpus of short sentences).")
    Path data;

    @Option(names = "--repeat", defaultValue = "1", description = "With --workers: jobs per variant, the variants taking turns (default: ${DEFAULT-VALUE}).")
    int repeat;

    @Override
    public Integer call() throws Exception {
        if (workers != null) return new BenchTrainWorkers(this).run();
        for (String o : List.of("--zero", "--prefetch", "--model", "--data", "--repeat"))
            if (spec.commandLine().getParseResult().hasMatchedOption(o))
                throw new dev.llamafit.io.InputException(o + " is for the multi-rank bench: add --workers N");
        // A random-weight model's context is only the RoPE tables' length: a longer --seq-len extends it.
        LlamaConfig c = RandomModels.byName(shape);
        if (seqLen < 2) throw new dev.llamafit.io.InputException("--seq-len must be >= 2, got " + seqLen);
        if (seqLen > c.maxPositions()) c = c.withMaxPositions(seqLen);
        int batch = batchSize != null ? batchSize : shape.equals("stories15M") ? 8 : 4;
        if (!reference.equals("torch") && !reference.equals("none"))
            throw new dev.llamafit.io.InputException("--reference must be torch or none, got '" + reference + "'");
        Technique.Precision prec = switch (precision) {
            case "fp32" -> Technique.Precision.FP32;
            case "bf16" -> Technique.Precision.BF16;
            case "fp16" -> Technique.Precision.FP16;
            case "bf16-pure" -> Technique.Precision.BF16_PURE;
            default -> throw new dev.llamafit.io.InputException("--precision must be fp32, bf16, fp16 or bf16-pure, got '" + precision + "'");
        };
        MemoryLedger ledger = MemoryLedger.global();
        Kernels k = KernelBackends.get();
        long params = ParameterLayout.of(c, DType.F32).parameterCount();
        LoraConfig lora = loraR > 0 ? new LoraConfig(loraR, 16, 0, LoraConfig.parseTargets(loraTargets), false) : null;
        // A 16-bit LoRA run trains on a base stored in its compute dtype, as on a bf16/fp16 checkpoint (drawn straight
        // in 16 bits, so no fp32 copy lifts the peak RSS); full fine-tuning keeps fp32 masters.
        // bf16-pure trains BF16 matrices themselves, so its full fine-tuning draws them in bf16 too (and its fp32
        // comparison step gets fp32 weights of its own).
        boolean pure = prec == Technique.Precision.BF16_PURE;
        DType half = prec == Technique.Precision.FP16 ? DType.F16 : prec == Technique.Precision.FP32 ? DType.F32 : DType.BF16;
        Technique.BaseDtype baseDtype = lora == null ? null
                : half == DType.BF16 ? Technique.BaseDtype.BF16 : half == DType.F16 ? Technique.BaseDtype.FP16 : Technique.BaseDtype.FP32;
        List<Quantization> bases = bases(lora != null, baseDtype);
        Map<String, Tensor> w = RandomModels.weights(c, ledger, 11, 0.02, lora == null && !pure ? DType.F32 : half);
        Map<String, Tensor> w32 = pure && lora == null && fp32Step ? RandomModels.weights(c, ledger, 11, 0.02) : w;
        Technique base = Technique.of(lora).withGradientCheckpointing(checkpointing, 1);
        List<Technique.Attention> attentions = attention.stream().map(a -> Technique.parse(Technique.Attention.class, "--attention", a)).distinct().toList();
        // The asked step first; under bf16/fp16 also fp32, and the other attention when two are named, their steps
        // interleaved with the first's so that load from whoever else shares the machine hits all alike (the ratios
        // are same-run ratios).
        Quantization q0 = bases.getFirst();
        List<Variant> variants = new ArrayList<>(List.of(new Variant(prec, attentions.getFirst(), q0)));
        if (prec != Technique.Precision.FP32 && fp32Step) variants.add(new Variant(Technique.Precision.FP32, attentions.getFirst(), q0));
        for (Technique.Attention a : attentions.subList(1, attentions.size())) variants.add(new Variant(prec, a, q0));
        int firstBase = variants.size();
        for (Quantization q : bases.subList(1, bases.size())) variants.add(new Variant(prec, attentions.getFirst(), q));
        int fp32Index = prec != Technique.Precision.FP32 && fp32Step ? 1 : -1;
        double[] bestOf = new double[variants.size()];
        double[] lossOf = new double[variants.size()];
        java.util.Arrays.fill(bestOf, Double.MAX_VALUE);
        long trainable = 0;
        String stepKernels = k.name();
        List<TrainingStep> runs = new ArrayList<>();
        List<AdamW> opts = new ArrayList<>();
        List<List<Param>> params16 = new ArrayList<>();
        List<Tensor> quantised = new ArrayList<>();
        try {
            for (Variant v : variants) {
                Technique.Precision p = v.precision();
                Technique technique = new Technique(base.method(), base.lora(), p, baseDtype, base.optimizer(), checkpointing, 1, 1,
                        v.attention());
                Map<String, Tensor> weights = p == Technique.Precision.FP32 ? w32 : w;
                LlamaConfig cv = c;
                if (v.base() != null) {
                    // As io.ModelFolder quantises on load: each block linear layer's weight becomes bitsandbytes' tensors.
                    technique = technique.withQuantization(v.base());
                    cv = c.withQuantization(v.base());
                    weights = quantise(c, weights, v.base(), ledger, quantised);
                }
                TrainingStep step = new TrainingStep(cv, weights, k, ledger, batch, seqLen, technique, 5);
                runs.add(step);
                opts.add(new AdamW(0.9, 0.999, 1e-8, 0.0, ledger));
                List<Param> ps = new ArrayList<>();
                if (lora != null) {
                    for (var e : step.adapterWeights().entrySet())
                        ps.add(new Param(e.getKey(), e.getValue(), step.adapterGradients().get(e.getKey()), true));
                } else {
                    for (TensorSpec s : ParameterLayout.of(c, DType.F32).specs())
                        ps.add(new Param(s.name(), weights.get(s.name()), step.gradients().get(s.name()), true));
                }
                params16.add(ps);
                if (v == variants.getFirst()) {
                    trainable = ps.stream().mapToLong(Param::elements).sum();
                    stepKernels = step.kernels().name();
                }
            }
            SplittableRandom rnd = new SplittableRandom(3);
            int[][] ids = new int[batch][seqLen], labels = new int[batch][seqLen];
            for (int b = 0; b < batch; b++) {
                int[] seq = rnd.ints(seqLen + 1, 0, c.vocabSize()).toArray();
                System.arraycopy(seq, 0, ids[b], 0, seqLen);
                System.arraycopy(seq, 1, labels[b], 0, seqLen);
            }
            for (int i = 0; i <= steps; i++) {
                for (int p = 0; p < variants.size(); p++) {
                    TrainingStep step = runs.get(p);
                    long t0 = System.nanoTime();
                    step.zeroGradients();
                    lossOf[p] = step.forwardBackward(ids, labels, (double) batch * seqLen).sum() / ((double) batch * seqLen);
                    opts.get(p).step(params16.get(p), 1e-4);
                    step.syncWorkingCopies(); // mixed precision: the 16-bit copies follow the updated masters
                    double secs = (System.nanoTime() - t0) / 1e9;
                    if (i > 0) bestOf[p] = Math.min(bestOf[p], secs);
                }
            }
        } finally {
            runs.forEach(TrainingStep::close);
            opts.forEach(AdamW::close);
            w.values().forEach(Tensor::close);
            if (w32 != w) w32.values().forEach(Tensor::close);
            quantised.forEach(Tensor::close);
        }
        long ledgerPeak = ledger.totalPeakBytes();
        long rss = ProcessMemory.peakRssBytes().orElse(-1); // before the GEMM calibration below, which is not training
        // The machine's fp32 GEMM peak as llamafit reaches it, for the utilisation figure.
        GemmBenchmark gemm = new GemmBenchmark(k, ledger);
        double peakGflops = Math.max(gemm.run(1024, 1024, 1024, true, 2, 5).gflops(), gemm.run(2048, 2048, 2048, true, 1, 3).gflops());
        double best = bestOf[0], loss = lossOf[0];
        double tokensPerSecond = batch * seqLen / best;
        // Model FLOPs per token (Kaplan et al. 2020; PaLM appendix B): 6·N for the matmuls of forward and
        // backward, plus 12·L·C·T for attention scores and their use (causal halving not applied, as PaLM).
        // LoRA skips the weight-gradient GEMMs of the frozen base (2·N of the 6·N); checkpointing adds a forward
        // (2·N) that is recomputation, not model work, so it is not counted (the usual MFU convention).
        double matmulFlops = lora == null ? 6.0 * params : 4.0 * params + 6.0 * trainable;
        double flopsPerToken = matmulFlops + 12.0 * c.numLayers() * c.hiddenSize() * seqLen;
        double mfu = tokensPerSecond * flopsPerToken / (peakGflops * 1e9);

        Map<String, Object> o = new LinkedHashMap<>();
        o.put("bench", "train");
        o.put("shape", shape);
        o.put("backend", stepKernels);
        o.put("precision", precision);
        o.put("threads", Parallel.threads());
        o.put("batch_size", batch);
        o.put("seq_len", seqLen);
        o.put("parameters", params);
        o.put("method", lora == null ? "full" : "lora r=" + loraR + " " + String.join(",", lora.targets()));
        o.put("gradient_checkpointing", checkpointing);
        o.put("attention", Technique.name(attentions.getFirst()));
        o.put("trainable_parameters", trainable);
        o.put("loss", BenchCommand.round(loss));
        o.put("step_seconds", BenchCommand.round(best));
        o.put("tokens_per_s", BenchCommand.round(tokensPerSecond));
        o.put("gemm_peak_gflops", BenchCommand.round(peakGflops));
        o.put("mfu", BenchCommand.round(mfu));
        o.put("ledger_peak_bytes", ledgerPeak);
        o.put("peak_rss_bytes", rss);
        if (fp32Index > 0) {
            o.put("fp32_step_seconds", BenchCommand.round(bestOf[fp32Index]));
            o.put("fp32_tokens_per_s", BenchCommand.round(batch * seqLen / bestOf[fp32Index]));
            o.put("ratio_" + precision + "_vs_fp32", BenchCommand.round(bestOf[fp32Index] / best));
        }
        if (lora != null) o.put("base_dtype", baseName(q0, baseDtype));
        for (int i = firstBase; i < variants.size(); i++) {
            String b = baseName(variants.get(i).base(), baseDtype);
            o.put(b + "_base_step_seconds", BenchCommand.round(bestOf[i]));
            o.put(b + "_base_tokens_per_s", BenchCommand.round(batch * seqLen / bestOf[i]));
            o.put(b + "_base_loss", BenchCommand.round(lossOf[i]));
            o.put("ratio_" + o.get("base_dtype") + "_vs_" + b + "_base", BenchCommand.round(bestOf[i] / best));
        }
        for (int i = fp32Index > 0 ? 2 : 1; i < firstBase; i++) {
            String a = Technique.name(variants.get(i).attention());
            o.put(a + "_step_seconds", BenchCommand.round(bestOf[i]));
            o.put(a + "_tokens_per_s", BenchCommand.round(batch * seqLen / bestOf[i]));
            o.put(a + "_loss", BenchCommand.round(lossOf[i]));
            o.put("ratio_" + o.get("attention") + "_vs_" + a, BenchCommand.round(bestOf[i] / best));
        }
        String torchRef = prec == Technique.Precision.FP32 ? "fp32" : "bf16 autocast";
        if (reference.equals("torch")) {
            JsonNode t = torch(c, batch, prec != Technique.Precision.FP32);
            o.put("torch_reference", torchRef + (prec == Technique.Precision.FP16 ? " (torch CPU autocast has no fp16)" : ""));
            o.put("torch_blas", Files.isDirectory(OPENBLAS) ? "openblas-pthread" : "system default");
            o.put("torch_tokens_per_s", t.get("tokens_per_s").asDouble());
            o.put("torch_peak_rss_bytes", t.get("peak_rss_bytes").asLong());
            o.put("ratio_tokens_per_s", BenchCommand.round(tokensPerSecond / t.get("tokens_per_s").asDouble()));
            // With a 16-bit precision this process also holds the fp32 step, so its RSS is not comparable.
            if (variants.size() == 1) o.put("ratio_peak_rss", BenchCommand.round((double) rss / t.get("peak_rss_bytes").asLong()));
        }
        PrintWriter out = spec.commandLine().getOut();
        if (json) {
            out.println(Json.write(o));
        } else {
            out.printf(Locale.ROOT, "%s, B %d, T %d, %s AdamW, %s%s, %s, %d threads%n", shape, batch, seqLen, precision, o.get("method"),
                    checkpointing ? " + gradient checkpointing" : "", stepKernels, Parallel.threads());
            out.printf(Locale.ROOT, "  llamafit: %8.1f tokens/s  (step %.2f s, MFU %.0f%% of %.0f GFLOPS)  peak ledger %s, RSS %s%n",
                    tokensPerSecond, best, 100 * mfu, peakGflops, ByteSize.format(ledgerPeak), ByteSize.format(rss));
            if (fp32Index > 0)
                out.printf(Locale.ROOT, "  llamafit fp32 (same run, interleaved): %8.1f tokens/s   %s/fp32 %.2f×  (RSS above holds both steps)%n",
                        o.get("fp32_tokens_per_s"), precision, o.get("ratio_" + precision + "_vs_fp32"));
            for (int i = firstBase; i < variants.size(); i++) {
                String b = baseName(variants.get(i).base(), baseDtype);
                out.printf(Locale.ROOT, "  llamafit on a %s base (same run, interleaved): %8.1f tokens/s   %s/%s %.2f×%n",
                        b, o.get(b + "_base_tokens_per_s"), o.get("base_dtype"), b, o.get("ratio_" + o.get("base_dtype") + "_vs_" + b + "_base"));
            }
            for (int i = fp32Index > 0 ? 2 : 1; i < firstBase; i++) {
                String a = Technique.name(variants.get(i).attention());
                out.printf(Locale.ROOT, "  llamafit %s attention (same run, interleaved): %8.1f tokens/s   %s/%s %.2f×  (RSS above holds both steps)%n",
                        a, o.get(a + "_tokens_per_s"), o.get("attention"), a, o.get("ratio_" + o.get("attention") + "_vs_" + a));
            }
            if (o.containsKey("torch_tokens_per_s") && variants.size() == 1)
                out.printf(Locale.ROOT, "  pytorch:  %8.1f tokens/s  peak RSS %s   ratio %.2f× tokens/s, %.2f× RSS%n",
                        o.get("torch_tokens_per_s"), ByteSize.format((Long) o.get("torch_peak_rss_bytes")),
                        o.get("ratio_tokens_per_s"), o.get("ratio_peak_rss"));
            else if (o.containsKey("torch_tokens_per_s"))
                out.printf(Locale.ROOT, "  pytorch %s:  %8.1f tokens/s  peak RSS %s   ratio %.2f× tokens/s%n", o.get("torch_reference"),
                        o.get("torch_tokens_per_s"), ByteSize.format((Long) o.get("torch_peak_rss_bytes")), o.get("ratio_tokens_per_s"));
        }
        return Main.OK;
    }

    /**
     * One step configuration timed in the bench: the asked one, and those interleaved with it for same-run ratios.
     * {@code base}: the LoRA base's quantisation, or null for the unquantised base.
     */
    private record Variant(Technique.Precision precision, Technique.Attention attention, Quantization base) {}

    /** --base-dtype as quantisations (null = the unquantised base in the compute dtype), first the measured one. */
    private List<Quantization> bases(boolean lora, Technique.BaseDtype computeBase) {
        if (baseDtypes == null || baseDtypes.isEmpty()) return java.util.Collections.singletonList(null);
        if (!lora) throw new dev.llamafit.io.InputException("--base-dtype needs --lora-r > 0 (a frozen base); full fine-tuning trains the weights themselves");
        List<Quantization> out = new ArrayList<>();
        for (String b : baseDtypes) {
            Quantization q = switch (b) {
                case "int8" -> Quantization.int8(Quantization.DEFAULT_INT8_THRESHOLD);
                case "nf4" -> Quantization.nf4(true);
                default -> {
                    if (!b.equals(Technique.name(computeBase)))
                        throw new dev.llamafit.io.InputException("--base-dtype must be int8, nf4 or " + Technique.name(computeBase)
                                + " (the unquantised base under --precision " + precision + "), got '" + b + "'");
                    yield null;
                }
            };
            if (!out.contains(q)) out.add(q);
        }
        return out;
    }

    private static String baseName(Quantization q, Technique.BaseDtype computeBase) {
        return q == null ? Technique.name(computeBase) : q.kind() == Quantization.Kind.INT8 ? "int8" : "nf4";
    }

    /** {@code w} with every block linear layer's weight replaced by its quantised tensors (added to {@code owned}). */
    private static Map<String, Tensor> quantise(LlamaConfig c, Map<String, Tensor> w, Quantization q, MemoryLedger ledger, List<Tensor> owned) {
        Map<String, Tensor> out = new LinkedHashMap<>();
        for (TensorSpec spec : ParameterLayout.of(c, DType.F32).specs()) {
            if (!ParameterLayout.isQuantizable(spec)) {
                out.put(spec.name(), w.get(spec.name()));
                continue;
            }
            Map<String, Tensor> qt = QuantizedWeights.quantize(q, w.get(spec.name()), ledger,
                    spec.name().substring(0, spec.name().length() - ".weight".length()));
            owned.addAll(qt.values());
            out.putAll(qt);
        }
        return out;
    }

    private JsonNode torch(LlamaConfig c, int batch, boolean autocast) throws Exception {
        Path script = BenchCommand.scriptPath("torch_train.py");
        List<String> cmd = new ArrayList<>(List.of(python, script.toString(), "--threads", String.valueOf(Parallel.threads()),
                "--dim", String.valueOf(c.hiddenSize()), "--layers", String.valueOf(c.numLayers()),
                "--heads", String.valueOf(c.numHeads()), "--kv-heads", String.valueOf(c.numKvHeads()),
                "--ffn", String.valueOf(c.intermediateSize()), "--vocab", String.valueOf(c.vocabSize()),
                "--batch", String.valueOf(batch), "--seq", String.valueOf(seqLen), "--steps", String.valueOf(steps)));
        if (loraR > 0) cmd.addAll(List.of("--lora-r", String.valueOf(loraR), "--lora-alpha", "16", "--lora-targets", loraTargets));
        if (checkpointing) cmd.add("--checkpointing");
        if (autocast) cmd.add("--autocast-bf16");
        Map<String, String> env = new LinkedHashMap<>();
        if (Files.isDirectory(OPENBLAS)) env.put("LD_LIBRARY_PATH", OPENBLAS.toString());
        List<JsonNode> lines = BenchCommand.runJsonLines(cmd, env);
        if (lines.isEmpty()) throw new IllegalStateException("bench/torch_train.py printed no result");
        return lines.getLast();
    }
}
