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
import dev.llamafit.io.Json;
import dev.llamafit.kernels.BandwidthProbe;
import dev.llamafit.kernels.GemmBenchmark;
import dev.llamafit.kernels.KernelBackends;
import dev.llamafit.kernels.Kernels;
import dev.llamafit.kernels.OneDnnKernels;
import dev.llamafit.kernels.Parallel;
import dev.llamafit.memory.MemoryLedger;
import dev.llamafit.model.KvCache;
import dev.llamafit.model.LlamaConfig;
import dev.llamafit.model.LlamaModel;
import dev.llamafit.model.ParameterLayout;
import dev.llamafit.model.RandomModels;
import dev.llamafit.model.Sampler;
import dev.llamafit.tensor.DType;
import dev.llamafit.tensor.Tensor;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;
import picocli.CommandLine.Spec;
import picocli.CommandLine.Model.CommandSpec;

@Command(name = "bench", mixinStandardHelpOptions = true, description = "Benchmarks (not tests): kernels and generation.",
        subcommands = {BenchCommand.Gemm.class, BenchCommand.Generate.class, BenchTrainCommand.class})
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
                + " llamafit row is always its fp32 path, the baseline; default: ${DEFAULT-VALUE}).")
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
                case "bf16" -> DType.BF16;
                default -> throw new InputException("--dtype must be fp32 or bf16, got '" + dtype + "'");
            };
            List<int[]> mnk = new ArrayList<>();
            for (int size : sizes) mnk.add(new int[] {size, size, size});
            for (String sh : shapes) if (!sh.isBlank()) mnk.add(parseShape(sh));

            Kernels k = KernelBackends.get();
            GemmBenchmark bench = new GemmBenchmark(k, MemoryLedger.global());
            String why = OneDnnKernels.unavailableReason();
            OneDnnKernels dnnl = why == null ? OneDnnKernels.create() : null;
            Map<String, Map<String, Double>> torch = reference.equals("torch") ? torchGemm(python, dtype, mnk) : Map.of();
            List<Map<String, Object>> rows = new ArrayList<>();
            for (int[] s : mnk) {
                int m = s[0], n = s[1], kk = s[2];
                String key = m + "x" + n + "x" + kk;
                Map<String, Object> row = new LinkedHashMap<>();
                row.put("shape", key);
                GemmBenchmark.Result ours = bench.run(m, n, kk, true, 2, runs);
                row.put("llamafit_fp32_gflops", round(ours.gflops()));
                if (dnnl != null) {
                    GemmBenchmark.Call call = type == DType.F32
                            ? (a, b, c) -> dnnl.nativeSgemm(false, true, m, n, kk, 1f, a, 0, kk, b, 0, kk, 0f, c, 0, n)
                            : (a, b, c) -> dnnl.gemmBf16(false, true, m, n, kk, 1f, a, 0, kk, b, 0, kk, 0f, c, 0, n);
                    GemmBenchmark.Result d = bench.run("onednn", type, call, m, n, kk, true, 2, runs);
                    row.put("onednn_" + dtype + "_gflops", round(d.gflops()));
                    row.put("ratio_onednn_vs_llamafit_fp32", round(d.gflops() / ours.gflops()));
                }
                Map<String, Double> t = torch.get(key);
                if (t != null && !t.isEmpty()) {
                    // Ratios are against PyTorch's fastest path for this dtype measured here, not its default one.
                    double best = t.values().stream().mapToDouble(Double::doubleValue).max().orElseThrow();
                    t.forEach((op, g) -> row.put("torch_" + op + "_gflops", round(g)));
                    row.put("torch_" + dtype + "_gflops", round(best));
                    row.put("ratio_llamafit_fp32_vs_torch", round(ours.gflops() / best));
                    if (row.containsKey("onednn_" + dtype + "_gflops"))
                        row.put("ratio_onednn_vs_torch", round((Double) row.get("onednn_" + dtype + "_gflops") / best));
                }
                rows.add(row);
            }
            PrintWriter out = spec.commandLine().getOut();
            if (json) {
                Map<String, Object> o = new LinkedHashMap<>();
                o.put("bench", "gemm");
                o.put("dtype", dtype);
                o.put("backend", k.name());
                o.put("onednn", dnnl != null ? dnnl.name() : "unavailable: " + why);
                o.put("threads", Parallel.threads());
                o.put("results", rows);
                out.println(Json.write(o));
            } else {
                out.printf("GEMM, %s operands for oneDNN and torch; llamafit fp32 on %s; %d threads (best of %d)%n", dtype, k.name(),
                        Parallel.threads(), runs);
                if (dnnl == null) out.println("  oneDNN not measured: " + why);
                for (Map<String, Object> row : rows) {
                    StringBuilder line = new StringBuilder(String.format(Locale.ROOT, "  %-16s", row.get("shape")));
                    row.forEach((name, v) -> { if (!name.equals("shape")) line.append(String.format(Locale.ROOT, "  %s %s", name, v)); });
                    out.println(line);
                }
            }
            return Main.OK;
        }
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
            description = "Prefill and decode tokens/s of a random-weight stories15M-shaped model (fp32), and decode's weight"
                    + " bandwidth as a fraction of a memory-bandwidth probe run in the same bench.")
    static final class Generate implements Callable<Integer> {
        @Spec CommandSpec spec;

        @Option(names = "--shape", defaultValue = "stories15M", description = "Model shape: stories15M or stories42M (default: ${DEFAULT-VALUE}).")
        String shape;

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
            MemoryLedger ledger = MemoryLedger.global();
            Kernels k = KernelBackends.get();
            Map<String, Tensor> w = RandomModels.weights(c, ledger, 7, 0.02);
            double bestPrefill = 0, bestDecode = 0;
            try (LlamaModel model = new LlamaModel(c, w, k, ledger)) {
                int[] prompt = new int[promptTokens];
                java.util.SplittableRandom rnd = new java.util.SplittableRandom(1);
                for (int i = 0; i < prompt.length; i++) prompt[i] = rnd.nextInt(c.vocabSize());
                for (int run = 0; run < runs + 1; run++) { // the first run warms up the JIT
                    try (KvCache cache = model.newCache(1, promptTokens + newTokens)) {
                        long t0 = System.nanoTime();
                        Tensor logits = model.forward(new int[][] {prompt}, cache, LlamaModel.Logits.LAST);
                        int next = Sampler.argmax(logits.toFloatArray());
                        long t1 = System.nanoTime();
                        for (int i = 0; i < newTokens; i++) {
                            logits = model.forward(new int[][] {{next}}, cache, LlamaModel.Logits.LAST);
                            next = Sampler.argmax(logits.toFloatArray());
                        }
                        long t2 = System.nanoTime();
                        if (run == 0) continue;
                        bestPrefill = Math.max(bestPrefill, promptTokens / ((t1 - t0) / 1e9));
                        bestDecode = Math.max(bestDecode, newTokens / ((t2 - t1) / 1e9));
                    }
                }
            } finally {
                w.values().forEach(Tensor::close);
            }
            // Per decoded token every weight matrix is read once; with tied embeddings the LM head is the
            // embedding matrix, read whole (the embedding lookup itself reads one row).
            long weightBytes = ParameterLayout.of(c, DType.F32).bytes();
            double effectiveGBs = weightBytes * bestDecode / 1e9;
            BandwidthProbe.Result probe = BandwidthProbe.measure(ledger, 512L << 20, 5);
            Map<String, Object> o = new LinkedHashMap<>();
            o.put("bench", "generate");
            o.put("shape", shape);
            o.put("backend", k.name());
            o.put("threads", Parallel.threads());
            o.put("prompt_tokens", promptTokens);
            o.put("new_tokens", newTokens);
            o.put("prefill_tokens_per_s", round(bestPrefill));
            o.put("decode_tokens_per_s", round(bestDecode));
            o.put("weight_bytes_per_token", weightBytes);
            o.put("decode_weight_gb_per_s", round(effectiveGBs));
            o.put("probe_gb_per_s", round(probe.gbPerSecond()));
            o.put("bandwidth_fraction", round(effectiveGBs / probe.gbPerSecond()));
            PrintWriter out = spec.commandLine().getOut();
            if (json) {
                out.println(Json.write(o));
            } else {
                out.printf(Locale.ROOT, "%s (random fp32 weights, %,d bytes), %s, %d threads%n", shape, weightBytes, k.name(), Parallel.threads());
                out.printf(Locale.ROOT, "  prefill %d tokens: %10.1f tokens/s%n", promptTokens, bestPrefill);
                out.printf(Locale.ROOT, "  decode  %d tokens: %10.1f tokens/s   weights read at %.1f GB/s = %.0f%% of the %.1f GB/s probe%n",
                        newTokens, bestDecode, effectiveGBs, 100 * effectiveGBs / probe.gbPerSecond(), probe.gbPerSecond());
            }
            return Main.OK;
        }
    }
}
