// LoRA adapter backward (dX, dA, dB) against central finite differences of a double reference forward, with and without dropout.
package dev.llamafit.nn;

import static dev.llamafit.nn.GradientCheck.assertGradient;
import static dev.llamafit.nn.GradientCheck.dot;
import static dev.llamafit.nn.GradientCheck.numeric;
import static dev.llamafit.nn.GradientCheck.random;
import static dev.llamafit.nn.GradientCheck.read;
import static dev.llamafit.nn.GradientCheck.scaled;
import static dev.llamafit.nn.GradientCheck.segment;
import static dev.llamafit.nn.GradientCheck.tensor;
import static dev.llamafit.nn.GradientCheck.zeroTensor;
import static dev.llamafit.nn.GradientCheck.zeros;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;

import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

import dev.llamafit.kernels.Kernels;
import dev.llamafit.tensor.Tensor;

class LoraGradientTest {
    final Arena arena = Arena.ofShared();

    @AfterEach
    void close() { arena.close(); }

    /** y = x·Wᵀ + b + scale·((mask ⊙ x / (1 − p))·Aᵀ)·Bᵀ in double, the mask fixed by (seed, p). */
    static double[] ref(double[] x, double[] w, double[] b, double[] a, double[] bb, int rows, int in, int out, int r,
                        double scale, float p, long seed) {
        double[] xd = new double[x.length];
        for (int i = 0; i < x.length; i++) xd[i] = p == 0 ? x[i] : LoraLinear.keep(seed, i, p) ? x[i] / (1 - p) : 0;
        double[] y = LayerGradientTest.linearRef(x, w, b, rows, in, out);
        double[] u = LayerGradientTest.linearRef(xd, a, null, rows, in, r);
        double[] d = LayerGradientTest.linearRef(u, bb, null, rows, r, out);
        for (int i = 0; i < y.length; i++) y[i] += scale * d[i];
        return y;
    }

    @ParameterizedTest
    @ValueSource(floats = {0f, 0.3f})
    void adapterGradients(float p) {
        int rows = 5, in = 7, out = 6, r = 3;
        double scale = 1.7;
        long seed = 42;
        double[] x = random(rows * in, 1, 1), w = random(out * in, 2, 0.5), b = random(out, 3, 0.2);
        double[] a = random(r * in, 4, 0.6), bb = random(out * r, 5, 0.6), dOut = random(rows * out, 6, 1);
        for (Kernels k : LayerGradientTest.backends()) {
            LoraLinear lora = new LoraLinear(new Linear(tensor(arena, "w", w, out, in), tensor(arena, "b", b, out)),
                    tensor(arena, "A", a, r, in), tensor(arena, "B", bb, out, r), scale, p);
            MemorySegment xs = segment(arena, x), xd = zeros(arena, rows * in), u = zeros(arena, rows * r), y = zeros(arena, rows * out);
            lora.forward(k, xs, 0, rows, xd, u, y, 0, true, seed);
            double[] want = ref(x, w, b, a, bb, rows, in, out, r, scale, p, seed), got = read(y, rows * out);
            for (int i = 0; i < want.length; i++) assertEquals(want[i], got[i], 1e-5, "forward " + i);
            Tensor dA = zeroTensor(arena, "dA", r, in), dB = zeroTensor(arena, "dB", out, r);
            MemorySegment dX = segment(arena, random(rows * in, 7, 9)); // garbage: overwritten (accumulateDx false)
            MemorySegment du = zeros(arena, rows * r), dxs = zeros(arena, rows * in);
            // Twice: dA and dB accumulate, dX is overwritten each time.
            for (int rep = 0; rep < 2; rep++)
                lora.backward(k, p == 0 ? xs : xd, u, segment(arena, dOut), 0, rows, dX, 0, false, du, dxs, dA, dB, seed);
            String what = "lora(p=" + p + ", " + k.name() + ") ";
            java.util.function.ToDoubleFunction<Void> loss = z -> dot(ref(x, w, b, a, bb, rows, in, out, r, scale, p, seed), dOut);
            assertGradient(what + "dX", read(dX, rows * in), numeric(x, loss));
            assertGradient(what + "dA (twice)", read(dA), scaled(numeric(a, loss), 2));
            assertGradient(what + "dB (twice)", read(dB), scaled(numeric(bb, loss), 2));
        }
    }

    @Test
    void dropoutKeepsAboutOneMinusPAndIsSeeded() {
        int kept = 0, n = 100_000;
        for (int i = 0; i < n; i++) if (LoraLinear.keep(7, i, 0.25f)) kept++;
        assertEquals(0.75, kept / (double) n, 0.01);
        int same = 0, diff = 0;
        for (int i = 0; i < 1000; i++) {
            if (LoraLinear.keep(7, i, 0.5f) == LoraLinear.keep(7, i, 0.5f)) same++;
            if (LoraLinear.keep(7, i, 0.5f) != LoraLinear.keep(8, i, 0.5f)) diff++;
        }
        assertEquals(1000, same);
        assertTrue(diff > 300, "another seed draws another mask");
        for (int i = 0; i < 1000; i++) assertTrue(LoraLinear.keep(3, i, 0f), "p = 0 keeps everything");
    }
}
