// Which memory counter sees a planned component: the allocator's tensors, its cache, or only the driver.
package dev.llamafit.plan;

/**
 * PyTorch reports three different numbers: torch.cuda.max_memory_allocated (TENSOR), max_memory_reserved (TENSOR +
 * ALLOCATOR_CACHE) and nvidia-smi (all three plus OUTSIDE_ALLOCATOR: CUDA context, kernel images, managed memory).
 * The llamafit ledger counts TENSOR only.
 */
public enum Accounting { TENSOR, ALLOCATOR_CACHE, OUTSIDE_ALLOCATOR }
