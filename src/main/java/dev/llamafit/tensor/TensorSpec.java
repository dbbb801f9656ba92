// A named tensor description (no memory): the unit that layouts list and the planner sums.
package dev.llamafit.tensor;

/**
 * A tensor to be allocated or found: its name, shape, storage dtype and the component it belongs to
 * (e.g. "attention", "mlp", "embedding"), used for per-component reports.
 */
public record TensorSpec(String name, Shape shape, DType dtype, String component) {
    public TensorSpec {
        if (name == null || name.isEmpty()) throw new IllegalArgumentException("tensor spec needs a name");
    }

    public long elements() { return shape.elements(); }

    public long bytes() { return dtype.bytesFor(shape.elements()); }
}
