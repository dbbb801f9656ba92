// The values of --dtype and --save-dtype: fp32, bf16, fp16, as the engine's DType.
package dev.llamafit.cli;

import dev.llamafit.tensor.DType;

/** A weight dtype as the flags spell it; null on a flag means "the checkpoint's own". */
enum WeightDtype {
    fp32(DType.F32), bf16(DType.BF16), fp16(DType.F16);

    private final DType dtype;

    WeightDtype(DType dtype) { this.dtype = dtype; }

    DType dtype() { return dtype; }

    /** The engine dtype of a flag value, or null when the flag was not given. */
    static DType of(WeightDtype flag) { return flag == null ? null : flag.dtype; }
}
