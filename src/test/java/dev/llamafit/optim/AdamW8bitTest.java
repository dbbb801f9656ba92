// 8-bit AdamW: small tensors as AdamW, the 8-bit update against fp32 AdamW, exact state round trips, ledger == stateBytes.
package dev.llamafit.optim;

import static org.junit.jupiter.api.Assertions.*;

import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Random;

import org.junit.jupiter.api.Test;

import dev.llamafit.memory.Category;
import dev.llamafit.memory.MemoryLedger;
import dev.llamafit.quant.DynamicMap;
import dev.llamafit.tensor.DType;
import dev.llamafit.tensor.Shape;
import dev.llamafit.tensor.Tensor;

class AdamW8bitTest {
    private static final double LR = 1e-2;

    /** Gradients with a steady part (so m does not average to zero) and noise; the same sequence for every run. */
    private static void grads(List<Param> params, int step) {
        for (Param p : params) {
            Random r = new Random(31L * step + p.name().hashCode());
            for (long i = 0; i < p.elements(); i++)
                p.grad().setFloat(i, (float) (Math.sin(i * 0.37) * 0.5 + r.nextGaussian() * 0.3));
        }
    }

    private static List<Param> params(MemoryLedger ledger, int... sizes) {
        Random r = new Random(5);
        Param[] out = new Param[sizes.length];
        for (int k = 0; k < sizes.length; k++)
            out[k] = OptimTesting.param(ledger, "p" + k, OptimTesting.random(r, sizes[k], 0.5f), k % 2 == 0, sizes[k]);
        return List.of(out);
    }

    private static void run(Optimizer o, List<Param> params, int from, int to) {
        for (int s = from; s < to; s++) {
            grads(params, s);
            o.step(params, LR);
        }
    }

    @Test
    void stateBytesFormula() {
        assertEquals(8 * 4095L, AdamW8bit.stateBytes(4095), "below min_8bit_size: fp32 m and v");
        assertEquals(2 * 4096L + 2 * 2 * 4, AdamW8bit.stateBytes(4096), "two blocks: codes + one F32 absmax per block per state");
        assertEquals(2 * 5000L + 3 * 2 * 4, AdamW8bit.stateBytes(5000), "the last block is short");
        assertEquals(0, AdamW8bit.stateBytes(0));
        assertFalse(AdamW8bit.quantized(4095));
        assertTrue(AdamW8bit.quantized(4096));
    }

    @Test
    void smallTensorsKeepFp32StatesAndMatchAdamWBitForBit() {
        MemoryLedger l8 = new MemoryLedger(), l32 = new MemoryLedger();
        List<Param> a = params(l8, 64, 4095), b = params(l32, 64, 4095);
        try (AdamW8bit o8 = new AdamW8bit(0.9, 0.999, 1e-8, 0.1, l8); AdamW o32 = new AdamW(0.9, 0.999, 1e-8, 0.1, l32)) {
            run(o8, a, 0, 6);
            run(o32, b, 0, 6);
            for (int k = 0; k < a.size(); k++)
                assertArrayEquals(b.get(k).value().toFloatArray(), a.get(k).value().toFloatArray(), a.get(k).name());
            assertEquals(o32.state().keySet(), o8.state().keySet());
            for (var e : o8.state().entrySet()) {
                assertEquals(DType.F32, e.getValue().dtype(), e.getKey());
                assertArrayEquals(o32.state().get(e.getKey()).toFloatArray(), e.getValue().toFloatArray(), e.getKey());
            }
        }
    }

    @Test
    void quantisedStatesTrackFp32AdamW() {
        int n = 3 * 2048 + 100;
        MemoryLedger l8 = new MemoryLedger(), l32 = new MemoryLedger();
        List<Param> a = params(l8, n), b = params(l32, n);
        float[] start = a.getFirst().value().toFloatArray();
        try (AdamW8bit o8 = new AdamW8bit(0.9, 0.999, 1e-8, 0.01, l8); AdamW o32 = new AdamW(0.9, 0.999, 1e-8, 0.01, l32)) {
            // Step 1 dequantises zero states, so its update is AdamW's exactly.
            run(o8, a, 0, 1);
            run(o32, b, 0, 1);
            assertArrayEquals(b.getFirst().value().toFloatArray(), a.getFirst().value().toFloatArray(), "step 1 is exact");
            Map<String, Tensor> s = o8.state();
            assertEquals(DType.U8, s.get("exp_avg/p0").dtype());
            assertEquals(DType.U8, s.get("exp_avg_sq/p0").dtype());
            assertEquals(Shape.of(4), s.get("exp_avg_absmax/p0").shape());
            assertEquals(Shape.of(4), s.get("exp_avg_sq_absmax/p0").shape());
            int steps = 30;
            run(o8, a, 1, steps);
            run(o32, b, 1, steps);
            float[] p8 = a.getFirst().value().toFloatArray(), p32 = b.getFirst().value().toFloatArray();
            double moved = 0, diff = 0, worst = 0;
            for (int i = 0; i < n; i++) {
                moved += Math.abs(p32[i] - start[i]);
                diff += Math.abs(p8[i] - p32[i]);
                worst = Math.max(worst, Math.abs(p8[i] - p32[i]));
            }
            // Each step moves an element by at most about lr; the 8-bit moments steer it within a few percent of that.
            assertTrue(diff / moved < 0.05, "mean deviation " + diff / n + " vs mean movement " + moved / n);
            assertTrue(worst < 0.25 * LR * steps, "worst deviation " + worst);
            assertTrue(diff > 0, "the states are really quantised");
            // The dequantised moments are within half a map gap (× absmax) of fp32 AdamW's, to a few map gaps after 30 steps.
            float[] m32 = o32.state().get("exp_avg/p0").toFloatArray();
            Tensor codes = s.get("exp_avg/p0"), amax = s.get("exp_avg_absmax/p0");
            float[] map = DynamicMap.signed();
            for (int i = 0; i < n; i++) {
                float m8 = map[(int) codes.getFloat(i)] * amax.getFloat(i / 2048);
                assertEquals(m32[i], m8, 0.05 * amax.getFloat(i / 2048), "m at " + i);
            }
        }
    }

    @Test
    void ledgerHoldsExactlyStateBytes() {
        MemoryLedger ledger = new MemoryLedger();
        List<Param> ps = params(ledger, 64, 4095, 4096, 5000, 70000);
        try (AdamW8bit o = new AdamW8bit(0.9, 0.999, 1e-8, 0.01, ledger)) {
            assertEquals(0, ledger.currentBytes(Category.OPTIMIZER), "states are allocated on the first step");
            run(o, ps, 0, 2);
            long expected = 0;
            for (Param p : ps) expected += AdamW8bit.stateBytes(p.elements());
            assertEquals(expected, o.stateBytes(ps));
            assertEquals(expected, ledger.currentBytes(Category.OPTIMIZER));
            long sum = 0;
            for (Tensor t : o.state().values()) sum += t.bytes();
            assertEquals(expected, sum, "every state byte is a checkpointed tensor");
        }
        assertEquals(0, ledger.currentBytes(Category.OPTIMIZER), "close frees the states");
    }

    @Test
    void stateRoundTripResumesBitIdentically() {
        int[] sizes = {64, 4096, 9000, 70000};
        MemoryLedger l1 = new MemoryLedger(), l2 = new MemoryLedger();
        List<Param> a = params(l1, sizes), b = params(l2, sizes);
        try (AdamW8bit straight = new AdamW8bit(0.9, 0.999, 1e-8, 0.01, l1)) {
            run(straight, a, 0, 10);
            Map<String, Tensor> saved = new LinkedHashMap<>();
            try (AdamW8bit first = new AdamW8bit(0.9, 0.999, 1e-8, 0.01, l2)) {
                run(first, b, 0, 4);
                MemoryLedger copies = new MemoryLedger();
                for (var e : first.state().entrySet()) {
                    Tensor c = Tensor.allocate(copies, Category.OPTIMIZER, e.getKey(), e.getValue().dtype(), e.getValue().shape());
                    c.segment().copyFrom(e.getValue().segment());
                    saved.put(e.getKey(), c);
                }
                try (AdamW8bit resumed = new AdamW8bit(0.9, 0.999, 1e-8, 0.01, l2)) {
                    resumed.loadState(saved, first.steps(), b);
                    run(resumed, b, 4, 10);
                    for (int k = 0; k < a.size(); k++)
                        assertArrayEquals(a.get(k).value().toFloatArray(), b.get(k).value().toFloatArray(), a.get(k).name());
                    assertEquals(straight.state().keySet(), resumed.state().keySet());
                    for (var e : straight.state().entrySet())
                        assertEquals(e.getValue().segment().asByteBuffer(), resumed.state().get(e.getKey()).segment().asByteBuffer(), e.getKey());
                }
            }
        }
    }

    @Test
    void loadRefusesStatesOfTheWrongLayout() {
        MemoryLedger ledger = new MemoryLedger();
        List<Param> ps = params(ledger, 64, 5000);
        try (AdamW8bit o = new AdamW8bit(0.9, 0.999, 1e-8, 0.01, ledger)) {
            run(o, ps, 0, 1);
            Map<String, Tensor> good = o.state();
            Map<String, Tensor> missing = new LinkedHashMap<>(good);
            missing.remove("exp_avg_sq_absmax/p1");
            assertMessage(missing, "missing entry exp_avg_sq_absmax/p1");
            Map<String, Tensor> fp32 = new LinkedHashMap<>(good);
            fp32.put("exp_avg/p1", Tensor.allocate(ledger, Category.OPTIMIZER, "x", DType.F32, Shape.of(5000)));
            assertMessage(fp32, "exp_avg/p1 is F32, expected U8");
            Map<String, Tensor> extra = new LinkedHashMap<>(good);
            extra.put("exp_avg_absmax/p0", Tensor.allocate(ledger, Category.OPTIMIZER, "y", DType.F32, Shape.of(1)));
            assertMessage(extra, "exp_avg_absmax/p0 is not expected");
            Map<String, Tensor> unknown = new LinkedHashMap<>(good);
            unknown.put("momentum/p0", good.get("exp_avg/p0"));
            assertMessage(unknown, "unknown optimizer state entry 'momentum/p0'");
            Map<String, Tensor> blocks = new LinkedHashMap<>(good);
            blocks.put("exp_avg_absmax/p1", Tensor.allocate(ledger, Category.OPTIMIZER, "z", DType.F32, Shape.of(2)));
            assertMessage(blocks, "expected F32[3]");
            // The good state loads, and a step over parameters that leave an entry unused is refused.
            try (AdamW8bit other = new AdamW8bit(0.9, 0.999, 1e-8, 0.01, ledger)) {
                other.loadState(good, 1);
                var e = assertThrows(IllegalArgumentException.class, () -> other.step(ps.subList(0, 1), LR));
                assertTrue(e.getMessage().contains("exp_avg/p1 matches no parameter"), e.getMessage());
            }
        }
    }

    private static void assertMessage(Map<String, Tensor> state, String part) {
        try (AdamW8bit o = new AdamW8bit(0.9, 0.999, 1e-8, 0.01, new MemoryLedger())) {
            var e = assertThrows(IllegalArgumentException.class, () -> o.loadState(state, 1));
            assertTrue(e.getMessage().contains(part), e.getMessage());
        }
    }
}
