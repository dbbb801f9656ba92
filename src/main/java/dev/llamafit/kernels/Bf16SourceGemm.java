// The bf16 view's GEMM on a pack-source weight (NF4): each task dequantises a slab of W to bf16 and runs oneDNN's bf16 matmul on it.
package dev.llamafit.kernels;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.nio.ByteOrder;

import dev.llamafit.tensor.DType;
import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.IntVector;
import jdk.incubator.vector.ShortVector;
import jdk.incubator.vector.VectorMask;
import jdk.incubator.vector.VectorOperators;
import jdk.incubator.vector.VectorShape;
import jdk.incubator.vector.VectorSpecies;

/**
 * Under mixed precision QLoRA computes in bf16, as bitsandbytes does (its 4-bit matmul dequantises W to the compute
 * dtype and multiplies in that dtype). Here A (the activations, or dY) is rounded to bf16 once, then C's columns are cut
 * into slabs of at most {@link #SLAB} columns, split over the pool; each task dequantises its slab of W (forward: rows
 * of W [n, k]; backward: columns of W [k, n]) through {@link PackSource#read}, rounds it to bf16 (nearest even) into a
 * per-thread buffer and runs one single-threaded oneDNN bf16 matmul into its columns of C. So a thread holds at most
 * SLAB·k bf16 values of W (plus one row run of k floats), never the dequantised matrix. The per-thread buffers grow to
 * the largest slab seen and live as long as the thread, outside the ledger, like the GEMM kernels' packing buffers.
 */
final class Bf16SourceGemm {
    private Bf16SourceGemm() {}

    /** Most columns of C (rows of W forward, columns of W backward) one task dequantises at a time. */
    static final int SLAB = 128;

    private static final VectorSpecies<Float> SF = FloatVector.SPECIES_PREFERRED;
    private static final VectorSpecies<Integer> SI = IntVector.SPECIES_PREFERRED;
    private static final int L = SF.length();
    private static final VectorSpecies<Short> SS = VectorSpecies.of(short.class, VectorShape.forBitSize(L * 16));
    private static final ByteOrder LE = ByteOrder.LITTLE_ENDIAN;

    /** A thread's slab of W in bf16 and its row run in fp32. */
    private static final class Slab {
        MemorySegment w = MemorySegment.NULL;
        float[] run = new float[0];
        MemorySegment a = MemorySegment.NULL;
    }

    private static final ThreadLocal<Slab> SLABS = ThreadLocal.withInitial(Slab::new);

    /** Bytes of W's bf16 slab a thread holds for a GEMM with depth k (the workspace bound: SLAB·k·2, plus k·4 for one run). */
    static long workspaceBytes(int k, int n) { return 2L * Math.min(SLAB, n) * k + 4L * Math.max(k, Math.min(SLAB, n)); }

    /** The largest slab buffer this thread holds now, in bytes (tests: the workspace bound). */
    static long threadSlabBytes() { return SLABS.get().w.byteSize(); }

    /**
     * C[m, n] = alpha·A·op(B) + beta·C with A fp32 [m, k] (row stride lda) rounded to bf16, and B read through {@code b}:
     * stored [n, k] when {@code transB} (op(B) = Bᵀ), else [k, n]. The caller has checked the ranges and that the segments
     * are native.
     */
    static void gemm(OneDnnKernels dnn, boolean transB, int m, int n, int k, float alpha, MemorySegment a, long aOff, int lda,
                     PackSource b, long bOff, int ldb, float beta, MemorySegment c, long cOff, int ldc) {
        Slab mine = SLABS.get();
        mine.a = ensure(mine.a, 2L * m * k);
        MemorySegment a16 = mine.a;
        Parallel.forRange(m, Math.max(1, (1 << 14) / k), (r0, r1) -> {
            for (int r = r0; r < r1; r++) round(a, (aOff + (long) r * lda) * 4, k, a16, 2L * r * k);
        });
        // Pieces a multiple of the thread count, each at most SLAB wide, so that the static split is even.
        int t = Parallel.threads();
        int pieces = t * Math.max(1, (n + t * SLAB - 1) / (t * SLAB));
        int width = Math.max(1, (n + pieces - 1) / pieces);
        int slabs = (n + width - 1) / width;
        Parallel.forRange(slabs, 1, (s0, s1) -> {
            Slab s = SLABS.get();
            for (int sl = s0; sl < s1; sl++) {
                int j0 = sl * width, nb = Math.min(width, n - j0);
                s.w = ensure(s.w, 2L * nb * k);
                if (transB) {
                    if (s.run.length < k) s.run = new float[k];
                    for (int j = 0; j < nb; j++) {
                        b.read(bOff + (long) (j0 + j) * ldb, k, s.run, 0);
                        round(s.run, k, s.w, 2L * j * k);
                    }
                    dnn.matmulStripe(false, true, m, nb, k, alpha, a16, 0, k, DType.BF16, s.w, 0, k, DType.BF16, beta, c, cOff + j0, ldc);
                } else {
                    if (s.run.length < nb) s.run = new float[nb];
                    for (int r = 0; r < k; r++) {
                        b.read(bOff + (long) r * ldb + j0, nb, s.run, 0);
                        round(s.run, nb, s.w, 2L * r * nb);
                    }
                    dnn.matmulStripe(false, false, m, nb, k, alpha, a16, 0, k, DType.BF16, s.w, 0, nb, DType.BF16, beta, c, cOff + j0, ldc);
                }
            }
        });
    }

    private static MemorySegment ensure(MemorySegment s, long bytes) {
        return s.byteSize() >= bytes ? s : Arena.ofAuto().allocate(bytes, 64);
    }

    /** fp32 bits to bf16, round to nearest even; NaN stays a (quiet) NaN. */
    static short bf16(int bits) {
        if ((bits & 0x7FFFFFFF) > 0x7F800000) return (short) ((bits >>> 16) | 0x40);
        return (short) ((bits + 0x7FFF + ((bits >>> 16) & 1)) >>> 16);
    }

    private static IntVector bf16(IntVector bits) {
        IntVector rounded = bits.add(0x7FFF).add(bits.lanewise(VectorOperators.LSHR, 16).and(1)).lanewise(VectorOperators.LSHR, 16);
        VectorMask<Integer> nan = bits.and(0x7FFFFFFF).compare(VectorOperators.GT, 0x7F800000);
        return rounded.blend(bits.lanewise(VectorOperators.LSHR, 16).or(0x40), nan);
    }

    /** src[0, count) rounded to bf16 into dst at byte offset d0. */
    static void round(float[] src, int count, MemorySegment dst, long d0) {
        int j = 0;
        for (; j + L <= count; j += L) {
            IntVector bits = FloatVector.fromArray(SF, src, j).reinterpretAsInts();
            ((ShortVector) bf16(bits).convertShape(VectorOperators.I2S, SS, 0)).intoMemorySegment(dst, d0 + 2L * j, LE);
        }
        for (; j < count; j++) dst.set(OneDnnKernels.BF16_LE, d0 + 2L * j, bf16(Float.floatToRawIntBits(src[j])));
    }

    /** count fp32 values at byte offset s0 of src rounded to bf16 into dst at byte offset d0. */
    static void round(MemorySegment src, long s0, int count, MemorySegment dst, long d0) {
        int j = 0;
        for (; j + L <= count; j += L) {
            IntVector bits = IntVector.fromMemorySegment(SI, src, s0 + 4L * j, LE);
            ((ShortVector) bf16(bits).convertShape(VectorOperators.I2S, SS, 0)).intoMemorySegment(dst, d0 + 2L * j, LE);
        }
        for (; j < count; j++)
            dst.set(OneDnnKernels.BF16_LE, d0 + 2L * j, bf16(src.get(OneDnnKernels.I32_LE, s0 + 4L * j)));
    }
}
