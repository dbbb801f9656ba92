// The run folders under `llamafit ui --runs DIR`: the one place a request's path becomes a file, checked to stay inside DIR.
package dev.llamafit.ui;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.InvalidPathException;
import java.nio.file.LinkOption;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.stream.Stream;

import com.fasterxml.jackson.databind.JsonNode;

import dev.llamafit.io.Json;
import dev.llamafit.io.OutputFolder;
import dev.llamafit.train.Checkpoints;
import dev.llamafit.train.Metrics;

/**
 * Every path a request names is relative to the runs folder; {@link #resolve} refuses absolute paths, paths that
 * climb out with {@code ..}, and symbolic links that lead out, so nothing outside the folder is ever read. A run
 * folder is one with a metrics.jsonl or run.json: the runs folder itself, or a folder directly inside it.
 */
final class RunFolders {
    /** memory.json, which `train` writes beside metrics.jsonl when the run ends (TrainCommand.MEMORY_REPORT). */
    static final String MEMORY_REPORT = "memory.json";
    /** plan.json, the planned bytes by category that `train` writes when the run starts (TrainCommand.PLAN_REPORT). */
    static final String PLAN_REPORT = "plan.json";

    /** A path a request may not read (HTTP 403), or that names nothing there (404). */
    static final class Refused extends RuntimeException {
        final int status;

        Refused(int status, String message) {
            super(message);
            this.status = status;
        }
    }

    private final Path root;
    private final Path realRoot;

    RunFolders(Path root) throws IOException {
        this.root = root.toAbsolutePath().normalize();
        this.realRoot = this.root.toRealPath();
    }

    Path root() { return root; }

    /** {@code relative} inside the runs folder, normalised; an existing file must also be inside it after links are followed. */
    Path resolve(String relative) {
        if (relative == null || relative.isEmpty()) throw new Refused(403, "a path inside --runs is needed");
        Path rel;
        try {
            rel = Path.of(relative);
        } catch (InvalidPathException e) {
            throw new Refused(403, "not a path: " + e.getMessage());
        }
        if (rel.isAbsolute() || relative.startsWith("/") || relative.startsWith("\\"))
            throw new Refused(403, "absolute paths are refused: give a path relative to --runs (" + root + ")");
        Path p = root.resolve(rel).normalize();
        if (!p.startsWith(root)) throw new Refused(403, "'" + relative + "' leads outside --runs (" + root + ")");
        if (Files.exists(p, LinkOption.NOFOLLOW_LINKS)) {
            Path real;
            try {
                real = p.toRealPath();
            } catch (IOException e) {
                throw new Refused(404, "cannot read '" + relative + "': " + e.getMessage());
            }
            if (!real.startsWith(realRoot)) throw new Refused(403, "'" + relative + "' links to a file outside --runs");
        }
        return p;
    }

    /** The run folder {@code name} (a name from {@link #list}). */
    Path run(String name) {
        Path p = name == null || name.equals(".") ? root : resolve(name);
        if (!isRun(p)) throw new Refused(404, "no run '" + name + "' under " + root + " (a run folder has " + Metrics.FILE + ")");
        return p;
    }

    static boolean isRun(Path p) {
        return Files.isDirectory(p) && (Files.isRegularFile(p.resolve(Metrics.FILE)) || Files.isRegularFile(p.resolve(Metrics.RUN_INFO)));
    }

    /** The runs, newest first: name, status and progress of each. */
    List<Map<String, Object>> list() throws IOException {
        List<Path> runs = new ArrayList<>();
        if (isRun(root)) runs.add(root);
        try (Stream<Path> s = Files.list(root)) {
            s.filter(RunFolders::isRun).forEach(runs::add);
        }
        List<Map<String, Object>> out = new ArrayList<>();
        for (Path r : runs) out.add(summary(r));
        out.sort((a, b) -> Long.compare((Long) b.get("updated_ms"), (Long) a.get("updated_ms")));
        return out;
    }

    private String nameOf(Path run) {
        return run.equals(root) ? "." : root.relativize(run).toString();
    }

    /** Name, status (running, finished or stopped), step and total, the time of the last write. */
    Map<String, Object> summary(Path run) throws IOException {
        Map<String, Object> m = new LinkedHashMap<>();
        m.put("name", nameOf(run));
        Path metrics = run.resolve(Metrics.FILE);
        long updated = Files.isRegularFile(metrics) ? Files.getLastModifiedTime(metrics).toMillis() : Files.getLastModifiedTime(run).toMillis();
        m.put("updated_ms", updated);
        JsonNode info = readJson(run.resolve(Metrics.RUN_INFO));
        long total = info != null && info.has("total_steps") ? info.get("total_steps").asLong() : -1;
        long step = MetricsTail.lastStep(metrics);
        m.put("step", step);
        m.put("total_steps", total);
        m.put("status", status(run, step, total));
        // Progress and the time left from the pace so far: steps since the start over the time to the last write.
        if (info != null && info.has("started_at_ms") && total > 0 && step >= 0 && step < total) {
            long started = info.get("started_at_ms").asLong();
            long done = step - info.path("start_step").asLong(0);
            if (done > 0 && updated > started) {
                double perStep = (updated - started) / 1000.0 / done;
                m.put("eta_s", Math.max(0, (total - step) * perStep - (System.currentTimeMillis() - updated) / 1000.0));
            }
        }
        return m;
    }

    /** finished (memory.json written, or the last step reached), running (the run folder's lock is held), else stopped. */
    static String status(Path run, long step, long total) throws IOException {
        if (Files.isRegularFile(run.resolve(MEMORY_REPORT))) return "finished";
        Path lock = run.resolve(OutputFolder.LOCK_FILE);
        // A released lock is emptied, not deleted (OutputFolder).
        if (Files.isRegularFile(lock) && Files.size(lock) > 0) return "running";
        return total > 0 && step >= total ? "finished" : "stopped";
    }

    /** Everything the page shows of one run but its metrics: summary, run.json, memory.json, plan.json, checkpoints. */
    Map<String, Object> details(Path run) throws IOException {
        Map<String, Object> m = summary(run);
        m.put("run_info", readJson(run.resolve(Metrics.RUN_INFO)));
        m.put("memory", readJson(run.resolve(MEMORY_REPORT)));
        m.put("plan", readJson(run.resolve(PLAN_REPORT)));
        List<String> checkpoints = new ArrayList<>();
        Path dir = run.resolve(Checkpoints.DIR);
        if (Files.isDirectory(dir))
            try (Stream<Path> s = Files.list(dir)) {
                s.filter(Files::isDirectory).map(p -> p.getFileName().toString()).filter(n -> !n.startsWith(".")).sorted().forEach(checkpoints::add);
            }
        m.put("checkpoints", checkpoints);
        m.put("has_loss_png", Files.isRegularFile(run.resolve(Metrics.PLOT)));
        return m;
    }

    /** A JSON file of the run, or null when it is absent or (being written by another process) not readable yet. */
    static JsonNode readJson(Path p) {
        if (!Files.isRegularFile(p)) return null;
        try {
            return Json.MAPPER.readTree(Files.readString(p));
        } catch (IOException | RuntimeException e) {
            return null;
        }
    }
}
