// The model a run trains: its weights (owned copies, or a frozen base plus adapters), its training step and its parameters.
package dev.llamafit.train;

import java.io.IOException;
import java.lang.foreign.MemorySegment;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

import dev.llamafit.io.HfFolderWriter;
import dev.llamafit.io.InputException;
import dev.llamafit.io.ModelFolder;
import dev.llamafit.io.PeftAdapters;
import dev.llamafit.io.safetensors.NonFinite;
import dev.llamafit.io.safetensors.SafetensorsFile;
import dev.llamafit.kernels.Kernels;
import dev.llamafit.memory.Category;
import dev.llamafit.memory.MemoryLedger;
import dev.llamafit.model.LlamaConfig;
import dev.llamafit.model.ParameterLayout;
import dev.llamafit.model.ShardLayout;
import dev.llamafit.model.TrainingLayout;
import dev.llamafit.model.Technique;
import dev.llamafit.model.TrainingStep;
import dev.llamafit.optim.Param;
import dev.llamafit.tensor.DType;
import dev.llamafit.tensor.Tensor;
import dev.llamafit.tensor.TensorSpec;

/**
 * Full fine-tuning trains owned, writable fp32 copies of every weight (from the base model, or from a checkpoint on
 * resume); under mixed precision they are the masters of the step's 16-bit working copies; under bf16-pure the
 * matrices are BF16 copies, trained as such. LoRA leaves the base frozen: it is read in place (memory-mapped F32, or converted once), never copied, and
 * only the adapters are parameters; they start from --adapter, from a checkpoint, or from the step's own init.
 */
final class TrainableModel implements AutoCloseable {
    final LlamaConfig config;
    final TrainingStep step;
    final List<Param> params;
    private final TrainOptions o;
    private final MemoryLedger ledger;
    private final ModelFolder frozenBase;
    private final Map<String, Tensor> weights;
    private final List<Tensor> owned;
    /** The trainable tensors' flat buffers (full fine-tuning in fp32 or mixed precision; LoRA's adapters over several ranks), else null. */
    final ZeroState zero;
    private final boolean leader;
    private ZeroState.Gathered whole; // ZeRO-3 while a checkpoint or final/ is written: the trainable tensors gathered

    private TrainableModel(TrainOptions o, LlamaConfig config, MemoryLedger ledger, ModelFolder frozenBase,
                           Map<String, Tensor> weights, List<Tensor> owned, TrainingStep step, ZeroState zero, boolean leader) {
        this.zero = zero;
        this.leader = leader;
        this.o = o;
        this.config = config;
        this.ledger = ledger;
        this.frozenBase = frozenBase;
        this.weights = weights;
        this.owned = owned;
        this.step = step;
        this.params = params();
    }

    /** Opens the model of {@code o}; with {@code checkpoint}, its trainable weights come from that checkpoint. */
    static TrainableModel open(TrainOptions o, LlamaConfig config, Path checkpoint, Kernels kernels, MemoryLedger ledger) {
        return open(o, config, checkpoint, kernels, ledger, new DataParallel(new dev.llamafit.dist.SingleProcess(), 0));
    }

    /**
     * As above, on a rank of {@code dp}: the trainable tensors live in {@link ZeroState}'s flat buffers, sharded as the
     * ZeRO stage says, and the step runs its hooks (stages 2-3).
     */
    static TrainableModel open(TrainOptions o, LlamaConfig config, Path checkpoint, Kernels kernels, MemoryLedger ledger, DataParallel dp) {
        boolean lora = o.lora() != null;
        // A LoRA base is frozen: kept as the checkpoint stores it (a bf16/fp16 one mapped and used in place, never
        // widened) unless the technique names its dtype (--dtype; `train` names the checkpoint's own), then converted on
        // load. Unnamed, it is the compute dtype's under 16-bit compute (Technique.baseStorage), the checkpoint's in fp32.
        Technique t = o.technique();
        // A quantised base keeps its embeddings and LM head in the compute dtype (so no working copies are made of them).
        DType half = t.precision() == Technique.Precision.FP16 ? DType.F16 : DType.BF16;
        DType base = t.quantization() != null ? (t.precision() == Technique.Precision.FP32 ? DType.F32 : half)
                : t.baseDtype() == null && t.precision() == Technique.Precision.FP32 ? null : baseDtype(t.baseStorage());
        ModelFolder frozenBase = lora ? ModelFolder.open(o.model(), ledger, kernels, base, t.quantization()) : null;
        Map<String, Tensor> weights = Map.of();
        ZeroState zero = null;
        TrainingStep step = null;
        try {
            LlamaConfig stepConfig = frozenBase != null ? frozenBase.config() : config; // a quantised base's config says so
            TrainingLayout layout = TrainingLayout.of(stepConfig, o.batchSize(), o.seqLen(), o.technique());
            boolean pure = t.precision() == Technique.Precision.BF16_PURE;
            // Full fine-tuning's fp32 (master) weights are flat per unit always; LoRA's adapters when ranks share them.
            if (!pure && (!lora || dp.distributed())) {
                ShardLayout units = ShardLayout.of(lora ? layout.adapterSpecs() : ParameterLayout.of(config, DType.F32).specs(), dp.size());
                // Full fine-tuning's mixed-precision values are masters of the working copies: stages 1-2 shard them too.
                zero = new ZeroState(dp.sharding().withMasters(!lora && t.precision().mixed()), units, dp.collectives, dp, kernels,
                        layout.trainableCategory(), ledger);
            }
            TrainingStep.Storage storage = TrainingStep.Storage.OWN;
            if (lora) {
                weights = frozenBase.weights();
                if (zero != null) storage = new TrainingStep.Storage(zero.valueViews(), zero.stage() < 3, zero.gradientViews());
            } else if (zero != null) {
                loadWeights(o, config, checkpoint, kernels, ledger, zero);
                weights = zero.valueViews();
                // Sharded masters: the step gets the tensors read in fp32 only; ZeroState fills the matrices' working copies.
                storage = new TrainingStep.Storage(null, false, zero.gradientViews(), zero.shardsMasters());
            } else weights = loadWeights(o, config, checkpoint, kernels, ledger);
            step = new TrainingStep(layout, weights, kernels, ledger, o.seed(), storage);
            if (lora && zero != null && zero.stage() >= 3) {
                // The step did not initialise the adapters (their views alias the gathered buffers): the same stream, unit by unit.
                java.util.SplittableRandom rnd = new java.util.SplittableRandom(o.seed());
                zero.fillUnits((u, views) -> views.values().forEach(v -> TrainingStep.initAdapter(v, rnd)));
            }
            if (zero != null && zero.shardsMasters()) zero.useWorkingCopies(step.workingCopies(), step.kernels());
            if (zero != null && zero.stage() >= 2) step.setHooks(zero);
            return new TrainableModel(o, config, ledger, frozenBase, weights, lora || zero != null ? List.of() : new ArrayList<>(weights.values()),
                    step, zero, dp.leader());
        } catch (RuntimeException e) {
            if (step != null) step.close();
            if (!lora && zero == null) weights.values().forEach(Tensor::close);
            if (zero != null) zero.close();
            if (frozenBase != null) frozenBase.close();
            throw e;
        }
    }

    boolean lora() { return o.lora() != null; }

    /** The weights' dtype for a frozen base's storage; null (the checkpoint's own) when the technique names none. */
    static DType baseDtype(Technique.BaseDtype b) {
        if (b == null) return null;
        return switch (b) {
            case FP32 -> DType.F32;
            case BF16 -> DType.BF16;
            case FP16 -> DType.F16;
            case INT8, NF4 -> throw new IllegalArgumentException("--base-dtype " + Technique.name(b) + " is not implemented in the llamafit runtime");
        };
    }

    /** Trainable tensors in checkpoint order (ZeRO-3 and sharded masters: only inside {@link #withWhole}). */
    List<Tensor> trainable() {
        if (zero != null && zero.valuesSharded()) {
            if (whole == null) throw new IllegalStateException("this rank holds shards of the trainable tensors: gather them (withWhole) first");
            return new ArrayList<>(whole.tensors().values());
        }
        return params.stream().map(Param::value).toList();
    }

    /** What {@link #withWhole} runs. */
    interface WithWhole<T> { T run() throws IOException; }

    /**
     * Runs {@code body} with the trainable tensors whole ({@link #trainable()}): under ZeRO-3 and with sharded masters they
     * are all-gathered into temporaries first (collective: every rank calls this), else as they are.
     */
    <T> T withWhole(WithWhole<T> body) throws IOException {
        if (zero == null || !zero.valuesSharded() || whole != null) return body.run();
        whole = zero.gatherWhole(ledger);
        try {
            return body.run();
        } finally {
            whole.close();
            whole = null;
        }
    }

    /**
     * Stops the run before {@code what} is written if an update made a trainable tensor NaN/Inf. The loss is checked
     * every step, but a save comes after an update that no loss has seen yet: a run that diverges there (a damaged
     * but finite value resumed from a checkpoint, say) must not leave a checkpoint or final/ that holds NaN.
     */
    void requireFinite(String what) {
        for (Tensor t : trainable()) {
            long bad = NonFinite.count(t.segment(), t.dtype(), t.elements());
            if (bad > 0)
                throw new RunFailure("the last update made " + t.name() + " non-finite (" + bad + " NaN/Inf values): the run diverged,"
                        + " so " + what + " was not written; " + Checkpoints.intactNote(o.output()) + " (lower --lr)");
        }
    }

    private List<Param> params() {
        List<Param> out = new ArrayList<>();
        if (lora()) {
            for (Map.Entry<String, Tensor> e : step.adapterWeights().entrySet())
                out.add(new Param(e.getKey(), e.getValue(), step.adapterGradients().get(e.getKey()), true));
        } else {
            for (TensorSpec spec : ParameterLayout.of(config, DType.F32).specs()) {
                boolean decay = !spec.component().equals("norm") && !spec.name().endsWith(".bias");
                Tensor grad = step.gradients().get(spec.name()), value = weights.get(spec.name());
                // Sharded masters: a matrix has no whole fp32 value on this rank. OptimizerShards steps the shards, and
                // trainable() gathers, so here only the name, shape and decay are read: the gradient view stands in.
                if (value == null && zero != null && zero.shardsMasters()) value = grad;
                out.add(new Param(spec.name(), value, grad, decay));
            }
        }
        return out;
    }

    /** LoRA: the adapters to start from, read from --adapter (fresh runs) or from the checkpoint (resumed ones). */
    void loadAdapters(Path checkpoint) {
        if (!lora()) return;
        if (zero != null && zero.stage() >= 3 && (checkpoint != null || o.adapter() != null))
            throw new InputException("--zero 3 starts LoRA adapters from their initialisation only; --adapter and --resume are not"
                    + " implemented with it yet: use --zero 2");
        if (checkpoint == null) {
            if (o.adapter() != null) loadAdapterFolder();
            return;
        }
        try (SafetensorsFile f = Checkpoints.openFinite(checkpoint.resolve(Checkpoints.MODEL), ledger)) {
            Map<String, Tensor> saved = new LinkedHashMap<>();
            for (String name : f.names()) saved.put(name, f.find(name).orElseThrow());
            step.loadAdapter(saved);
        }
    }

    /** Starts LoRA training from an existing PEFT adapter, which must match --lora-r and --lora-targets. */
    private void loadAdapterFolder() {
        try (PeftAdapters.Adapter a = PeftAdapters.read(o.adapter(), config, ledger)) {
            if (a.config().rank() != o.lora().rank() || !a.config().targets().equals(o.lora().targets()))
                throw InputException.at(o.adapter().resolve(PeftAdapters.CONFIG_FILE), "adapter has r " + a.config().rank()
                        + " and targets " + a.config().targets() + ", but this run asks for r " + o.lora().rank() + " and " + o.lora().targets());
            step.loadAdapter(a.weights());
        }
    }

    /** The PEFT view of the LoRA settings that checkpoints carry for their readers; empty for full fine-tuning. */
    Map<String, Object> checkpointExtras() {
        return lora() ? Map.of("lora", PeftAdapters.configToJson(o.lora(), o.model().toString())) : Map.of();
    }

    /**
     * Writes the run's product: a LoRA run's adapter in PEFT's format (`llamafit merge` makes a full model of it),
     * else the full model as a Hugging Face folder. Returns its folder.
     */
    Path writeFinal() throws IOException {
        // Collective under ZeRO-3 (the gather); rank 0 alone writes.
        return withWhole(() -> leader ? writeFinalWhole() : null);
    }

    private Path writeFinalWhole() throws IOException {
        requireFinite("final/");
        Map<String, Tensor> trained = new LinkedHashMap<>();
        for (Tensor t : trainable()) trained.put(t.name(), t);
        if (lora()) {
            Path dir = o.output().resolve("adapter");
            PeftAdapters.write(dir, o.lora(), zero != null && zero.stage() >= 3 ? trained : step.adapterWeights(), o.model().toString());
            return dir;
        }
        Path dir = o.output().resolve("final");
        List<Tensor> toWrite = new ArrayList<>();
        for (TensorSpec spec : ParameterLayout.of(config, DType.F32).specs()) toWrite.add(trained.get(spec.name()));
        // The trained weights are fp32 (bf16-pure: BF16 matrices); final/ keeps the base checkpoint's dtype unless
        // --save-dtype says otherwise, so an fp32 base's bf16-pure run writes its matrices widened to fp32.
        DType save = o.saveDtype() != null ? o.saveDtype() : ModelFolder.storedDtype(o.model(), step.kernels());
        if (save == DType.F32 && toWrite.stream().allMatch(t -> t.dtype() == DType.F32)) {
            HfFolderWriter.write(dir, config, toWrite, o.model());
        } else {
            // The run is over: free its activations and gradients before the converted copies exist, so that writing
            // them never lifts the ledger above the training peak the plan states (closing the step twice is harmless).
            Kernels kernels = step.kernels();
            step.close();
            HfFolderWriter.write(dir, config, toWrite, o.model(), save, ledger, kernels);
        }
        return dir;
    }

    @Override
    public void close() {
        try {
            step.close();
        } finally {
            owned.forEach(Tensor::close);
            if (zero != null) zero.close();
            if (frozenBase != null) frozenBase.close();
        }
    }

    /**
     * Owned, writable copies of the base model's weights (or of a checkpoint's), filed under weights (master_weights when
     * mixed): fp32, except bf16-pure's matrices, BF16.
     */
    /** The fp32 (master) weights of the base model or checkpoint into {@code zero}'s flat buffers (this rank's shards under ZeRO-3). */
    private static void loadWeights(TrainOptions o, LlamaConfig config, Path checkpoint, Kernels kernels, MemoryLedger ledger, ZeroState zero) {
        try (ModelFolder base = checkpoint == null ? ModelFolder.open(o.model(), ledger, kernels) : null;
             SafetensorsFile ck = checkpoint == null ? null : Checkpoints.openFinite(checkpoint.resolve(Checkpoints.MODEL), ledger)) {
            Map<String, Tensor> src = new LinkedHashMap<>();
            for (TensorSpec spec : ParameterLayout.of(config, DType.F32).specs()) {
                Tensor t = base != null ? base.weights().get(spec.name())
                        : ck.find(spec.name()).orElseThrow(() -> InputException.at(checkpoint.resolve(Checkpoints.MODEL),
                                "checkpoint lacks tensor " + spec.name()));
                if (!t.shape().equals(spec.shape()) || t.dtype() != DType.F32)
                    throw InputException.at(checkpoint, "tensor " + spec.name() + " is " + t.dtype() + t.shape() + ", expected F32" + spec.shape());
                src.put(spec.name(), t);
            }
            zero.load(src);
        }
    }

    private static Map<String, Tensor> loadWeights(TrainOptions o, LlamaConfig config, Path checkpoint, Kernels kernels, MemoryLedger ledger) {
        Map<String, Tensor> out = new LinkedHashMap<>();
        boolean pure = o.technique().precision() == Technique.Precision.BF16_PURE;
        try (ModelFolder base = checkpoint == null ? ModelFolder.open(o.model(), ledger, kernels) : null;
             SafetensorsFile ck = checkpoint == null ? null : Checkpoints.openFinite(checkpoint.resolve(Checkpoints.MODEL), ledger)) {
            for (TensorSpec spec : ParameterLayout.of(config, DType.F32).specs()) {
                Tensor src = base != null ? base.weights().get(spec.name())
                        : ck.find(spec.name()).orElseThrow(() -> InputException.at(checkpoint.resolve(Checkpoints.MODEL),
                                "checkpoint lacks tensor " + spec.name()));
                // bf16-pure trains BF16 matrices: an fp32 base is rounded to them (nearest even) once, here; a
                // checkpoint of the run holds them as BF16 already. Vectors stay fp32 in every precision.
                DType want = pure && spec.shape().rank() == 2 ? DType.BF16 : DType.F32;
                boolean convert = checkpoint == null && src.dtype() == DType.F32 && want == DType.BF16;
                if (!src.shape().equals(spec.shape()) || src.dtype() != want && !convert)
                    throw InputException.at(checkpoint, "tensor " + spec.name() + " is " + src.dtype() + src.shape()
                            + ", expected " + want + spec.shape());
                // Under mixed precision these are the fp32 masters; the step makes the 16-bit working copies.
                Category category = o.technique().precision().mixed() ? Category.MASTER_WEIGHTS : Category.WEIGHTS;
                Tensor t = Tensor.allocate(ledger, category, spec.name(), want, spec.shape());
                out.put(spec.name(), t);
                if (convert) kernels.f32ToBf16(src.segment(), 0, t.segment(), 0, t.elements());
                else MemorySegment.copy(src.segment(), 0, t.segment(), 0, t.bytes());
            }
        } catch (RuntimeException e) {
            out.values().forEach(Tensor::close);
            throw e;
        }
        return out;
    }
}
