// Small helpers shared by the optim tests: tensors from arrays, parameter lists.
package dev.llamafit.optim;

import dev.llamafit.memory.Category;
import dev.llamafit.memory.MemoryLedger;
import dev.llamafit.tensor.DType;
import dev.llamafit.tensor.Shape;
import dev.llamafit.tensor.Tensor;

final class OptimTesting {
    private OptimTesting() {}

    static Tensor tensor(MemoryLedger ledger, Category category, String name, float[] data, long... dims) {
        Tensor t = Tensor.allocate(ledger, category, name, DType.F32, Shape.of(dims));
        set(t, data);
        return t;
    }

    static void set(Tensor t, float[] data) {
        if (data.length != t.elements()) throw new IllegalArgumentException(t + " vs " + data.length);
        for (int i = 0; i < data.length; i++) t.setFloat(i, data[i]);
    }

    static Param param(MemoryLedger ledger, String name, float[] value, boolean decay, long... dims) {
        return new Param(name, tensor(ledger, Category.WEIGHTS, name, value, dims),
                tensor(ledger, Category.GRADIENTS, "grad/" + name, new float[value.length], dims), decay);
    }

    static float[] random(java.util.Random r, int n, float scale) {
        float[] out = new float[n];
        for (int i = 0; i < n; i++) out[i] = (float) r.nextGaussian() * scale;
        return out;
    }
}
