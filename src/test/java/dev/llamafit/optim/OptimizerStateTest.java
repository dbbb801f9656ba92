// Optimizer state: ledger accounting, frozen parameters, checkpoint round trips, and load validation.
package dev.llamafit.optim;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.function.Supplier;

import org.junit.jupiter.api.Test;

import dev.llamafit.memory.Category;
import dev.llamafit.memory.MemoryLedger;
import dev.llamafit.tensor.DType;
import dev.llamafit.tensor.Shape;
import dev.llamafit.tensor.Tensor;

class OptimizerStateTest {
    final MemoryLedger ledger = new MemoryLedger();

    /** w1 [7,5] (decay), norm [5] (no decay), w2 [3,4] (decay): 52 trainable elements. */
    List<Param> params(long seed) {
        Random r = new Random(seed);
        return List.of(OptimTesting.param(ledger, "w1", OptimTesting.random(r, 35, 1), true, 7, 5),
                OptimTesting.param(ledger, "norm", OptimTesting.random(r, 5, 1), false, 5),
                OptimTesting.param(ledger, "w2", OptimTesting.random(r, 12, 1), true, 3, 4));
    }

    /** Deterministic gradients for step s, clipped, then one step at the cosine schedule's rate. */
    static void train(Optimizer opt, List<Param> ps, int from, int to) {
        LrSchedule schedule = new LrSchedule.Cosine(1e-2, 2, 10);
        for (int s = from; s < to; s++) {
            Random r = new Random(1000 + s);
            for (Param p : ps) OptimTesting.set(p.grad(), OptimTesting.random(r, (int) p.elements(), 0.5f));
            GradClip.clipGlobalNorm(ps.stream().map(Param::grad).toList(), 1.0);
            opt.step(ps, schedule.lr(opt.steps()));
        }
    }

    static List<Supplier<Optimizer>> optimizers(MemoryLedger ledger) {
        return List.of(() -> new AdamW(0.9, 0.95, 1e-8, 0.1, ledger), () -> new Sgd(0.9, 0.01, ledger),
                () -> new Sgd(0.9, 0.01, 0, true, ledger), () -> new Sgd(0, 0.01, ledger));
    }

    @Test
    void ledgerHoldsExactlyTheStateBytesLazilyAndFreesThemOnClose() {
        List<Param> ps = params(1);
        long[] perElement = {8, 4, 4, 0};
        List<Supplier<Optimizer>> makers = optimizers(ledger);
        for (int i = 0; i < makers.size(); i++) {
            try (Optimizer opt = makers.get(i).get()) {
                assertEquals(52 * perElement[i], opt.stateBytes(ps));
                assertEquals(0, ledger.currentBytes(Category.OPTIMIZER), "state is allocated lazily, on the first step");
                train(opt, ps, 0, 2);
                assertEquals(52 * perElement[i], ledger.currentBytes(Category.OPTIMIZER), opt.getClass().getSimpleName());
                assertEquals(opt.stateBytes(ps), ledger.currentBytes(Category.OPTIMIZER));
                long tensors = opt.state().values().stream().mapToLong(Tensor::bytes).sum();
                assertEquals(52 * perElement[i], tensors);
            }
            assertEquals(0, ledger.currentBytes(Category.OPTIMIZER));
        }
    }

    @Test
    void frozenParametersGetNoState() {
        List<Param> trainable = params(2);
        Param frozen = OptimTesting.param(ledger, "embed", new float[64], true, 8, 8);
        try (AdamW opt = new AdamW(0.9, 0.95, 1e-8, 0.1, ledger)) {
            train(opt, trainable, 0, 1);
            assertEquals(List.of("exp_avg/w1", "exp_avg/norm", "exp_avg/w2", "exp_avg_sq/w1", "exp_avg_sq/norm", "exp_avg_sq/w2"),
                    List.copyOf(opt.state().keySet()));
            assertEquals(8L * 52, ledger.currentBytes(Category.OPTIMIZER));
            assertArrayEquals(new float[64], frozen.value().toFloatArray());
            // A parameter that appears after the first step would need its own bias-correction step: refused.
            var all = new ArrayList<>(trainable);
            all.add(frozen);
            var e = assertThrows(IllegalArgumentException.class, () -> opt.step(all, 1e-3));
            assertTrue(e.getMessage().contains("exp_avg/embed"), e.getMessage());
        }
    }

    @Test
    void saveAndLoadContinuesBitIdentically() {
        for (Supplier<Optimizer> maker : optimizers(ledger)) {
            List<Param> straight = params(3);
            try (Optimizer opt = maker.get()) {
                train(opt, straight, 0, 10);
            }
            List<Param> resumed = params(3);
            Map<String, Tensor> saved = new LinkedHashMap<>();
            long steps;
            try (Optimizer first = maker.get()) {
                train(first, resumed, 0, 5);
                steps = first.steps();
                // Copy, as a checkpoint writer would, and let the first optimizer's memory go.
                first.state().forEach((k, t) -> {
                    Tensor c = Tensor.allocate(new MemoryLedger(), Category.WORKSPACE, k, DType.F32, t.shape());
                    c.segment().copyFrom(t.segment());
                    saved.put(k, c);
                });
            }
            try (Optimizer second = maker.get()) {
                second.loadState(saved, steps, resumed);
                saved.values().forEach(Tensor::close);
                assertEquals(5, second.steps());
                train(second, resumed, 5, 10);
                assertEquals(10, second.steps());
            }
            for (int i = 0; i < straight.size(); i++) {
                assertArrayEquals(straight.get(i).value().toFloatArray(), resumed.get(i).value().toFloatArray(),
                        maker.get().getClass().getSimpleName() + " " + straight.get(i).name());
            }
        }
    }

    @Test
    void loadValidationNamesTheEntry() {
        List<Param> ps = params(4);
        try (AdamW opt = new AdamW(0.9, 0.95, 1e-8, 0.1, ledger)) {
            train(opt, ps, 0, 1);
            Map<String, Tensor> good = opt.state();
            try (AdamW other = new AdamW(0.9, 0.95, 1e-8, 0.1, ledger)) {
                Map<String, Tensor> m = new LinkedHashMap<>(good);
                m.remove("exp_avg_sq/w2");
                expect("missing entry exp_avg_sq/w2", () -> other.loadState(m, 1));

                Map<String, Tensor> unknown = new LinkedHashMap<>(good);
                unknown.put("momentum/w1", good.get("exp_avg/w1"));
                expect("unknown optimizer state entry 'momentum/w1'", () -> other.loadState(unknown, 1));

                Map<String, Tensor> shape = new LinkedHashMap<>(good);
                Tensor wrong = Tensor.allocate(ledger, Category.WORKSPACE, "x", DType.F32, Shape.of(5, 7));
                shape.put("exp_avg_sq/w1", wrong);
                expect("exp_avg_sq/w1 has shape [5, 7]", () -> other.loadState(shape, 1));

                Map<String, Tensor> both = new LinkedHashMap<>(good);
                both.put("exp_avg/w1", wrong);
                Tensor wrong2 = Tensor.allocate(ledger, Category.WORKSPACE, "y", DType.F32, Shape.of(5, 7));
                both.put("exp_avg_sq/w1", wrong2);
                expect("exp_avg/w1 has shape [5, 7] but parameter w1 has shape [7, 5]", () -> other.loadState(both, 1, ps));

                Map<String, Tensor> lacking = new LinkedHashMap<>(good);
                lacking.remove("exp_avg/norm");
                lacking.remove("exp_avg_sq/norm");
                expect("no entry exp_avg/norm", () -> other.loadState(lacking, 1, ps));

                expect("matches no parameter", () -> other.loadState(good, 1, ps.subList(0, 2)));
                expect("steps must be >= 0", () -> other.loadState(good, -1));

                Map<String, Tensor> negative = new LinkedHashMap<>(good);
                Tensor v = Tensor.allocate(ledger, Category.WORKSPACE, "v", DType.F32, good.get("exp_avg_sq/w1").shape());
                v.segment().setAtIndex(Tensor.F32_LE, 3, -1e-9f);
                negative.put("exp_avg_sq/w1", v);
                expect("exp_avg_sq/w1 has 1 negative values", () -> other.loadState(negative, 1));
                v.close();
                wrong.close();
                wrong2.close();
            }
            // Loading an optimizer's own live state back into it is safe (copies are made before the old state is freed).
            float[] before = good.get("exp_avg/w1").toFloatArray();
            opt.loadState(opt.state(), 1, ps);
            assertArrayEquals(before, opt.state().get("exp_avg/w1").toFloatArray());
            assertEquals(8L * 52, ledger.currentBytes(Category.OPTIMIZER));
            try (Sgd plain = new Sgd(0, 0, ledger)) {
                expect("expected no entries", () -> plain.loadState(good, 1));
            }
        }
    }

    @Test
    void argumentChecks() {
        List<Param> ps = params(5);
        AdamW opt = new AdamW(0.9, 0.95, 1e-8, 0.1, ledger);
        expect("passed twice", () -> opt.step(List.of(ps.get(0), ps.get(0)), 1e-3));
        expect("learning rate", () -> opt.step(ps, Double.NaN));
        opt.close();
        assertThrows(IllegalStateException.class, () -> opt.step(ps, 1e-3));
        expect("beta2", () -> new AdamW(0.9, 1.0, 1e-8, 0, ledger));
        expect("Nesterov", () -> new Sgd(0.9, 0, 0.1, true, ledger));
        Tensor f16 = Tensor.allocate(ledger, Category.WEIGHTS, "h", DType.F16, Shape.of(2));
        expect("needs F32", () -> new Param("h", f16, f16, true));
        expect("value shape [7, 5] != grad shape [5]", () -> new Param("x", ps.get(0).value(), ps.get(1).grad(), true));
    }

    static void expect(String fragment, Runnable r) {
        var e = assertThrows(IllegalArgumentException.class, r::run);
        assertTrue(e.getMessage().contains(fragment), "expected '" + fragment + "' in: " + e.getMessage());
    }
}
