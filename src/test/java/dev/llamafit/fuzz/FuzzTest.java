// Seeded mutation fuzzing of every input reader through the CLI: exit 0, or exit 2 naming the file; no bug, hang or blow-up.
package dev.llamafit.fuzz;

import static org.junit.jupiter.api.Assertions.fail;

import java.io.IOException;
import java.io.InputStream;
import java.io.PrintWriter;
import java.io.StringWriter;
import java.lang.management.ManagementFactory;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.FutureTask;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;
import java.util.stream.Stream;

import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.DynamicTest;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.TestFactory;
import org.junit.jupiter.api.io.TempDir;

import dev.llamafit.cli.Main;
import dev.llamafit.memory.ProcessMemory;

/**
 * Each case is (reader, seed): the seed alone determines the mutated input ({@link Mutator}), so any case reruns
 * alone with {@code -Dllamafit.fuzz.only=READER:SEED[,READER:SEED...]}. The sweep runs {@code llamafit.fuzz.cases}
 * cases (default 550, shared among the readers by {@link Reader#share}) with seeds {@code base·100000 + i}, base
 * from {@code llamafit.fuzz.seed} (default 19); {@code src/test/resources/fuzz/regressions.txt} lists the cases that
 * ever failed, and they always run.
 *
 * <p>A case passes when the command exits 0, or exits 2 with an error line naming the mutated file; it fails on any
 * other exit (1 is "failed:" or "internal error"), on an exception or Error escaping {@code Main.run} (an
 * OutOfMemoryError under this suite's {@code -Xmx}, see pom.xml), when it takes more than {@value #TIMEOUT_S} s, when
 * it leaves more than {@value #RETAINED_MIB} MiB of heap reachable after a GC (a leak or cache that grows per input),
 * or when the process's peak RSS during the case rises more than {@value #RSS_GROWTH_MIB} MiB above its RSS before it
 * (native or mapped memory, which -Xmx does not cap). The valid inputs need a few MiB: the largest seed is the 2.6 MB
 * model; llama2's tokenizer.model is 0.5 MB.
 *
 * <p>Cases marked {@code known:BRANCH} in regressions.txt are skipped (reported as such) until the fix on that branch
 * is merged; then the marker is replaced by {@code fixed}. Cases marked {@code fixed:2} must exit 2 (findings that
 * exited 0 by accepting garbage). Cases marked {@code diverges} hold damaged values that are finite and pass every
 * load check (a huge optimizer moment, say): resuming from them makes the run diverge, and a diverging run is a run
 * failure, so they must exit 1 with "failed:" saying so (never an internal error, never a silent exit 0). A seed's meaning is {@link Mutator}'s code: changing a mutation changes what old
 * seeds do, so each regression line also says, in words, what its input was.
 */
@Tag("fuzz")
class FuzzTest {
    static final int TIMEOUT_S = 10;
    static final long RETAINED_MIB = 256;
    static final long RSS_GROWTH_MIB = 1024;
    static final String REGRESSIONS = "/fuzz/regressions.txt";

    @TempDir static Path root;
    private static Fixtures fixtures;

    /** One line of regressions.txt. */
    record Regression(Reader reader, long seed, String status, String description) {
        boolean known() { return status.startsWith("known:"); }
    }

    @TestFactory
    Stream<DynamicTest> sweep() {
        Map<String, Regression> regressions = regressions();
        String only = System.getProperty("llamafit.fuzz.only", "").strip();
        List<DynamicTest> tests = new ArrayList<>();
        if (!only.isEmpty()) {
            for (String c : only.split(",")) {
                String[] rs = c.strip().split(":");
                tests.add(test(Reader.byId(rs[0]), Long.parseLong(rs[1]), regressions.get(rs[0] + ":" + rs[1])));
            }
            return tests.stream();
        }
        int total = Integer.getInteger("llamafit.fuzz.cases", defaultCases());
        long base = Long.getLong("llamafit.fuzz.seed", 19);
        for (Reader r : Reader.values()) {
            int n = (int) Math.max(1, Math.round((double) total * r.share / defaultCases()));
            for (int i = 0; i < n; i++) {
                long seed = base * 100_000 + i;
                tests.add(test(r, seed, regressions.get(r.id() + ":" + seed)));
            }
        }
        return tests.stream();
    }

    @TestFactory
    Stream<DynamicTest> regressionCases() {
        return regressions().values().stream().map(g -> test(g.reader(), g.seed(), g));
    }

    static int defaultCases() {
        int n = 0;
        for (Reader r : Reader.values()) n += r.share;
        return n;
    }

    private static DynamicTest test(Reader reader, long seed, Regression known) {
        return DynamicTest.dynamicTest(reader.id() + ":" + seed, () -> {
            if (known != null && known.known())
                Assumptions.abort(known.status() + " (fixed on that branch, not here): " + known.description());
            runCase(reader, seed, known == null ? "fixed" : known.status());
        });
    }

    static synchronized Fixtures fixtures() throws IOException {
        if (fixtures == null) fixtures = Fixtures.create(Files.createDirectories(root.resolve("fixtures")));
        return fixtures;
    }

    static void runCase(Reader reader, long seed, String status) throws Exception {
        Fixtures fx = fixtures();
        Path dir = Files.createDirectories(root.resolve(reader.id() + "-" + seed));
        try {
            Reader.Case c = reader.prepare(dir, new Mutator(seed), fx);
            String what = reader.id() + ":" + seed + " [" + c.mutation() + "] llamafit " + String.join(" ", c.args());
            check(c, what, status);
        } finally {
            deleteTree(dir);
        }
    }

    private static void check(Reader.Case c, String what, String status) throws Exception {
        StringWriter out = new StringWriter(), err = new StringWriter();
        resetPeakRss();
        long rssBefore = ProcessMemory.rssBytes().orElse(0);
        FutureTask<Integer> task = new FutureTask<>(
                () -> Main.run(c.args(), new PrintWriter(out, true), new PrintWriter(err, true)));
        Thread t = new Thread(task, "fuzz-case");
        t.setDaemon(true);
        long t0 = System.nanoTime();
        t.start();
        int code;
        try {
            code = task.get(TIMEOUT_S, TimeUnit.SECONDS);
        } catch (TimeoutException e) {
            t.interrupt();
            fail("hang: no exit within " + TIMEOUT_S + " s: " + what);
            return;
        } catch (ExecutionException e) {
            throw new AssertionError("escaped Main.run: " + e.getCause() + ": " + what, e.getCause());
        }
        double secs = (System.nanoTime() - t0) / 1e9;
        String error = err.toString().strip();
        if (Boolean.getBoolean("llamafit.fuzz.verbose"))
            System.out.printf("fuzz %s exit %d %.2fs%n    %s%n", what, code, secs, error.lines().reduce((a, b) -> b).orElse(""));
        if (error.contains("internal error")) fail("internal error: " + what + "\n  " + error);
        if (status.equals("diverges")) {
            if (code != 1 || !error.contains("llamafit: failed:") || !(error.contains("diverged") || error.contains(" became ")))
                fail("exit " + code + ", but this regression case must stop as a diverging run (exit 1, failed: ...): " + what + "\n  " + error);
            return;
        }
        if (code != 0 && code != 2) fail("exit " + code + ": " + what + "\n  " + error);
        if (status.equals("fixed:2") && code != 2) fail("exit " + code + ", but this regression case must be refused with exit 2: " + what);
        if (code == 2) {
            String line = error.lines().filter(l -> l.startsWith("llamafit: error:")).findFirst().orElse(error);
            if (!namesFile(line, c.file()))
                fail("exit 2 without naming " + c.file().getFileName() + ": " + what + "\n  " + line);
        }
        long peak = ProcessMemory.peakRssBytes().orElse(0);
        if (rssBefore > 0 && peak - rssBefore > RSS_GROWTH_MIB << 20)
            fail("peak RSS rose " + ((peak - rssBefore) >> 20) + " MiB during the case (bound " + RSS_GROWTH_MIB + "): " + what);
        checkRetainedHeap(what);
        if (secs > TIMEOUT_S) fail("took " + secs + " s: " + what);
    }

    /** The error line names the mutated file by its path, or by its name next to its folder's path. */
    static boolean namesFile(String line, Path file) {
        String name = file.getFileName().toString();
        return line.contains(file.toString()) || (line.contains(name) && line.contains(file.getParent().toString()));
    }

    private static void checkRetainedHeap(String what) {
        var heap = ManagementFactory.getMemoryMXBean();
        if (heap.getHeapMemoryUsage().getUsed() <= RETAINED_MIB << 20) return;
        System.gc();
        long used = heap.getHeapMemoryUsage().getUsed();
        if (used > RETAINED_MIB << 20) fail("heap still holds " + (used >> 20) + " MiB after the case and a GC: " + what);
    }

    /** Writing 5 to clear_refs resets VmHWM (Linux 4.0+), so the peak read after a case is that case's own. */
    private static void resetPeakRss() {
        try {
            Files.writeString(Path.of("/proc/self/clear_refs"), "5");
        } catch (IOException | UnsupportedOperationException e) {
            // Not Linux, or not permitted: the peak then covers earlier cases too, which only makes the check stricter.
        }
    }

    static Map<String, Regression> regressions() {
        Map<String, Regression> out = new LinkedHashMap<>();
        try (InputStream in = FuzzTest.class.getResourceAsStream(REGRESSIONS)) {
            if (in == null) throw new IllegalStateException(REGRESSIONS + " is missing from the test resources");
            int n = 0;
            for (String line : new String(in.readAllBytes(), StandardCharsets.UTF_8).split("\n")) {
                n++;
                String s = line.strip();
                if (s.isEmpty() || s.startsWith("#")) continue;
                String[] p = s.split("\\s+", 4);
                if (p.length < 4 || !(p[2].equals("fixed") || p[2].equals("fixed:2") || p[2].equals("diverges") || p[2].startsWith("known:")))
                    throw new IllegalStateException(REGRESSIONS + ":" + n + ": expected 'READER SEED fixed|fixed:2|diverges|known:BRANCH DESCRIPTION'");
                Regression g = new Regression(Reader.byId(p[0]), Long.parseLong(p[1]), p[2], p[3]);
                out.put(p[0] + ":" + p[1], g);
            }
        } catch (IOException e) {
            throw new java.io.UncheckedIOException(e);
        }
        return out;
    }

    private static void deleteTree(Path p) throws IOException {
        if (!Files.exists(p)) return;
        try (var walk = Files.walk(p)) {
            for (Path q : walk.sorted(Comparator.reverseOrder()).toList()) Files.deleteIfExists(q);
        }
    }
}
