// Per-step training metrics: OUTPUT/metrics.jsonl (one object per step, and rare events) and the loss curve OUTPUT/loss.png.
package dev.llamafit.train;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

import org.knowm.xchart.BitmapEncoder;
import org.knowm.xchart.XYChart;
import org.knowm.xchart.XYChartBuilder;
import org.knowm.xchart.style.markers.SeriesMarkers;

import com.fasterxml.jackson.databind.JsonNode;

import dev.llamafit.io.AtomicFiles;
import dev.llamafit.io.Json;
import dev.llamafit.io.OutputWriteException;

/**
 * Appends one JSON object per optimizer step to {@code metrics.jsonl} and redraws {@code loss.png}. On resume,
 * lines after the checkpoint's step are dropped, so the file always describes one consistent run. Besides the step
 * records the file may hold event records, told apart by their {@code "event"} key (e.g.
 * {@code {"event":"resume_mismatch_accepted","step":10,"fields":{...}}}); readers of losses skip them, as
 * {@link #read} does.
 */
public final class Metrics {
    public static final String FILE = "metrics.jsonl";
    public static final String PLOT = "loss.png";

    /** A line of metrics.jsonl. */
    public sealed interface Entry permits Step, Event {
        long step();
        Map<String, Object> toJson();
    }

    /** Something that happened at {@code step} (after that step's record), e.g. a resume that accepted changed settings. */
    public record Event(String name, long step, Map<String, Object> fields) implements Entry {
        public Event {
            if (name == null || name.isBlank()) throw new IllegalArgumentException("an event needs a name");
            fields = java.util.Collections.unmodifiableMap(new LinkedHashMap<>(fields));
        }

        @Override
        public Map<String, Object> toJson() {
            Map<String, Object> m = new LinkedHashMap<>();
            m.put("event", name);
            m.put("step", step);
            m.put("fields", fields);
            return m;
        }
    }

    /**
     * One step's record. {@code evalLoss} is NaN when the step did not evaluate. {@code lossScale} is the fp16 loss
     * scale this step's backward used, NaN when the run has no scaler (fp32, bf16); {@code skipped} marks a step whose
     * gradients overflowed, so the optimizer did not step. Both are written only for an fp16 run, so fp32 and bf16
     * lines are as before.
     */
    public record Step(long step, double loss, double lr, double gradNorm, double tokensPerSecond, double evalLoss,
                       double lossScale, boolean skipped) implements Entry {
        public Step {
            if (skipped && Double.isNaN(lossScale)) throw new IllegalArgumentException("only a loss-scaled (fp16) step can be skipped");
        }

        /** A step without loss scaling. */
        public Step(long step, double loss, double lr, double gradNorm, double tokensPerSecond, double evalLoss) {
            this(step, loss, lr, gradNorm, tokensPerSecond, evalLoss, Double.NaN, false);
        }

        @Override
        public Map<String, Object> toJson() {
            Map<String, Object> m = new LinkedHashMap<>();
            m.put("step", step);
            m.put("loss", loss);
            m.put("lr", lr);
            m.put("grad_norm", gradNorm);
            m.put("tokens_per_s", tokensPerSecond);
            if (!Double.isNaN(evalLoss)) m.put("eval_loss", evalLoss);
            if (!Double.isNaN(lossScale)) m.put("loss_scale", lossScale);
            if (skipped) m.put("skipped", true);
            return m;
        }
    }

    /** What a run is and how long it will be, written when it starts: {@code llamafit ui} shows progress and options from it. */
    public static final String RUN_INFO = "run.json";

    /**
     * Writes OUTPUT/run.json (atomically) as training starts at {@code startStep} of {@code totalSteps}: the run's
     * identity fields, the schedule settings that are not part of it, and the start time. Nothing reads it back to train.
     */
    static void writeRunInfo(TrainOptions o, RunIdentity identity, long startStep, long totalSteps, int ranks) throws IOException {
        Map<String, Object> options = new LinkedHashMap<>(identity.fields());
        options.put("lr", o.lr());
        options.put("schedule", o.schedule());
        options.put("warmup", o.warmup());
        options.put("eval_every", o.evalEvery());
        options.put("save_every", o.saveEvery());
        Map<String, Object> j = new LinkedHashMap<>();
        j.put("total_steps", totalSteps);
        j.put("start_step", startStep);
        j.put("started_at_ms", System.currentTimeMillis());
        j.put("ranks", ranks);
        j.put("options", options);
        AtomicFiles.writeString(o.output().resolve(RUN_INFO), Json.write(j) + "\n");
    }

    private final Path file;
    private final Path plot;
    private final List<Entry> entries = new ArrayList<>();

    /**
     * Opens the run's metrics, keeping the step records up to {@code keepThroughStep} (−1: start afresh) and the events
     * before it: an event at that very step was recorded by a resume from it whose continuation is now discarded.
     */
    public Metrics(Path runDir, long keepThroughStep) throws IOException {
        this.file = runDir.resolve(FILE);
        this.plot = runDir.resolve(PLOT);
        if (keepThroughStep >= 0 && Files.isRegularFile(file))
            for (Entry e : readEntries(file))
                if (e instanceof Step ? e.step() <= keepThroughStep : e.step() < keepThroughStep) entries.add(e);
        rewrite();
    }

    /** The step records of a run folder's metrics.jsonl, oldest first (events skipped). */
    public static List<Step> read(Path runDir) throws IOException {
        List<Step> out = new ArrayList<>();
        for (Entry e : readEntries(runDir.resolve(FILE))) if (e instanceof Step s) out.add(s);
        return out;
    }

    /** Every line of a metrics.jsonl, events included. */
    public static List<Entry> readEntries(Path file) throws IOException {
        List<Entry> out = new ArrayList<>();
        for (String line : Files.readAllLines(file)) {
            if (line.isBlank()) continue;
            JsonNode n = Json.MAPPER.readTree(line);
            long s = n.get("step").asLong();
            if (n.has("event")) {
                @SuppressWarnings("unchecked")
                Map<String, Object> fields = n.has("fields") ? Json.MAPPER.convertValue(n.get("fields"), Map.class) : Map.of();
                out.add(new Event(n.get("event").asText(), s, fields));
            } else {
                out.add(new Step(s, n.get("loss").asDouble(), n.get("lr").asDouble(), n.get("grad_norm").asDouble(),
                        n.get("tokens_per_s").asDouble(), n.has("eval_loss") ? n.get("eval_loss").asDouble() : Double.NaN,
                        n.has("loss_scale") ? n.get("loss_scale").asDouble() : Double.NaN,
                        n.has("skipped") && n.get("skipped").asBoolean()));
            }
        }
        return out;
    }

    public void record(Entry e) throws IOException {
        entries.add(e);
        try {
            Files.writeString(file, Json.writeCompact(e.toJson()) + "\n", java.nio.file.StandardOpenOption.APPEND,
                    java.nio.file.StandardOpenOption.CREATE);
        } catch (IOException x) {
            throw OutputWriteException.of("appending step " + e.step() + " to", file, x);
        }
    }

    /** The step records so far, oldest first. */
    public List<Step> steps() {
        List<Step> out = new ArrayList<>();
        for (Entry e : entries) if (e instanceof Step s) out.add(s);
        return out;
    }

    private void rewrite() throws IOException {
        StringBuilder sb = new StringBuilder();
        for (Entry e : entries) sb.append(Json.writeCompact(e.toJson())).append('\n');
        AtomicFiles.writeString(file, sb.toString());
    }

    /** Draws train loss (and eval loss where measured) against step into loss.png, atomically. */
    public void plot() throws IOException {
        List<Step> steps = steps();
        if (steps.isEmpty()) return;
        System.setProperty("java.awt.headless", "true");
        XYChart chart = new XYChartBuilder().width(800).height(500).title("llamafit training loss")
                .xAxisTitle("step").yAxisTitle("loss").build();
        chart.getStyler().setMarkerSize(3);
        List<Double> tx = new ArrayList<>(), ty = new ArrayList<>(), ex = new ArrayList<>(), ey = new ArrayList<>();
        for (Step st : steps) {
            // An fp16 step skipped for overflow may have an infinite loss: the chart leaves it out.
            if (Double.isFinite(st.loss())) {
                tx.add((double) st.step());
                ty.add(st.loss());
            }
            if (!Double.isNaN(st.evalLoss())) {
                ex.add((double) st.step());
                ey.add(st.evalLoss());
            }
        }
        if (tx.isEmpty()) return;
        chart.addSeries("train", tx, ty).setMarker(SeriesMarkers.NONE);
        if (!ex.isEmpty()) chart.addSeries("eval", ex, ey).setMarker(SeriesMarkers.CIRCLE);
        Path tmp = plot.resolveSibling("." + PLOT + ".tmp.png");
        try {
            BitmapEncoder.saveBitmap(chart, tmp.toString(), BitmapEncoder.BitmapFormat.PNG);
            Files.move(tmp, plot, java.nio.file.StandardCopyOption.REPLACE_EXISTING, java.nio.file.StandardCopyOption.ATOMIC_MOVE);
        } catch (IOException failure) {
            try {
                Files.deleteIfExists(tmp);
            } catch (IOException cleanup) {
                failure.addSuppressed(cleanup); // removed at the next run's start
            }
            throw OutputWriteException.of("drawing the loss curve to", plot, failure);
        }
    }
}
