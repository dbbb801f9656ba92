// `llamafit bench attention`: eager against flash attention, forward and backward time and memory over sequence lengths.
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

import org.knowm.xchart.BitmapEncoder;
import org.knowm.xchart.XYChart;
import org.knowm.xchart.XYChartBuilder;

import dev.llamafit.io.InputException;
import dev.llamafit.io.Json;
import dev.llamafit.kernels.KernelBackends;
import dev.llamafit.kernels.Kernels;
import dev.llamafit.kernels.Parallel;
import dev.llamafit.memory.ByteSize;
import dev.llamafit.memory.Category;
import dev.llamafit.memory.MemoryLedger;
import dev.llamafit.model.LlamaConfig;
import dev.llamafit.model.RandomModels;
import dev.llamafit.nn.Attention;
import dev.llamafit.nn.FlashAttention;
import dev.llamafit.tensor.DType;
import dev.llamafit.tensor.Shape;
import dev.llamafit.tensor.Tensor;
import picocli.CommandLine.Command;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Option;
import picocli.CommandLine.Spec;

@Command(name = "attention", mixinStandardHelpOptions = true,
        description = "Forward and backward time, and the memory attention itself holds, of eager and flash attention on a"
                + " model shape's heads over sequence lengths (the same q, k, v, interleaved); optionally a plot of both curves.")
final class BenchAttentionCommand implements Callable<Integer> {
    @Spec CommandSpec spec;

    @Option(names = "--shape", defaultValue = "stories15M", description = "stories15M or stories42M: heads and head size (default: ${DEFAULT-VALUE}).")
    String shape;

    @Option(names = "--batch-size", defaultValue = "1", description = "Sequences (default: ${DEFAULT-VALUE}).")
    int batch;

    @Option(names = "--seq-lens", split = ",", defaultValue = "256,512,1024,2048,4096,8192",
            description = "Sequence lengths (default: ${DEFAULT-VALUE}).")
    List<Integer> seqLens;

    @Option(names = "--runs", defaultValue = "3", description = "Timed runs per kind and length, after a warm-up; the best counts (default: ${DEFAULT-VALUE}).")
    int runs;

    @Option(names = "--plot", description = "Write the time and memory curves to this PNG.")
    Path plot;

    @Option(names = "--python", defaultValue = "/usr/bin/python3", description = "Python with PyTorch, to say whether its SDPA can be compared (default: ${DEFAULT-VALUE}).")
    String python;

    @Option(names = "--json", description = "Print one JSON object.")
    boolean json;

    /** One length's figures: seconds of forward and backward, bytes held beyond q, k, v, out and their gradients. */
    record Row(int seqLen, String kind, double forwardSeconds, double backwardSeconds, long bytes) {}

    @Override
    public Integer call() throws Exception {
        LlamaConfig c = RandomModels.byName(shape);
        if (batch < 1 || runs < 1) throw new InputException("--batch-size and --runs must be >= 1");
        for (int t : seqLens) if (t < 1) throw new InputException("--seq-lens must be positive, got " + t);
        Kernels k = KernelBackends.get();
        int h = c.numHeads(), kvh = c.numKvHeads(), d = c.headDim();
        Attention eager = new Attention(h, kvh, d, 0);
        FlashAttention flash = new FlashAttention(h, kvh, d, 0, null);
        List<Row> rows = new ArrayList<>();
        for (int t : seqLens) {
            MemoryLedger ledger = new MemoryLedger();
            long n = (long) batch * t;
            try (Tensor q = random(ledger, "q", n * h * d, 1); Tensor key = random(ledger, "k", n * kvh * d, 2);
                 Tensor value = random(ledger, "v", n * kvh * d, 3); Tensor dOut = random(ledger, "dOut", n * h * d, 4);
                 Tensor out = zeros(ledger, "out", n * h * d); Tensor dQ = zeros(ledger, "dQ", n * h * d);
                 Tensor dK = zeros(ledger, "dK", n * kvh * d); Tensor dV = zeros(ledger, "dV", n * kvh * d)) {
                long common = ledger.totalCurrentBytes();
                try (Tensor probs = zeros(ledger, "probs", (long) batch * h * t * t);
                     Tensor eagerScratch = zeros(ledger, "eager_scratch", Parallel.threads() * Attention.backwardScratchPerChunk(t))) {
                    long eagerBytes = ledger.totalCurrentBytes() - common;
                    try (Tensor lse = zeros(ledger, "lse", (long) batch * h * t);
                         Tensor flashScratch = zeros(ledger, "flash_scratch", Parallel.threads() * FlashAttention.scratchPerThread(t, t, d))) {
                        long flashBytes = ledger.totalCurrentBytes() - common - eagerBytes;
                        // Runs alternate eager and flash, so load from whatever else shares the machine hits both alike.
                        double[] e = {Double.MAX_VALUE, Double.MAX_VALUE}, f = {Double.MAX_VALUE, Double.MAX_VALUE};
                        for (int r = 0; r <= runs; r++) {
                            long t0 = System.nanoTime();
                            eager.forwardTraining(k, batch, t, q.segment(), key.segment(), value.segment(), probs.segment(), 0, out.segment());
                            long t1 = System.nanoTime();
                            eager.backward(k, batch, t, q.segment(), key.segment(), value.segment(), probs.segment(), 0, dOut.segment(),
                                    dQ.segment(), dK.segment(), dV.segment(), eagerScratch.segment());
                            long t2 = System.nanoTime();
                            flash.forward(k, batch, t, q.segment(), key.segment(), value.segment(), out.segment(), lse.segment(), 0,
                                    flashScratch.segment());
                            long t3 = System.nanoTime();
                            flash.backward(k, batch, t, q.segment(), key.segment(), value.segment(), out.segment(), lse.segment(), 0,
                                    dOut.segment(), dQ.segment(), dK.segment(), dV.segment(), flashScratch.segment());
                            long t4 = System.nanoTime();
                            if (r == 0) continue; // warm-up
                            e[0] = Math.min(e[0], (t1 - t0) / 1e9);
                            e[1] = Math.min(e[1], (t2 - t1) / 1e9);
                            f[0] = Math.min(f[0], (t3 - t2) / 1e9);
                            f[1] = Math.min(f[1], (t4 - t3) / 1e9);
                        }
                        rows.add(new Row(t, "eager", e[0], e[1], eagerBytes));
                        rows.add(new Row(t, "flash", f[0], f[1], flashBytes));
                    }
                }
            }
        }
        String torch = torchNote();
        PrintWriter out = spec.commandLine().getOut();
        if (json) {
            Map<String, Object> o = new LinkedHashMap<>();
            o.put("bench", "attention");
            o.put("shape", shape);
            o.put("heads", h);
            o.put("kv_heads", kvh);
            o.put("head_dim", d);
            o.put("batch_size", batch);
            o.put("backend", k.name());
            o.put("threads", Parallel.threads());
            o.put("torch", torch);
            List<Map<String, Object>> rs = new ArrayList<>();
            for (Row r : rows)
                rs.add(Map.of("seq_len", r.seqLen(), "kind", r.kind(), "forward_seconds", r.forwardSeconds(), "backward_seconds", r.backwardSeconds(),
                        "bytes", r.bytes()));
            o.put("results", rs);
            out.println(Json.write(o));
        } else {
            out.printf(Locale.ROOT, "attention, %s heads (H %d, KvH %d, D %d), B %d, causal, %s, %d threads (best of %d)%n", shape, h, kvh, d,
                    batch, k.name(), Parallel.threads(), runs);
            out.printf(Locale.ROOT, "  %6s  %10s %10s %12s   %10s %10s %12s   %s%n", "T", "eager fwd", "bwd", "memory", "flash fwd", "bwd", "memory",
                    "flash/eager fwd+bwd speed");
            for (int i = 0; i < rows.size(); i += 2) {
                Row e = rows.get(i), f = rows.get(i + 1);
                out.printf(Locale.ROOT, "  %6d  %9.2fms %9.2fms %12s   %9.2fms %9.2fms %12s   %.2f×%n", e.seqLen(), 1e3 * e.forwardSeconds(),
                        1e3 * e.backwardSeconds(), ByteSize.format(e.bytes()), 1e3 * f.forwardSeconds(), 1e3 * f.backwardSeconds(),
                        ByteSize.format(f.bytes()), (e.forwardSeconds() + e.backwardSeconds()) / (f.forwardSeconds() + f.backwardSeconds()));
            }
            out.println("  torch: " + torch);
        }
        if (plot != null) plot(rows, plot);
        return Main.OK;
    }

    private static Tensor random(MemoryLedger ledger, String name, long n, long seed) {
        Tensor t = Tensor.allocate(ledger, Category.ACTIVATIONS, name, DType.F32, Shape.of(n));
        SplittableRandom r = new SplittableRandom(seed);
        for (long i = 0; i < n; i++) t.setFloat(i, (float) (r.nextDouble() * 2 - 1));
        return t;
    }

    private static Tensor zeros(MemoryLedger ledger, String name, long n) {
        return Tensor.allocate(ledger, Category.WORKSPACE, name, DType.F32, Shape.of(n));
    }

    /** Whether the installed torch has scaled_dot_product_attention (torch ≥ 2.0), said in one line. */
    private String torchNote() {
        try {
            Process p = new ProcessBuilder(python, "-c", "import torch, torch.nn.functional as F; "
                    + "print(torch.__version__, hasattr(F, 'scaled_dot_product_attention'))").redirectErrorStream(true).start();
            String s = new String(p.getInputStream().readAllBytes()).trim();
            p.waitFor();
            if (p.exitValue() != 0) return "not compared (" + python + " could not import torch)";
            String[] parts = s.split("\\s+");
            return parts.length == 2 && parts[1].equals("True") ? "torch " + parts[0] + " has scaled_dot_product_attention (not timed here)"
                    : "not compared: the installed torch " + parts[0] + " has no scaled_dot_product_attention (it needs torch >= 2.0)";
        } catch (java.io.IOException | InterruptedException e) {
            return "not compared (" + e.getMessage() + ")";
        }
    }

    /** Time (forward + backward) and memory against T, eager and flash, side by side in one PNG. */
    private static void plot(List<Row> rows, Path file) throws java.io.IOException {
        System.setProperty("java.awt.headless", "true");
        XYChart time = new XYChartBuilder().width(600).height(420).title("attention forward + backward").xAxisTitle("T").yAxisTitle("ms").build();
        XYChart mem = new XYChartBuilder().width(600).height(420).title("memory attention holds").xAxisTitle("T").yAxisTitle("MiB").build();
        for (XYChart ch : List.of(time, mem)) {
            ch.getStyler().setXAxisLogarithmic(true);
            ch.getStyler().setYAxisLogarithmic(true);
        }
        for (String kind : List.of("eager", "flash")) {
            List<Double> x = new ArrayList<>(), ms = new ArrayList<>(), mib = new ArrayList<>();
            for (Row r : rows)
                if (r.kind().equals(kind)) {
                    x.add((double) r.seqLen());
                    ms.add(1e3 * (r.forwardSeconds() + r.backwardSeconds()));
                    mib.add(Math.max(r.bytes(), 1) / 1048576.0);
                }
            time.addSeries(kind, x, ms);
            mem.addSeries(kind, x, mib);
        }
        Path parent = file.toAbsolutePath().getParent();
        if (parent != null) Files.createDirectories(parent);
        Path tmp = file.resolveSibling("." + file.getFileName() + ".tmp");
        java.awt.image.BufferedImage a = BitmapEncoder.getBufferedImage(time), b = BitmapEncoder.getBufferedImage(mem);
        java.awt.image.BufferedImage both = new java.awt.image.BufferedImage(a.getWidth() + b.getWidth(), Math.max(a.getHeight(), b.getHeight()),
                java.awt.image.BufferedImage.TYPE_INT_RGB);
        java.awt.Graphics2D g = both.createGraphics();
        g.drawImage(a, 0, 0, null);
        g.drawImage(b, a.getWidth(), 0, null);
        g.dispose();
        javax.imageio.ImageIO.write(both, "png", tmp.toFile());
        Files.move(tmp, file, java.nio.file.StandardCopyOption.REPLACE_EXISTING, java.nio.file.StandardCopyOption.ATOMIC_MOVE);
    }
}
