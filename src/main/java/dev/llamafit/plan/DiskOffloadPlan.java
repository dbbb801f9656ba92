// The llamafit runtime's plan with --offload disk: the optimizer state moves to the disk column, a streaming window stays.
package dev.llamafit.plan;

import java.util.ArrayList;
import java.util.List;

import dev.llamafit.memory.ByteSize;
import dev.llamafit.memory.Category;
import dev.llamafit.model.LlamaConfig;
import dev.llamafit.model.ShardLayout;
import dev.llamafit.model.Sharding;
import dev.llamafit.model.Technique;
import dev.llamafit.optim.OffloadedOptimizer;
import dev.llamafit.tensor.TensorSpec;

/**
 * {@code optim.OffloadedOptimizer} keeps the state in a file and steps it through one window buffer: the plan's
 * "optimizer" component (device, OPTIMIZER) becomes that window, kinds × {@link OffloadedOptimizer#windowElements} × 4 B,
 * and the state's bytes move to "optimizer.offloaded" (disk, OFFLOADED_DISK), both what the ledger records.
 */
public final class DiskOffloadPlan {
    private DiskOffloadPlan() {}

    /** {@code plan} (the engine's, for one process) with the optimizer state offloaded through a window of {@code windowBytes}. */
    public static MemoryPlan of(MemoryPlan plan, LlamaConfig config, Technique t, int batch, int seqLen, long windowBytes) {
        return of(plan, config, t, batch, seqLen, windowBytes, Sharding.NONE);
    }

    /**
     * As above for one rank of a ZeRO run ({@code plan} is that rank's): from stage 1 on, the optimizer streams this rank's
     * pieces of the trainable tensors ({@link ShardLayout}), so the window is sized by the largest piece.
     */
    public static MemoryPlan of(MemoryPlan plan, LlamaConfig config, Technique t, int batch, int seqLen, long windowBytes, Sharding sharding) {
        if (t.optimizer() == Technique.Optimizer.ADAMW8BIT)
            throw new IllegalArgumentException("--offload disk streams fp32 optimizer state; --optimizer adamw8bit is not offloaded: use adamw or sgd");
        if (t.precision() == Technique.Precision.BF16_PURE)
            throw new IllegalArgumentException("--offload disk streams fp32 optimizer state; --precision bf16-pure keeps bf16 state");
        List<Long> elements = new ArrayList<>();
        List<TensorSpec> trainable = Planner.layout(config, t, batch, seqLen, plan.device()).gradientSpecs();
        if (sharding.effectiveStage() >= 1) {
            for (ShardLayout.Unit u : ShardLayout.of(trainable, sharding.ranks()).units())
                for (ShardLayout.Piece p : u.pieces(sharding.rank(), sharding.ranks())) elements.add(p.length());
        } else {
            for (TensorSpec g : trainable) elements.add(g.elements());
        }
        return of(plan, t.optimizer() == Technique.Optimizer.SGD ? 1 : 2, elements, windowBytes);
    }

    /** As above for the trainable tensors (or this rank's pieces of them) of {@code elements} elements each. */
    public static MemoryPlan of(MemoryPlan plan, int kinds, List<Long> elements, long windowBytes) {
        long largest = 0;
        for (long e : elements) largest = Math.max(largest, e);
        long window = Math.multiplyExact(OffloadedOptimizer.windowElements(windowBytes, kinds, largest), 4L * kinds);
        List<Component> out = new ArrayList<>();
        for (Component c : plan.components()) {
            if (!c.name().equals("optimizer")) {
                out.add(c);
                continue;
            }
            out.add(Component.constant("optimizer", Column.DEVICE, Category.OPTIMIZER, window,
                    "--offload disk: one streaming window in memory, " + kinds + " state(s) × min(--offload-window " + ByteSize.format(windowBytes)
                            + " / " + (4 * kinds) + " B rounded down to " + OffloadedOptimizer.ALIGN + " elements, the largest trainable tensor) × 4 B"));
            out.add(Component.constant("optimizer.offloaded", Column.DISK, Category.OFFLOADED_DISK, c.bytes(),
                    "the optimizer state itself, in a file under --offload-dir (one per rank): " + c.formula()));
        }
        List<String> notes = new ArrayList<>(plan.notes());
        notes.add("--offload disk: the optimizer state is read and written through the page cache each step (the kernel keeps"
                + " what it can cache; the process's RSS does not include it)");
        return new MemoryPlan(plan.device(), out, notes);
    }
}
