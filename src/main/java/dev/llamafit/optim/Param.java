// One trainable parameter as the optimizer sees it: its value, its gradient, and whether weight decay applies.
package dev.llamafit.optim;

import java.util.Objects;

import dev.llamafit.tensor.DType;
import dev.llamafit.tensor.Tensor;

/**
 * A trainable parameter. {@code value} and {@code grad} are tensors of one shape and one dtype, F32 (or BF16: bf16-pure
 * training, whose optimizer states are then BF16 too) (any shape; the
 * optimizer treats them as flat). {@code decay} is false for norms and biases, as in the usual
 * transformers/PyTorch "no_decay" parameter group; the trainer decides. {@code name} keys the optimizer state
 * ("exp_avg/&lt;name&gt;"), so it must be stable across checkpoints. Frozen parameters are simply not passed.
 */
public record Param(String name, Tensor value, Tensor grad, boolean decay) {
    public Param {
        Objects.requireNonNull(name, "name");
        Objects.requireNonNull(value, () -> "value of parameter " + name);
        Objects.requireNonNull(grad, () -> "grad of parameter " + name + " (frozen parameters are not passed to the optimizer)");
        if (name.isBlank()) throw new IllegalArgumentException("parameter name is blank");
        if (value.dtype() != DType.F32 && value.dtype() != DType.BF16)
            throw new IllegalArgumentException("parameter " + name + ": value is " + value.dtype() + ", the optimizer needs F32 or BF16");
        if (grad.dtype() != value.dtype())
            throw new IllegalArgumentException("parameter " + name + ": grad is " + grad.dtype() + ", the optimizer needs the value's " + value.dtype());
        if (!value.shape().equals(grad.shape())) {
            throw new IllegalArgumentException("parameter " + name + ": value shape " + value.shape() + " != grad shape " + grad.shape());
        }
    }

    /** Elements of the parameter. */
    public long elements() { return value.elements(); }
}
