// AdamW, SGD, the cosine schedule and global-norm clipping against PyTorch (scripts/make_optim_fixtures.py).
package dev.llamafit.optim;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;

import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;

import dev.llamafit.memory.MemoryLedger;

/**
 * Replays the fixture's ten training steps (clip, step, schedule) and compares every parameter after every step
 * with torch.optim.AdamW / torch.optim.SGD + LambdaLR + clip_grad_norm_ run in float32, to 1e-6 relative.
 */
class OptimGoldenTest {
    static final Path FIXTURE = Path.of("src/test/resources/fixtures/optim/optim_golden.json");
    static final double REL = 1e-6;

    static float[] floats(JsonNode a) {
        float[] out = new float[a.size()];
        for (int i = 0; i < out.length; i++) out[i] = (float) a.get(i).asDouble();
        return out;
    }

    static long[] dims(JsonNode a) {
        long[] out = new long[a.size()];
        for (int i = 0; i < out.length; i++) out[i] = a.get(i).asLong();
        return out;
    }

    @ParameterizedTest
    @ValueSource(strings = {"adamw", "sgd", "sgd_nesterov", "sgd_dampening"})
    void matchesPyTorchEveryStep(String runName) throws IOException {
        JsonNode doc = new ObjectMapper().readTree(FIXTURE.toFile());
        JsonNode run = doc.get("runs").get(runName);
        MemoryLedger ledger = new MemoryLedger();
        List<String> names = new ArrayList<>();
        doc.get("shapes").fieldNames().forEachRemaining(names::add);
        List<String> noDecay = new ArrayList<>();
        run.get("no_decay").forEach(n -> noDecay.add(n.asText()));
        List<Param> params = new ArrayList<>();
        for (String n : names) {
            params.add(OptimTesting.param(ledger, n, floats(doc.get("init").get(n)), !noDecay.contains(n), dims(doc.get("shapes").get(n))));
        }
        Optimizer opt = run.get("optimizer").asText().equals("adamw")
                ? new AdamW(run.get("beta1").asDouble(), run.get("beta2").asDouble(), run.get("eps").asDouble(), run.get("weight_decay").asDouble(), ledger)
                : new Sgd(run.get("momentum").asDouble(), run.get("weight_decay").asDouble(), run.get("dampening").asDouble(),
                        run.get("nesterov").asBoolean(), ledger);
        LrSchedule schedule = LrSchedule.parse(run.get("schedule").asText(), run.get("peak_lr").asDouble(),
                run.get("warmup").asLong(), run.get("total").asLong());
        double maxNorm = run.get("max_norm").asDouble();
        int steps = doc.get("grads").size();
        double worst = 0;
        try (opt) {
            for (int s = 0; s < steps; s++) {
                for (Param p : params) OptimTesting.set(p.grad(), floats(doc.get("grads").get(s).get(p.name())));
                double norm = GradClip.clipGlobalNorm(params.stream().map(Param::grad).toList(), maxNorm);
                if (maxNorm > 0) {
                    double want = run.get("pre_clip_norm").get(s).asDouble();
                    assertEquals(want, norm, REL * want, runName + " step " + s + " pre-clip norm");
                }
                double lr = schedule.lr(opt.steps());
                double wantLr = run.get("lr").get(s).asDouble();
                assertEquals(wantLr, lr, 1e-15 + 1e-12 * wantLr, runName + " step " + s + " lr");
                opt.step(params, lr);
                for (Param p : params) {
                    float[] got = p.value().toFloatArray();
                    float[] want = floats(run.get("params").get(s).get(p.name()));
                    for (int i = 0; i < got.length; i++) {
                        double err = Math.abs(got[i] - want[i]) / Math.max(Math.abs(want[i]), 1e-3);
                        worst = Math.max(worst, err);
                        assertTrue(err <= REL, runName + " step " + (s + 1) + " " + p.name() + "[" + i + "]: got " + got[i]
                                + ", PyTorch " + want[i] + " (relative error " + err + ")");
                    }
                }
            }
        }
        System.out.println("optim golden " + runName + ": worst relative error " + worst);
        for (Param p : params) { p.value().close(); p.grad().close(); }
        assertEquals(0, ledger.totalCurrentBytes());
    }
}
