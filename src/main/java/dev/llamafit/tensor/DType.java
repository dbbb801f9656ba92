// Element types of tensors, with their sizes and safetensors names.
package dev.llamafit.tensor;

import java.util.Optional;

/** Element types. Sizes are in bytes per element. */
public enum DType {
    F32(4, "F32"),
    F16(2, "F16"),
    BF16(2, "BF16"),
    I8(1, "I8"),
    /** Unsigned bytes: packed NF4 codes (two per byte), 8-bit quantisation codes. */
    U8(1, "U8");

    private final int bytes;
    private final String safetensorsName;

    DType(int bytes, String safetensorsName) {
        this.bytes = bytes;
        this.safetensorsName = safetensorsName;
    }

    public int bytes() { return bytes; }

    /** The dtype string used in safetensors headers. */
    public String safetensorsName() { return safetensorsName; }

    public static Optional<DType> fromSafetensors(String name) {
        for (DType d : values()) if (d.safetensorsName.equals(name)) return Optional.of(d);
        return Optional.empty();
    }

    /** Bytes for {@code elements} elements, overflow-checked. */
    public long bytesFor(long elements) { return Math.multiplyExact(elements, (long) bytes); }
}
