// The "onednn" kernel backend: 16-bit (and optionally fp32) GEMM in native oneDNN, every other kernel from the Vector API.
package dev.llamafit.kernels;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.nio.ByteOrder;
import java.util.concurrent.atomic.AtomicBoolean;

import dev.llamafit.tensor.DType;
import jdk.incubator.vector.IntVector;
import jdk.incubator.vector.ShortVector;
import jdk.incubator.vector.VectorOperators;
import jdk.incubator.vector.VectorShape;
import jdk.incubator.vector.VectorSpecies;

/**
 * Kernels whose GEMMs may run in oneDNN (libdnnl.so.2 through java.lang.foreign, see {@link OneDnn}); every
 * other kernel, the optimizer's included, is the {@link VectorKernels} one it extends, so a kernel added to
 * {@link Kernels} can never be left to a default here by mistake.
 *
 * <p>fp32 {@link #gemm}: oneDNN's {@code dnnl_sgemm} only when {@link #NATIVE_SGEMM} is set
 * ({@code -Dllamafit.onednn.sgemm=true}); by default it stays on the Vector path, so that fp32 results stay
 * bit-identical to the vector backend's (sgemm measured 1.2-1.4× faster here, docs/BENCHMARKS.md, but it would
 * change the bits of every fp32 output). {@link #gemm16} is the bf16×bf16→fp32 (and f16×f16 where oneDNN
 * supports it) GEMM through the matmul primitive, which the Vector API cannot do at 16-bit speed.
 *
 * <p>Native calls need native memory: heap segments, and empty shapes, go to the Vector path (fp32) or are
 * widened by the caller (16-bit). Every range a native call reads or writes is bounds-checked first, since
 * the library itself cannot check.
 *
 * <p>Mixed precision: {@link #halfOperands halfOperands(BF16)} is a view whose GEMMs (fp32 and typed) send products of at
 * least {@link #MIN_BF16_FLOPS} to the bf16 matmul. Each F32 operand is narrowed to bf16 by dropping its low 16 bits,
 * which is exact because the caller promised bf16 values; the narrowing checks that promise as it goes (the dropped
 * bits must be zero) and, if any element breaks it, that GEMM runs on the Vector path instead, so the view can be slower
 * than promised but never wrong. Narrowed operands go to a per-thread off-heap scratch that grows to the largest operand
 * seen (2 bytes per element, at most two operands per thread), outside the ledger like the Vector path's packing
 * buffers: it is workspace of the kernel, not a tensor, and lives as long as its thread.
 */
public final class OneDnnKernels extends VectorKernels {
    /**
     * libdnnl.so.2 and libgomp as loaded: the pages that loading them (relocations, static data) and the first
     * primitives touch. Measured as the difference in peak RSS of the same small `train` run on this backend and on
     * `vector`: 11-12 MiB (3 pairs of runs, JDK 25, Debian's oneDNN 2.6.3).
     */
    public static final long NATIVE_RESIDENT_BYTES = 12L << 20;

    @Override
    public long nativeResidentBytes() { return NATIVE_RESIDENT_BYTES; }

    /** {@code -Dllamafit.onednn.sgemm=true}: send fp32 GEMM to dnnl_sgemm too. */
    public static final boolean NATIVE_SGEMM = Boolean.getBoolean("llamafit.onednn.sgemm");

    /**
     * Smallest product (2·m·n·k flops) the bf16 view sends to oneDNN, and the smallest m, n or k. Measured here on 2
     * threads against the Vector path (docs/BENCHMARKS.md): attention's per-head products (256×256×48 and the like, one
     * thread each) run 1.3-3× faster, model projections and the LM head 1.7-2.3×, 64³ and 128×128×16 about even (the
     * narrowing and the native call's fixed cost, a few microseconds, eat the gain), and LoRA's rank-8 products with k = 8
     * (u·Bᵀ) or m = 8 (duᵀ·x) 7× slower: oneDNN 2.6 has no fast bf16 kernel for so short a side. Rank 16 is about even or
     * better, so sides below 16 stay on the Vector path.
     */
    static final long MIN_BF16_FLOPS = 1L << 21;
    static final int MIN_BF16_SIDE = 16;

    private static final VectorSpecies<Integer> SI = IntVector.SPECIES_PREFERRED;
    private static final int L = SI.length();
    private static final VectorSpecies<Short> SS = VectorSpecies.of(short.class, VectorShape.forBitSize(L * 16));
    private static final ByteOrder LE = ByteOrder.LITTLE_ENDIAN;
    static final java.lang.foreign.ValueLayout.OfShort BF16_LE = java.lang.foreign.ValueLayout.JAVA_SHORT_UNALIGNED.withOrder(LE);
    static final java.lang.foreign.ValueLayout.OfInt I32_LE = java.lang.foreign.ValueLayout.JAVA_INT_UNALIGNED.withOrder(LE);

    private final OneDnn dnnl;
    private final boolean nativeSgemm;
    /** A {@link #halfOperands halfOperands(BF16)} view: every GEMM operand holds bf16 values. */
    private final boolean bf16Operands;
    /** GEMMs this view ran as native bf16 matmuls (for tests and benchmarks: which path the model took). */
    private final java.util.concurrent.atomic.LongAdder nativeBf16 = new java.util.concurrent.atomic.LongAdder();

    OneDnnKernels(OneDnn dnnl, boolean nativeSgemm) { this(dnnl, nativeSgemm, false); }

    private OneDnnKernels(OneDnn dnnl, boolean nativeSgemm, boolean bf16Operands) {
        this.dnnl = dnnl;
        this.nativeSgemm = nativeSgemm;
        this.bf16Operands = bf16Operands;
    }

    /** The process's binding, loaded once; throws with the reason when oneDNN is unusable. */
    public static OneDnnKernels create() { return new OneDnnKernels(Binding.get(), NATIVE_SGEMM); }

    /** Null when oneDNN loads and its symbols resolve (and the Vector API, which it builds on, is usable), else why not. */
    public static String unavailableReason() {
        String vector = KernelBackends.vectorUnavailableReason();
        if (vector != null) return "the onednn backend runs its other kernels on the Vector API, but " + vector;
        try {
            Binding.get();
            return null;
        } catch (RuntimeException | LinkageError e) {
            return "oneDNN is not usable: " + e.getMessage();
        }
    }

    /** Loads the library on first use only; a failure is remembered, so the reason is the same every time. */
    private static final class Binding {
        private static final Object LOADED = loadOrReason();

        private static Object loadOrReason() {
            try {
                return OneDnn.load();
            } catch (RuntimeException | LinkageError e) {
                return e;
            }
        }

        static OneDnn get() {
            if (LOADED instanceof OneDnn d) return d;
            Throwable t = (Throwable) LOADED;
            throw new IllegalStateException(t.getMessage(), t);
        }
    }

    OneDnn binding() { return dnnl; }

    @Override
    public String name() {
        return "onednn(" + dnnl.version() + ", fp32 GEMM " + (nativeSgemm ? "native" : "vector")
                + (bf16Operands ? ", bf16-exact operands: native bf16 GEMM" : "") + ", other kernels " + super.name() + ")";
    }

    /**
     * BF16, where oneDNN has a bf16 matmul here: the view described in the class comment. F16 (oneDNN 2.6 has no f16
     * matmul on CPUs without avx512_core_fp16, see {@link #supports16}) and CPUs without bf16: the plain kernels, whose
     * fp32 GEMM is already right for 16-bit-exact operands.
     */
    @Override
    public Kernels halfOperands(DType half) {
        if (half != DType.BF16 && half != DType.F16) throw new IllegalArgumentException("halfOperands takes BF16 or F16, not " + half);
        boolean bf16 = half == DType.BF16 && supports16(DType.BF16, DType.BF16);
        return bf16 == bf16Operands ? this : new OneDnnKernels(dnnl, nativeSgemm, bf16);
    }

    @Override
    public void gemm(boolean transA, boolean transB, int m, int n, int k, float alpha,
                     MemorySegment a, long aOff, int lda, MemorySegment b, long bOff, int ldb,
                     float beta, MemorySegment c, long cOff, int ldc) {
        if (bf16Operands && bf16Gemm(transA, transB, m, n, k, alpha, a, DType.F32, aOff, lda, b, DType.F32, bOff, ldb, beta, c, cOff, ldc))
            return;
        if (!nativeSgemm || m == 0 || n == 0 || k == 0 || !a.isNative() || !b.isNative() || !c.isNative()) {
            super.gemm(transA, transB, m, n, k, alpha, a, aOff, lda, b, bOff, ldb, beta, c, cOff, ldc);
            return;
        }
        dnnl.sgemm(transA, transB, m, n, k, alpha,
                slice(a, aOff, transA ? k : m, transA ? m : k, lda, 4), lda,
                slice(b, bOff, transB ? n : k, transB ? k : n, ldb, 4), ldb,
                beta, slice(c, cOff, m, n, ldc, 4), ldc);
    }

    /**
     * The typed GEMM: two 16-bit operands of a type oneDNN's matmul supports here (bf16 on AVX-512 BF16) go to
     * {@link #gemm16}; every other pair (fp32 activations against 16-bit weights, as the model runs today) goes to the
     * Vector API path, which widens the 16-bit operand while packing.
     */
    @Override
    public void gemm(boolean transA, boolean transB, int m, int n, int k, float alpha,
                     MemorySegment a, DType aType, long aOff, int lda,
                     MemorySegment b, DType bType, long bOff, int ldb,
                     float beta, MemorySegment c, long cOff, int ldc) {
        if (bf16Operands && (aType == DType.F32 || aType == DType.BF16) && (bType == DType.F32 || bType == DType.BF16)
                && bf16Gemm(transA, transB, m, n, k, alpha, a, aType, aOff, lda, b, bType, bOff, ldb, beta, c, cOff, ldc))
            return;
        if (aType == DType.F32 && bType == DType.F32) {
            gemm(transA, transB, m, n, k, alpha, a, aOff, lda, b, bOff, ldb, beta, c, cOff, ldc);
        } else if (supports16(aType, bType) && a.isNative() && b.isNative() && c.isNative()) {
            gemm16(transA, transB, m, n, k, alpha, a, aOff, lda, aType, b, bOff, ldb, bType, beta, c, cOff, ldc);
        } else {
            super.gemm(transA, transB, m, n, k, alpha, a, aType, aOff, lda, b, bType, bOff, ldb, beta, c, cOff, ldc);
        }
    }

    /**
     * The pack-source GEMM (an NF4 weight). In the bf16 view, a product big enough to gain goes to {@link Bf16SourceGemm}:
     * A and slabs of the dequantised B rounded to bf16, oneDNN's bf16 matmul, as bitsandbytes computes QLoRA under a bf16
     * compute dtype. Otherwise (fp32 runs, small products, heap segments) the Vector path, exact on the dequantised weight.
     */
    @Override
    public void gemm(boolean transB, int m, int n, int k, float alpha, MemorySegment a, long aOff, int lda,
                     PackSource b, long bOff, int ldb, float beta, MemorySegment c, long cOff, int ldc) {
        if (!bf16Operands || 2L * m * n * k < MIN_BF16_FLOPS || Math.min(m, Math.min(n, k)) < MIN_BF16_SIDE
                || !a.isNative() || !c.isNative()) {
            super.gemm(transB, m, n, k, alpha, a, aOff, lda, b, bOff, ldb, beta, c, cOff, ldc);
            return;
        }
        slice(a, aOff, m, k, lda, 4);
        slice(c, cOff, m, n, ldc, 4);
        Bf16SourceGemm.gemm(this, transB, m, n, k, alpha, a, aOff, lda, b, bOff, ldb, beta, c, cOff, ldc);
        nativeBf16.increment();
    }

    /** Whether this is the {@link #halfOperands halfOperands(BF16)} view, whose GEMMs run as bf16 matmuls. */
    public boolean bf16Operands() { return bf16Operands; }

    /** How many GEMMs this {@link #halfOperands} view has run as native bf16 matmuls (0 for the plain kernels). */
    public long nativeBf16Gemms() { return nativeBf16.sum(); }

    /** dnnl_sgemm regardless of the default choice: for the benchmark and the agreement tests. */
    public void nativeSgemm(boolean transA, boolean transB, int m, int n, int k, float alpha,
                            MemorySegment a, long aOff, int lda, MemorySegment b, long bOff, int ldb,
                            float beta, MemorySegment c, long cOff, int ldc) {
        new OneDnnKernels(dnnl, true).gemm(transA, transB, m, n, k, alpha, a, aOff, lda, b, bOff, ldb, beta, c, cOff, ldc);
    }

    /** Whether {@link #gemm16} has a oneDNN implementation for these operand types on this CPU. */
    public boolean supports16(DType aType, DType bType) {
        return aType == bType && aType != DType.F32 && dnnl.supportsMatmul(aType, bType);
    }

    /**
     * {@code C = alpha·op(A)·op(B) + beta·C} with A and B both bf16 (or both f16, where {@link #supports16}),
     * C fp32, products accumulated in fp32; the arguments otherwise as {@link #gemm}'s, offsets in elements of
     * each segment's own type. When {@code beta == 0} C's previous contents are ignored. Outside a pool task C is
     * split over the pool in row (or column) stripes, each one single-threaded matmul whose primitive is cached per
     * shape, layout, alpha and beta: OpenMP never forks.
     *
     * @throws UnsupportedOperationException for other type pairs, or heap segments
     */
    public void gemm16(boolean transA, boolean transB, int m, int n, int k, float alpha,
                       MemorySegment a, long aOff, int lda, DType aType,
                       MemorySegment b, long bOff, int ldb, DType bType,
                       float beta, MemorySegment c, long cOff, int ldc) {
        if (aType != bType || aType == DType.F32 || OneDnn.dataType(aType) < 0)
            throw new UnsupportedOperationException("gemm16 takes two bf16 or two f16 operands, got " + aType + " and " + bType);
        if (!a.isNative() || !b.isNative() || !c.isNative())
            throw new UnsupportedOperationException("oneDNN needs native segments (heap segments cannot be passed to it)");
        if (m == 0 || n == 0) return;
        MemorySegment cs = slice(c, cOff, m, n, ldc, 4);
        if (k == 0) { // an empty sum: C = beta·C (oneDNN rejects zero-sized dimensions here)
            for (int i = 0; i < m; i++) {
                if (beta == 0f) cs.asSlice(4L * i * ldc, 4L * n).fill((byte) 0);
                else scale(c, cOff + (long) i * ldc, n, beta);
            }
            return;
        }
        slice(a, aOff, transA ? k : m, transA ? m : k, lda, aType.bytes());
        slice(b, bOff, transB ? n : k, transB ? k : n, ldb, bType.bytes());
        // Split C over the pool ourselves, each stripe one single-threaded matmul, rather than let OpenMP fork: its team
        // and the pool's workers would spin against each other for the same cores, and a small product on two threads
        // costs more than it saves (the Vector path's rule: at least MIN_FLOPS_PER_TASK per task). Rows of C when there
        // are enough, else columns; the split depends on the shape and the thread count only, so results repeat.
        long flops = 2L * m * n * k;
        int tasks = (int) Math.min(Parallel.threads(), Math.max(1, flops / MIN_FLOPS_PER_TASK));
        if (tasks <= 1 || Parallel.inPoolTask()) {
            matmulStripe(transA, transB, m, n, k, alpha, a, aOff, lda, aType, b, bOff, ldb, bType, beta, c, cOff, ldc);
        } else if (m >= n || m >= 64L * tasks) {
            Parallel.forRange(m, Math.max(1, m / tasks), (r0, r1) -> matmulStripe(transA, transB, r1 - r0, n, k, alpha,
                    a, aOff + (transA ? r0 : (long) r0 * lda), lda, aType, b, bOff, ldb, bType, beta, c, cOff + (long) r0 * ldc, ldc));
        } else {
            Parallel.forRange(n, Math.max(1, n / tasks), (j0, j1) -> matmulStripe(transA, transB, m, j1 - j0, k, alpha,
                    a, aOff, lda, aType, b, bOff + (transB ? (long) j0 * ldb : j0), ldb, bType, beta, c, cOff + j0, ldc));
        }
    }

    /** Work per task below which the bf16 matmul is not split over the pool (flops; bf16 runs ~2× the fp32 rate). */
    static final long MIN_FLOPS_PER_TASK = 1L << 22;

    /** One single-threaded matmul (the caller has checked the ranges); its primitive is cached per shape and layout. */
    void matmulStripe(boolean transA, boolean transB, int m, int n, int k, float alpha,
                              MemorySegment a, long aOff, int lda, DType aType, MemorySegment b, long bOff, int ldb, DType bType,
                              float beta, MemorySegment c, long cOff, int ldc) {
        int es = aType.bytes();
        OneDnn.MatmulKey key = new OneDnn.MatmulKey(OneDnn.dataType(aType), OneDnn.dataType(bType), OneDnn.dataType(DType.F32), transA, transB,
                m, n, k, lda, ldb, ldc, alpha, beta, 1);
        dnnl.matmul(key, slice(a, aOff, transA ? k : m, transA ? m : k, lda, es),
                slice(b, bOff, transB ? n : k, transB ? k : n, ldb, es), slice(c, cOff, m, n, ldc, 4));
    }

    /**
     * {@link Kernels#gemmI8} through oneDNN's s8×s8→s32 matmul (VNNI's byte dot products: about 4× the fp32 rate here,
     * docs/BENCHMARKS.md), split over the pool as {@link #gemm16} is; heap segments, and CPUs where oneDNN has no int8
     * matmul or where its result is not exact ({@link #nativeI8}), run the Vector path, which gives the same bits.
     */
    @Override
    public void gemmI8(int m, int n, int k, MemorySegment a, long aOff, int lda, MemorySegment b, long bOff, int ldb,
                       MemorySegment c, long cOff, int ldc) {
        Kernels.checkGemmI8(m, n, k);
        if (m == 0 || n == 0 || k == 0 || !a.isNative() || !b.isNative() || !c.isNative() || !nativeI8()) {
            super.gemmI8(m, n, k, a, aOff, lda, b, bOff, ldb, c, cOff, ldc);
            return;
        }
        slice(a, aOff, m, k, lda, 1);
        slice(b, bOff, n, k, ldb, 1);
        slice(c, cOff, m, n, ldc, 4);
        long flops = 2L * m * n * k;
        int tasks = (int) Math.min(Parallel.threads(), Math.max(1, flops / MIN_I8_FLOPS_PER_TASK));
        if (tasks <= 1 || Parallel.inPoolTask()) {
            i8Stripe(m, n, k, a, aOff, lda, b, bOff, ldb, c, cOff, ldc);
        } else if (m >= n || m >= 64L * tasks) {
            Parallel.forRange(m, Math.max(1, m / tasks), (r0, r1) -> i8Stripe(r1 - r0, n, k,
                    a, aOff + (long) r0 * lda, lda, b, bOff, ldb, c, cOff + (long) r0 * ldc, ldc));
        } else {
            Parallel.forRange(n, Math.max(1, n / tasks), (j0, j1) -> i8Stripe(m, j1 - j0, k,
                    a, aOff, lda, b, bOff + (long) j0 * ldb, ldb, c, cOff + j0, ldc));
        }
    }

    /** Work per task below which the int8 matmul is not split (flops; int8 runs ~4× the fp32 rate). */
    static final long MIN_I8_FLOPS_PER_TASK = 1L << 24;

    private void i8Stripe(int m, int n, int k, MemorySegment a, long aOff, int lda, MemorySegment b, long bOff, int ldb,
                          MemorySegment c, long cOff, int ldc) {
        OneDnn.MatmulKey key = new OneDnn.MatmulKey(OneDnn.DT_S8, OneDnn.DT_S8, OneDnn.DT_S32, false, true,
                m, n, k, lda, ldb, ldc, 1f, 0f, 1);
        dnnl.matmul(key, slice(a, aOff, m, k, lda, 1), slice(b, bOff, n, k, ldb, 1), slice(c, cOff, m, n, ldc, 4));
    }

    /**
     * Whether oneDNN's s8 matmul runs here and is exact, decided once per process: a small product of extreme values
     * (±127, -128, long enough that 16-bit intermediate sums would saturate, as vpmaddubsw does on CPUs without VNNI) must
     * equal the scalar specification's.
     */
    public boolean nativeI8() {
        Boolean ok = NATIVE_I8;
        if (ok == null) NATIVE_I8 = ok = probeI8();
        return ok;
    }

    private static volatile Boolean NATIVE_I8;

    private boolean probeI8() {
        int m = 4, n = 4, k = 96;
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment a = arena.allocate(m * k), b = arena.allocate(n * k);
            MemorySegment c = arena.allocate(4L * m * n), want = arena.allocate(4L * m * n);
            byte[] extremes = {127, -128, -127, 127, 1, -1, 0, 127};
            for (int i = 0; i < m * k; i++) a.set(java.lang.foreign.ValueLayout.JAVA_BYTE, i, extremes[(i * 5 + i / k) % extremes.length]);
            for (int i = 0; i < n * k; i++) b.set(java.lang.foreign.ValueLayout.JAVA_BYTE, i, (byte) (i % 3 == 0 ? -128 : 127));
            i8Stripe(m, n, k, a, 0, k, b, 0, k, c, 0, n);
            new ScalarKernels().gemmI8(m, n, k, a, 0, k, b, 0, k, want, 0, n);
            return c.mismatch(want) < 0;
        } catch (UnsupportedOperationException e) {
            return false;
        }
    }

    /** bf16×bf16→fp32: {@link #gemm16} with both operands bf16. */
    public void gemmBf16(boolean transA, boolean transB, int m, int n, int k, float alpha,
                         MemorySegment a, long aOff, int lda, MemorySegment b, long bOff, int ldb,
                         float beta, MemorySegment c, long cOff, int ldc) {
        gemm16(transA, transB, m, n, k, alpha, a, aOff, lda, DType.BF16, b, bOff, ldb, DType.BF16, beta, c, cOff, ldc);
    }

    /**
     * The bf16 view's GEMM: F32 operands narrowed into scratch, then {@link #gemm16}. False, having written nothing, when
     * the product is too small to gain ({@link #MIN_BF16_FLOPS}, {@link #MIN_BF16_SIDE}), a segment is on the heap, or an
     * F32 operand holds a value that is not bf16 (the caller then runs the Vector path).
     */
    private boolean bf16Gemm(boolean transA, boolean transB, int m, int n, int k, float alpha,
                             MemorySegment a, DType aType, long aOff, int lda, MemorySegment b, DType bType, long bOff, int ldb,
                             float beta, MemorySegment c, long cOff, int ldc) {
        if (2L * m * n * k < MIN_BF16_FLOPS || Math.min(m, Math.min(n, k)) < MIN_BF16_SIDE
                || !a.isNative() || !b.isNative() || !c.isNative()) return false;
        Scratch s = SCRATCH.get();
        int aRows = transA ? k : m, aCols = transA ? m : k, bRows = transB ? n : k, bCols = transB ? k : n;
        if (aType == DType.F32) {
            slice(a, aOff, aRows, aCols, lda, 4);
            s.a = Scratch.ensure(s.a, (long) aRows * aCols);
            if (!narrowExact(a, aOff, aRows, aCols, lda, s.a)) return false;
            a = s.a;
            aOff = 0;
            lda = aCols;
        }
        if (bType == DType.F32) {
            slice(b, bOff, bRows, bCols, ldb, 4);
            s.b = Scratch.ensure(s.b, (long) bRows * bCols);
            if (!narrowExact(b, bOff, bRows, bCols, ldb, s.b)) return false;
            b = s.b;
            bOff = 0;
            ldb = bCols;
        }
        gemm16(transA, transB, m, n, k, alpha, a, aOff, lda, DType.BF16, b, bOff, ldb, DType.BF16, beta, c, cOff, ldc);
        nativeBf16.increment();
        return true;
    }

    /** Per-thread bf16 copies of the view's F32 operands (A and B), grown on demand; see the class comment. */
    private static final class Scratch {
        MemorySegment a = MemorySegment.NULL, b = MemorySegment.NULL;

        static MemorySegment ensure(MemorySegment s, long elements) {
            return s.byteSize() >= elements * 2 ? s : Arena.ofAuto().allocate(elements * 2, 64);
        }
    }

    private static final ThreadLocal<Scratch> SCRATCH = ThreadLocal.withInitial(Scratch::new);

    /**
     * Writes the upper halves of a [rows, cols] F32 matrix (row stride ld) to dst as contiguous bf16, split over the pool
     * by rows; false when some element's lower half is not zero (its value is not bf16, so the copy is not exact).
     */
    static boolean narrowExact(MemorySegment src, long off, int rows, int cols, int ld, MemorySegment dst) {
        AtomicBoolean exact = new AtomicBoolean(true);
        int grain = Math.max(1, (1 << 14) / cols);
        Parallel.forRange(rows, grain, (from, to) -> {
            IntVector low = IntVector.zero(SI);
            int lowTail = 0;
            for (int r = from; r < to; r++) {
                long s0 = (off + (long) r * ld) * 4, d0 = (long) r * cols * 2;
                int j = 0;
                for (; j + L <= cols; j += L) {
                    IntVector bits = IntVector.fromMemorySegment(SI, src, s0 + 4L * j, LE);
                    low = low.or(bits.and(0xFFFF));
                    ((ShortVector) bits.lanewise(VectorOperators.LSHR, 16).convertShape(VectorOperators.I2S, SS, 0))
                            .intoMemorySegment(dst, d0 + 2L * j, LE);
                }
                for (; j < cols; j++) {
                    int bits = src.get(java.lang.foreign.ValueLayout.JAVA_INT_UNALIGNED.withOrder(LE), s0 + 4L * j);
                    lowTail |= bits & 0xFFFF;
                    dst.set(java.lang.foreign.ValueLayout.JAVA_SHORT_UNALIGNED.withOrder(LE), d0 + 2L * j, (short) (bits >>> 16));
                }
            }
            if ((low.reduceLanes(VectorOperators.OR) | lowTail) != 0) exact.set(false);
        });
        return exact.get();
    }

    /** The part of {@code seg} a row-major [rows, cols] matrix with row stride ld at element offset off covers; checked. */
    private static MemorySegment slice(MemorySegment seg, long off, int rows, int cols, int ld, int elemBytes) {
        if (rows < 0 || cols < 0 || off < 0 || (rows > 1 && ld < cols))
            throw new IllegalArgumentException("bad matrix: off=" + off + " rows=" + rows + " cols=" + cols + " ld=" + ld);
        long elems = rows == 0 || cols == 0 ? 0 : (long) (rows - 1) * ld + cols;
        return seg.asSlice(off * elemBytes, elems * elemBytes); // throws IndexOutOfBoundsException past the end
    }
}
