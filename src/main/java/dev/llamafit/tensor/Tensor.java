// A tensor: a memory segment viewed with a dtype and a shape.
package dev.llamafit.tensor;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;

import dev.llamafit.memory.Category;
import dev.llamafit.memory.MemoryLedger;

/**
 * A dense row-major tensor over an off-heap segment. The tensor does not own its memory unless it was
 * made by {@link #allocate}, in which case {@link #close()} frees it through the ledger.
 */
public final class Tensor implements AutoCloseable {
    /** Little-endian float, byte-aligned: safetensors data need not be 4-byte aligned in the file. */
    public static final ValueLayout.OfFloat F32_LE = ValueLayout.JAVA_FLOAT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    public static final ValueLayout.OfShort I16_LE = ValueLayout.JAVA_SHORT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);

    private final String name;
    private final DType dtype;
    private final Shape shape;
    private final MemorySegment segment;
    private final MemoryLedger.Buffer owned;

    public Tensor(String name, DType dtype, Shape shape, MemorySegment segment) {
        this(name, dtype, shape, segment, null);
    }

    private Tensor(String name, DType dtype, Shape shape, MemorySegment segment, MemoryLedger.Buffer owned) {
        long need = dtype.bytesFor(shape.elements());
        if (segment.byteSize() != need) {
            throw new IllegalArgumentException("tensor " + name + ": shape " + shape + " of " + dtype + " needs " + need
                    + " bytes, segment has " + segment.byteSize());
        }
        this.name = name;
        this.dtype = dtype;
        this.shape = shape;
        this.segment = segment;
        this.owned = owned;
    }

    /** Allocates a zeroed tensor through the ledger. */
    public static Tensor allocate(MemoryLedger ledger, Category category, String name, DType dtype, Shape shape) {
        MemoryLedger.Buffer buf = ledger.allocate(category, name, dtype.bytesFor(shape.elements()));
        return new Tensor(name, dtype, shape, buf.segment(), buf);
    }

    public String name() { return name; }

    public DType dtype() { return dtype; }

    public Shape shape() { return shape; }

    public MemorySegment segment() { return segment; }

    public long elements() { return shape.elements(); }

    public long bytes() { return segment.byteSize(); }

    /** Element {@code i} as float, converting from F16/BF16. */
    public float getFloat(long i) {
        return switch (dtype) {
            case F32 -> segment.get(F32_LE, i * 4);
            case F16 -> Float.float16ToFloat(segment.get(I16_LE, i * 2));
            case BF16 -> Float.intBitsToFloat((segment.get(I16_LE, i * 2) & 0xFFFF) << 16);
            case I8 -> segment.get(ValueLayout.JAVA_BYTE, i);
            case U8 -> segment.get(ValueLayout.JAVA_BYTE, i) & 0xFF;
        };
    }

    /** Sets element {@code i} of an F32 tensor. */
    public void setFloat(long i, float v) {
        if (dtype != DType.F32) throw new IllegalStateException("setFloat on " + dtype + " tensor " + name);
        segment.set(F32_LE, i * 4, v);
    }

    /** Copies all elements to a new float array (tests and small tensors). */
    public float[] toFloatArray() {
        float[] out = new float[Math.toIntExact(elements())];
        for (int i = 0; i < out.length; i++) out[i] = getFloat(i);
        return out;
    }

    @Override
    public void close() {
        if (owned != null) owned.close();
    }

    @Override
    public String toString() { return name + ":" + dtype + shape; }
}
