// The bf16 view's pack-source GEMM (QLoRA in bf16): oneDNN's bf16 product of the operands rounded to bf16, a slab of W per thread.
package dev.llamafit.kernels;

import static dev.llamafit.tensor.Tensor.F32_LE;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.util.SplittableRandom;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.atomic.AtomicReference;

import dev.llamafit.tensor.DType;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.Test;

class Bf16SourceGemmTest {
    /** Values that are not bf16 (full fp32 mantissas), so that the rounding of both operands is exercised. */
    static float[] values(int n, long seed) {
        SplittableRandom r = new SplittableRandom(seed);
        float[] v = new float[n];
        for (int i = 0; i < n; i++) v[i] = (float) r.nextDouble(-1, 1);
        return v;
    }

    static double bf16(float f) { return Float.intBitsToFloat(Bf16SourceGemm.bf16(Float.floatToRawIntBits(f)) << 16); }

    @Test
    void roundsToNearestEvenAndKeepsNaN() {
        assertEquals(0x3F80, Bf16SourceGemm.bf16(Float.floatToRawIntBits(1f)) & 0xFFFF);
        assertEquals(0x3F80, Bf16SourceGemm.bf16(0x3F808000) & 0xFFFF, "a tie rounds to the even neighbour (down)");
        assertEquals(0x3F82, Bf16SourceGemm.bf16(0x3F818000) & 0xFFFF, "a tie rounds to the even neighbour (up)");
        assertEquals(0x3F81, Bf16SourceGemm.bf16(0x3F808001) & 0xFFFF);
        assertTrue(Float.isNaN(Float.intBitsToFloat(Bf16SourceGemm.bf16(0x7FFFFFFF) << 16)));
        assertEquals(0x7F80, Bf16SourceGemm.bf16(Float.floatToRawIntBits(Float.POSITIVE_INFINITY)) & 0xFFFF);
        // The vector rounding agrees with the scalar one lane for lane.
        float[] v = values(1000, 5);
        v[3] = Float.NaN;
        v[40] = Float.intBitsToFloat(0x3F808000);
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment d = arena.allocate(2000);
            Bf16SourceGemm.round(v, 1000, d, 0);
            for (int i = 0; i < 1000; i++)
                assertEquals(Bf16SourceGemm.bf16(Float.floatToRawIntBits(v[i])), d.getAtIndex(OneDnnKernels.BF16_LE, i), "element " + i);
        }
    }

    @Test
    void forwardAndBackwardAreTheBf16ProductWithAtMostASlabOfWPerThread() throws Exception {
        OneDnnKernels plain = OneDnnKernelsTest.onednn();
        Kernels view = plain.halfOperands(DType.BF16);
        Assumptions.assumeTrue(view != plain, "no bf16 matmul on this CPU");
        OneDnnKernels k = (OneDnnKernels) view;
        // forward: C [m, n] = A [m, kk] · Wᵀ with W [n, kk]; backward: C [m, n] = A [m, kk] · W with W [kk, n].
        for (boolean transB : new boolean[] {true, false}) {
            int m = 100, n = 300, kk = 70;
            float[] w = values(n * kk, 1);
            PackSource src = (index, count, dst, off) -> System.arraycopy(w, Math.toIntExact(index), dst, off, count);
            try (Arena arena = Arena.ofShared()) {
                float[] av = values(m * kk, 2), cv = values(m * n, 3);
                MemorySegment a = arena.allocate(4L * m * kk, 64), c = arena.allocate(4L * m * n, 64);
                MemorySegment.copy(av, 0, a, F32_LE, 0, av.length);
                MemorySegment.copy(cv, 0, c, F32_LE, 0, cv.length);
                long before = k.nativeBf16Gemms();
                AtomicLong slab = new AtomicLong();
                AtomicReference<Throwable> failed = new AtomicReference<>();
                // On a fresh thread, whose slab buffer starts empty: what it holds afterwards is what this GEMM needed.
                Thread t = new Thread(() -> {
                    try {
                        k.gemm(transB, m, n, kk, 0.5f, a, 0, kk, src, 0, transB ? kk : n, 1f, c, 0, n);
                        slab.set(Bf16SourceGemm.threadSlabBytes());
                    } catch (Throwable e) {
                        failed.set(e);
                    }
                });
                t.start();
                t.join();
                if (failed.get() != null) throw new AssertionError(failed.get());
                assertEquals(before + 1, k.nativeBf16Gemms(), "the product went to oneDNN's bf16 matmul");
                assertTrue(slab.get() > 0 && slab.get() <= 2L * Bf16SourceGemm.SLAB * kk && slab.get() < 2L * n * kk,
                        "a thread's slab of W: " + slab.get() + " bytes, against the whole matrix's " + 2L * n * kk);
                assertTrue(Bf16SourceGemm.workspaceBytes(kk, n) >= slab.get());
                for (int i = 0; i < m; i++)
                    for (int j = 0; j < n; j++) {
                        double exact = 0, mag = 0;
                        for (int p = 0; p < kk; p++) {
                            double prod = bf16(av[i * kk + p]) * bf16(w[transB ? j * kk + p : p * n + j]);
                            exact += prod;
                            mag += Math.abs(prod);
                        }
                        double want = 0.5 * exact + cv[i * n + j], got = c.getAtIndex(F32_LE, (long) i * n + j);
                        // fp32 accumulation of bf16 products: a few units of fp32 rounding of the magnitude.
                        assertEquals(want, got, 1e-6 * (mag + Math.abs(cv[i * n + j])) + 1e-7,
                                (transB ? "forward" : "backward") + " C[" + i + "][" + j + "]");
                    }
            }
        }
    }

    @Test
    void fp32KernelsKeepTheExactVectorPath() {
        OneDnnKernels plain = OneDnnKernelsTest.onednn();
        int m = 64, n = 96, kk = 80;
        float[] w = values(n * kk, 7);
        PackSource src = (index, count, dst, off) -> System.arraycopy(w, Math.toIntExact(index), dst, off, count);
        try (Arena arena = Arena.ofShared()) {
            MemorySegment a = arena.allocate(4L * m * kk, 64), c1 = arena.allocate(4L * m * n, 64), c2 = arena.allocate(4L * m * n, 64);
            MemorySegment.copy(values(m * kk, 8), 0, a, F32_LE, 0, m * kk);
            plain.gemm(true, m, n, kk, 1f, a, 0, kk, src, 0, kk, 0f, c1, 0, n);
            new VectorKernels().gemm(true, m, n, kk, 1f, a, 0, kk, src, 0, kk, 0f, c2, 0, n);
            assertEquals(-1L, c1.mismatch(c2), "fp32 onednn kernels run the Vector path on a pack source, bit for bit");
        }
    }
}
