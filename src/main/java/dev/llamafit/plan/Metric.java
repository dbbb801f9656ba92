// The measurement a memory number is: allocated, reserved or nvidia-smi (PyTorch), or the llamafit ledger.
package dev.llamafit.plan;

import java.util.Set;

/** Which {@link Accounting} kinds a metric includes. */
public enum Metric {
    /** torch.cuda.max_memory_allocated, or the llamafit ledger's peak. */
    ALLOCATED(Set.of(Accounting.TENSOR)),
    /** torch.cuda.max_memory_reserved: tensors plus the caching allocator's unused blocks. */
    RESERVED(Set.of(Accounting.TENSOR, Accounting.ALLOCATOR_CACHE)),
    /** nvidia-smi "used" / pynvml: everything the process holds on the GPU, CUDA context included. */
    NVIDIA_SMI(Set.of(Accounting.TENSOR, Accounting.ALLOCATOR_CACHE, Accounting.OUTSIDE_ALLOCATOR));

    private final Set<Accounting> includes;

    Metric(Set<Accounting> includes) { this.includes = includes; }

    public boolean includes(Accounting a) { return includes.contains(a); }
}
