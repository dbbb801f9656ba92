// The memory planner: (config, options, device) -> MemoryPlan, for the llamafit engine or PyTorch on CUDA.
package dev.llamafit.plan;

import java.util.ArrayList;
import java.util.List;

import dev.llamafit.memory.Category;
import dev.llamafit.model.ActivationLayout;
import dev.llamafit.model.LlamaConfig;
import dev.llamafit.model.ParameterLayout;
import dev.llamafit.model.TrainingLayout;
import dev.llamafit.tensor.DType;
import dev.llamafit.tensor.TensorSpec;

/**
 * Pure functions, no allocation. For the llamafit runtime every number is a sum over the engine's own layouts
 * ({@link ParameterLayout}, {@link TrainingLayout}), so planned bytes equal the ledger by construction (DESIGN §3).
 * For PyTorch on CUDA see {@link PytorchProfile}.
 */
public final class Planner {
    /** AdamW keeps m and v in fp32 (optim.AdamW): 8 bytes per trainable element. */
    public static final int ADAMW_STATE_BYTES = 8;
    /** SGD with momentum keeps one fp32 buffer (optim.Sgd): 4 bytes per trainable element. */
    public static final int SGD_STATE_BYTES = 4;

    private Planner() {}

    public static MemoryPlan plan(LlamaConfig config, PlanOptions options, Device device) {
        options.validateFor(config);
        return switch (options.runtime()) {
            case LLAMAFIT -> llamafit(config, options, device);
            case PYTORCH -> PytorchProfile.plan(config, options, device);
        };
    }

    /** The engine's layout for these options on this device (its thread count sizes the attention scratch). */
    public static TrainingLayout layout(LlamaConfig config, PlanOptions o, Device device) {
        return new TrainingLayout(config, o.batchSize(), o.seqLen(), device.threads(),
                Math.min(TrainingLayout.DEFAULT_LOSS_CHUNK_ROWS, Math.multiplyExact(o.batchSize(), o.seqLen())),
                o.loraConfig(), o.checkpointInterval());
    }

    private static MemoryPlan llamafit(LlamaConfig config, PlanOptions o, Device device) {
        if (device.gpu())
            throw new IllegalArgumentException("the llamafit runtime trains on the CPU; plan a GPU with --runtime pytorch, or use --device cpu / --memory SIZE");
        TrainingLayout layout = layout(config, o, device);
        List<Component> c = new ArrayList<>();
        long base = ParameterLayout.of(config, DType.F32).bytes();
        c.add(Component.constant("weights", Column.DEVICE, Category.WEIGHTS, base, o.lora()
                ? "frozen fp32 base, read in place (memory-mapped safetensors; ledger: weights, mapped): Σ ParameterLayout"
                : "owned fp32 copy of every parameter (Trainer copies, then closes the mapping): Σ ParameterLayout"));
        if (o.lora())
            c.add(Component.constant("weights.adapters", Column.DEVICE, Category.WEIGHTS, sum(layout.adapterSpecs()),
                    "LoRA A [r, in] + B [out, r] per targeted module, fp32: Σ TrainingLayout.adapterSpecs"));
        long trainable = 0;
        for (TensorSpec s : layout.gradientSpecs()) trainable = Math.addExact(trainable, s.elements());
        c.add(Component.constant("gradients", Column.DEVICE, Category.GRADIENTS, sum(layout.gradientSpecs()),
                "fp32, trainable tensors only, allocated once: Σ TrainingLayout.gradientSpecs"));
        int perElement = o.optimizer() == PlanOptions.Optim.SGD ? SGD_STATE_BYTES : ADAMW_STATE_BYTES;
        long optimizer = Math.multiplyExact(trainable, (long) perElement);
        // States are allocated at the first step and live for the run: from step 2 on they are there in every phase.
        c.add(Component.constant("optimizer", Column.DEVICE, Category.OPTIMIZER, optimizer,
                perElement + " B per trainable element (" + (perElement == 8 ? "AdamW m, v" : "SGD momentum") + ", fp32)"));
        long act = 0, ws = layout.ropeTableBytes();
        for (ActivationLayout.Slot s : layout.slots()) {
            if (s.category() == Category.ACTIVATIONS) act = Math.addExact(act, s.bytes());
            else ws = Math.addExact(ws, s.bytes());
        }
        c.add(Component.constant("activations", Column.DEVICE, Category.ACTIVATIONS, act,
                "saved block tensors + shared block set + head and backward buffers, allocated once: Σ TrainingLayout.slots"
                        + (o.gradientCheckpointing() ? " (checkpointing: " + (o.checkpointEvery() == 1 ? "blocks keep" : "every " + o.checkpointEvery() + "-th block keeps") + " x_in only)" : "")));
        c.add(Component.constant("workspace", Column.DEVICE, Category.WORKSPACE, ws,
                "per-thread attention scratch [threads, T²], loss chunk [rows, V], RoPE tables"));
        List<String> notes = new ArrayList<>();
        if (!o.lora())
            notes.add("while loading, full fine-tuning holds the mapped checkpoint and its owned copy at once (+"
                    + dev.llamafit.memory.ByteSize.format(base) + " of mapped, evictable page cache for F32 files)");
        notes.add("the JVM adds its own heap, code and data (not in the ledger): about 224 MiB measured with the launcher's flags");
        return new MemoryPlan(device, o, c, notes);
    }

    static long sum(List<TensorSpec> specs) {
        long n = 0;
        for (TensorSpec s : specs) n = Math.addExact(n, s.bytes());
        return n;
    }
}
