// A device to plan for: memory capacity, kind, and the fixed costs of its runtime (CUDA context, threads).
package dev.llamafit.plan;

/**
 * @param name          preset name or "custom"
 * @param memoryBytes   usable memory per device (a GPU's memory, or RAM for the CPU)
 * @param gpu           a CUDA GPU (PyTorch runtime) rather than the CPU (llamafit runtime)
 * @param contextBytes  memory the CUDA context and PyTorch's kernel images hold outside the caching allocator (only
 *                      nvidia-smi sees it; see {@code plan.pytorch.GpuDevices}); 0 on the CPU
 * @param threads       worker threads of the llamafit runtime (sizes its per-thread scratch)
 */
public record Device(String name, long memoryBytes, boolean gpu, long contextBytes, int threads) {
    public Device {
        if (name == null || name.isBlank()) throw new IllegalArgumentException("device needs a name");
        if (memoryBytes <= 0) throw new IllegalArgumentException("device memory must be > 0, got " + memoryBytes);
        if (contextBytes < 0) throw new IllegalArgumentException("context bytes must be >= 0");
        if (threads < 1) throw new IllegalArgumentException("threads must be >= 1, got " + threads);
    }

    public static Device cpu(String name, long memoryBytes, int threads) { return new Device(name, memoryBytes, false, 0, threads); }
}
