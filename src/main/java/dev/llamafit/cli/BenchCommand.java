// `llamafit bench`: kernel and end-to-end throughput, reported against references measured in the same run.
package dev.llamafit.cli;

import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStreamReader;
import java.io.PrintWriter;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.concurrent.Callable;

import com.fasterxml.jackson.databind.JsonNode;

import dev.llamafit.io.InputException;
import dev.llamafit.io.ModelFolder;
import dev.llamafit.io.Json;
import dev.llamafit.kernels.BandwidthProbe;
import dev.llamafit.kernels.GemmBenchmark;
import dev.llamafit.nn.Int8OutlierExperiment;
import dev.llamafit.kernels.KernelBackends;
import dev.llamafit.kernels.Kernels;
import dev.llamafit.kernels.OneDnnKernels;
import dev.llamafit.kernels.PackSource;
import dev.llamafit.kernels.Parallel;
import dev.llamafit.memory.Category;
import dev.llamafit.memory.MemoryLedger;
import dev.llamafit.model.KvCache;
import dev.llamafit.model.LlamaConfig;
import dev.llamafit.model.LlamaModel;
import dev.llamafit.model.ParameterLayout;
import dev.llamafit.model.RandomModels;
import dev.llamafit.model.Sampler;
import dev.llamafit.quant.Nf4;
import dev.llamafit.quant.Nf4Weight;
import dev.llamafit.tensor.DType;
import dev.llamafit.tensor.Shape;
import dev.llamafit.tensor.Tensor;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;
import picocli.CommandLine.Spec;
import picocli.CommandLine.Model.CommandSpec;

@Command(name = "bench", mixinStandardHelpOptions = true, description = "Benchmarks (not tests): kernels and generation.",
        subcommands = {BenchCommand.Gemm.class, BenchCommand.Generate.class, BenchTrainCommand.class, BenchAttentionCommand.class,
                BenchCollectivesCommand.class})
final class BenchCommand implements Runnable {
    @Spec CommandSpec spec;

    @Override
    public void run() { spec.commandLine().usage(spec.commandLine().getOut()); }

    /** Where bench/ scripts live: the launcher passes the repository root as llamafit.home. */
    static Path scriptPath(String name) {
        return Path.of(System.getProperty("llamafit.home", ".")).resolve("bench").resolve(name);
    }

    @Command(name = "gemm", mixinStandardHelpOptions = true,
            description = "GEMM GFLOPS (C = A·Bᵀ, the forward pass's layout): llamafit's fp32 path, oneDNN called directly"
                    + " (fp32 sgemm or the bf16 matmul) and PyTorch's matmul in the same run.")
    static final class Gemm implements Callable<Integer> {
        @Spec CommandSpec spec;

        @Option(names = "--sizes", split = ",", defaultValue = "1024,2048", description = "Square sizes (default: ${DEFAULT-VALUE}).")
        int[] sizes;

        @Option(names = "--shapes", split = ",", defaultValue = "", description = "More shapes MxNxK, e.g. 2048x768x288 (a stories15M"
                + " prefill's [T·B, C]·[F, C]ᵀ); none by default.")
        List<String> shapes;

        @Option(names = "--dtype", defaultValue = "fp32", description = "Operand type of the oneDNN and torch GEMMs: fp32 or bf16 (the"
                + " llamafit row is always its fp32 path, the baseline); nf4 adds llamafit's NF4 weight GEMM (double-quantised,"
                + " dequantised while packing) beside its fp32 and bf16 ones, with bf16 references; int8 times llamafit's fp32, bf16"
                + " and int8 (s8·s8→s32) GEMMs side by side, oneDNN and torch in fp32, plus LLM.int8()'s outlier experiment"
                + " (default: ${DEFAULT-VALUE}).")
        String dtype;

        @Option(names = "--runs", defaultValue = "5", description = "Timed runs per size; the best is reported (default: ${DEFAULT-VALUE}).")
        int runs;

        @Option(names = "--reference", defaultValue = "torch", description = "Reference to measure too: torch or none (default: ${DEFAULT-VALUE}).")
        String reference;

        @Option(names = "--python", defaultValue = "/usr/bin/python3", description = "Python with PyTorch (default: ${DEFAULT-VALUE}).")
        String python;

        @Option(names = "--json", description = "Print one JSON object.")
        boolean json;

        @Override
        public Integer call() throws Exception {
            if (!reference.equals("torch") && !reference.equals("none"))
                throw new InputException("--reference must be torch or none, got '" + reference + "'");
            DType type = switch (dtype) {
                case "fp32" -> DType.F32;
                case "bf16", "nf4" -> DType.BF16; // nf4 is measured beside the bf16 paths, against bf16 references
                case "int8" -> DType.I8;
                default -> throw new InputException("--dtype must be fp32, bf16, int8 or nf4, got '" + dtype + "'");
            };
            // int8 has no oneDNN-direct or torch counterpart here: those rows stay fp32, the baseline.
            DType refType = type == DType.I8 ? DType.F32 : type;
            String refDtype = refType == DType.BF16 ? "bf16" : "fp32"; // the oneDNN and torch operand type
            List<int[]> mnk = new ArrayList<>();
            for (int size : sizes) mnk.add(new int[] {size, size, size});
            for (String sh : shapes) if (!sh.isBlank()) mnk.add(parseShape(sh));

            Kernels k = KernelBackends.get();
            GemmBenchmark bench = new GemmBenchmark(k, MemoryLedger.global());
            String why = OneDnnKernels.unavailableReason();
            OneDnnKernels dnnl = why == null ? OneDnnKernels.create() : null;
            Map<String, Map<String, Double>> torch = reference.equals("torch") ? torchGemm(python, refDtype, mnk) : Map.of();
            List<Map<String, Object>> rows = new ArrayList<>();
            for (int[] s : mnk) {
                int m = s[0], n = s[1], kk = s[2];
                String key = m + "x" + n + "x" + kk;
                Map<String, Object> row = new LinkedHashMap<>();
                row.put("shape", key);
                GemmBenchmark.Result ours = bench.run(m, n, kk, true, 2, runs);
                row.put("llamafit_fp32_gflops", round(ours.gflops()));
                double bf16Gflops = Double.NaN;
                if (type == DType.BF16 || type == DType.I8) {
                    // The model's mixed-precision GEMM: activations (fp32 holding bf16 values) × bf16 working weights,
                    // through the backend's half-operand view (oneDNN's bf16 matmul where it has one).
                    Kernels half = k.halfOperands(DType.BF16);
                    GemmBenchmark.Result mixed = bench.run("llamafit bf16", DType.F32, DType.BF16,
                            (a, b, c) -> half.gemm(false, true, m, n, kk, 1f, a, DType.F32, 0, kk, b, DType.BF16, 0, kk, 0f, c, 0, n),
                            m, n, kk, true, 5, runs); // warm-ups: oneDNN primitives are created per pool thread and shape
                    row.put("llamafit_bf16_gflops", round(mixed.gflops()));
                    row.put("ratio_llamafit_bf16_vs_fp32", round(mixed.gflops() / ours.gflops()));
                    bf16Gflops = mixed.gflops();
                }
                if (dtype.equals("nf4")) {
                    List<Tensor> encoded = new ArrayList<>();
                    GemmBenchmark.Result nf4 = bench.runEncoded("llamafit nf4", b -> nf4Weight(b, n, kk, encoded), m, n, kk, 2, runs);
                    encoded.forEach(Tensor::close);
                    row.put("llamafit_nf4_gflops", round(nf4.gflops()));
                    row.put("ratio_llamafit_nf4_vs_fp32", round(nf4.gflops() / ours.gflops()));
                    row.put("ratio_llamafit_nf4_vs_bf16", round(nf4.gflops() / bf16Gflops));
                }
                if (type == DType.I8) {
                    // LLM.int8()'s GEMM: int8 codes of activations and weights, int32 sums (oneDNN's VNNI matmul on onednn).
                    GemmBenchmark.Result i8 = bench.run("llamafit int8", DType.I8,
                            (a, b, c) -> k.gemmI8(m, n, kk, a, 0, kk, b, 0, kk, c, 0, n), m, n, kk, true, 5, runs);
                    row.put("llamafit_int8_gops", round(i8.gflops()));
                    row.put("ratio_llamafit_int8_vs_fp32", round(i8.gflops() / ours.gflops()));
                    row.put("ratio_llamafit_int8_vs_bf16", round(i8.gflops() / (Double) row.get("llamafit_bf16_gflops")));
                }
                if (dnnl != null) {
                    GemmBenchmark.Call call = refType == DType.F32
                            ? (a, b, c) -> dnnl.nativeSgemm(false, true, m, n, kk, 1f, a, 0, kk, b, 0, kk, 0f, c, 0, n)
                            : (a, b, c) -> dnnl.gemmBf16(false, true, m, n, kk, 1f, a, 0, kk, b, 0, kk, 0f, c, 0, n);
                    GemmBenchmark.Result d = bench.run("onednn", refType, call, m, n, kk, true, 2, runs);
                    row.put("onednn_" + refDtype + "_gflops", round(d.gflops()));
                    row.put("ratio_onednn_vs_llamafit_fp32", round(d.gflops() / ours.gflops()));
                    if (row.containsKey("llamafit_bf16_gflops"))
                        row.put("ratio_llamafit_bf16_vs_onednn", round((Double) row.get("llamafit_bf16_gflops") / d.gflops()));
                }
                Map<String, Double> t = torch.get(key);
                if (t != null && !t.isEmpty()) {
                    // Ratios are against PyTorch's fastest path for this dtype measured here, not its default one.
                    double best = t.values().stream().mapToDouble(Double::doubleValue).max().orElseThrow();
                    t.forEach((op, g) -> row.put("torch_" + op + "_gflops", round(g)));
                    row.put("torch_" + refDtype + "_gflops", round(best));
                    row.put("ratio_llamafit_fp32_vs_torch", round(ours.gflops() / best));
                    if (row.containsKey("onednn_" + refDtype + "_gflops"))
                        row.put("ratio_onednn_vs_torch", round((Double) row.get("onednn_" + refDtype + "_gflops") / best));
                }
                rows.add(row);
            }
            Int8OutlierExperiment.Result outliers = type == DType.I8
                    ? Int8OutlierExperiment.run(k, 64, 1024, 1024, 6, 6f, 16) : null;
            PrintWriter out = spec.commandLine().getOut();
            if (json) {
                Map<String, Object> o = new LinkedHashMap<>();
                o.put("bench", "gemm");
                o.put("dtype", dtype);
                o.put("backend", k.name());
                o.put("onednn", dnnl != null ? dnnl.name() : "unavailable: " + why);
                o.put("threads", Parallel.threads());
                o.put("results", rows);
                if (outliers != null) {
                    Map<String, Object> e = new LinkedHashMap<>();
                    e.put("shape", outliers.rows() + "x" + outliers.out() + "x" + outliers.in());
                    e.put("outlier_features", outliers.outlierFeatures());
                    e.put("threshold", (double) outliers.threshold());
                    e.put("rel_error_bf16", outliers.bf16());
                    e.put("rel_error_int8_decomposed", outliers.int8Decomposed());
                    e.put("rel_error_int8_plain", outliers.int8Plain());
                    e.put("rel_error_int8_weights_only", outliers.int8WeightsOnly());
                    o.put("int8_outliers", e);
                }
                out.println(Json.write(o));
            } else {
                out.printf("GEMM, %s operands for oneDNN and torch; llamafit fp32 on %s; %d threads (best of %d)%n", refDtype, k.name(),
                        Parallel.threads(), runs);
                if (dnnl == null) out.println("  oneDNN not measured: " + why);
                for (Map<String, Object> row : rows) {
                    StringBuilder line = new StringBuilder(String.format(Locale.ROOT, "  %-16s", row.get("shape")));
                    row.forEach((name, v) -> { if (!name.equals("shape")) line.append(String.format(Locale.ROOT, "  %s %s", name, v)); });
                    out.println(line);
                }
                if (outliers != null) out.println("  " + outliers.summary());
            }
            return Main.OK;
        }
    }

    /** The bench's fp32 B [n, k] quantised to NF4 with double quantisation, as a GEMM source; its tensors join {@code owned}. */
    static PackSource nf4Weight(java.lang.foreign.MemorySegment b, int n, int k, List<Tensor> owned) {
        Map<String, Tensor> q = Nf4.quantize(new Tensor("bench.gemm.B", DType.F32, Shape.of(n, k), b), true, MemoryLedger.global(), "bench.gemm.B");
        owned.addAll(q.values());
        return Nf4Weight.of(q, "bench.gemm.B.weight");
    }

    /** "MxNxK" as {m, n, k}. */
    static int[] parseShape(String s) {
        String[] p = s.trim().split("x");
        try {
            if (p.length == 3) {
                int[] r = {Integer.parseInt(p[0]), Integer.parseInt(p[1]), Integer.parseInt(p[2])};
                if (r[0] > 0 && r[1] > 0 && r[2] > 0) return r;
            }
        } catch (NumberFormatException e) {
            // reported below
        }
        throw new InputException("--shapes takes MxNxK with positive sizes, got '" + s + "'");
    }

    /**
     * Runs bench/torch_gemm.py with the same thread count and dtype; returns GFLOPS by shape ("MxNxK") and PyTorch op
     * ("matmul": what plain torch code gets; "mkldnn_linear": its oneDNN path, fp32 only).
     */
    static Map<String, Map<String, Double>> torchGemm(String python, String dtype, List<int[]> shapes) throws IOException, InterruptedException {
        Path script = scriptPath("torch_gemm.py");
        if (!Files.isRegularFile(script)) throw new IllegalStateException("reference script not found: " + script);
        List<String> cmd = new ArrayList<>(List.of(python, script.toString(), "--dtype", dtype, String.valueOf(Parallel.threads())));
        for (int[] s : shapes) cmd.add(s[0] + "x" + s[1] + "x" + s[2]);
        Map<String, Map<String, Double>> out = new LinkedHashMap<>();
        for (JsonNode n : runJsonLines(cmd))
            out.computeIfAbsent(n.get("shape").asText(), x -> new LinkedHashMap<>()).put(n.get("op").asText(), n.get("gflops").asDouble());
        return out;
    }

    static List<JsonNode> runJsonLines(List<String> cmd) throws IOException, InterruptedException {
        return runJsonLines(cmd, Map.of());
    }

    /** Runs a reference script and collects the JSON objects it prints, one per line. */
    static List<JsonNode> runJsonLines(List<String> cmd, Map<String, String> env) throws IOException, InterruptedException {
        ProcessBuilder pb = new ProcessBuilder(cmd).redirectError(ProcessBuilder.Redirect.INHERIT);
        pb.environment().putAll(env);
        Process p = pb.start();
        List<JsonNode> lines = new ArrayList<>();
        try (BufferedReader r = new BufferedReader(new InputStreamReader(p.getInputStream(), StandardCharsets.UTF_8))) {
            for (String line; (line = r.readLine()) != null; )
                if (line.startsWith("{")) lines.add(Json.MAPPER.readTree(line));
        }
        int rc = p.waitFor();
        if (rc != 0) throw new IllegalStateException("reference " + String.join(" ", cmd) + " exited with " + rc);
        return lines;
    }

    static double round(double v) { return Math.round(v * 100) / 100.0; }

    @Command(name = "generate", mixinStandardHelpOptions = true,
            description = "Prefill and decode tokens/s of a random-weight model of a stories shape, and decode's weight"
                    + " bandwidth as a fraction of a memory-bandwidth probe run in the same bench. With --dtype bf16 or"
                    + " fp16 the same weights are also stored in that dtype and both models run, interleaved, in one"
                    + " run, with the 16-bit/fp32 ratios.")
    static final class Generate implements Callable<Integer> {
        @Spec CommandSpec spec;

        @Option(names = "--shape", defaultValue = "stories15M", description = "Model shape: stories15M or stories42M (default: ${DEFAULT-VALUE}).")
        String shape;

        @Option(names = "--dtype", defaultValue = "fp32", description = "Weight matrices' dtype: fp32, bf16 or fp16; a 16-bit"
                + " dtype is measured beside fp32 in the same run (default: ${DEFAULT-VALUE}).")
        String dtype;

        @Option(names = "--prompt-tokens", defaultValue = "128", description = "Prefill length (default: ${DEFAULT-VALUE}).")
        int promptTokens;

        @Option(names = "--new-tokens", defaultValue = "128", description = "Decoded tokens (default: ${DEFAULT-VALUE}).")
        int newTokens;

        @Option(names = "--runs", defaultValue = "3", description = "Repetitions; the best is reported (default: ${DEFAULT-VALUE}).")
        int runs;

        @Option(names = "--json", description = "Print one JSON object.")
        boolean json;

        @Override
        public Integer call() {
            LlamaConfig c = RandomModels.byName(shape);
            if (promptTokens < 1 || newTokens < 1 || promptTokens + newTokens > c.maxPositions())
                throw new InputException("--prompt-tokens + --new-tokens must be within 2.." + c.maxPositions());
            if (runs < 1) throw new InputException("--runs must be at least 1, got " + runs);
            DType type = switch (dtype) {
                case "fp32" -> DType.F32;
                case "bf16" -> DType.BF16;
                case "fp16" -> DType.F16;
                default -> throw new InputException("--dtype must be fp32, bf16 or fp16, got '" + dtype + "'");
            };
            MemoryLedger ledger = MemoryLedger.global();
            Kernels k = KernelBackends.get();
            // fp32 is always measured: it is the baseline a 16-bit ratio is taken against, in the same run.
            List<DType> types = type == DType.F32 ? List.of(DType.F32) : List.of(DType.F32, type);
            Map<String, Tensor> w = RandomModels.weights(c, ledger, 7, 0.02);
            List<Tensor> owned = new ArrayList<>();
            double[] bestPrefill = new double[types.size()], bestDecode = new double[types.size()];
            List<LlamaModel> models = new ArrayList<>();
            try {
                for (DType t : types) models.add(new LlamaModel(c, t == DType.F32 ? w : narrowed(w, t, k, ledger, owned), k, ledger));
                int[] prompt = new int[promptTokens];
                java.util.SplittableRandom rnd = new java.util.SplittableRandom(1);
                for (int i = 0; i < prompt.length; i++) prompt[i] = rnd.nextInt(c.vocabSize());
                // Runs alternate between the dtypes, so load from whoever else shares the machine hits both alike;
                // the first round warms up the JIT and is not counted.
                for (int run = 0; run < runs + 1; run++) {
                    for (int m = 0; m < models.size(); m++) {
                        double[] r = timeOnce(models.get(m), prompt, newTokens);
                        if (run == 0) continue;
                        bestPrefill[m] = Math.max(bestPrefill[m], r[0]);
                        bestDecode[m] = Math.max(bestDecode[m], r[1]);
                    }
                }
            } finally {
                models.forEach(LlamaModel::close);
                owned.forEach(Tensor::close);
                w.values().forEach(Tensor::close);
            }
            BandwidthProbe.Result probe = BandwidthProbe.measure(ledger, 512L << 20, 5);
            Map<String, Object> o = new LinkedHashMap<>();
            o.put("bench", "generate");
            o.put("shape", shape);
            o.put("dtype", dtype);
            o.put("backend", k.name());
            o.put("threads", Parallel.threads());
            o.put("prompt_tokens", promptTokens);
            o.put("new_tokens", newTokens);
            o.put("probe_gb_per_s", round(probe.gbPerSecond()));
            PrintWriter out = spec.commandLine().getOut();
            if (!json) out.printf(Locale.ROOT, "%s, random weights, %s, %d threads, best of %d%n", shape, k.name(), Parallel.threads(), runs);
            for (int m = 0; m < types.size(); m++) {
                String name = types.get(m) == DType.F32 ? "fp32" : dtype;
                // Per decoded token every weight matrix is read once; with tied embeddings the LM head is the
                // embedding matrix, read whole (the embedding lookup itself reads one row). Norms stay fp32.
                long weightBytes = ParameterLayout.of(c, types.get(m)).bytes();
                double gbs = weightBytes * bestDecode[m] / 1e9;
                String p = types.size() == 1 ? "" : name + "_";
                o.put(p + "prefill_tokens_per_s", round(bestPrefill[m]));
                o.put(p + "decode_tokens_per_s", round(bestDecode[m]));
                o.put(p + "weight_bytes_per_token", weightBytes);
                o.put(p + "decode_weight_gb_per_s", round(gbs));
                o.put(p + "bandwidth_fraction", round(gbs / probe.gbPerSecond()));
                if (!json) {
                    out.printf(Locale.ROOT, "  %-4s weights %,d bytes%n", name, weightBytes);
                    out.printf(Locale.ROOT, "    prefill %d tokens: %10.1f tokens/s%n", promptTokens, bestPrefill[m]);
                    out.printf(Locale.ROOT, "    decode  %d tokens: %10.1f tokens/s   weights read at %.1f GB/s = %.0f%% of the %.1f GB/s probe%n",
                            newTokens, bestDecode[m], gbs, 100 * gbs / probe.gbPerSecond(), probe.gbPerSecond());
                }
            }
            if (types.size() > 1) {
                o.put("ratio_prefill_" + dtype + "_vs_fp32", round(bestPrefill[1] / bestPrefill[0]));
                o.put("ratio_decode_" + dtype + "_vs_fp32", round(bestDecode[1] / bestDecode[0]));
                if (!json) out.printf(Locale.ROOT, "  %s/fp32, same run: prefill %.2fx, decode %.2fx%n", dtype,
                        bestPrefill[1] / bestPrefill[0], bestDecode[1] / bestDecode[0]);
            }
            if (json) out.println(Json.write(o));
            return Main.OK;
        }

        /** {prefill tokens/s, decode tokens/s} of one greedy generation from {@code prompt}. */
        private static double[] timeOnce(LlamaModel model, int[] prompt, int newTokens) {
            try (KvCache cache = model.newCache(1, prompt.length + newTokens)) {
                long t0 = System.nanoTime();
                Tensor logits = model.forward(new int[][] {prompt}, cache, LlamaModel.Logits.LAST);
                int next = Sampler.argmax(logits.toFloatArray());
                long t1 = System.nanoTime();
                for (int i = 0; i < newTokens; i++) {
                    logits = model.forward(new int[][] {{next}}, cache, LlamaModel.Logits.LAST);
                    next = Sampler.argmax(logits.toFloatArray());
                }
                long t2 = System.nanoTime();
                return new double[] {prompt.length / ((t1 - t0) / 1e9), newTokens / ((t2 - t1) / 1e9)};
            }
        }

        /** The same weights with every matrix stored as {@code type} (vectors stay fp32, as a loaded checkpoint's do). */
        private static Map<String, Tensor> narrowed(Map<String, Tensor> w, DType type, Kernels k, MemoryLedger ledger, List<Tensor> owned) {
            Map<String, Tensor> out = new LinkedHashMap<>();
            w.forEach((name, t) -> {
                if (t.shape().rank() < 2) {
                    out.put(name, t);
                    return;
                }
                Tensor n = Tensor.allocate(ledger, Category.WEIGHTS, name, type, t.shape());
                owned.add(n);
                ModelFolder.convert(k, t.segment(), DType.F32, n.segment(), type, t.elements());
                out.put(name, n);
            });
            return out;
        }
    }
}
