// The SIMD optimizer updates agree bit for bit with the scalar reference, on awkward sizes and across blocks.
package dev.llamafit.optim;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;

import java.util.Random;

import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

import dev.llamafit.memory.Category;
import dev.llamafit.memory.MemoryLedger;
import dev.llamafit.tensor.Tensor;

class UpdateKernelsTest {
    final MemoryLedger ledger = new MemoryLedger();

    Tensor t(float[] v) { return OptimTesting.tensor(ledger, Category.WORKSPACE, "t", v, v.length); }

    @ParameterizedTest
    @ValueSource(ints = {1, 3, 7, 13, 31, 207, 702, 1024, 70_001})
    void vectorMatchesScalar(int n) {
        Random r = new Random(n);
        float[] p = OptimTesting.random(r, n, 1), g = OptimTesting.random(r, n, 0.1f);
        float[] m = OptimTesting.random(r, n, 0.01f), v = new float[n];
        for (int i = 0; i < n; i++) v[i] = Math.abs(r.nextFloat()) * 1e-3f;
        var adam = new UpdateKernels.AdamCoefficients(0.999f, 0.9f, 0.1f, 0.95f, 0.05f, -0.0123f, 0.31f, 1e-8f);
        UpdateKernels[] impls = {new UpdateKernels.Scalar(), new VectorUpdateKernels()};
        float[][][] out = new float[2][][];
        for (int k = 0; k < 2; k++) {
            Tensor tp = t(p), tg = t(g), tm = t(m), tv = t(v);
            UpdateKernels impl = impls[k];
            UpdateKernels.forBlocks(n, (a, b) -> impl.adamw(tp.segment(), tg.segment(), tm.segment(), tv.segment(), a, b, adam));
            Tensor sp = t(p), sb = t(m);
            for (boolean first : new boolean[] {true, false}) {
                for (boolean nesterov : new boolean[] {false, true}) {
                    var c = new UpdateKernels.SgdCoefficients(0.01f, 0.9f, nesterov ? 1f : 0.7f, nesterov, first, -0.05f);
                    UpdateKernels.forBlocks(n, (a, b) -> impl.sgd(sp.segment(), tg.segment(), sb.segment(), a, b, c));
                }
            }
            Tensor np = t(p);
            var noMomentum = new UpdateKernels.SgdCoefficients(0.01f, 0, 1, false, false, -0.05f);
            UpdateKernels.forBlocks(n, (a, b) -> impl.sgd(np.segment(), tg.segment(), null, a, b, noMomentum));
            out[k] = new float[][] {tp.toFloatArray(), tm.toFloatArray(), tv.toFloatArray(), sp.toFloatArray(), sb.toFloatArray(), np.toFloatArray()};
        }
        for (int j = 0; j < out[0].length; j++) assertArrayEquals(out[0][j], out[1][j], "output " + j + " at n=" + n);
    }
}
