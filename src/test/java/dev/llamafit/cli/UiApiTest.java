// `llamafit ui`'s JSON API without a browser: paths stay inside --runs, bad plans are 400 with the CLI's message, malformed metrics lines.
package dev.llamafit.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.PrintWriter;
import java.io.StringWriter;
import java.net.URI;
import java.net.URLEncoder;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;

import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import com.fasterxml.jackson.databind.JsonNode;

import dev.llamafit.io.Json;
import dev.llamafit.ui.UiServer;

class UiApiTest {
    @TempDir static Path tmp;
    static Path runs;
    static UiServer server;
    static final HttpClient HTTP = HttpClient.newHttpClient();

    @BeforeAll
    static void start() throws Exception {
        runs = Files.createDirectories(tmp.resolve("runs"));
        Path run = Files.createDirectories(runs.resolve("r1"));
        Files.writeString(run.resolve("metrics.jsonl"), """
                {"step":1,"loss":4.5,"lr":1.0E-4,"grad_norm":1.0,"tokens_per_s":100.0}
                {"step":2,"loss":4.4,"lr
                [1, 2]
                {"step":3,"loss":"NaN","lr":1.0E-4,"grad_norm":1.0,"tokens_per_s":100.0}
                {"step":4,"loss":4.2,"lr":1.0E-4,"grad_norm":1.0,"tokens_per_s":100.0,"eval_loss":4.3}
                {"step":5,"loss":4.1""");
        Files.writeString(tmp.resolve("secret.txt"), "outside");
        Files.createSymbolicLink(runs.resolve("r1/link.txt"), tmp.resolve("secret.txt"));
        server = UiServer.start("127.0.0.1", 0, runs, PlanCommand::json);
    }

    @AfterAll
    static void stop() { server.close(); }

    static HttpResponse<String> get(String pathAndQuery) throws Exception {
        return HTTP.send(HttpRequest.newBuilder(server.uri().resolve(pathAndQuery)).build(), HttpResponse.BodyHandlers.ofString());
    }

    static String q(String s) { return URLEncoder.encode(s, StandardCharsets.UTF_8); }

    @Test
    void pathsOutsideTheRunsFolderAreRefused() throws Exception {
        for (String bad : List.of("../secret.txt", "r1/../../secret.txt", tmp.resolve("secret.txt").toString(), "/etc/passwd", "r1/link.txt")) {
            HttpResponse<String> r = get("/api/file?path=" + q(bad));
            assertEquals(403, r.statusCode(), bad + ": " + r.body());
            assertTrue(Json.MAPPER.readTree(r.body()).get("error").asText().length() > 10, r.body());
            assertTrue(!r.body().contains("outside\""), "the file's content is never sent");
        }
        assertEquals(403, get("/api/run?name=" + q("../")).statusCode());
        assertEquals(403, get("/api/metrics?run=" + q("/tmp")).statusCode());
        // Raw ../ in the URL path is normalised away by the client or refused; the API names files only by query.
        HttpResponse<String> ok = get("/api/file?path=" + q("r1/./metrics.jsonl"));
        assertEquals(200, ok.statusCode());
        assertTrue(ok.body().startsWith("{\"step\":1"));
        assertEquals(404, get("/api/file?path=" + q("r1/none.txt")).statusCode());
        assertEquals(404, get("/static/" + q("../UiServer.class")).statusCode());
    }

    @Test
    void badPlanParametersAre400WithTheMessageTheCliPrints() throws Exception {
        List<List<String>> bad = List.of(List.of("--model", "llama-3.1-8b", "--method", "bogus"),
                List.of("--model", "llama-3.1-8b", "--runtime", "llamafit", "--zero", "2"),
                List.of("--model", "no-such-preset"),
                List.of("--model", "llama-3.1-8b", "--batch-size", "many"));
        for (List<String> args : bad) {
            StringWriter err = new StringWriter();
            String[] cli = java.util.stream.Stream.concat(java.util.stream.Stream.of("plan"), args.stream()).toArray(String[]::new);
            assertEquals(Main.BAD_INPUT, Main.run(cli, new PrintWriter(new StringWriter()), new PrintWriter(err, true)));
            String cliMessage = err.toString().lines().findFirst().orElseThrow().replaceFirst("^llamafit: error: ", "");
            HttpResponse<String> r = post(args, null);
            assertEquals(400, r.statusCode(), r.body());
            assertEquals(cliMessage, Json.MAPPER.readTree(r.body()).get("error").asText(), String.join(" ", args));
        }
        HttpResponse<String> notJson = HTTP.send(HttpRequest.newBuilder(server.uri().resolve("/api/plan"))
                .POST(HttpRequest.BodyPublishers.ofString("{\"args\": 3}")).build(), HttpResponse.BodyHandlers.ofString());
        assertEquals(400, notJson.statusCode());
        assertTrue(notJson.body().contains("args"), notJson.body());
    }

    static HttpResponse<String> post(List<String> args, String config) throws Exception {
        java.util.Map<String, Object> body = new java.util.LinkedHashMap<>();
        body.put("args", args);
        if (config != null) body.put("config", config);
        return HTTP.send(HttpRequest.newBuilder(server.uri().resolve("/api/plan")).POST(HttpRequest.BodyPublishers.ofString(Json.write(body))).build(),
                HttpResponse.BodyHandlers.ofString());
    }

    @Test
    void thePlanApiReturnsTheObjectPlanJsonPrints() throws Exception {
        List<String> args = List.of("--model", "tinyllama-1.1b", "--runtime", "pytorch", "--device", "a100-40gb", "--method", "qlora",
                "--zero", "2", "--workers", "4", "--max-batch", "--recommend");
        StringWriter out = new StringWriter();
        String[] cli = java.util.stream.Stream.concat(java.util.stream.Stream.of("plan", "--json"), args.stream()).toArray(String[]::new);
        assertEquals(Main.OK, Main.run(cli, new PrintWriter(out, true), new PrintWriter(new StringWriter())));
        HttpResponse<String> r = post(args, null);
        assertEquals(200, r.statusCode(), r.body());
        assertEquals(Json.MAPPER.readTree(out.toString()), Json.MAPPER.readTree(r.body()));
        // The query form and a pasted config.json give the same object.
        HttpResponse<String> g = get("/api/plan?model=tinyllama-1.1b&runtime=pytorch&device=a100-40gb&method=qlora&zero=2&workers=4&max-batch&recommend=true");
        assertEquals(Json.MAPPER.readTree(out.toString()), Json.MAPPER.readTree(g.body()));
        String config = new String(UiApiTest.class.getResourceAsStream("/dev/llamafit/presets/models/tinyllama-1.1b.json").readAllBytes(), StandardCharsets.UTF_8);
        HttpResponse<String> pasted = post(List.of("--runtime", "pytorch", "--device", "a100-40gb", "--method", "qlora", "--zero", "2", "--workers", "4",
                "--max-batch", "--recommend"), config);
        assertEquals(Json.MAPPER.readTree(out.toString()), Json.MAPPER.readTree(pasted.body()));
        HttpResponse<String> broken = post(List.of("--model", "x"), "{\"hidden_size\": ");
        assertEquals(400, broken.statusCode(), broken.body());
        assertTrue(broken.body().contains("the pasted config.json"), broken.body());
    }

    @Test
    void malformedMetricsLinesAreReportedAndTheRestIsRead() throws Exception {
        HttpResponse<String> r = get("/api/metrics?run=r1&from=0&line=1");
        assertEquals(200, r.statusCode(), r.body());
        JsonNode m = Json.MAPPER.readTree(r.body());
        assertEquals(3, m.get("entries").size(), r.body());
        assertEquals(4, m.get("entries").get(2).get("step").asInt());
        assertEquals(2, m.get("malformed").size(), r.body());
        assertEquals(2, m.get("malformed").get(0).get("line").asInt());
        assertEquals(3, m.get("malformed").get(1).get("line").asInt());
        // The unfinished last line is left for the next poll, which reads it once the writer ends it.
        long next = m.get("next").asLong();
        Files.writeString(runs.resolve("r1/metrics.jsonl"), ",\"lr\":1.0E-4,\"grad_norm\":1.0,\"tokens_per_s\":100.0}\n", java.nio.file.StandardOpenOption.APPEND);
        JsonNode more = Json.MAPPER.readTree(get("/api/metrics?run=r1&from=" + next + "&line=" + m.get("next_line").asLong()).body());
        assertEquals(1, more.get("entries").size(), more.toString());
        assertEquals(5, more.get("entries").get(0).get("step").asInt());
        assertEquals(6, more.get("entries").get(0).get("line").asInt());
        JsonNode list = Json.MAPPER.readTree(get("/api/runs").body());
        assertEquals("r1", list.get("runs").get(0).get("name").asText());
        assertEquals(5, list.get("runs").get(0).get("step").asInt());
        assertEquals("stopped", list.get("runs").get(0).get("status").asText());
        assertEquals(400, get("/api/metrics?run=r1&from=x").statusCode());
    }

    @Test
    void uiRefusesABadPortAndARunsFolderThatIsNotOne() {
        StringWriter err = new StringWriter();
        assertEquals(Main.BAD_INPUT, Main.run(new String[] {"ui", "--port", "70000"}, new PrintWriter(new StringWriter()), new PrintWriter(err, true)));
        assertTrue(err.toString().contains("--port"), err.toString());
        err = new StringWriter();
        assertEquals(Main.BAD_INPUT, Main.run(new String[] {"ui", "--port", "0", "--runs", tmp.resolve("absent").toString()},
                new PrintWriter(new StringWriter()), new PrintWriter(err, true)));
        assertTrue(err.toString().contains("--runs"), err.toString());
        assertTrue(UiCommand.isLoopback("localhost") && UiCommand.isLoopback("::1") && !UiCommand.isLoopback("0.0.0.0"));
    }
}
