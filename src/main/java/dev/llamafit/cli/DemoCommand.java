// `llamafit demo`: builds, pretrains and LoRA-fine-tunes a tiny model on synthetic tasks and prints what it measured.
package dev.llamafit.cli;

import java.io.PrintStream;
import java.io.PrintWriter;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.concurrent.Callable;

import dev.llamafit.io.Json;
import dev.llamafit.io.OutputFolder;
import dev.llamafit.kernels.KernelBackends;
import dev.llamafit.memory.ByteSize;
import dev.llamafit.memory.Category;
import dev.llamafit.memory.MemoryLedger;
import dev.llamafit.demo.Demo;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;
import picocli.CommandLine.Spec;
import picocli.CommandLine.Model.CommandSpec;

@Command(name = "demo", mixinStandardHelpOptions = true, sortOptions = false,
        description = {"Fine-tuning, end to end, with nothing to download: creates a tiny Llama with a character tokenizer,",
                "pretrains it on one synthetic task (reverse letters), fine-tunes it with LoRA and gradient checkpointing",
                "on a second (sort letters), and reports loss curves, accuracies before/after, adapter size and memory.",
                "With --model and --data it fine-tunes a real model instead and reports held-out loss before/after."})
final class DemoCommand implements Callable<Integer> {
    @Spec CommandSpec spec;

    @Option(names = "--work", description = "Folder for the model, data and runs (default: a new temporary folder, kept).") Path work;
    @Option(names = "--seed", defaultValue = "1", description = "Seed for data, weights and data order (default: ${DEFAULT-VALUE}).") long seed;
    @Option(names = "--steps-pretrain", defaultValue = "900", description = "Optimizer steps on task A (default: ${DEFAULT-VALUE}).") long stepsPretrain;
    @Option(names = "--steps-finetune", defaultValue = "600", description = "Optimizer steps on task B or the real data (default: ${DEFAULT-VALUE}).") long stepsFinetune;
    @Option(names = "--eval-examples", defaultValue = "100", description = "Held-out prompts per accuracy measurement (default: ${DEFAULT-VALUE}).") int evalExamples;
    @Option(names = "--model", description = "Fine-tune this Hugging Face model folder instead (skips pretraining; needs --data).") Path model;
    @Option(names = "--data", description = "Training data for --model (text, Alpaca or chat); 10% is held out for the loss.") Path data;
    @Option(names = "--json", description = "Print one JSON object with every number instead of the text report.") boolean json;

    @Override
    public Integer call() throws Exception {
        Path dir = work != null ? work : Files.createTempDirectory("llamafit-demo-");
        Demo.Options o = Main.userInput(() -> new Demo.Options(dir, seed, stepsPretrain, stepsFinetune, model, data, evalExamples));
        PrintWriter out = spec.commandLine().getOut();
        // Training progress goes to stderr under --json so stdout stays one JSON object.
        PrintStream log = json ? System.err : System.out;
        if (!json) out.printf("llamafit demo: working in %s%n", dir);
        out.flush();
        Demo.Report r;
        try (OutputFolder.Lock lock = OutputFolder.lock(dir, "--work", log)) {
            r = new Demo(o, KernelBackends.get(), MemoryLedger.global(), log).run();
        }
        if (json) out.println(Json.write(toJson(r)));
        else printText(r, out);
        return Main.OK;
    }

    static Map<String, Object> toJson(Demo.Report r) {
        Map<String, Object> m = new LinkedHashMap<>();
        m.put("mode", r.mode());
        m.put("work", r.work().toString());
        m.put("base_model", r.baseModel().toString());
        m.put("parameters", r.parameters());
        m.put("trainable_parameters", r.trainableParameters());
        List<Object> phases = new ArrayList<>();
        for (Demo.Phase p : r.phases()) {
            Map<String, Object> ph = new LinkedHashMap<>();
            ph.put("name", p.name());
            ph.put("method", p.method());
            ph.put("data", p.data());
            ph.put("steps", p.steps());
            ph.put("seconds", p.seconds());
            ph.put("trainable_parameters", p.trainableParameters());
            ph.put("first_loss", p.firstLoss());
            ph.put("last_loss", p.lastLoss());
            ph.put("eval_loss", finite(p.evalLoss()));
            ph.put("losses", p.losses());
            ph.put("loss_plot", p.lossPlot().toString());
            ph.put("output", p.output().toString());
            ph.put("product", p.product().toString());
            ph.put("ledger_peak_bytes", keyed(p.ledgerPeakBytes()));
            ph.put("ledger_total_peak_bytes", p.ledgerTotalPeakBytes());
            ph.put("peak_rss_bytes_so_far", p.peakRssBytes());
            phases.add(ph);
        }
        m.put("phases", phases);
        if (r.taskBAfter() != null) {
            Map<String, Object> acc = new LinkedHashMap<>();
            acc.put("task_a_after_pretrain", accuracy(r.taskAAfterPretrain()));
            acc.put("task_b_before", accuracy(r.taskBBefore()));
            acc.put("task_b_after", accuracy(r.taskBAfter()));
            acc.put("task_a_after_finetune", accuracy(r.taskAAfterFinetune()));
            m.put("accuracy", acc);
        } else {
            m.put("accuracy", null);
        }
        m.put("eval_loss_before", finite(r.evalLossBefore()));
        m.put("eval_loss_after", finite(r.evalLossAfter()));
        Map<String, Object> adapter = new LinkedHashMap<>();
        adapter.put("path", r.adapter().toString());
        adapter.put("bytes", r.adapterBytes());
        adapter.put("trainable_parameters", r.trainableParameters());
        m.put("adapter", adapter);
        m.put("peak_rss_bytes", r.peakRssBytes());
        m.put("wall_seconds", r.wallSeconds());
        m.put("seconds", r.seconds());
        m.put("notes", r.notes());
        return m;
    }

    private static Map<String, Long> keyed(Map<Category, Long> peaks) {
        Map<String, Long> out = new LinkedHashMap<>();
        peaks.forEach((c, b) -> out.put(c.key(), b));
        return out;
    }

    private static Object accuracy(Demo.Accuracy a) {
        if (a == null) return null;
        Map<String, Object> m = new LinkedHashMap<>();
        m.put("task", a.task());
        m.put("accuracy", a.fraction());
        m.put("correct", a.correct());
        m.put("total", a.total());
        List<Object> samples = new ArrayList<>();
        for (Demo.Sample s : a.samples()) samples.add(Map.of("prompt", s.prompt(), "expected", s.expected(), "generated", s.generated()));
        m.put("samples", samples);
        return m;
    }

    private static Double finite(double x) { return Double.isFinite(x) ? x : null; }

    private static void printText(Demo.Report r, PrintWriter out) {
        out.println();
        out.printf(Locale.ROOT, "== llamafit demo (%s), %.1f s ==%n", r.mode(), r.seconds());
        out.printf(Locale.ROOT, "model: %s (%,d parameters: C %d, L %d, H %d, KvH %d, F %d, V %d)%n", r.baseModel(), r.parameters(),
                r.config().hiddenSize(), r.config().numLayers(), r.config().numHeads(), r.config().numKvHeads(),
                r.config().intermediateSize(), r.config().vocabSize());
        for (Demo.Phase p : r.phases()) {
            out.printf(Locale.ROOT, "%n%s: %s on %s, %d steps in %.1f s, %,d trainable parameters, loss %.3f -> %.3f%s%n", p.name(), p.method(),
                    p.data(), p.steps(), p.seconds(), p.trainableParameters(), p.firstLoss(), p.lastLoss(),
                    Double.isNaN(p.evalLoss()) ? "" : String.format(Locale.ROOT, ", held-out loss %.3f", p.evalLoss()));
            out.printf("  loss  %s%n", sparkline(p.losses(), 50));
            out.printf("  %s%n", lossTable(p.losses()));
            out.printf("  plot  %s%n", p.lossPlot());
        }
        out.println();
        if (r.taskBAfter() != null) {
            out.println("accuracy (exact match of greedy answers on held-out prompts):");
            line(out, "task A (" + r.taskAAfterPretrain().task() + ") after pretraining", r.taskAAfterPretrain());
            line(out, "task B (" + r.taskBBefore().task() + ") before fine-tuning", r.taskBBefore());
            line(out, "task B (" + r.taskBAfter().task() + ") after LoRA fine-tuning", r.taskBAfter());
            line(out, "task A (" + r.taskAAfterFinetune().task() + ") after LoRA fine-tuning", r.taskAAfterFinetune());
            out.println("examples (task B, base + adapter):");
            for (Demo.Sample s : r.taskBAfter().samples())
                out.printf("  %-14s expected %-8s got %-8s %s%n", s.prompt(), s.expected(), s.generated(), s.expected().equals(s.generated()) ? "ok" : "wrong");
        } else {
            out.printf(Locale.ROOT, "held-out loss: %.4f before -> %.4f after LoRA fine-tuning (base + adapter)%n", r.evalLossBefore(), r.evalLossAfter());
        }
        out.printf(Locale.ROOT, "adapter: %s (%,d bytes: adapter_config.json + adapter_model.safetensors) in %s%n",
                ByteSize.format(r.adapterBytes()), r.adapterBytes(), r.adapter());
        out.printf(Locale.ROOT, "  trainable parameters %,d of %,d (%.2f%%)%n", r.trainableParameters(), r.parameters(),
                100.0 * r.trainableParameters() / r.parameters());
        out.println("memory (ledger peak by category, per phase):");
        out.printf("  %-14s", "");
        for (Demo.Phase p : r.phases()) out.printf(" %18s", p.name() + " (" + p.method() + ")");
        out.println();
        for (Category c : Category.values()) {
            if (r.phases().stream().allMatch(p -> p.ledgerPeakBytes().getOrDefault(c, 0L) == 0)) continue;
            out.printf("  %-14s", c.key());
            for (Demo.Phase p : r.phases()) out.printf(" %18s", ByteSize.format(p.ledgerPeakBytes().getOrDefault(c, 0L)));
            out.println();
        }
        out.printf("  %-14s", "total");
        for (Demo.Phase p : r.phases()) out.printf(" %18s", ByteSize.format(p.ledgerTotalPeakBytes()));
        out.println();
        if (r.peakRssBytes() != null) out.printf("  %-14s %12s (whole run)%n", "process RSS", ByteSize.format(r.peakRssBytes()));
        StringBuilder times = new StringBuilder();
        r.wallSeconds().forEach((k, v) -> { if (!k.equals("total")) times.append(String.format(Locale.ROOT, "%s %.1f s, ", k, v)); });
        out.printf(Locale.ROOT, "wall time: %stotal %.1f s%n", times, r.seconds());
        for (String n : r.notes()) out.printf("note: %s%n", n);
        out.printf("work folder (kept): %s%n", r.work());
    }

    private static void line(PrintWriter out, String what, Demo.Accuracy a) {
        out.printf(Locale.ROOT, "  %-40s %5.1f%%  (%d/%d)%n", what, 100 * a.fraction(), a.correct(), a.total());
    }

    /** Mean loss per bucket drawn with eight block heights, between the curve's own minimum and maximum. */
    static String sparkline(List<Double> losses, int width) {
        if (losses.isEmpty()) return "";
        int n = Math.min(width, losses.size());
        double[] v = new double[n];
        for (int b = 0; b < n; b++) {
            int from = (int) ((long) b * losses.size() / n), to = (int) ((long) (b + 1) * losses.size() / n);
            double s = 0;
            for (int i = from; i < to; i++) s += losses.get(i);
            v[b] = s / (to - from);
        }
        double lo = Double.MAX_VALUE, hi = -Double.MAX_VALUE;
        for (double x : v) {
            lo = Math.min(lo, x);
            hi = Math.max(hi, x);
        }
        String blocks = "▁▂▃▄▅▆▇█";
        StringBuilder sb = new StringBuilder();
        for (double x : v) sb.append(blocks.charAt(hi > lo ? (int) Math.round((x - lo) / (hi - lo) * 7) : 0));
        return sb.toString();
    }

    /** The loss at the first step and at each quarter of the run. */
    static String lossTable(List<Double> losses) {
        if (losses.isEmpty()) return "";
        StringBuilder sb = new StringBuilder();
        for (int q = 0; q <= 4; q++) {
            int i = q == 0 ? 0 : (int) Math.min(losses.size() - 1, (long) q * losses.size() / 4 - 1);
            sb.append(String.format(Locale.ROOT, "step %d: %.3f", i + 1, losses.get(i)));
            if (q < 4) sb.append("   ");
        }
        return sb.toString();
    }
}
