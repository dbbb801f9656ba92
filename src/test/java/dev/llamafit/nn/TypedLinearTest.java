// A dense projection over a BF16/F16 weight used in place equals the same projection over the widened fp32 weight (bf16 decode rows: within summation error).
package dev.llamafit.nn;

import static dev.llamafit.tensor.Tensor.F32_LE;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.util.SplittableRandom;

import dev.llamafit.kernels.Kernels;
import dev.llamafit.kernels.ScalarKernels;
import dev.llamafit.kernels.VectorKernels;
import dev.llamafit.tensor.DType;
import dev.llamafit.tensor.Shape;
import dev.llamafit.tensor.Tensor;
import org.junit.jupiter.api.Test;

class TypedLinearTest {
    static MemorySegment floats(Arena arena, int n, long seed) {
        MemorySegment s = arena.allocate(n * 4L, 64);
        SplittableRandom r = new SplittableRandom(seed);
        for (int i = 0; i < n; i++) s.setAtIndex(F32_LE, i, (float) (r.nextDouble() * 2 - 1));
        return s;
    }

    static void assertSameBits(MemorySegment x, MemorySegment y, int n, String what) {
        for (int i = 0; i < n; i++)
            assertEquals(Float.floatToRawIntBits(x.getAtIndex(F32_LE, i)), Float.floatToRawIntBits(y.getAtIndex(F32_LE, i)), what + " at " + i);
    }

    static void assertClose(MemorySegment x, MemorySegment y, int n, double tol, String what) {
        for (int i = 0; i < n; i++) assertEquals(x.getAtIndex(F32_LE, i), y.getAtIndex(F32_LE, i), tol, what + " at " + i);
    }

    @Test
    void sixteenBitWeightsActLikeTheirWidenedCopies() {
        for (Kernels k : new Kernels[] {new VectorKernels(), new ScalarKernels()})
            for (DType type : new DType[] {DType.BF16, DType.F16})
                for (int rows : new int[] {1, 5, 40}) check(k, type, rows, 37, 70);
    }

    static void check(Kernels k, DType type, int rows, int in, int out) {
        try (Arena arena = Arena.ofShared()) {
            MemorySegment w32 = floats(arena, out * in, 1);
            MemorySegment w16 = arena.allocate(out * in * 2L, 64);
            if (type == DType.BF16) k.f32ToBf16(w32, 0, w16, 0, out * in);
            else k.f32ToF16(w32, 0, w16, 0, out * in);
            MemorySegment wide = arena.allocate(out * in * 4L, 64);
            if (type == DType.BF16) k.bf16ToF32(w16, 0, wide, 0, out * in);
            else k.f16ToF32(w16, 0, wide, 0, out * in);
            Tensor bias = new Tensor("b", DType.F32, Shape.of(out), floats(arena, out, 2));
            Projection typed = Projection.of(new Tensor("w", type, Shape.of(out, in), w16), bias);
            Projection widened = Projection.of(new Tensor("w", DType.F32, Shape.of(out, in), wide), bias);
            MemorySegment x = floats(arena, rows * in, 3), dY = floats(arena, rows * out, 4);
            MemorySegment y1 = arena.allocate(rows * out * 4L), y2 = arena.allocate(rows * out * 4L);
            typed.forward(k, x, 0, rows, y1, 0);
            widened.forward(k, x, 0, rows, y2, 0);
            String what = k.name() + " " + type + " rows=" + rows;
            MemorySegment y3 = arena.allocate(rows * out * 4L);
            Projection.forwardFused(k, x, 0, rows, new Projection[] {typed}, new MemorySegment[] {y3});
            if (type == DType.BF16 && rows < 4 && k instanceof VectorKernels) {
                // Decode rows (fewer than 4) × bf16 weights: the vector path sums in its own order (TypedDots.skinnyBf16), so the
                // outputs are the widened copy's within fp32 summation error (37 products of magnitude ≤ 1: 37·37·2⁻²³ < 2e-4),
                // and the fused projection computes the same products in the same order.
                assertClose(y2, y1, rows * out, 2e-4, "forward " + what);
                assertSameBits(y1, y3, rows * out, "fused forward " + what);
            } else {
                assertSameBits(y2, y1, rows * out, "forward " + what);
                assertSameBits(y2, y3, rows * out, "fused forward " + what);
            }
            MemorySegment dx1 = floats(arena, rows * in, 5), dx2 = floats(arena, rows * in, 5);
            typed.backward(k, x, 0, dY, 0, rows, dx1, 0, true, null, null);
            widened.backward(k, x, 0, dY, 0, rows, dx2, 0, true, null, null);
            assertSameBits(dx2, dx1, rows * in, "dX " + what);
            // The weight gradient never reads W: a 16-bit working copy (mixed precision) gets the fp32 one's bits.
            Tensor dW1 = new Tensor("dw", DType.F32, Shape.of(out, in), arena.allocate(out * in * 4L));
            Tensor dW2 = new Tensor("dw", DType.F32, Shape.of(out, in), arena.allocate(out * in * 4L));
            typed.backward(k, x, 0, dY, 0, rows, null, 0, false, dW1, null);
            widened.backward(k, x, 0, dY, 0, rows, null, 0, false, dW2, null);
            assertSameBits(dW2.segment(), dW1.segment(), out * in, "dW " + what);
        }
    }

    @Test
    void int8WeightsHaveNoDenseProjection() {
        try (Arena arena = Arena.ofShared()) {
            Tensor w = new Tensor("w", DType.I8, Shape.of(2, 3), arena.allocate(6));
            assertThrows(IllegalArgumentException.class, () -> Projection.of(w, null));
        }
    }
}
