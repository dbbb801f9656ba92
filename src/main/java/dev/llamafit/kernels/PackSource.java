// A GEMM operand read only through the GEMM's packing step: a compressed weight (NF4) widened a slice at a time.
package dev.llamafit.kernels;

/**
 * The B operand of {@link Kernels#gemm(boolean, int, int, int, float, java.lang.foreign.MemorySegment, long, int,
 * PackSource, long, int, float, java.lang.foreign.MemorySegment, long, int)}: a row-major matrix that is never
 * materialised as floats. The GEMM asks for short runs of consecutive elements (a row segment of at most one depth or
 * column block) exactly when it packs them, so a format that needs decoding (block-quantised codes and their scales)
 * costs each thread only its packing buffers. Implementations must be safe to call from several threads at once.
 */
@FunctionalInterface
public interface PackSource {
    /** Writes elements [index, index + count) of the row-major storage, as floats, to dst[dstOff, +count). */
    void read(long index, int count, float[] dst, int dstOff);
}
