// `llamafit ui`'s web server (the JDK's HttpServer): the page, its JSON API for plans and run folders, nothing else.
package dev.llamafit.ui;

import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.net.InetSocketAddress;
import java.net.URI;
import java.net.URLDecoder;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.function.Function;

import com.fasterxml.jackson.databind.JsonNode;
import com.sun.net.httpserver.HttpExchange;
import com.sun.net.httpserver.HttpServer;

import dev.llamafit.io.InputException;
import dev.llamafit.io.Json;
import dev.llamafit.io.ModelPresets;
import dev.llamafit.memory.ProcessMemory;
import dev.llamafit.plan.Devices;
import dev.llamafit.plan.pytorch.GpuDevices;
import dev.llamafit.train.Metrics;

/**
 * Routes (all GET unless said):
 * <ul>
 * <li>{@code /} and {@code /static/NAME}: the page's own files (resources of this package) and Chart.js (from its webjar);
 * <li>{@code /api/options}: model presets and devices for the form;
 * <li>{@code /api/plan} (POST {"args":[...], "config":"..."} or GET ?flag=value…): the object `plan ARGS --json` prints,
 * computed by the function the CLI passes in (PlanCommand's, so there is one code path); bad flags are 400 with the
 * CLI's message;
 * <li>{@code /api/runs}, {@code /api/run?name=R}, {@code /api/metrics?run=R&from=BYTE&line=N}: the run folders, one
 * run's details, and its metrics.jsonl from an offset on;
 * <li>{@code /api/file?path=REL}: a file under --runs (e.g. R/loss.png); absolute or escaping paths are 403.
 * </ul>
 * Every response is built from files read afresh, so runs that write meanwhile never disturb the server.
 */
public final class UiServer implements AutoCloseable {
    /** Chart.js inside its webjar (org.webjars.npm:chart.js, pinned in pom.xml): served as /static/chart.umd.min.js. */
    static final String CHART_JS = "/META-INF/resources/webjars/chart.js/4.5.1/dist/chart.umd.min.js";
    /** The page's files, resources beside this class. */
    static final List<String> PAGE_FILES = List.of("index.html", "app.js", "style.css");
    /** Largest request body read (a pasted config.json is a few KiB). */
    static final int MAX_BODY = 1 << 20;

    private final HttpServer server;
    private final ExecutorService pool;
    private final RunFolders runs;
    private final Function<List<String>, Map<String, Object>> planner;

    private UiServer(HttpServer server, ExecutorService pool, RunFolders runs, Function<List<String>, Map<String, Object>> planner) {
        this.server = server;
        this.pool = pool;
        this.runs = runs;
        this.planner = planner;
    }

    /**
     * Serves on {@code host:port} (port 0: any free one) the runs under {@code runsDir}; {@code planner} maps `plan`'s
     * flags to its JSON object and throws {@link InputException} for bad ones.
     */
    public static UiServer start(String host, int port, Path runsDir, Function<List<String>, Map<String, Object>> planner) throws IOException {
        if (!Files.isDirectory(runsDir)) throw InputException.at(runsDir, "--runs is not a folder: give the folder that holds your run folders");
        HttpServer s = HttpServer.create(new InetSocketAddress(host, port), 0);
        ExecutorService pool = Executors.newFixedThreadPool(4, r -> {
            Thread t = new Thread(r, "llamafit-ui");
            t.setDaemon(true);
            return t;
        });
        UiServer ui = new UiServer(s, pool, new RunFolders(runsDir), planner);
        s.createContext("/", ui::handle);
        s.setExecutor(pool);
        s.start();
        return ui;
    }

    /** The address the page is at, e.g. http://127.0.0.1:8080/. */
    public URI uri() {
        InetSocketAddress a = server.getAddress();
        String host = a.getAddress().getHostAddress();
        return URI.create("http://" + (host.contains(":") ? "[" + host + "]" : host) + ":" + a.getPort() + "/");
    }

    public Path runsRoot() { return runs.root(); }

    @Override
    public void close() {
        server.stop(0);
        pool.shutdownNow();
    }

    /** An answer other than 200, with its message. */
    private static final class Status extends RuntimeException {
        final int code;

        Status(int code, String message) {
            super(message);
            this.code = code;
        }
    }

    private void handle(HttpExchange ex) throws IOException {
        try (ex) {
            try {
                route(ex);
            } catch (InputException e) {
                sendJson(ex, 400, Map.of("error", e.getMessage()));
            } catch (RunFolders.Refused e) {
                sendJson(ex, e.status, Map.of("error", e.getMessage()));
            } catch (Status e) {
                sendJson(ex, e.code, Map.of("error", e.getMessage()));
            } catch (IOException | RuntimeException e) {
                // A file that changed under us, or a bug: the request fails, the server stays up.
                sendJson(ex, 500, Map.of("error", e.getClass().getSimpleName() + ": " + e.getMessage()));
            }
        }
    }

    private void route(HttpExchange ex) throws IOException {
        String path = ex.getRequestURI().getPath();
        String method = ex.getRequestMethod();
        Map<String, String> q = query(ex.getRequestURI().getRawQuery());
        boolean post = method.equals("POST");
        if (!post && !method.equals("GET") && !method.equals("HEAD")) throw new Status(405, "method " + method + " is not served");
        if (post && !path.equals("/api/plan")) throw new Status(405, "POST goes to /api/plan only");
        switch (path) {
            case "/", "/index.html" -> sendResource(ex, "index.html");
            case "/api/options" -> sendJson(ex, 200, options());
            case "/api/plan" -> sendJson(ex, 200, plan(post ? Json.MAPPER.readTree(body(ex)) : null, q));
            case "/api/runs" -> sendJson(ex, 200, Map.of("root", runs.root().toString(), "runs", runs.list()));
            case "/api/run" -> sendJson(ex, 200, runs.details(runs.run(q.get("name"))));
            case "/api/metrics" -> sendJson(ex, 200, MetricsTail.read(runs.run(q.get("run")).resolve(Metrics.FILE),
                    number(q, "from", 0), number(q, "line", 1)));
            case "/api/file" -> sendFile(ex, runs.resolve(q.get("path")));
            default -> {
                if (path.startsWith("/static/")) sendResource(ex, path.substring("/static/".length()));
                else throw new Status(404, "no page at " + path);
            }
        }
    }

    private static long number(Map<String, String> q, String key, long otherwise) {
        String v = q.get(key);
        if (v == null) return otherwise;
        try {
            return Long.parseLong(v);
        } catch (NumberFormatException e) {
            throw new InputException(key + " must be a whole number, got '" + v + "'");
        }
    }

    /** Model presets, GPU presets and the CPU, for the form's lists. */
    private static Map<String, Object> options() {
        Map<String, Object> m = new LinkedHashMap<>();
        m.put("models", ModelPresets.names());
        List<Map<String, Object>> devices = new ArrayList<>();
        devices.add(Map.of("name", Devices.CPU, "memory_bytes", ProcessMemory.physicalRamBytes(), "gpu", false));
        for (String n : GpuDevices.names()) devices.add(Map.of("name", n, "memory_bytes", GpuDevices.gpu(n).memoryBytes(), "gpu", true));
        m.put("devices", devices);
        return m;
    }

    /**
     * `plan`'s flags from a POST body ({"args": [...], "config": "pasted config.json"}) or from the query
     * (?model=x&method=lora&gradient-checkpointing=true: each key is a flag, "true" a switch). A pasted config is
     * written to a temporary config.json that --model names; messages name it as "the pasted config.json".
     */
    private Map<String, Object> plan(JsonNode body, Map<String, String> q) throws IOException {
        List<String> args = new ArrayList<>();
        String config = null;
        if (body != null) {
            if (!body.isObject() || !body.path("args").isArray()) throw new InputException("the request body must be {\"args\": [plan flags...]}");
            for (JsonNode a : body.get("args")) args.add(a.asText());
            if (body.path("config").isTextual() && !body.get("config").asText().isBlank()) config = body.get("config").asText();
        } else {
            for (Map.Entry<String, String> e : q.entrySet()) {
                args.add("--" + e.getKey());
                if (!e.getValue().equals("true")) args.add(e.getValue());
            }
        }
        if (!args.contains("--json")) args.add("--json");
        if (config == null) return planner.apply(args);
        Path dir = Files.createTempDirectory("llamafit-ui");
        Path file = dir.resolve("config.json");
        try {
            Files.writeString(file, config);
            int i = args.indexOf("--model");
            if (i >= 0 && i + 1 < args.size()) args.set(i + 1, file.toString());
            else { args.add("--model"); args.add(file.toString()); }
            try {
                return planner.apply(args);
            } catch (InputException e) {
                throw new InputException(e.getMessage().replace(file.toString(), "the pasted config.json"), e);
            }
        } finally {
            Files.deleteIfExists(file);
            Files.deleteIfExists(dir);
        }
    }

    private static String body(HttpExchange ex) throws IOException {
        try (InputStream in = ex.getRequestBody()) {
            byte[] b = in.readNBytes(MAX_BODY + 1);
            if (b.length > MAX_BODY) throw new InputException("the request body is over " + MAX_BODY + " bytes");
            return new String(b, StandardCharsets.UTF_8);
        }
    }

    static Map<String, String> query(String raw) {
        Map<String, String> m = new LinkedHashMap<>();
        if (raw == null || raw.isEmpty()) return m;
        for (String kv : raw.split("&")) {
            if (kv.isEmpty()) continue;
            int eq = kv.indexOf('=');
            String k = URLDecoder.decode(eq < 0 ? kv : kv.substring(0, eq), StandardCharsets.UTF_8);
            String v = eq < 0 ? "true" : URLDecoder.decode(kv.substring(eq + 1), StandardCharsets.UTF_8);
            m.put(k, v);
        }
        return m;
    }

    private void sendResource(HttpExchange ex, String name) throws IOException {
        String resource = name.equals("chart.umd.min.js") ? CHART_JS : PAGE_FILES.contains(name) ? name : null;
        if (resource == null) throw new Status(404, "no file /static/" + name);
        try (InputStream in = UiServer.class.getResourceAsStream(resource)) {
            if (in == null) throw new Status(500, "the jar lacks " + resource);
            send(ex, 200, contentType(name), in.readAllBytes());
        }
    }

    private static void sendFile(HttpExchange ex, Path p) throws IOException {
        if (!Files.isRegularFile(p)) throw new RunFolders.Refused(404, "no file " + p.getFileName() + " there");
        send(ex, 200, contentType(p.getFileName().toString()), Files.readAllBytes(p));
    }

    static String contentType(String name) {
        String n = name.toLowerCase(Locale.ROOT);
        if (n.endsWith(".html")) return "text/html; charset=utf-8";
        if (n.endsWith(".js")) return "text/javascript; charset=utf-8";
        if (n.endsWith(".css")) return "text/css; charset=utf-8";
        if (n.endsWith(".png")) return "image/png";
        if (n.endsWith(".json")) return "application/json";
        return n.endsWith(".jsonl") || n.endsWith(".txt") ? "text/plain; charset=utf-8" : "application/octet-stream";
    }

    private static void sendJson(HttpExchange ex, int code, Object value) throws IOException {
        send(ex, code, "application/json; charset=utf-8", Json.writeCompact(value).getBytes(StandardCharsets.UTF_8));
    }

    private static void send(HttpExchange ex, int code, String type, byte[] body) throws IOException {
        ex.getResponseHeaders().set("Content-Type", type);
        ex.getResponseHeaders().set("Cache-Control", "no-store");
        boolean head = ex.getRequestMethod().equals("HEAD");
        ex.sendResponseHeaders(code, head ? -1 : body.length == 0 ? -1 : body.length);
        if (!head && body.length > 0)
            try (OutputStream os = ex.getResponseBody()) {
                os.write(body);
            }
    }
}
