// A device to plan for: memory capacity, kind, and the fixed costs of its runtime (CUDA context, threads).
package dev.llamafit.plan;

/**
 * @param name          preset name or "custom"
 * @param memoryBytes   usable memory per device (a GPU's memory, or RAM for the CPU)
 * @param gpu           a CUDA GPU (PyTorch runtime) rather than the CPU (llamafit runtime)
 * @param contextBytes  memory the CUDA context and PyTorch's kernel images hold outside the caching allocator (only
 *                      nvidia-smi sees it): ~0.3-0.5 GiB with lazy module loading (CUDA >= 11.7, the default since
 *                      PyTorch 1.13), ~1.3 GiB when every kernel image loads at start-up (older CUDA; HF's
 *                      model_memory_anatomy measures 1343 MiB on a V100 with CUDA 11.2); 0 on the CPU
 * @param threads       worker threads of the llamafit runtime (sizes its per-thread scratch)
 */
public record Device(String name, long memoryBytes, boolean gpu, long contextBytes, int threads) {
    /** CUDA context with lazy module loading (CUDA >= 11.7): PyTorch's own measurement of an idle context is ~300-500 MB. */
    public static final long LAZY_CONTEXT_BYTES = 500L << 20;
    /** CUDA context when all of PyTorch's kernels load eagerly (CUDA < 11.7), as measured in HF's memory anatomy guide. */
    public static final long EAGER_CONTEXT_BYTES = 1343L << 20;

    public Device {
        if (name == null || name.isBlank()) throw new IllegalArgumentException("device needs a name");
        if (memoryBytes <= 0) throw new IllegalArgumentException("device memory must be > 0, got " + memoryBytes);
        if (contextBytes < 0) throw new IllegalArgumentException("context bytes must be >= 0");
        if (threads < 1) throw new IllegalArgumentException("threads must be >= 1, got " + threads);
    }

    public static Device gpu(String name, long memoryBytes) { return new Device(name, memoryBytes, true, LAZY_CONTEXT_BYTES, 1); }

    public static Device cpu(String name, long memoryBytes, int threads) { return new Device(name, memoryBytes, false, 0, threads); }
}
