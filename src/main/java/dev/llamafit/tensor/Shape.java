// An immutable tensor shape (row-major, last dimension contiguous).
package dev.llamafit.tensor;

import java.util.Arrays;

/** Tensor dimensions, outermost first. Immutable; element count is overflow-checked. */
public final class Shape {
    private final long[] dims;
    private final long elements;

    private Shape(long[] dims) {
        long n = 1;
        for (long d : dims) {
            if (d < 0) throw new IllegalArgumentException("negative dimension in shape " + Arrays.toString(dims));
            n = Math.multiplyExact(n, d);
        }
        this.dims = dims;
        this.elements = n;
    }

    public static Shape of(long... dims) { return new Shape(dims.clone()); }

    public int rank() { return dims.length; }

    public long dim(int i) { return dims[i < 0 ? dims.length + i : i]; }

    public long[] dims() { return dims.clone(); }

    public long elements() { return elements; }

    @Override
    public boolean equals(Object o) { return o instanceof Shape s && Arrays.equals(dims, s.dims); }

    @Override
    public int hashCode() { return Arrays.hashCode(dims); }

    @Override
    public String toString() { return Arrays.toString(dims); }
}
