// Loads a Hugging Face model folder (config.json + safetensors) into a LlamaModel, validating every tensor.
package dev.llamafit.io;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.function.Consumer;

import dev.llamafit.io.safetensors.NonFinite;
import dev.llamafit.io.safetensors.Safetensors;
import dev.llamafit.io.safetensors.TensorSource;
import dev.llamafit.kernels.Kernels;
import dev.llamafit.memory.Category;
import dev.llamafit.memory.MemoryLedger;
import dev.llamafit.model.LlamaConfig;
import dev.llamafit.model.LlamaModel;
import dev.llamafit.model.ParameterLayout;
import dev.llamafit.tensor.DType;
import dev.llamafit.tensor.Tensor;
import dev.llamafit.tensor.TensorSpec;

/**
 * A model folder opened for use: its config, its tensors (memory-mapped) and a view of every parameter in the
 * dtype asked for. Matrices (rank 2: projections, embedding, LM head) come in that dtype: a tensor already stored so
 * is used in place (ledger: weights, mapped); any other is converted once into an owned buffer (ledger: weights) —
 * widening is exact, fp32→bf16 rounds to nearest even, fp32→f16 is IEEE's. Vectors (norm gains, biases) are always
 * F32, widened into owned buffers when stored in 16 bits: they are under 0.1% of a model's parameters, and keeping
 * them fp32 keeps every element-wise kernel single-typed. {@link #open(Path, MemoryLedger, Kernels)} asks for F32
 * everywhere (what training, merging and inspection read); {@link #open(Path, MemoryLedger, Kernels, DType)} with
 * null keeps each matrix in its checkpoint's dtype.
 *
 * <p>Every parameter is checked for NaN/Inf as stored ({@link NonFinite}, one vectorised pass over the bytes): a
 * checkpoint that holds them (a diverged run, a damaged file) would otherwise generate garbage or train on it
 * silently. A hit is an {@link InputException} naming the file, the tensor and the count — unless the caller binds
 * {@link #NON_FINITE_ALLOWED}, which then receives one warning line instead. The binding is scoped rather than a
 * parameter so the choice reaches every loading path (generate, eval, merge, both kinds of training) unchanged.
 */
public final class ModelFolder implements AutoCloseable {
    private final Path dir;
    private final LlamaConfig config;
    private final TensorSource source;
    private final Map<String, Tensor> weights;
    private final List<Tensor> owned;
    private final Map<String, Long> nonFinite;

    /**
     * Bound (to a sink for warning lines) while NaN/Inf in a base's weights are to be accepted: the CLI's
     * --allow-non-finite. Unbound, a non-finite value refuses the folder.
     */
    public static final ScopedValue<Consumer<String>> NON_FINITE_ALLOWED = ScopedValue.newInstance();

    private ModelFolder(Path dir, LlamaConfig config, TensorSource source, Map<String, Tensor> weights, List<Tensor> owned,
                        Map<String, Long> nonFinite) {
        this.dir = dir;
        this.config = config;
        this.source = source;
        this.weights = weights;
        this.owned = owned;
        this.nonFinite = nonFinite;
    }

    /** Reads {@code dir/config.json}; an absent folder or file is a clear error. */
    public static LlamaConfig readConfig(Path dir) {
        if (!Files.isDirectory(dir)) throw InputException.at(dir, "model folder not found");
        Path cfg = dir.resolve("config.json");
        if (!Files.isRegularFile(cfg)) throw InputException.at(dir, "no config.json in the model folder");
        return ConfigJson.read(cfg);
    }

    /** All parameters as F32: fp32 checkpoints in place, 16-bit ones widened into owned buffers. */
    public static ModelFolder open(Path dir, MemoryLedger ledger, Kernels kernels) {
        return open(dir, ledger, kernels, DType.F32);
    }

    /**
     * Matrices as {@code dtype} (F32, BF16 or F16; null: each as its checkpoint stores it, so a bf16 checkpoint is used
     * in place, never widened), vectors as F32.
     */
    public static ModelFolder open(Path dir, MemoryLedger ledger, Kernels kernels, DType dtype) {
        return open(dir, ledger, kernels, dtype, true);
    }

    private static ModelFolder open(Path dir, MemoryLedger ledger, Kernels kernels, DType dtype, boolean scan) {
        if (dtype != null && dtype != DType.F32 && dtype != DType.BF16 && dtype != DType.F16)
            throw new IllegalArgumentException("weights are F32, BF16 or F16, not " + dtype);
        LlamaConfig config = readConfig(dir);
        TensorSource source = Safetensors.openModelFolder(dir, ledger);
        List<Tensor> owned = new ArrayList<>();
        try {
            Map<String, Tensor> weights = new LinkedHashMap<>();
            Map<String, Long> nonFinite = new LinkedHashMap<>();
            ParameterLayout layout = ParameterLayout.of(config, DType.F32);
            for (TensorSpec spec : layout.specs()) {
                Tensor t = find(source, spec.name(), config).orElseThrow(() -> InputException.at(dir,
                        "missing tensor " + spec.name() + " (config.json implies shape " + spec.shape() + ")"));
                if (!t.shape().equals(spec.shape()))
                    throw InputException.at(source.fileOf(sourceName(source, spec.name(), config)), "tensor " + spec.name(),
                            "shape " + t.shape() + " does not match config.json, which implies " + spec.shape());
                // U8 is readable (8-bit optimizer states), but is no weight type of a plain model folder.
                if (!isWeightType(t.dtype()))
                    throw InputException.at(source.fileOf(sourceName(source, spec.name(), config)), "tensor " + spec.name(),
                            "unsupported dtype " + t.dtype() + " for a model weight (llamafit loads F32, F16, BF16 weights)");
                long bad = scan ? NonFinite.count(t.segment(), t.dtype(), t.elements()) : 0;
                if (bad > 0) nonFinite.put(sourceName(source, spec.name(), config), bad);
                DType want = t.shape().rank() < 2 || dtype == null && !isWeightType(t.dtype()) ? DType.F32
                        : dtype == null ? t.dtype() : dtype;
                weights.put(spec.name(), convert(t, want, spec.name(), ledger, kernels, owned));
            }
            for (String name : source.names()) {
                boolean known = weights.containsKey(name) || name.endsWith(".rotary_emb.inv_freq")
                        || config.tieWordEmbeddings() && name.equals(ParameterLayout.LM_HEAD);
                if (!known)
                    throw InputException.at(source.fileOf(name), "tensor " + name,
                            "unexpected tensor: config.json does not describe it (wrong config, or an architecture variant llamafit does not run)");
            }
            if (!nonFinite.isEmpty()) refuseOrWarn(source, nonFinite);
            return new ModelFolder(dir, config, source, weights, owned, nonFinite);
        } catch (RuntimeException e) {
            owned.forEach(Tensor::close);
            source.close();
            throw e;
        }
    }

    /**
     * This folder with some weights replaced (an adapter merged in, say): {@code owned} are the new tensors, freed by
     * the returned folder's close; this folder's converted tensors that {@code weights} no longer holds are freed now.
     * Use the returned folder instead of this one: they share the file mapping, which the returned one closes.
     */
    public ModelFolder withWeights(Map<String, Tensor> weights, List<Tensor> owned) {
        List<Tensor> keep = new ArrayList<>(owned);
        for (Tensor t : this.owned) {
            if (weights.containsValue(t)) keep.add(t);
            else t.close();
        }
        return new ModelFolder(dir, config, source, new LinkedHashMap<>(weights), keep, nonFinite);
    }

    /** The first tensor with NaN/Inf named with its count (and how many more there are): thrown, or warned when allowed. */
    private static void refuseOrWarn(TensorSource source, Map<String, Long> nonFinite) {
        var first = nonFinite.entrySet().iterator().next();
        int more = nonFinite.size() - 1;
        String what = "tensor '" + first.getKey() + "' has " + first.getValue() + " non-finite values (NaN/Inf)"
                + (more == 0 ? "" : ", and " + more + " more tensor" + (more == 1 ? "" : "s") + " have some");
        if (NON_FINITE_ALLOWED.isBound()) {
            NON_FINITE_ALLOWED.get().accept(source.fileOf(first.getKey()).getFileName() + ": " + what
                    + "; loading anyway (--allow-non-finite): outputs may be NaN");
            return;
        }
        throw InputException.at(source.fileOf(first.getKey()), what + ": the checkpoint is damaged or comes from a diverged "
                + "run (llamafit inspect lists every such tensor); pass --allow-non-finite to load it anyway");
    }

    /** With tied embeddings a file may store either name (tinystories-656k stores only lm_head.weight). */
    private static Optional<Tensor> find(TensorSource source, String name, LlamaConfig config) {
        Optional<Tensor> t = source.find(name);
        if (t.isEmpty() && config.tieWordEmbeddings() && name.equals(ParameterLayout.EMBED)) t = source.find(ParameterLayout.LM_HEAD);
        return t;
    }

    private static String sourceName(TensorSource source, String name, LlamaConfig config) {
        return source.find(name).isPresent() || !config.tieWordEmbeddings() ? name : ParameterLayout.LM_HEAD;
    }

    private static boolean isWeightType(DType t) { return t == DType.F32 || t == DType.BF16 || t == DType.F16; }

    /** {@code t} itself when already {@code want}, else an owned copy converted to {@code want}. */
    private static Tensor convert(Tensor t, DType want, String name, MemoryLedger ledger, Kernels k, List<Tensor> owned) {
        if (t.dtype() == want) return t;
        if (!isWeightType(t.dtype())) throw new IllegalStateException("unsupported weight dtype " + t.dtype() + " for " + name);
        Tensor f = Tensor.allocate(ledger, Category.WEIGHTS, name, want, t.shape());
        owned.add(f);
        convert(k, t.segment(), t.dtype(), f.segment(), want, t.elements());
        return f;
    }

    /**
     * n elements from src (F32, BF16, F16) into dst in another of these types. 16-bit to 16-bit goes through fp32 in
     * row-sized pieces (widening is exact, so this is one rounding).
     */
    public static void convert(Kernels k, MemorySegment src, DType from,
                               MemorySegment dst, DType to, long n) {
        if (from == to) {
            MemorySegment.copy(src, 0, dst, 0, from.bytesFor(n));
        } else if (from == DType.F32) {
            if (to == DType.BF16) k.f32ToBf16(src, 0, dst, 0, n);
            else k.f32ToF16(src, 0, dst, 0, n);
        } else if (to == DType.F32) {
            if (from == DType.BF16) k.bf16ToF32(src, 0, dst, 0, n);
            else k.f16ToF32(src, 0, dst, 0, n);
        } else {
            int piece = 4096;
            try (Arena arena = Arena.ofConfined()) {
                MemorySegment tmp = arena.allocate(piece * 4L, 64);
                for (long i = 0; i < n; i += piece) {
                    int len = (int) Math.min(piece, n - i);
                    if (from == DType.BF16) k.bf16ToF32(src, i, tmp, 0, len);
                    else k.f16ToF32(src, i, tmp, 0, len);
                    if (to == DType.BF16) k.f32ToBf16(tmp, 0, dst, i, len);
                    else k.f32ToF16(tmp, 0, dst, i, len);
                }
            }
        }
    }

    /** The dtype the checkpoint stores its matrices in (that of its embedding): what outputs keep by default. */
    public DType storedDtype() { return find(source, ParameterLayout.EMBED, config).orElseThrow().dtype(); }

    /** The dtype the checkpoint in {@code dir} stores its matrices in, read from a mapping (nothing is converted). */
    public static DType storedDtype(Path dir, Kernels kernels) {
        try (ModelFolder f = open(dir, new MemoryLedger(), kernels, null, false)) {
            return f.storedDtype();
        }
    }

    public Path dir() { return dir; }

    public LlamaConfig config() { return config; }

    public TensorSource source() { return source; }

    /** NaN/Inf counts of the tensors that hold any, by stored name (empty when clean; only seen when allowed). */
    public Map<String, Long> nonFinite() { return java.util.Collections.unmodifiableMap(nonFinite); }

    /** Parameter tensors by Hugging Face name (tied: no lm_head entry): matrices in the dtype opened with, vectors F32. */
    public Map<String, Tensor> weights() { return weights; }

    /** A model over these weights; close it before this folder. */
    public LlamaModel newModel(Kernels kernels, MemoryLedger ledger) {
        return new LlamaModel(config, weights, kernels, ledger);
    }

    @Override
    public void close() {
        owned.forEach(Tensor::close);
        source.close();
    }
}
