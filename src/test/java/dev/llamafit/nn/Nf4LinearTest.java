// An NF4 projection equals a dense one over its dequantised fp32 weight: forward, fused forward, dX and dBias; no weight gradient.
package dev.llamafit.nn;

import static dev.llamafit.nn.TypedLinearTest.assertClose;
import static dev.llamafit.nn.TypedLinearTest.assertSameBits;
import static dev.llamafit.nn.TypedLinearTest.floats;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.util.Map;

import dev.llamafit.kernels.KernelBackends;
import dev.llamafit.kernels.Kernels;
import dev.llamafit.kernels.ScalarKernels;
import dev.llamafit.kernels.VectorKernels;
import dev.llamafit.memory.MemoryLedger;
import dev.llamafit.quant.Nf4;
import dev.llamafit.tensor.DType;
import dev.llamafit.tensor.Shape;
import dev.llamafit.tensor.Tensor;
import org.junit.jupiter.api.Test;

class Nf4LinearTest {
    @Test
    void actsLikeTheDenseProjectionOfItsDequantisedWeight() {
        // Odd sizes put block boundaries (every 64 elements) inside rows; 40 and 100 rows take the blocked (packing) path
        // of the forward GEMM, 1/3/17 the skinny one; the backward GEMM always packs.
        for (int[] io : new int[][] {{71, 37}, {130, 45}, {64, 9}})
            for (boolean dq : new boolean[] {false, true})
                for (int rows : new int[] {1, 3, 17, 40, 100}) {
                    // The Vector backend packs the dequantised values exactly as it packs an fp32 weight: same bits.
                    check(new VectorKernels(), rows, io[0], io[1], dq, true);
                    // The configured backend (oneDNN where present) runs fp32 through its own GEMM: within rounding.
                    check(KernelBackends.get(), rows, io[0], io[1], dq, false);
                }
        for (boolean dq : new boolean[] {false, true}) check(new ScalarKernels(), 5, 71, 37, dq, true);
    }

    static void check(Kernels k, int rows, int in, int out, boolean dq, boolean sameBits) {
        check(k, rows, in, out, dq, sameBits, 4e-6 * Math.max(in, out));
    }

    static void check(Kernels k, int rows, int in, int out, boolean dq, boolean sameBits, double tol) {
        MemoryLedger ledger = new MemoryLedger();
        try (Arena arena = Arena.ofShared()) {
            Tensor w = new Tensor("w", DType.F32, Shape.of(out, in), floats(arena, out * in, 11));
            Map<String, Tensor> q = Nf4.quantize(w, dq, ledger, "p");
            Tensor bias = new Tensor("b", DType.F32, Shape.of(out), floats(arena, out, 12));
            Nf4Linear nf4 = Nf4Linear.of(q, "p.weight", bias);
            assertEquals(in, nf4.in());
            assertEquals(out, nf4.out());
            MemorySegment deq = arena.allocate(out * in * 4L, 64);
            nf4.weight().dequantize(deq);
            Linear dense = new Linear(new Tensor("w'", DType.F32, Shape.of(out, in), deq), bias);
            String what = k.name() + " rows=" + rows + " in=" + in + " out=" + out + (dq ? " dq" : "");
            // tol: products of values ≤ 1 in magnitude, `in` or `out` of them summed: a relative fp32 summation bound.

            MemorySegment x = floats(arena, rows * in, 13), dY = floats(arena, rows * out, 14);
            MemorySegment y1 = arena.allocate(rows * out * 4L), y2 = arena.allocate(rows * out * 4L), y3 = arena.allocate(rows * out * 4L);
            nf4.forward(k, x, 0, rows, y1, 0);
            dense.forward(k, x, 0, rows, y2, 0);
            Projection.forwardFused(k, x, 0, rows, new Projection[] {nf4}, new MemorySegment[] {y3});
            if (sameBits) {
                assertSameBits(y2, y1, rows * out, "forward " + what);
                assertSameBits(y2, y3, rows * out, "fused forward " + what);
            } else {
                assertClose(y2, y1, rows * out, tol, "forward " + what);
                assertClose(y2, y3, rows * out, tol, "fused forward " + what);
            }

            MemorySegment dx1 = floats(arena, rows * in, 15), dx2 = floats(arena, rows * in, 15);
            Tensor db1 = new Tensor("db", DType.F32, Shape.of(out), arena.allocate(out * 4L));
            Tensor db2 = new Tensor("db", DType.F32, Shape.of(out), arena.allocate(out * 4L));
            nf4.backward(k, x, 0, dY, 0, rows, dx1, 0, true, null, db1);
            dense.backward(k, x, 0, dY, 0, rows, dx2, 0, true, null, db2);
            if (sameBits) assertSameBits(dx2, dx1, rows * in, "dX (accumulated) " + what);
            else assertClose(dx2, dx1, rows * in, tol, "dX (accumulated) " + what);
            assertSameBits(db2.segment(), db1.segment(), out, "dBias " + what);
            nf4.backward(k, x, 0, dY, 0, rows, dx1, 0, false, null, null);
            dense.backward(k, x, 0, dY, 0, rows, dx2, 0, false, null, null);
            if (sameBits) assertSameBits(dx2, dx1, rows * in, "dX " + what);
            else assertClose(dx2, dx1, rows * in, tol, "dX " + what);
            q.values().forEach(Tensor::close);
        }
    }

    @Test
    void underBf16MixedPrecisionItComputesInBf16OnOneDnn() {
        // The bf16 view (oneDNN with AVX-512 BF16) sends big enough products to its bf16 matmul, a slab of W dequantised
        // to bf16 at a time, as bitsandbytes computes QLoRA: within bf16 rounding of the fp32 product on the dequantised
        // weight, and through the native path (its counter moves).
        Kernels plain = KernelBackends.get();
        Kernels view = plain.halfOperands(DType.BF16);
        org.junit.jupiter.api.Assumptions.assumeTrue(view instanceof dev.llamafit.kernels.OneDnnKernels && view != plain,
                "no oneDNN bf16 matmul here");
        dev.llamafit.kernels.OneDnnKernels k = (dev.llamafit.kernels.OneDnnKernels) view;
        long before = k.nativeBf16Gemms();
        // Values in [-1, 1], `in`/`out` terms: each product's relative error is at most about 2·2^-9 (both operands
        // rounded), so the sum is off by at most 2^-8·Σ|x·w| ≤ 2^-8·n.
        check(k, 200, 300, 260, true, false, 300 / 256.0);
        assertTrue(k.nativeBf16Gemms() >= before + 4, "forward, fused forward and both dX ran as bf16 matmuls: "
                + (k.nativeBf16Gemms() - before));
    }

    @Test
    void aFrozenNf4WeightRefusesAWeightGradient() {
        MemoryLedger ledger = new MemoryLedger();
        try (Arena arena = Arena.ofShared()) {
            Tensor w = new Tensor("w", DType.F32, Shape.of(8, 16), floats(arena, 128, 1));
            Nf4Linear nf4 = Nf4Linear.of(Nf4.quantize(w, true, ledger, "p"), "p.weight");
            Tensor dW = new Tensor("dw", DType.F32, Shape.of(8, 16), arena.allocate(128 * 4L));
            MemorySegment x = floats(arena, 16, 2), dY = floats(arena, 8, 3), dX = arena.allocate(16 * 4L);
            assertThrows(IllegalArgumentException.class, () -> nf4.backward(new VectorKernels(), x, 0, dY, 0, 1, dX, 0, false, dW, null));
            Tensor badBias = new Tensor("b", DType.F32, Shape.of(9), arena.allocate(36));
            assertThrows(IllegalArgumentException.class, () -> new Nf4Linear(nf4.weight(), badBias));
        }
    }
}
