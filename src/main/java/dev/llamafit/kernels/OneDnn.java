// The java.lang.foreign binding to oneDNN 2.x (libdnnl.so.2): sgemm, the matmul primitive, and its OpenMP thread count.
package dev.llamafit.kernels;

import static java.lang.foreign.ValueLayout.ADDRESS;
import static java.lang.foreign.ValueLayout.JAVA_BYTE;
import static java.lang.foreign.ValueLayout.JAVA_FLOAT;
import static java.lang.foreign.ValueLayout.JAVA_INT;
import static java.lang.foreign.ValueLayout.JAVA_LONG;

import java.lang.foreign.Arena;
import java.lang.foreign.FunctionDescriptor;
import java.lang.foreign.Linker;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.SymbolLookup;
import java.lang.invoke.MethodHandle;
import java.util.Objects;
import java.util.HashMap;
import java.util.concurrent.ConcurrentHashMap;

import dev.llamafit.tensor.DType;

/**
 * The few oneDNN C functions llamafit calls, bound once. {@link #load()} either returns a working binding or
 * throws with the reason (library missing, symbol missing, wrong version, not an OpenMP build), which
 * {@link KernelBackends} logs before falling back to the Vector API.
 *
 * <p>Conventions of oneDNN 2.x that this class relies on: {@code dnnl_sgemm} is row-major (unlike Fortran
 * BLAS), so llamafit's row-major arguments pass straight through; {@code dnnl_memory_desc_t} and
 * {@code dnnl_matmul_desc_t} are plain structs the caller allocates (696 and 2800 bytes in 2.6.3, measured with
 * sizeof; we allocate {@link #MD_BYTES} and {@link #OP_DESC_BYTES}, which cover both with room); enum values
 * below are those of dnnl_types.h.
 *
 * <p>Threads: Debian's libdnnl2 is built with DNNL_CPU_RUNTIME=OMP (dnnl_version()'s cpu_runtime is 2) and
 * links libgomp. OpenMP's thread count is a per-thread setting (the nthreads ICV of the calling thread), so
 * every call first sets it on the calling thread with {@code omp_set_num_threads}: {@link Parallel#threads()}
 * from an ordinary thread, 1 from inside a pool task, matching the Vector path's no-nesting rule.
 */
final class OneDnn {
    static final String LIBRARY = "libdnnl.so.2";
    private static final String OPENMP = "libgomp.so.1";
    static final long MD_BYTES = 1024;
    static final long OP_DESC_BYTES = 4096;

    // dnnl_types.h
    private static final int STATUS_SUCCESS = 0;
    private static final int DT_F16 = 1, DT_BF16 = 2, DT_F32 = 3;
    static final int DT_S32 = 4, DT_S8 = 5;
    private static final int ENGINE_CPU = 1;
    private static final int STREAM_DEFAULT = 1;
    private static final int ARG_SRC = 1, ARG_DST = 17, ARG_WEIGHTS = 33;
    private static final int RUNTIME_OMP = 2;

    private static final Linker LINKER = Linker.nativeLinker();

    private final MethodHandle sgemm, mdInitByStrides, matmulDescInit, attrCreate, attrDestroy, attrSetOutputScales,
            postOpsCreate, postOpsDestroy, postOpsAppendSum, attrSetPostOps, pdCreate, pdDestroy, primitiveCreate,
            primitiveExecute, memoryCreate, memoryDestroy, streamCreate, streamWait, ompSetNumThreads, ompGetMaxThreads;
    private final MemorySegment engine;
    private final String version;
    /**
     * Created primitives, per calling thread. Debian's build keeps oneDNN's default library scratchpad, which is common to
     * all primitives and ties each primitive to the thread that created it ("primitives can be created and executed in
     * parallel but cannot migrate between threads", the scratchpad-mode documentation), so each thread creates and runs
     * its own; the pool is fixed, so this is (shapes in use) × (pool threads + callers), kept for the process's life.
     */
    private final ThreadLocal<HashMap<MatmulKey, Matmul>> matmuls = ThreadLocal.withInitial(HashMap::new);
    /** One stream per calling thread: a CPU stream is cheap, and sharing one across threads is not documented as safe. */
    private final ThreadLocal<MemorySegment> streams;

    private OneDnn(SymbolLookup dnnl, SymbolLookup omp) throws Throwable {
        sgemm = bind(dnnl, "dnnl_sgemm", JAVA_INT, JAVA_BYTE, JAVA_BYTE, JAVA_LONG, JAVA_LONG, JAVA_LONG, JAVA_FLOAT,
                ADDRESS, JAVA_LONG, ADDRESS, JAVA_LONG, JAVA_FLOAT, ADDRESS, JAVA_LONG);
        mdInitByStrides = bind(dnnl, "dnnl_memory_desc_init_by_strides", JAVA_INT, ADDRESS, JAVA_INT, ADDRESS, JAVA_INT, ADDRESS);
        matmulDescInit = bind(dnnl, "dnnl_matmul_desc_init", JAVA_INT, ADDRESS, ADDRESS, ADDRESS, ADDRESS, ADDRESS);
        attrCreate = bind(dnnl, "dnnl_primitive_attr_create", JAVA_INT, ADDRESS);
        attrDestroy = bind(dnnl, "dnnl_primitive_attr_destroy", JAVA_INT, ADDRESS);
        attrSetOutputScales = bind(dnnl, "dnnl_primitive_attr_set_output_scales", JAVA_INT, ADDRESS, JAVA_LONG, JAVA_INT, ADDRESS);
        postOpsCreate = bind(dnnl, "dnnl_post_ops_create", JAVA_INT, ADDRESS);
        postOpsDestroy = bind(dnnl, "dnnl_post_ops_destroy", JAVA_INT, ADDRESS);
        postOpsAppendSum = bind(dnnl, "dnnl_post_ops_append_sum", JAVA_INT, ADDRESS, JAVA_FLOAT);
        attrSetPostOps = bind(dnnl, "dnnl_primitive_attr_set_post_ops", JAVA_INT, ADDRESS, ADDRESS);
        pdCreate = bind(dnnl, "dnnl_primitive_desc_create", JAVA_INT, ADDRESS, ADDRESS, ADDRESS, ADDRESS, ADDRESS);
        pdDestroy = bind(dnnl, "dnnl_primitive_desc_destroy", JAVA_INT, ADDRESS);
        primitiveCreate = bind(dnnl, "dnnl_primitive_create", JAVA_INT, ADDRESS, ADDRESS);
        primitiveExecute = bind(dnnl, "dnnl_primitive_execute", JAVA_INT, ADDRESS, ADDRESS, JAVA_INT, ADDRESS);
        memoryCreate = bind(dnnl, "dnnl_memory_create", JAVA_INT, ADDRESS, ADDRESS, ADDRESS, ADDRESS);
        memoryDestroy = bind(dnnl, "dnnl_memory_destroy", JAVA_INT, ADDRESS);
        streamCreate = bind(dnnl, "dnnl_stream_create", JAVA_INT, ADDRESS, ADDRESS, JAVA_INT);
        streamWait = bind(dnnl, "dnnl_stream_wait", JAVA_INT, ADDRESS);
        ompSetNumThreads = LINKER.downcallHandle(find(omp, "omp_set_num_threads"), FunctionDescriptor.ofVoid(JAVA_INT));
        ompGetMaxThreads = LINKER.downcallHandle(find(omp, "omp_get_max_threads"), FunctionDescriptor.of(JAVA_INT));

        // dnnl_version_t: int major, minor, patch; const char *hash; unsigned cpu_runtime, gpu_runtime.
        MethodHandle versionFn = LINKER.downcallHandle(find(dnnl, "dnnl_version"), FunctionDescriptor.of(ADDRESS));
        MemorySegment v = ((MemorySegment) versionFn.invokeExact()).reinterpret(32);
        int major = v.get(JAVA_INT, 0), minor = v.get(JAVA_INT, 4), patch = v.get(JAVA_INT, 8);
        int cpuRuntime = v.get(JAVA_INT, 24);
        version = major + "." + minor + "." + patch;
        if (major != 2) throw new IllegalStateException("oneDNN " + version + " is not a 2.x release (the C API this binding uses)");
        if (cpuRuntime != RUNTIME_OMP)
            throw new IllegalStateException("oneDNN " + version + " uses CPU runtime " + cpuRuntime + ", not OpenMP, so its thread count cannot be set");

        MemorySegment out = Arena.global().allocate(ADDRESS);
        check((int) bind(dnnl, "dnnl_engine_create", JAVA_INT, ADDRESS, JAVA_INT, JAVA_LONG).invokeExact(out, ENGINE_CPU, 0L), "dnnl_engine_create");
        engine = out.get(ADDRESS, 0);
        streams = ThreadLocal.withInitial(this::newStream);
    }

    /** Loads the library and binds every function, or throws with the reason. */
    static OneDnn load() {
        try {
            // The global arena: the library stays loaded for the life of the process.
            SymbolLookup dnnl = SymbolLookup.libraryLookup(LIBRARY, Arena.global());
            SymbolLookup omp = SymbolLookup.libraryLookup(OPENMP, Arena.global());
            return new OneDnn(dnnl, omp);
        } catch (IllegalArgumentException e) {
            throw new IllegalStateException(e.getMessage() + " (install it with: apt-get install -y libdnnl2)", e);
        } catch (RuntimeException | Error e) {
            throw e;
        } catch (Throwable t) {
            throw new IllegalStateException("oneDNN failed to initialise: " + t, t);
        }
    }

    String version() { return version; }

    /** The calling thread's OpenMP thread count, as oneDNN will see it. */
    int ompMaxThreads() {
        try {
            return (int) ompGetMaxThreads.invokeExact();
        } catch (Throwable t) {
            throw rethrow(t);
        }
    }

    /** What the calling thread should give oneDNN: the pool's size, or 1 inside a pool task (no nesting). */
    static int threadsForCaller() { return Parallel.inPoolTask() ? 1 : Parallel.threads(); }

    private int setThreads() throws Throwable {
        int t = threadsForCaller();
        ompSetNumThreads.invokeExact(t);
        return t;
    }

    /** {@code dnnl_sgemm}, row-major; addresses already offset. */
    void sgemm(boolean transA, boolean transB, int m, int n, int k, float alpha, MemorySegment a, int lda,
               MemorySegment b, int ldb, float beta, MemorySegment c, int ldc) {
        try {
            setThreads();
            int status = (int) sgemm.invokeExact(transA ? (byte) 'T' : (byte) 'N', transB ? (byte) 'T' : (byte) 'N',
                    (long) m, (long) n, (long) k, alpha, a, (long) lda, b, (long) ldb, beta, c, (long) ldc);
            check(status, "dnnl_sgemm");
        } catch (Throwable t) {
            throw rethrow(t);
        }
    }

    /** oneDNN's data type for a llamafit dtype, or -1 when the matmul has none. */
    static int dataType(DType t) {
        return switch (t) {
            case F32 -> DT_F32;
            case BF16 -> DT_BF16;
            case F16 -> DT_F16;
            case I8, U8 -> -1;
        };
    }

    /**
     * A matmul's shape, layout and epilogue: the primitive cache's key (creation costs far more than a small GEMM). The
     * destination is F32, or S32 for the int8 GEMM ({@link #DT_S8} operands).
     */
    record MatmulKey(int srcType, int weiType, int dstType, boolean transA, boolean transB, int m, int n, int k, int lda, int ldb,
                     int ldc, float alpha, float beta, int threads) {}

    /** A created primitive, run only by the thread that created it (see {@link #matmuls}). */
    private record Matmul(MemorySegment primitive, MemorySegment srcMd, MemorySegment weiMd, MemorySegment dstMd) {}

    /**
     * {@code C = alpha·op(A)·op(B) + beta·C} through the matmul primitive: A and B of the key's types, C fp32 with
     * accumulation in fp32 (or, for two s8 operands, C int32 with exact int32 accumulation). Addresses already offset.
     *
     * @throws UnsupportedOperationException if oneDNN has no implementation for these types on this CPU
     */
    void matmul(MatmulKey key, MemorySegment a, MemorySegment b, MemorySegment c) {
        Matmul mm = primitive(key);
        try (Arena arena = Arena.ofConfined()) {
            ompSetNumThreads.invokeExact(key.threads());
            MemorySegment src = memory(arena, mm.srcMd, a), wei = memory(arena, mm.weiMd, b), dst = memory(arena, mm.dstMd, c);
            try {
                // dnnl_exec_arg_t: int arg; (4 bytes padding) dnnl_memory_t memory: 16 bytes each.
                MemorySegment args = arena.allocate(48, 8);
                args.set(JAVA_INT, 0, ARG_SRC);
                args.set(ADDRESS, 8, src);
                args.set(JAVA_INT, 16, ARG_WEIGHTS);
                args.set(ADDRESS, 24, wei);
                args.set(JAVA_INT, 32, ARG_DST);
                args.set(ADDRESS, 40, dst);
                MemorySegment stream = streams.get();
                check((int) primitiveExecute.invokeExact(mm.primitive, stream, 3, args), "dnnl_primitive_execute");
                check((int) streamWait.invokeExact(stream), "dnnl_stream_wait");
            } finally {
                check((int) memoryDestroy.invokeExact(src), "dnnl_memory_destroy");
                check((int) memoryDestroy.invokeExact(wei), "dnnl_memory_destroy");
                check((int) memoryDestroy.invokeExact(dst), "dnnl_memory_destroy");
            }
        } catch (Throwable t) {
            throw rethrow(t);
        }
    }

    /** Whether oneDNN can build a matmul for these operand types here (f16 needs CPU support oneDNN 2.6 may lack). */
    boolean supportsMatmul(DType a, DType b) {
        int sa = dataType(a), sb = dataType(b);
        if (sa < 0 || sb < 0) return false;
        return supported.computeIfAbsent(sa * 16 + sb, x -> {
            try {
                primitive(new MatmulKey(sa, sb, DT_F32, false, true, 4, 4, 4, 4, 4, 4, 1f, 0f, 1));
                return true;
            } catch (UnsupportedOperationException e) {
                return false;
            }
        });
    }

    /** {@link #supportsMatmul}'s answers by type pair: asked on every typed GEMM, so probed once. */
    private final ConcurrentHashMap<Integer, Boolean> supported = new ConcurrentHashMap<>();

    /** The calling thread's primitive for {@code key}, created on first use (a failed creation is not cached). */
    private Matmul primitive(MatmulKey key) {
        HashMap<MatmulKey, Matmul> mine = matmuls.get();
        Matmul mm = mine.get(key);
        if (mm == null) {
            mm = create(key);
            mine.put(key, mm);
        }
        return mm;
    }

    private Matmul create(MatmulKey key) {
        Arena keep = Arena.global(); // descriptors live as long as the cached primitive, i.e. the process
        try (Arena tmp = Arena.ofConfined()) {
            MemorySegment srcMd = md(keep, tmp, key.srcType, key.m, key.k, key.transA ? 1 : key.lda, key.transA ? key.lda : 1);
            MemorySegment weiMd = md(keep, tmp, key.weiType, key.k, key.n, key.transB ? 1 : key.ldb, key.transB ? key.ldb : 1);
            MemorySegment dstMd = md(keep, tmp, key.dstType, key.m, key.n, key.ldc, 1);
            MemorySegment op = tmp.allocate(OP_DESC_BYTES, 16);
            check((int) matmulDescInit.invokeExact(op, srcMd, weiMd, MemorySegment.NULL, dstMd), "dnnl_matmul_desc_init");

            MemorySegment out = tmp.allocate(ADDRESS);
            check((int) attrCreate.invokeExact(out), "dnnl_primitive_attr_create");
            MemorySegment attr = out.get(ADDRESS, 0);
            MemorySegment postOps = MemorySegment.NULL;
            try {
                if (key.alpha != 1f) {
                    MemorySegment scale = tmp.allocate(JAVA_FLOAT);
                    scale.set(JAVA_FLOAT, 0, key.alpha);
                    check((int) attrSetOutputScales.invokeExact(attr, 1L, 0, scale), "dnnl_primitive_attr_set_output_scales");
                }
                if (key.beta != 0f) {
                    check((int) postOpsCreate.invokeExact(out), "dnnl_post_ops_create");
                    postOps = out.get(ADDRESS, 0);
                    check((int) postOpsAppendSum.invokeExact(postOps, key.beta), "dnnl_post_ops_append_sum");
                    check((int) attrSetPostOps.invokeExact(attr, postOps), "dnnl_primitive_attr_set_post_ops");
                }
                // Some implementations size their blocking by the thread count at creation; it is part of the key.
                ompSetNumThreads.invokeExact(key.threads);
                int status = (int) pdCreate.invokeExact(out, op, attr, engine, MemorySegment.NULL);
                if (status != STATUS_SUCCESS)
                    throw new UnsupportedOperationException("oneDNN " + version + " has no matmul for " + key + " on this CPU (status " + status + ")");
                MemorySegment pd = out.get(ADDRESS, 0);
                try {
                    check((int) primitiveCreate.invokeExact(out, pd), "dnnl_primitive_create");
                    return new Matmul(out.get(ADDRESS, 0), srcMd, weiMd, dstMd);
                } finally {
                    check((int) pdDestroy.invokeExact(pd), "dnnl_primitive_desc_destroy");
                }
            } finally {
                if (!postOps.equals(MemorySegment.NULL)) check((int) postOpsDestroy.invokeExact(postOps), "dnnl_post_ops_destroy");
                check((int) attrDestroy.invokeExact(attr), "dnnl_primitive_attr_destroy");
            }
        } catch (Throwable t) {
            throw rethrow(t);
        }
    }

    /** A 2-D memory descriptor [rows, cols] with the given strides in elements. */
    private MemorySegment md(Arena keep, Arena tmp, int type, int rows, int cols, long rowStride, long colStride) throws Throwable {
        MemorySegment md = keep.allocate(MD_BYTES, 16);
        MemorySegment dims = tmp.allocate(JAVA_LONG, 12), strides = tmp.allocate(JAVA_LONG, 12);
        dims.setAtIndex(JAVA_LONG, 0, rows);
        dims.setAtIndex(JAVA_LONG, 1, cols);
        strides.setAtIndex(JAVA_LONG, 0, rowStride);
        strides.setAtIndex(JAVA_LONG, 1, colStride);
        check((int) mdInitByStrides.invokeExact(md, 2, dims, type, strides), "dnnl_memory_desc_init_by_strides");
        return md;
    }

    private MemorySegment memory(Arena arena, MemorySegment md, MemorySegment data) throws Throwable {
        MemorySegment out = arena.allocate(ADDRESS);
        check((int) memoryCreate.invokeExact(out, md, engine, data), "dnnl_memory_create");
        return out.get(ADDRESS, 0);
    }

    private MemorySegment newStream() {
        try {
            MemorySegment out = Arena.global().allocate(ADDRESS);
            check((int) streamCreate.invokeExact(out, engine, STREAM_DEFAULT), "dnnl_stream_create");
            return out.get(ADDRESS, 0);
        } catch (Throwable t) {
            throw rethrow(t);
        }
    }

    private static MethodHandle bind(SymbolLookup lib, String name, java.lang.foreign.MemoryLayout ret,
                                     java.lang.foreign.MemoryLayout... args) {
        return LINKER.downcallHandle(find(lib, name), FunctionDescriptor.of(ret, args));
    }

    private static MemorySegment find(SymbolLookup lib, String name) {
        return lib.find(name).orElseThrow(() -> new IllegalStateException("symbol " + name + " not found in oneDNN/OpenMP"));
    }

    private static void check(int status, String what) {
        if (status != STATUS_SUCCESS) throw new IllegalStateException(what + " failed with dnnl_status_t " + status);
    }

    private static RuntimeException rethrow(Throwable t) {
        if (t instanceof RuntimeException r) return r;
        if (t instanceof Error e) throw e;
        return new IllegalStateException(t);
    }

    @Override
    public String toString() { return "oneDNN " + version + " (" + Objects.toString(LIBRARY) + ")"; }
}
