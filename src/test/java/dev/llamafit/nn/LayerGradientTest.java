// Per-layer backward passes against central finite differences of double-precision reference forwards (DESIGN §7).
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

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.util.List;

import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;
import org.junit.jupiter.params.provider.ValueSource;

import dev.llamafit.kernels.KernelBackends;
import dev.llamafit.kernels.Kernels;
import dev.llamafit.kernels.Parallel;
import dev.llamafit.kernels.ScalarKernels;
import dev.llamafit.memory.MemoryLedger;
import dev.llamafit.tensor.Tensor;

/**
 * Each test: a double reference forward y(x, θ) written here, L = Σ y·dOut with random dOut, numeric dL/d(every
 * input and parameter), and the float backward under test. Run with the chosen backend and the scalar reference.
 */
class LayerGradientTest {
    final Arena arena = Arena.ofShared(); // shared: the pool's threads read and write these buffers

    @AfterEach
    void close() { arena.close(); }

    static List<Kernels> backends() { return List.of(KernelBackends.get(), new ScalarKernels()); }

    // ---------------------------------------------------------------- Linear

    /** y[r, o] = Σ_i x[r, i]·W[o, i] + b[o] */
    static double[] linearRef(double[] x, double[] w, double[] b, int rows, int in, int out) {
        double[] y = new double[rows * out];
        for (int r = 0; r < rows; r++)
            for (int o = 0; o < out; o++) {
                double s = b == null ? 0 : b[o];
                for (int i = 0; i < in; i++) s += x[r * in + i] * w[o * in + i];
                y[r * out + o] = s;
            }
        return y;
    }

    @ParameterizedTest
    @ValueSource(booleans = {true, false})
    void linear(boolean withBias) {
        int rows = 5, in = 7, out = 6;
        double[] x = random(rows * in, 1, 1), w = random(out * in, 2, 0.5), b = withBias ? random(out, 3, 0.2) : null;
        double[] dOut = random(rows * out, 4, 1);
        for (Kernels k : backends()) {
            Tensor dW = zeroTensor(arena, "dW", out, in), dB = withBias ? zeroTensor(arena, "db", out) : null;
            Linear lin = new Linear(tensor(arena, "w", w, out, in), withBias ? tensor(arena, "b", b, out) : null);
            MemorySegment dX = zeros(arena, rows * in);
            // Twice: parameter gradients must accumulate (+=), the input gradient is overwritten.
            for (int rep = 0; rep < 2; rep++)
                lin.backward(k, segment(arena, x), 0, segment(arena, dOut), 0, rows, dX, 0, false, dW, dB);
            String p = "linear(bias=" + withBias + ", " + k.name() + ") ";
            assertGradient(p + "dX", read(dX, rows * in), numeric(x, v -> dot(linearRef(x, w, b, rows, in, out), dOut)));
            assertGradient(p + "dW (accumulated twice)", read(dW), scaled(numeric(w, v -> dot(linearRef(x, w, b, rows, in, out), dOut)), 2));
            if (withBias)
                assertGradient(p + "db (accumulated twice)", read(dB), scaled(numeric(b, v -> dot(linearRef(x, w, b, rows, in, out), dOut)), 2));
        }
    }

    // ---------------------------------------------------------------- RmsNorm

    static double[] rmsnormRef(double[] x, double[] w, int rows, int dim, double eps) {
        double[] y = new double[x.length];
        for (int r = 0; r < rows; r++) {
            double ss = 0;
            for (int i = 0; i < dim; i++) ss += x[r * dim + i] * x[r * dim + i];
            double inv = 1 / Math.sqrt(ss / dim + eps);
            for (int i = 0; i < dim; i++) y[r * dim + i] = x[r * dim + i] * inv * w[i];
        }
        return y;
    }

    @ParameterizedTest
    @ValueSource(ints = {9, 33})
    void rmsnorm(int dim) {
        int rows = 4;
        double eps = 1e-5;
        double[] x = random(rows * dim, 5, 1), w = random(dim, 6, 1), dOut = random(rows * dim, 7, 1);
        for (int i = 0; i < dim; i++) w[i] = (float) (1 + w[i] * 0.3);
        for (Kernels k : backends()) {
            RmsNorm norm = new RmsNorm(tensor(arena, "w", w, dim), eps);
            MemorySegment xs = segment(arena, x), y = zeros(arena, rows * dim), inv = zeros(arena, rows), dX = zeros(arena, rows * dim);
            norm.forward(k, xs, 0, rows, y, 0, inv, 0);
            Tensor dW = zeroTensor(arena, "dW", dim);
            norm.backward(k, xs, 0, inv, 0, segment(arena, dOut), 0, rows, dX, 0, dW);
            assertGradient("rmsnorm dX " + k.name(), read(dX, rows * dim), numeric(x, v -> dot(rmsnormRef(x, w, rows, dim, eps), dOut)));
            assertGradient("rmsnorm dWeight " + k.name(), read(dW), numeric(w, v -> dot(rmsnormRef(x, w, rows, dim, eps), dOut)));
        }
    }

    // ---------------------------------------------------------------- Rope

    static double[] ropeRef(double[] x, double[] inv, int[] pos, int rows, int heads, int d) {
        double[] y = x.clone();
        int half = d / 2;
        for (int r = 0; r < rows; r++)
            for (int h = 0; h < heads; h++)
                for (int i = 0; i < half; i++) {
                    int base = r * heads * d + h * d;
                    double a = pos[r] * inv[i], c = Math.cos(a), s = Math.sin(a);
                    double x1 = x[base + i], x2 = x[base + i + half];
                    y[base + i] = x1 * c - x2 * s;
                    y[base + i + half] = x2 * c + x1 * s;
                }
        return y;
    }

    @org.junit.jupiter.api.Test
    void rope() {
        int rows = 10, heads = 3, d = 8, maxPos = 16;
        int[] pos = {0, 1, 2, 3, 4, 0, 1, 2, 3, 15};
        double[] inv = Rope.inverseFrequencies(d, 100.0, 1, 0, 1, 1, false);
        double[] x = random(rows * heads * d, 8, 1), dOut = random(rows * heads * d, 9, 1);
        for (Kernels k : backends()) {
            try (Rope rope = new Rope(new MemoryLedger(), d, maxPos, inv, 1)) {
                MemorySegment dX = segment(arena, dOut);
                rope.backward(k, dX, 0, heads * d, rows, heads, pos);
                assertGradient("rope dX " + k.name(), read(dX, x.length), numeric(x, v -> dot(ropeRef(x, inv, pos, rows, heads, d), dOut)));
            }
        }
    }

    // ---------------------------------------------------------------- Attention

    /** Causal GQA with an optional window, q [B·T, H·D], k/v [B·T, KvH·D] -> out [B·T, H·D]. */
    static double[] attentionRef(double[] q, double[] k, double[] v, int batch, int t, int heads, int kvHeads, int d, int window) {
        int qDim = heads * d, kvDim = kvHeads * d, group = heads / kvHeads;
        double[] out = new double[batch * t * qDim];
        for (int b = 0; b < batch; b++)
            for (int h = 0; h < heads; h++) {
                int kvh = h / group;
                for (int i = 0; i < t; i++) {
                    int lo = window > 0 ? Math.max(0, i - window + 1) : 0;
                    double[] s = new double[i + 1];
                    double max = Double.NEGATIVE_INFINITY;
                    for (int j = lo; j <= i; j++) {
                        double dotv = 0;
                        for (int e = 0; e < d; e++) dotv += q[(b * t + i) * qDim + h * d + e] * k[(b * t + j) * kvDim + kvh * d + e];
                        s[j] = dotv / Math.sqrt(d);
                        max = Math.max(max, s[j]);
                    }
                    double z = 0;
                    for (int j = lo; j <= i; j++) z += Math.exp(s[j] - max);
                    for (int j = lo; j <= i; j++) {
                        double p = Math.exp(s[j] - max) / z;
                        for (int e = 0; e < d; e++) out[(b * t + i) * qDim + h * d + e] += p * v[(b * t + j) * kvDim + kvh * d + e];
                    }
                }
            }
        return out;
    }

    @ParameterizedTest
    @CsvSource({"4, 2, 0", "4, 2, 3", "4, 1, 0", "2, 2, 2"})
    void attention(int heads, int kvHeads, int window) {
        int batch = 2, t = 6, d = 4, n = batch * t, qDim = heads * d, kvDim = kvHeads * d;
        double[] q = random(n * qDim, 10, 1.5), k = random(n * kvDim, 11, 1.5), v = random(n * kvDim, 12, 1), dOut = random(n * qDim, 13, 1);
        for (Kernels kern : backends()) {
            Attention att = new Attention(heads, kvHeads, d, window);
            MemorySegment qs = segment(arena, q), ks = segment(arena, k), vs = segment(arena, v);
            MemorySegment probs = zeros(arena, (long) batch * heads * t * t), out = zeros(arena, n * qDim);
            att.forwardTraining(kern, batch, t, qs, ks, vs, probs, 0, out);
            double[] ref = attentionRef(q, k, v, batch, t, heads, kvHeads, d, window);
            double[] got = read(out, n * qDim);
            for (int i = 0; i < ref.length; i++) assertEquals(ref[i], got[i], 1e-5, "attention forward " + i);
            // Garbage in the outputs: backward must overwrite dQ, dK and dV, not add to them.
            MemorySegment dQ = segment(arena, random(n * qDim, 14, 9)), dK = segment(arena, random(n * kvDim, 15, 9)),
                    dV = segment(arena, random(n * kvDim, 16, 9));
            MemorySegment scratch = zeros(arena, Parallel.threads() * Attention.backwardScratchPerChunk(t));
            att.backward(kern, batch, t, qs, ks, vs, probs, 0, segment(arena, dOut), dQ, dK, dV, scratch);
            String p = "attention(H=" + heads + ", KvH=" + kvHeads + ", window=" + window + ", " + kern.name() + ") ";
            assertGradient(p + "dQ", read(dQ, n * qDim), numeric(q, x -> dot(attentionRef(q, k, v, batch, t, heads, kvHeads, d, window), dOut)));
            assertGradient(p + "dK", read(dK, n * kvDim), numeric(k, x -> dot(attentionRef(q, k, v, batch, t, heads, kvHeads, d, window), dOut)));
            assertGradient(p + "dV", read(dV, n * kvDim), numeric(v, x -> dot(attentionRef(q, k, v, batch, t, heads, kvHeads, d, window), dOut)));
        }
    }

    // ---------------------------------------------------------------- SwiGlu

    static double[] swigluRef(double[] x, double[] wg, double[] bg, double[] wu, double[] bu, double[] wd, double[] bd,
                              int rows, int c, int f) {
        double[] g = linearRef(x, wg, bg, rows, c, f), u = linearRef(x, wu, bu, rows, c, f), h = new double[rows * f];
        for (int i = 0; i < h.length; i++) h[i] = g[i] / (1 + Math.exp(-g[i])) * u[i];
        return linearRef(h, wd, bd, rows, f, c);
    }

    /** The MLP as the decoder block runs it: fused gate/up projections, the SwiGLU activation, the down projection. */
    @org.junit.jupiter.api.Test
    void swiglu() {
        int rows = 4, c = 5, f = 7;
        double[] x = random(rows * c, 20, 1), wg = random(f * c, 21, 1), bg = random(f, 22, 0.3), wu = random(f * c, 23, 1),
                bu = random(f, 24, 0.3), wd = random(c * f, 25, 0.7), bd = random(c, 26, 0.3), dOut = random(rows * c, 27, 1);
        for (Kernels k : backends()) {
            Projection gate = new Linear(tensor(arena, "wg", wg, f, c), tensor(arena, "bg", bg, f)),
                    up = new Linear(tensor(arena, "wu", wu, f, c), tensor(arena, "bu", bu, f)),
                    down = new Linear(tensor(arena, "wd", wd, c, f), tensor(arena, "bd", bd, c));
            MemorySegment xs = segment(arena, x), g = zeros(arena, rows * f), u = zeros(arena, rows * f), h = zeros(arena, rows * f),
                    out = zeros(arena, rows * c), dH = zeros(arena, rows * f), dU = zeros(arena, rows * f), dX = zeros(arena, rows * c);
            Projection.forwardFused(k, xs, 0, rows, new Projection[] {gate, up}, new MemorySegment[] {g, u});
            SwiGlu.forward(k, h, g, u, (long) rows * f);
            down.forward(k, h, 0, rows, out, 0);
            Tensor dWg = zeroTensor(arena, "dwg", f, c), dBg = zeroTensor(arena, "dbg", f), dWu = zeroTensor(arena, "dwu", f, c),
                    dBu = zeroTensor(arena, "dbu", f), dWd = zeroTensor(arena, "dwd", c, f), dBd = zeroTensor(arena, "dbd", c);
            down.backward(k, h, 0, segment(arena, dOut), 0, rows, dH, 0, false, dWd, dBd);
            SwiGlu.backward(k, g, u, dH, dU, (long) rows * f);
            gate.backward(k, xs, 0, dH, 0, rows, dX, 0, false, dWg, dBg);
            up.backward(k, xs, 0, dU, 0, rows, dX, 0, true, dWu, dBu);
            java.util.function.ToDoubleFunction<Void> loss = z -> dot(swigluRef(x, wg, bg, wu, bu, wd, bd, rows, c, f), dOut);
            String p = "swiglu " + k.name() + " ";
            assertGradient(p + "dX", read(dX, rows * c), numeric(x, loss));
            assertGradient(p + "dGateW", read(dWg), numeric(wg, loss));
            assertGradient(p + "dGateB", read(dBg), numeric(bg, loss));
            assertGradient(p + "dUpW", read(dWu), numeric(wu, loss));
            assertGradient(p + "dUpB", read(dBu), numeric(bu, loss));
            assertGradient(p + "dDownW", read(dWd), numeric(wd, loss));
            assertGradient(p + "dDownB", read(dBd), numeric(bd, loss));
        }
    }

    // ---------------------------------------------------------------- Embedding

    @org.junit.jupiter.api.Test
    void embedding() {
        int vocab = 6, c = 4;
        int[] ids = {1, 3, 1, 5, 0, 3, 3};
        double[] w = random(vocab * c, 30, 1), dOut = random(ids.length * c, 31, 1);
        for (Kernels k : backends()) {
            Embedding emb = new Embedding(tensor(arena, "w", w, vocab, c));
            MemorySegment out = zeros(arena, ids.length * c);
            emb.forward(k, ids, out, 0);
            Tensor dW = zeroTensor(arena, "dW", vocab, c);
            emb.backward(k, ids, segment(arena, dOut), 0, dW);
            assertGradient("embedding dWeight " + k.name(), read(dW), numeric(w, z -> {
                double s = 0;
                for (int n = 0; n < ids.length; n++) for (int i = 0; i < c; i++) s += w[ids[n] * c + i] * dOut[n * c + i];
                return s;
            }));
        }
    }

    // ---------------------------------------------------------------- CrossEntropy

    static double crossEntropyRef(double[] xf, double[] w, int[] labels, int rows, int c, int vocab) {
        double sum = 0;
        for (int r = 0; r < rows; r++) {
            if (labels[r] == CrossEntropy.IGNORE) continue;
            double[] z = new double[vocab];
            double max = Double.NEGATIVE_INFINITY;
            for (int j = 0; j < vocab; j++) {
                for (int i = 0; i < c; i++) z[j] += xf[r * c + i] * w[j * c + i];
                max = Math.max(max, z[j]);
            }
            double se = 0;
            for (int j = 0; j < vocab; j++) se += Math.exp(z[j] - max);
            sum += max + Math.log(se) - z[labels[r]];
        }
        return sum;
    }

    @ParameterizedTest
    @ValueSource(ints = {1, 3, 7, 64})
    void crossEntropy(int chunkRows) {
        int rows = 7, c = 5, vocab = 11;
        int[] labels = {3, -100, 10, 0, -100, 7, 3};
        double normalizer = 4.5; // deliberately not the count of this call's labels (5): micro-batches share one
        double[] xf = random(rows * c, 40, 1.5), w = random(vocab * c, 41, 1.5);
        for (Kernels k : backends()) {
            CrossEntropy ce = new CrossEntropy(tensor(arena, "w", w, vocab, c), chunkRows);
            Tensor dW = zeroTensor(arena, "dW", vocab, c);
            MemorySegment dX = segment(arena, random(rows * c, 42, 9)); // garbage: must be overwritten
            MemorySegment logits = zeros(arena, CrossEntropy.scratchElements(chunkRows, vocab));
            CrossEntropy.Result r = ce.forward(k, segment(arena, xf), 0, rows, labels, (float) (1 / normalizer), dW, dX, 0, logits);
            assertEquals(5, r.tokens());
            assertEquals(crossEntropyRef(xf, w, labels, rows, c, vocab), r.sum(), 1e-4, "loss sum");
            String p = "cross-entropy(chunk " + chunkRows + ", " + k.name() + ") ";
            assertGradient(p + "dXf", read(dX, rows * c), numeric(xf, z -> crossEntropyRef(xf, w, labels, rows, c, vocab) / normalizer));
            assertGradient(p + "dW", read(dW), numeric(w, z -> crossEntropyRef(xf, w, labels, rows, c, vocab) / normalizer));
            // Ignored rows get exactly zero input gradient.
            for (int i = 0; i < c; i++) assertEquals(0f, read(dX, rows * c)[1 * c + i], 0f);
        }
    }
}
