// GPU presets: memory sizes as sold (GB or GiB as the vendor states them) and the CUDA context each holds.
package dev.llamafit.plan.pytorch;

import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;

import dev.llamafit.plan.Device;
import dev.llamafit.plan.Devices;

/**
 * GPU presets with the memory the CUDA driver reports (cudaMemGetInfo total), in bytes. Vendors sell "80 GB" parts
 * whose memory is 80 GiB (A100/H100 80GB: 81920 MiB), and "24 GB" parts of 24 GiB; the H200 has 141 GB (decimal,
 * 143771 MiB per nvidia-smi); the 24 GB A10G and L4, 48 GB L40S and RTX A6000 report slightly less than their
 * nominal size (nvidia-smi's total).
 */
public final class GpuDevices {
    private static final long GIB = 1L << 30, MIB = 1L << 20;
    /** CUDA context with lazy module loading (CUDA >= 11.7): PyTorch's own measurement of an idle context is ~300-500 MB. */
    public static final long LAZY_CONTEXT_BYTES = 500L << 20;
    /**
     * CUDA context when all of PyTorch's kernels load eagerly (CUDA < 11.7): HF's model_memory_anatomy measures
     * 1343 MiB on a V100 with CUDA 11.2.
     */
    public static final long EAGER_CONTEXT_BYTES = 1343L << 20;
    private static final Map<String, Long> GPUS = new LinkedHashMap<>();

    static {
        GPUS.put("a10g", 23028L * MIB);
        GPUS.put("a100-40gb", 40L * GIB);
        GPUS.put("a100-80gb", 80L * GIB);
        GPUS.put("h100-80gb", 80L * GIB);
        GPUS.put("h200", 143771L * MIB);
        GPUS.put("l4", 23034L * MIB);
        GPUS.put("l40s", 46068L * MIB);
        GPUS.put("rtx-a6000", 49140L * MIB);
        GPUS.put("rtx3090", 24L * GIB);
        GPUS.put("rtx4090", 24L * GIB);
        GPUS.put("t4", 15360L * MIB);
        GPUS.put("v100-16gb", 16L * GIB);
        GPUS.put("v100-32gb", 32L * GIB);
    }

    /**
     * CUDA context and kernel images measured on a preset (nvidia-smi used − torch.cuda.memory_reserved), where this
     * project has measured it; other presets take {@link #LAZY_CONTEXT_BYTES}. H200: 1366-1388 MiB at the end of
     * 33 training runs and 1402-1442 MiB after generation, torch 2.11 + CUDA 13.0, driver 580
     * (src/test/resources/planner/measured_hf_h200_*.csv).
     */
    private static final Map<String, Long> MEASURED_CONTEXT = Map.of("h200", 1386L * MIB);

    private GpuDevices() {}

    /** Every GPU preset name, in table order. */
    public static List<String> names() { return List.copyOf(GPUS.keySet()); }

    /** Every --device name: the GPU presets, then the CPU. */
    public static List<String> deviceNames() {
        List<String> n = new java.util.ArrayList<>(names());
        n.add(Devices.CPU);
        return List.copyOf(n);
    }

    /** A GPU of {@code memoryBytes} with a lazily loaded CUDA context (--memory SIZE). */
    public static Device custom(String name, long memoryBytes) { return new Device(name, memoryBytes, true, LAZY_CONTEXT_BYTES, 1); }

    /** A GPU preset; "cpu" needs the machine's RAM and is built with {@link Devices#cpu}. (The command line suggests names for a typo.) */
    public static Device gpu(String name) {
        String key = name.toLowerCase(Locale.ROOT);
        Long bytes = GPUS.get(key);
        if (bytes == null) throw new IllegalArgumentException("unknown device '" + name + "' (devices: " + String.join(", ", deviceNames()) + ", or --memory SIZE)");
        return new Device(key, bytes, true, MEASURED_CONTEXT.getOrDefault(key, LAZY_CONTEXT_BYTES), 1);
    }

    public static boolean isGpu(String name) { return GPUS.containsKey(name.toLowerCase(Locale.ROOT)); }
}
