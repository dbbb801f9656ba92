// bf16-pure's optimizer side: AdamW on BF16 parameters (BF16 m and v), clipping BF16 gradients, state dtype checks.
package dev.llamafit.optim;

import static dev.llamafit.tensor.Tensor.I16_LE;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.lang.foreign.MemorySegment;
import java.util.List;
import java.util.Map;
import java.util.Random;

import org.junit.jupiter.api.Test;

import dev.llamafit.kernels.ScalarKernels;
import dev.llamafit.kernels.UpdateKernels;
import dev.llamafit.memory.Category;
import dev.llamafit.memory.MemoryLedger;
import dev.llamafit.tensor.DType;
import dev.llamafit.tensor.Shape;
import dev.llamafit.tensor.Tensor;

class Bf16OptimizerTest {
    final MemoryLedger ledger = new MemoryLedger();

    Tensor bf16(String name, Random r, float scale, int n) {
        Tensor t = Tensor.allocate(ledger, Category.WEIGHTS, name, DType.BF16, Shape.of(n));
        for (int i = 0; i < n; i++) t.segment().setAtIndex(I16_LE, i, ScalarKernels.floatToBf16((float) r.nextGaussian() * scale));
        return t;
    }

    @Test
    void adamwOnBf16ParametersKeepsBf16StatesAndRunsTheBf16Kernel() {
        Random r = new Random(3);
        int n = 1000;
        Tensor p = bf16("w", r, 1, n), g = bf16("g", r, 0.1f, n);
        Param param = new Param("w", p, g, true);
        // The expected result: the specification kernel on copies, with AdamW's first-step coefficients.
        MemorySegment ep = MemorySegment.ofArray(new short[n]), em = MemorySegment.ofArray(new short[n]), ev = MemorySegment.ofArray(new short[n]);
        ep.copyFrom(p.segment());
        double lr = 1e-2, wd = 0.1;
        var c = new UpdateKernels.AdamCoefficients((float) (1 - lr * wd), 0.9f, (float) (1 - 0.9), 0.95f, (float) (1 - 0.95),
                (float) -(lr / (1 - 0.9)), (float) Math.sqrt(1 - 0.95), 1e-8f);
        new ScalarKernels().adamwBf16(ep, g.segment(), em, ev, 0, n, c, "w".hashCode() ^ Long.hashCode(0x9E3779B97F4A7C15L));
        try (AdamW opt = new AdamW(0.9, 0.95, 1e-8, wd, ledger)) {
            assertEquals(4L * n, opt.stateBytes(List.of(param)), "two BF16 states: 4 B per element");
            opt.step(List.of(param), lr);
            assertEquals(4L * n, ledger.currentBytes(Category.OPTIMIZER));
            Map<String, Tensor> state = opt.state();
            for (Tensor s : state.values()) assertEquals(DType.BF16, s.dtype(), s.name());
            for (int i = 0; i < n; i++) {
                assertEquals(ep.getAtIndex(I16_LE, i), p.segment().getAtIndex(I16_LE, i), "p " + i);
                assertEquals(em.getAtIndex(I16_LE, i), state.get("exp_avg/w").segment().getAtIndex(I16_LE, i), "m " + i);
                assertEquals(ev.getAtIndex(I16_LE, i), state.get("exp_avg_sq/w").segment().getAtIndex(I16_LE, i), "v " + i);
            }
            // A resume with fp32 states for a BF16 parameter (another precision's checkpoint) is refused by name.
            try (AdamW other = new AdamW(0.9, 0.95, 1e-8, wd, ledger)) {
                Tensor m32 = Tensor.allocate(ledger, Category.WORKSPACE, "m", DType.F32, Shape.of(n));
                Tensor v32 = Tensor.allocate(ledger, Category.WORKSPACE, "v", DType.F32, Shape.of(n));
                var e = assertThrows(IllegalArgumentException.class,
                        () -> other.loadState(Map.of("exp_avg/w", m32, "exp_avg_sq/w", v32), 1, List.of(param)));
                assertTrue(e.getMessage().contains("exp_avg/w is F32 but parameter w is BF16"), e.getMessage());
            }
        }
        // SGD updates fp32 parameters only.
        try (Sgd sgd = new Sgd(0.9, 0.01, ledger)) {
            var e = assertThrows(IllegalArgumentException.class, () -> sgd.step(List.of(param), 1e-2));
            assertTrue(e.getMessage().contains("is BF16"), e.getMessage());
        }
        // A parameter's gradient has its value's dtype.
        Tensor g32 = Tensor.allocate(ledger, Category.GRADIENTS, "g32", DType.F32, Shape.of(n));
        assertThrows(IllegalArgumentException.class, () -> new Param("w", p, g32, true));
    }

    @Test
    void clippingReadsAndScalesBf16Gradients() {
        Random r = new Random(5);
        int n = 70_001; // several blocks
        Tensor g = bf16("g", r, 1, n);
        double want = 0;
        for (int i = 0; i < n; i++) want += (double) g.getFloat(i) * g.getFloat(i);
        float[] before = g.toFloatArray();
        double norm = GradClip.clipGlobalNorm(List.of(g), 1.0);
        assertEquals(Math.sqrt(want), norm, 1e-9 * Math.sqrt(want));
        float scale = (float) (1.0 / (norm + GradClip.EPS));
        for (int i = 0; i < n; i++) assertEquals(ScalarKernels.bf16ToFloat(ScalarKernels.floatToBf16(before[i] * scale)), g.getFloat(i), "element " + i);
    }
}
