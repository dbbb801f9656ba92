// Test helpers: float buffers from double arrays, central finite differences in double, gradient comparison.
package dev.llamafit.nn;

import static dev.llamafit.tensor.Tensor.F32_LE;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.util.SplittableRandom;
import java.util.function.ToDoubleFunction;

import dev.llamafit.tensor.DType;
import dev.llamafit.tensor.Shape;
import dev.llamafit.tensor.Tensor;

/**
 * The reference side of a gradient check: a scalar L(inputs) written in double in the test, differentiated by
 * central differences (h = 1e-6), compared with the float analytic backward at a tolerance of 1e-3 of the
 * gradient's largest magnitude: loose enough for float rounding, far too tight for any wrong term.
 */
final class GradientCheck {
    static final double H = 1e-6;
    static final double REL_TOL = 1e-3;

    private GradientCheck() {}

    /** Uniform values in [−scale, scale], rounded to float so the double reference sees what the float code sees. */
    static double[] random(int n, long seed, double scale) {
        SplittableRandom r = new SplittableRandom(seed);
        double[] v = new double[n];
        for (int i = 0; i < n; i++) v[i] = (float) ((r.nextDouble() * 2 - 1) * scale);
        return v;
    }

    static MemorySegment segment(Arena arena, double[] v) {
        MemorySegment s = arena.allocate(Math.max(1, v.length) * 4L, 64);
        for (int i = 0; i < v.length; i++) s.setAtIndex(F32_LE, i, (float) v[i]);
        return s;
    }

    static MemorySegment zeros(Arena arena, long n) {
        return arena.allocate(Math.max(1, n) * 4, 64); // Arena.allocate zero-fills
    }

    static Tensor tensor(Arena arena, String name, double[] v, long... shape) {
        return new Tensor(name, DType.F32, Shape.of(shape), segment(arena, v).asSlice(0, v.length * 4L));
    }

    static Tensor zeroTensor(Arena arena, String name, long... shape) {
        long n = Shape.of(shape).elements();
        return new Tensor(name, DType.F32, Shape.of(shape), zeros(arena, n).asSlice(0, n * 4));
    }

    static double[] read(MemorySegment s, int n) {
        double[] v = new double[n];
        for (int i = 0; i < n; i++) v[i] = s.getAtIndex(F32_LE, i);
        return v;
    }

    static double[] read(Tensor t) { return read(t.segment(), Math.toIntExact(t.elements())); }

    /** dL/dx by central differences; x is perturbed in place and restored. */
    static double[] numeric(double[] x, ToDoubleFunction<Void> loss) {
        double[] g = new double[x.length];
        for (int i = 0; i < x.length; i++) {
            double keep = x[i];
            x[i] = keep + H;
            double plus = loss.applyAsDouble(null);
            x[i] = keep - H;
            double minus = loss.applyAsDouble(null);
            x[i] = keep;
            g[i] = (plus - minus) / (2 * H);
        }
        return g;
    }

    /** Fails unless analytic ≈ numeric everywhere, relative to the largest numeric magnitude. */
    static void assertGradient(String what, double[] analytic, double[] numeric) {
        double scale = 0, maxErr = 0;
        int worst = -1;
        for (int i = 0; i < numeric.length; i++) {
            scale = Math.max(scale, Math.abs(numeric[i]));
            double e = Math.abs(analytic[i] - numeric[i]);
            if (e > maxErr) { maxErr = e; worst = i; }
        }
        assertTrue(scale > 1e-6, what + ": numeric gradient is ~0 everywhere, the check would be vacuous");
        assertTrue(maxErr <= REL_TOL * scale, what + ": max |analytic − numeric| = " + maxErr + " at " + worst
                + " (analytic " + (worst < 0 ? 0 : analytic[worst]) + ", numeric " + (worst < 0 ? 0 : numeric[worst])
                + "), gradient scale " + scale);
    }

    static double dot(double[] a, double[] b) {
        double s = 0;
        for (int i = 0; i < a.length; i++) s += a[i] * b[i];
        return s;
    }

    static double[] scaled(double[] a, double f) {
        double[] out = a.clone();
        for (int i = 0; i < out.length; i++) out[i] *= f;
        return out;
    }
}
