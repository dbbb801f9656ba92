// `bench train --workers N`: real multi-rank `train` runs through mpirun per ZeRO stage (and ZeRO-3 prefetch on/off): tokens/s, communication, per-rank memory.
package dev.llamafit.cli;

import java.io.IOException;
import java.io.InputStream;
import java.io.PrintWriter;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.SplittableRandom;
import java.util.TreeMap;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

import com.fasterxml.jackson.databind.JsonNode;

import dev.llamafit.io.InputException;
import dev.llamafit.io.Json;
import dev.llamafit.memory.ByteSize;
import dev.llamafit.memory.Category;
import dev.llamafit.train.RunFailure;
import dev.llamafit.train.Trainer;

/**
 * Each variant is one {@code train --zero S} job of N ranks started as {@code train --workers N} starts it (mpirun on this
 * node), for one warm-up step plus {@code --steps}, in a temporary run folder. What it reports comes from the job itself:
 * the global tokens/s of each step after the first from metrics.jsonl (their median), and from every rank's stderr lines
 * its seconds in those steps and in collectives within them, and its ledger peaks against its plan. With --repeat the
 * variants take turns (stage 0, 1, ..., 0, 1, ...), so load from whoever shares the machine hits them alike; the ratios
 * are within one bench.
 */
final class BenchTrainWorkers {
    /** One job's settings: a ZeRO stage and, at stage 3, whether the next block's gather is prefetched. */
    record Variant(int zero, boolean prefetch) {
        String name() { return "zero " + zero + (zero == 3 ? ", prefetch " + (prefetch ? "on" : "off") : ""); }
    }

    /** One rank's numbers from one job. */
    record Rank(long steps, double stepSeconds, double collectiveSeconds, long totalPlanned, long totalMeasured,
                Map<String, long[]> categories) {}

    /** Model-state categories: what ZeRO shards. */
    static final List<Category> MODEL_STATE = List.of(Category.WEIGHTS, Category.MASTER_WEIGHTS, Category.GRADIENTS, Category.OPTIMIZER);

    private static final Pattern MEMORY = Pattern.compile("rank (\\d+) of \\d+: memory (\\S+) planned (\\d+) measured (\\d+) bytes");
    private static final Pattern STEPS = Pattern.compile("rank (\\d+) of \\d+: after the first step: (\\d+) steps in ([0-9.]+) s, collectives ([0-9.]+) s");

    private final BenchTrainCommand b;

    BenchTrainWorkers(BenchTrainCommand options) { this.b = options; }

    Integer run() throws Exception {
        int n = b.workers;
        if (n < 2) throw new InputException("--workers must be >= 2 (ranks to compare ZeRO stages over), got " + n);
        if (System.getenv("OMPI_COMM_WORLD_SIZE") != null)
            throw new InputException("bench train --workers starts mpirun itself: run it without mpirun");
        for (String o : List.of("--shape", "--reference", "--python", "--base-dtype", "--fp32-step", "--no-fp32-step"))
            if (b.spec.commandLine().getParseResult().hasMatchedOption(o))
                throw new InputException(o + " is for the in-process bench train; with --workers the ranks train --model on --data");
        if (b.model == null)
            throw new InputException("bench train --workers needs --model DIR (a Hugging Face folder to train, e.g. ../shared/models/tinystories-656k)");
        if (b.attention.size() > 1) throw new InputException("with --workers, --attention takes one of eager or flash, got " + b.attention);
        if (b.steps < 1) throw new InputException("--steps must be >= 1, got " + b.steps);
        if (b.repeat < 1) throw new InputException("--repeat must be >= 1, got " + b.repeat);
        List<Variant> variants = variants(b.zero, b.prefetch);
        int batch = b.batchSize != null ? b.batchSize : 4;

        Path tmp = Files.createTempDirectory("llamafit-bench-train");
        try {
            Path data = b.data != null ? b.data : corpus(tmp.resolve("corpus.txt"));
            List<List<Double>> tokens = new ArrayList<>();
            List<List<Rank[]>> ranks = new ArrayList<>();
            for (int v = 0; v < variants.size(); v++) { tokens.add(new ArrayList<>()); ranks.add(new ArrayList<>()); }
            int job = 0;
            for (int r = 0; r < b.repeat; r++) {
                for (int v = 0; v < variants.size(); v++) {
                    Path output = tmp.resolve("run-" + job++);
                    ranks.get(v).add(job(variants.get(v), n, batch, data, output, tokens.get(v)));
                }
            }
            report(variants, n, batch, data, tokens, ranks);
        } finally {
            deleteTree(tmp);
        }
        return Main.OK;
    }

    /** Stages in the order given; stage 3 once per --prefetch value (the other stages have no prefetch). */
    static List<Variant> variants(List<Integer> stages, List<String> prefetch) {
        List<Boolean> pf = new ArrayList<>();
        for (String p : prefetch) {
            boolean on = switch (p) {
                case "on" -> true;
                case "off" -> false;
                default -> throw new InputException("--prefetch takes on, off or both (e.g. on,off), got '" + p + "'");
            };
            if (!pf.contains(on)) pf.add(on);
        }
        if (!stages.contains(3) && !(pf.size() == 1 && pf.getFirst()))
            throw new InputException("--prefetch is ZeRO-3's all-gather of the next block: add 3 to --zero");
        List<Variant> out = new ArrayList<>();
        for (int s : stages) {
            if (s < 0 || s > 3) throw new InputException("--zero stages are 0, 1, 2 or 3, got " + s);
            if (s == 3) { for (boolean p : pf) if (!out.contains(new Variant(3, p))) out.add(new Variant(3, p)); }
            else if (!out.contains(new Variant(s, true))) out.add(new Variant(s, true));
        }
        return out;
    }

    /** Runs one job; adds its global tokens/s after the first step to {@code tokens}; each rank's numbers. */
    private Rank[] job(Variant v, int n, int batch, Path data, Path output, List<Double> tokens) throws Exception {
        List<String> args = new ArrayList<>(List.of("train", "--model", b.model.toString(), "--data", data.toString(),
                "--output", output.toString(), "--steps", String.valueOf(b.steps + 1), "--batch-size", String.valueOf(batch),
                "--seq-len", String.valueOf(b.seqLen), "--zero", String.valueOf(v.zero()), "--lr", "1e-4", "--schedule", "constant",
                "--precision", b.precision, "--attention", b.attention.getFirst(), "--seed", "7"));
        if (b.checkpointing) args.add("--gradient-checkpointing");
        if (b.loraR > 0) args.addAll(List.of("--lora-r", String.valueOf(b.loraR), "--lora-targets", b.loraTargets));
        List<String> jvm = v.prefetch() ? List.of() : List.of("-D" + Trainer.ZERO3_PREFETCH_PROPERTY + "=false");
        ProcessBuilder pb = new ProcessBuilder(Workers.command(n, args, jvm));
        pb.environment().remove("OMPI_COMM_WORLD_SIZE");
        Process p = pb.start();
        StringBuilder stdout = new StringBuilder(), stderr = new StringBuilder();
        Thread a = drain(p.getInputStream(), stdout), e = drain(p.getErrorStream(), stderr);
        int code = p.waitFor();
        a.join();
        e.join();
        if (code != 0)
            throw new RunFailure("bench train --workers: the " + v.name() + " job exited with " + code + ": " + tail(stderr + "\n" + stdout));
        for (String line : Files.readAllLines(output.resolve("metrics.jsonl"))) {
            JsonNode j = Json.MAPPER.readTree(line);
            if (j.has("tokens_per_s") && j.get("step").asLong() > 1) tokens.add(j.get("tokens_per_s").asDouble());
        }
        Rank[] out = new Rank[n];
        Map<Integer, Map<String, long[]>> mem = new TreeMap<>();
        for (String line : stderr.toString().split("\n")) {
            Matcher m = MEMORY.matcher(line.strip());
            if (m.matches())
                mem.computeIfAbsent(Integer.parseInt(m.group(1)), k -> new LinkedHashMap<>())
                        .put(m.group(2), new long[] {Long.parseLong(m.group(3)), Long.parseLong(m.group(4))});
            m = STEPS.matcher(line.strip());
            if (m.matches()) {
                int r = Integer.parseInt(m.group(1));
                out[r] = new Rank(Long.parseLong(m.group(2)), Double.parseDouble(m.group(3)), Double.parseDouble(m.group(4)), 0, 0, null);
            }
        }
        for (int r = 0; r < n; r++) {
            Map<String, long[]> cats = mem.get(r);
            if (out[r] == null || cats == null || !cats.containsKey("total"))
                throw new RunFailure("bench train --workers: rank " + r + " of the " + v.name() + " job printed no step or memory report: " + tail(stderr.toString()));
            long[] total = cats.remove("total");
            out[r] = new Rank(out[r].steps(), out[r].stepSeconds(), out[r].collectiveSeconds(), total[0], total[1], cats);
        }
        return out;
    }

    private void report(List<Variant> variants, int n, int batch, Path data, List<List<Double>> tokens, List<List<Rank[]>> ranks) {
        PrintWriter out = b.spec.commandLine().getOut();
        List<Map<String, Object>> rows = new ArrayList<>();
        double first = Double.NaN, commOn = Double.NaN, commOff = Double.NaN;
        for (int v = 0; v < variants.size(); v++) {
            Variant var = variants.get(v);
            double tps = median(tokens.get(v));
            if (v == 0) first = tps;
            // Per rank: mean seconds per step over the repeats' steps after the first.
            double[] comm = new double[n], step = new double[n];
            for (int r = 0; r < n; r++) {
                long steps = 0;
                for (Rank[] job : ranks.get(v)) {
                    steps += job[r].steps();
                    comm[r] += job[r].collectiveSeconds();
                    step[r] += job[r].stepSeconds();
                }
                comm[r] /= steps;
                step[r] /= steps;
            }
            double commMax = java.util.Arrays.stream(comm).max().orElseThrow(), commMean = java.util.Arrays.stream(comm).average().orElseThrow();
            double stepMean = java.util.Arrays.stream(step).average().orElseThrow();
            if (var.zero() == 3) { if (var.prefetch()) commOn = commMean; else commOff = commMean; }
            Map<String, Object> row = new LinkedHashMap<>();
            row.put("zero", var.zero());
            if (var.zero() == 3) row.put("prefetch", var.prefetch());
            row.put("tokens_per_s", round(tps));
            row.put("tokens_per_s_vs_first", round(tps / first));
            row.put("step_seconds_mean", round(stepMean));
            row.put("comm_seconds_per_step_max", round(comm.length == 0 ? 0 : commMax));
            row.put("comm_seconds_per_step_mean", round(commMean));
            row.put("comm_share", round(commMean / stepMean));
            List<Map<String, Object>> rs = new ArrayList<>();
            Rank[] last = ranks.get(v).getLast(); // memory is the same in every repeat
            for (int r = 0; r < n; r++) {
                Map<String, Object> m = new LinkedHashMap<>();
                m.put("rank", r);
                m.put("comm_seconds_per_step", round(comm[r]));
                m.put("step_seconds", round(step[r]));
                m.put("total_planned_bytes", last[r].totalPlanned());
                m.put("total_measured_bytes", last[r].totalMeasured());
                long sp = 0, sm = 0;
                Map<String, Object> cats = new LinkedHashMap<>();
                for (Category c : MODEL_STATE) {
                    long[] pm = last[r].categories().get(c.key());
                    if (pm == null) continue;
                    cats.put(c.key(), Map.of("planned_bytes", pm[0], "measured_bytes", pm[1]));
                    sp += pm[0];
                    sm += pm[1];
                }
                m.put("model_state_planned_bytes", sp);
                m.put("model_state_measured_bytes", sm);
                m.put("model_state", cats);
                rs.add(m);
            }
            row.put("ranks", rs);
            rows.add(row);
        }
        Map<String, Object> o = new LinkedHashMap<>();
        o.put("bench", "train");
        o.put("workers", n);
        o.put("cores", Runtime.getRuntime().availableProcessors());
        o.put("model", b.model.toString());
        o.put("data", b.data == null ? "generated" : data.toString());
        o.put("precision", b.precision);
        o.put("batch_size_per_rank", batch);
        o.put("seq_len", b.seqLen);
        o.put("steps", b.steps);
        o.put("repeat", b.repeat);
        o.put("variants", rows);
        if (!Double.isNaN(commOn) && !Double.isNaN(commOff)) o.put("zero3_comm_prefetch_off_vs_on", round(commOff / commOn));
        if (b.json) {
            out.println(Json.write(o));
            return;
        }
        out.printf(Locale.ROOT, "train, %d ranks on %d cores (mpirun), %s, %s, batch %d per rank × %d tokens, median of %d steps after a warm-up step × %d repeat(s)%n",
                n, Runtime.getRuntime().availableProcessors(), b.model.getFileName(), b.precision, batch, b.seqLen, b.steps, b.repeat);
        out.printf(Locale.ROOT, "  %-22s %10s %8s %11s %11s %7s%n", "variant", "tokens/s", "vs first", "comm max", "comm mean", "share");
        for (int v = 0; v < variants.size(); v++) {
            Map<String, Object> row = rows.get(v);
            out.printf(Locale.ROOT, "  %-22s %10.1f %7.2f× %9.2fms %9.2fms %6.1f%%%n", variants.get(v).name(), row.get("tokens_per_s"),
                    row.get("tokens_per_s_vs_first"), 1e3 * (Double) row.get("comm_seconds_per_step_max"),
                    1e3 * (Double) row.get("comm_seconds_per_step_mean"), 100 * (Double) row.get("comm_share"));
        }
        if (o.containsKey("zero3_comm_prefetch_off_vs_on"))
            out.printf(Locale.ROOT, "  ZeRO-3 communication per step, prefetch off / on: %.2f×%n", o.get("zero3_comm_prefetch_off_vs_on"));
        out.println("  per-rank ledger peak, planned / measured: total; model state (weights + master weights + gradients + optimizer)");
        for (int v = 0; v < variants.size(); v++) {
            @SuppressWarnings("unchecked") List<Map<String, Object>> rs = (List<Map<String, Object>>) rows.get(v).get("ranks");
            for (Map<String, Object> m : rs)
                out.printf(Locale.ROOT, "  %-22s rank %d: %s / %s; %s / %s%n", variants.get(v).name(), m.get("rank"),
                        ByteSize.format((Long) m.get("total_planned_bytes")), ByteSize.format((Long) m.get("total_measured_bytes")),
                        ByteSize.format((Long) m.get("model_state_planned_bytes")), ByteSize.format((Long) m.get("model_state_measured_bytes")));
        }
    }

    /** A plain-text corpus any tokenizer reads: short sentences drawn from a few words, fixed seed (about 200 KB). */
    static Path corpus(Path file) throws IOException {
        String[] who = {"the cat", "a dog", "the girl", "a boy", "the bird", "my friend", "the old man", "a small fox"};
        String[] did = {"saw", "found", "liked", "chased", "helped", "watched", "painted", "carried"};
        String[] what = {"a red ball", "the big tree", "some bread", "the blue sea", "a happy song", "the little house", "a warm hat"};
        SplittableRandom rnd = new SplittableRandom(5);
        StringBuilder sb = new StringBuilder();
        while (sb.length() < 200_000) {
            sb.append(who[rnd.nextInt(who.length)]).append(' ').append(did[rnd.nextInt(did.length)]).append(' ')
                    .append(what[rnd.nextInt(what.length)]).append(rnd.nextInt(4) == 0 ? ".\n" : ". ");
        }
        Files.writeString(file, sb);
        return file;
    }

    private static Thread drain(InputStream in, StringBuilder to) {
        return Thread.ofVirtual().start(() -> {
            try {
                String s = new String(in.readAllBytes());
                synchronized (to) { to.append(s); }
            } catch (IOException e) {
                synchronized (to) { to.append(e); }
            }
        });
    }

    private static String tail(String s) {
        String t = s.strip().replace('\n', ' ');
        return t.length() > 600 ? "..." + t.substring(t.length() - 600) : t;
    }

    static double median(List<Double> xs) {
        List<Double> s = new ArrayList<>(xs);
        s.sort(Comparator.naturalOrder());
        int m = s.size();
        return m % 2 == 1 ? s.get(m / 2) : (s.get(m / 2 - 1) + s.get(m / 2)) / 2;
    }

    private static double round(double v) { return Math.round(v * 1e6) / 1e6; }

    private static void deleteTree(Path p) throws IOException {
        if (!Files.exists(p)) return;
        try (var walk = Files.walk(p)) {
            for (Path q : walk.sorted(Comparator.reverseOrder()).toList()) Files.deleteIfExists(q);
        }
    }
}
