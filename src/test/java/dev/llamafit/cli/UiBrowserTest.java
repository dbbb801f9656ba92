// `llamafit ui` in a real headless Chromium (Selenium): the plan form against `plan --json`, a live run's curve, the docs' screenshots.
package dev.llamafit.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.PrintWriter;
import java.io.StringWriter;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CompletableFuture;

import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.openqa.selenium.By;
import org.openqa.selenium.OutputType;
import org.openqa.selenium.WebDriver;
import org.openqa.selenium.WebElement;
import org.openqa.selenium.chrome.ChromeDriver;
import org.openqa.selenium.chrome.ChromeDriverService;
import org.openqa.selenium.chrome.ChromeOptions;
import org.openqa.selenium.support.ui.Select;
import org.openqa.selenium.support.ui.WebDriverWait;

import dev.llamafit.io.Json;
import dev.llamafit.testing.Chromium;
import dev.llamafit.testing.SharedData;
import dev.llamafit.ui.UiServer;

/** Screenshots go to docs/ui-plan.png and docs/ui-runs.png, the ones the README shows. */
class UiBrowserTest {
    @TempDir static Path tmp;
    static UiServer server;
    static ChromeDriver driver;

    @BeforeAll
    static void start() throws Exception {
        Chromium.Install chromium = Chromium.require();
        server = UiServer.start("127.0.0.1", 0, Files.createDirectories(tmp.resolve("runs")), PlanCommand::json);
        ChromeOptions o = new ChromeOptions();
        o.setBinary(chromium.browser().toFile());
        o.addArguments("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1400,1000");
        ChromeDriverService service = new ChromeDriverService.Builder().usingDriverExecutable(chromium.driver().toFile()).usingAnyFreePort().build();
        driver = new ChromeDriver(service, o);
    }

    @AfterAll
    static void stop() {
        if (driver != null) driver.quit();
        if (server != null) server.close();
    }

    static WebElement el(String id) { return driver.findElement(By.id(id)); }

    static void select(String id, String value) { new Select(el(id)).selectByValue(value); }

    static void type(String id, String value) {
        WebElement e = el(id);
        if (e.getDomProperty("value").equals(value)) return;
        e.clear();
        e.sendKeys(value);
    }

    static void check(String id, boolean on) { if (el(id).isSelected() != on) el(id).click(); }

    static WebDriverWait waiting(int seconds) { return new WebDriverWait(driver, Duration.ofSeconds(seconds), Duration.ofMillis(50)); }

    /** The device peak `plan --json ARGS` prints. */
    static long cliPeak(List<String> args) throws Exception {
        List<String> cli = new ArrayList<>(List.of("plan", "--json"));
        cli.addAll(args);
        StringWriter out = new StringWriter(), err = new StringWriter();
        assertEquals(Main.OK, Main.run(cli.toArray(String[]::new), new PrintWriter(out, true), new PrintWriter(err, true)), err.toString());
        return Json.MAPPER.readTree(out.toString()).get("device").get("peak_bytes").asLong();
    }

    static Map<String, String> form(String... kv) {
        Map<String, String> m = new java.util.LinkedHashMap<>();
        for (int i = 0; i < kv.length; i += 2) m.put(kv[i], kv[i + 1]);
        return m;
    }

    /** One configuration: the form's controls to set, and the same plan as `plan` flags. */
    record Case(Map<String, String> form, List<String> args) {}

    @Test
    void thePlanFormShowsThePeakOfPlanJsonForBothRuntimesLoraQloraAndZero() throws Exception {
        driver.get(server.uri() + "#plan");
        waiting(20).until(d -> !el("peak").getText().isEmpty());
        List<Case> cases = List.of(
                new Case(form("model", "tinyllama-1.1b", "runtime", "llamafit", "device", "cpu", "method", "lora", "lora-r", "16", "batch-size", "2", "seq-len", "512"),
                        List.of("--model", "tinyllama-1.1b", "--runtime", "llamafit", "--device", "cpu", "--method", "lora", "--lora-r", "16", "--batch-size", "2", "--seq-len", "512")),
                new Case(form("model", "smollm-360m", "runtime", "llamafit", "memory", "16GiB", "method", "full", "gradient-checkpointing", "on", "batch-size", "8", "seq-len", "256"),
                        List.of("--model", "smollm-360m", "--runtime", "llamafit", "--memory", "16GiB", "--gradient-checkpointing", "--batch-size", "8", "--seq-len", "256")),
                new Case(form("model", "llama-3.1-8b", "runtime", "pytorch", "device", "h100-80gb", "method", "qlora", "lora-r", "64", "precision", "bf16", "batch-size", "4", "seq-len", "1024"),
                        List.of("--model", "llama-3.1-8b", "--runtime", "pytorch", "--device", "h100-80gb", "--method", "qlora", "--lora-r", "64", "--precision", "bf16",
                                "--batch-size", "4", "--seq-len", "1024")),
                new Case(form("model", "llama-3.1-8b", "runtime", "pytorch", "device", "a100-80gb", "method", "full", "precision", "bf16", "zero", "3", "workers", "8",
                        "gradient-checkpointing", "on", "batch-size", "2", "seq-len", "2048"),
                        List.of("--model", "llama-3.1-8b", "--runtime", "pytorch", "--device", "a100-80gb", "--precision", "bf16", "--zero", "3", "--workers", "8",
                                "--gradient-checkpointing", "--batch-size", "2", "--seq-len", "2048")),
                new Case(form("model", "qwen2.5-7b", "runtime", "pytorch", "device", "a100-40gb", "method", "lora", "lora-r", "8", "precision", "bf16", "zero", "2",
                        "workers", "2", "offload", "cpu", "batch-size", "1", "seq-len", "512"),
                        List.of("--model", "qwen2.5-7b", "--runtime", "pytorch", "--device", "a100-40gb", "--method", "lora", "--precision", "bf16", "--zero", "2",
                                "--workers", "2", "--offload", "cpu", "--batch-size", "1", "--seq-len", "512")));
        List<String> selects = List.of("model", "runtime", "device", "method", "precision", "zero", "offload");
        Case last = null;
        for (Case c : cases) {
            // Every control back to its default, then the case's values, as a person would set them (PyTorch's are
            // disabled for the llamafit runtime).
            select("runtime", c.form().get("runtime"));
            type("memory", "");
            check("gradient-checkpointing", false);
            select("precision", "fp32");
            if (c.form().get("runtime").equals("pytorch")) {
                select("zero", "0");
                select("offload", "none");
                type("workers", "1");
            }
            for (String key : List.of("model", "device", "method", "lora-r", "precision", "memory", "gradient-checkpointing", "zero", "workers", "offload",
                    "batch-size", "seq-len")) {
                String v = c.form().get(key);
                if (v == null) continue;
                if (key.equals("gradient-checkpointing")) check(key, true);
                else if (selects.contains(key)) select(key, v);
                else type(key, v);
            }
            long expected = cliPeak(c.args());
            try {
                waiting(15).until(d -> "done".equals(el("plan-result").getDomAttribute("data-state"))
                        && String.valueOf(expected).equals(el("peak").getDomAttribute("data-bytes")));
            } catch (org.openqa.selenium.TimeoutException e) {
                throw new AssertionError("the page shows peak " + el("peak").getDomAttribute("data-bytes") + " (state " + el("plan-result").getDomAttribute("data-state")
                        + ", " + el("plan-command").getText() + ", error '" + el("plan-error").getText() + "'), plan --json " + String.join(" ", c.args()) + " says " + expected);
            }
            assertTrue(!el("max-batch").getText().equals("–"), "the largest batch is shown");
            last = c;
        }
        assertTrue(last != null && !driver.findElements(By.cssSelector("#recs tbody tr")).isEmpty());
        // A bad value shows the CLI's message and no stale result.
        type("seq-len", "0");
        waiting(10).until(d -> "error".equals(el("plan-result").getDomAttribute("data-state")));
        assertTrue(el("plan-error").isDisplayed() && el("plan-error").getText().contains("seq"), el("plan-error").getText());
        type("seq-len", "512");
        waiting(10).until(d -> "done".equals(el("plan-result").getDomAttribute("data-state")));
        el("seq-len").sendKeys(org.openqa.selenium.Keys.TAB);
        driver.executeScript("window.scrollTo(0, 0)");
        Files.write(Path.of("docs", "ui-plan.png"), driver.getScreenshotAs(OutputType.BYTES));
    }

    static int points() { return Integer.parseInt(el("run-points").getDomAttribute("data-count")); }

    @Test
    void aRunningTrainingShowsNewPointsWithinFiveSeconds() throws Exception {
        Path model = SharedData.require("models/tinystories-656k");
        Path data = SharedData.require("datasets/text/tinystories_sample.txt");
        Path run = server.runsRoot().resolve("live");
        long tStart = System.nanoTime();
        driver.get(server.uri() + "#runs/live");
        String[] args = {"train", "--model", model.toString(), "--data", data.toString(), "--output", run.toString(), "--steps", "100", "--batch-size", "4",
                "--seq-len", "64", "--lr", "2e-3", "--eval-split", "0.1", "--eval-every", "25", "--save-every", "50"};
        StringWriter err = new StringWriter();
        CompletableFuture<Integer> training = CompletableFuture.supplyAsync(() -> Main.run(args, new PrintWriter(new StringWriter()), new PrintWriter(err, true)));
        waiting(90).until(d -> points() > 0 || training.isDone());
        int first = points();
        System.err.println("UiBrowserTest: first points " + first + " after " + (System.nanoTime() - tStart) / 1e9 + " s");
        assertTrue(first > 0, "no point while training: " + err);
        long t0 = System.nanoTime();
        waiting(5).until(d -> points() > first);
        double seconds = (System.nanoTime() - t0) / 1e9;
        assertTrue(seconds <= 5.0, seconds + " s");
        assertEquals("100", el("run-total").getText(), "the progress names the run's total steps (run.json)");
        String note = el("memory-note").getText(); // read before asking whether the run is over: then it was shown while running
        if (!training.isDone())
            assertTrue(note.startsWith("measured peaks"), "a running run shows its plan (plan.json) before the measured peaks: " + note);
        assertEquals(Main.OK, training.join(), err.toString());
        System.err.println("UiBrowserTest: training done after " + (System.nanoTime() - tStart) / 1e9 + " s");
        waiting(15).until(d -> points() == 100 && el("run-status").getText().equals("finished") && el("memory-note").getText().isEmpty());
        assertTrue(el("run-options").getText().contains("seq_len"), el("run-options").getText());
        assertTrue(el("run-malformed").getDomAttribute("hidden") != null, "no malformed line in a run's own metrics");
        driver.executeScript("window.scrollTo(0, 0)");
        Files.write(Path.of("docs", "ui-runs.png"), driver.getScreenshotAs(OutputType.BYTES));
        // A line that is not a record shows as such; the page keeps the curve.
        Files.writeString(run.resolve("metrics.jsonl"), "{\"step\": oops\n", java.nio.file.StandardOpenOption.APPEND);
        waiting(10).until(d -> el("run-malformed").getText().contains("line 101 is malformed"));
        assertEquals(100, points());
    }
}
