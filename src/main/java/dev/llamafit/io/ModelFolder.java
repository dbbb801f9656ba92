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
import dev.llamafit.quant.Int8;
import dev.llamafit.quant.Quantization;
import dev.llamafit.quant.QuantizedWeights;
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
    private final TensorSource source; // null once a quantised model has let go of the mapping
    private final DType storedDtype;
    private final Map<String, Tensor> weights;
    private final List<Tensor> owned;
    private final Map<String, Long> nonFinite;

    /**
     * Bound (to a sink for warning lines) while NaN/Inf in a base's weights are to be accepted: the CLI's
     * --allow-non-finite. Unbound, a non-finite value refuses the folder.
     */
    public static final ScopedValue<Consumer<String>> NON_FINITE_ALLOWED = ScopedValue.newInstance();

    private ModelFolder(Path dir, LlamaConfig config, TensorSource source, DType storedDtype, Map<String, Tensor> weights,
                        List<Tensor> owned, Map<String, Long> nonFinite) {
        this.dir = dir;
        this.config = config;
        this.source = source;
        this.storedDtype = storedDtype;
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
        return open(dir, ledger, kernels, dtype, null, true);
    }

    /**
     * As {@link #open(Path, MemoryLedger, Kernels, DType)}, with the block linear layers quantised as {@code quantize}
     * (null: as stored). A folder quantised already (config.json's quantization_config) loads its bitsandbytes tensors
     * whatever {@code quantize} says, which may only repeat the stored kind (an int8 threshold given here replaces the
     * stored one: it is a runtime setting). A quantised model holds owned copies of everything it keeps and releases the
     * file mapping once loaded, so its memory is the quantised bytes, not the checkpoint's.
     */
    public static ModelFolder open(Path dir, MemoryLedger ledger, Kernels kernels, DType dtype, Quantization quantize) {
        return open(dir, ledger, kernels, dtype, quantize, true);
    }

    private static ModelFolder open(Path dir, MemoryLedger ledger, Kernels kernels, DType dtype, Quantization quantize, boolean scan) {
        if (dtype != null && dtype != DType.F32 && dtype != DType.BF16 && dtype != DType.F16)
            throw new IllegalArgumentException("weights are F32, BF16 or F16, not " + dtype);
        LlamaConfig stored = readConfig(dir);
        Quantization q = quantization(dir, stored.quantization(), quantize);
        LlamaConfig config = stored.withQuantization(q);
        TensorSource source = Safetensors.openModelFolder(dir, ledger);
        List<Tensor> owned = new ArrayList<>();
        try {
            Map<String, Tensor> weights = new LinkedHashMap<>();
            Map<String, Long> nonFinite = new LinkedHashMap<>();
            ParameterLayout layout = ParameterLayout.of(config, DType.F32);
            for (TensorSpec spec : layout.specs()) {
                if (q != null && stored.quantization() != null && ParameterLayout.isQuantizable(spec)) {
                    readQuantized(dir, source, spec, q, ledger, owned, weights);
                    continue;
                }
                Tensor t = find(source, spec.name(), config).orElseThrow(() -> InputException.at(dir,
                        "missing tensor " + spec.name() + " (config.json implies shape " + spec.shape() + ")"));
                if (!isWeightType(t.dtype()))
                    throw InputException.at(source.fileOf(sourceName(source, spec.name(), config)), "tensor " + spec.name(),
                            "dtype " + t.dtype().safetensorsName() + " is a quantised weight's, but config.json has "
                                    + (stored.quantization() == null ? "no quantization_config" : "it as an unquantised layer"));
                if (!t.shape().equals(spec.shape()))
                    throw InputException.at(source.fileOf(sourceName(source, spec.name(), config)), "tensor " + spec.name(),
                            "shape " + t.shape() + " does not match config.json, which implies " + spec.shape());
                long bad = scan ? NonFinite.count(t.segment(), t.dtype(), t.elements()) : 0;
                if (bad > 0) nonFinite.put(sourceName(source, spec.name(), config), bad);
                if (q != null && ParameterLayout.isQuantizable(spec)) {
                    if (bad > 0) throw InputException.at(source.fileOf(spec.name()), "tensor " + spec.name(),
                            "holds " + bad + " non-finite values (NaN/Inf), which cannot be quantised");
                    Map<String, Tensor> qt = QuantizedWeights.quantize(q, t, ledger, spec.name().substring(0, spec.name().length() - ".weight".length()));
                    owned.addAll(qt.values());
                    weights.putAll(qt);
                    continue;
                }
                DType want = t.shape().rank() < 2 || dtype == null && !isWeightType(t.dtype()) ? DType.F32
                        : dtype == null ? t.dtype() : dtype;
                // A quantised model lets go of the mapping, so it copies even what it keeps as stored.
                weights.put(spec.name(), convert(t, want, spec.name(), ledger, kernels, owned, q != null));
            }
            for (String name : source.names()) {
                boolean known = weights.containsKey(name) || name.endsWith(".rotary_emb.inv_freq")
                        || config.tieWordEmbeddings() && name.equals(ParameterLayout.LM_HEAD);
                if (!known)
                    throw InputException.at(source.fileOf(name), "tensor " + name,
                            "unexpected tensor: config.json does not describe it (wrong config, or an architecture variant llamafit does not run)");
            }
            if (!nonFinite.isEmpty()) refuseOrWarn(source, nonFinite);
            DType storedDtype = find(source, ParameterLayout.EMBED, config).orElseThrow().dtype();
            if (q != null) {
                source.close();
                source = null;
            }
            return new ModelFolder(dir, config, source, storedDtype, weights, owned, nonFinite);
        } catch (RuntimeException e) {
            owned.forEach(Tensor::close);
            if (source != null) source.close();
            throw e;
        }
    }

    /** The quantisation to load with: the stored one (which a request may only repeat), else the requested one. */
    private static Quantization quantization(Path dir, Quantization stored, Quantization requested) {
        if (stored == null || requested == null) return stored != null ? stored : requested;
        Path cfg = dir.resolve("config.json");
        if (stored.kind() != requested.kind())
            throw InputException.at(cfg, "quantization_config", "the folder is quantised as " + stored.describe() + " already;"
                    + " --base-dtype " + requested.kind().name().toLowerCase(java.util.Locale.ROOT) + " needs the unquantised model");
        if (stored.kind() == Quantization.Kind.INT8) return requested;
        if (stored.doubleQuant() != requested.doubleQuant())
            throw InputException.at(cfg, "quantization_config", "the folder is quantised as " + stored.describe()
                    + " already, so its block constants are " + (stored.doubleQuant() ? "" : "not ") + "double-quantised; drop "
                    + (stored.doubleQuant() ? "--no-double-quant" : "--double-quant"));
        return stored;
    }

    /**
     * Module {@code spec}'s bitsandbytes tensors from a quantised folder, each checked against {@link QuantizedWeights#specs}
     * and copied into an owned buffer; NF4's quant_state JSON onto the heap, parsed to check it describes this weight.
     */
    private static void readQuantized(Path dir, TensorSource source, TensorSpec spec, Quantization q, MemoryLedger ledger,
                                      List<Tensor> owned, Map<String, Tensor> weights) {
        String prefix = spec.name().substring(0, spec.name().length() - ".weight".length());
        long out = spec.shape().dim(0), in = spec.shape().dim(1);
        for (TensorSpec s : QuantizedWeights.specs(q, prefix, out, in)) {
            if (s.name().endsWith("." + Int8.WEIGHT_FORMAT)) {
                // Linear8bitLt's format byte: 0 ("row") is the only layout bitsandbytes still writes; transformers may
                // leave it out of a saved folder, and then it is row.
                Tensor format = Tensor.allocate(ledger, Category.WEIGHTS, s.name(), s.dtype(), s.shape());
                owned.add(format);
                Optional<Tensor> stored = source.find(s.name());
                if (stored.isPresent()) {
                    Tensor f = stored.get();
                    if (f.dtype() != DType.U8 || f.elements() != 1 || f.getFloat(0) != Int8.FORMAT_ROW)
                        throw InputException.at(source.fileOf(s.name()), "tensor " + s.name(), f.dtype().safetensorsName() + " " + f.shape()
                                + (f.elements() == 1 ? " = " + f.getFloat(0) : "") + ": only the row layout (U8 scalar 0) is supported, as in bitsandbytes");
                }
                weights.put(s.name(), format);
                continue;
            }
            Tensor t = source.find(s.name()).orElseThrow(() -> InputException.at(dir,
                    "missing tensor " + s.name() + " of the " + q.describe() + " layer " + prefix + " (config.json's quantization_config implies "
                            + s.dtype().safetensorsName() + " " + s.shape() + ")"));
            if (t.dtype() != s.dtype() || !t.shape().equals(s.shape()))
                throw InputException.at(source.fileOf(s.name()), "tensor " + s.name(), t.dtype().safetensorsName() + " " + t.shape()
                        + " does not match the " + q.describe() + " layout of " + prefix + " [" + out + ", " + in + "], which is "
                        + s.dtype().safetensorsName() + " " + s.shape());
            Tensor copy = Tensor.allocate(ledger, Category.WEIGHTS, s.name(), s.dtype(), s.shape());
            owned.add(copy);
            MemorySegment.copy(t.segment(), 0, copy.segment(), 0, t.bytes());
            weights.put(s.name(), copy);
        }
        String meta = QuantizedWeights.metadataKey(q, prefix);
        if (meta != null) {
            Tensor t = source.find(meta).orElseThrow(() -> InputException.at(source.fileOf(spec.name()),
                    "missing tensor " + meta + " (bitsandbytes' NF4 quant_state of " + prefix + ")"));
            weights.put(meta, QuantizedWeights.onHeap(t));
            try {
                QuantizedWeights.check(q, weights, spec.name(), out, in);
            } catch (IllegalArgumentException e) {
                throw InputException.at(source.fileOf(meta), "tensor " + meta, e.getMessage());
            }
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
        return new ModelFolder(dir, config, source, storedDtype, new LinkedHashMap<>(weights), keep, nonFinite);
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

    /** {@code t} itself when already {@code want} (unless {@code copy}), else an owned copy converted to {@code want}. */
    private static Tensor convert(Tensor t, DType want, String name, MemoryLedger ledger, Kernels k, List<Tensor> owned, boolean copy) {
        if (t.dtype() == want && !copy) return t;
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
    public DType storedDtype() { return storedDtype; }

    /** The dtype the checkpoint in {@code dir} stores its matrices in, read from a mapping (nothing is converted). */
    public static DType storedDtype(Path dir, Kernels kernels) {
        try (ModelFolder f = open(dir, new MemoryLedger(), kernels, null, null, false)) {
            return f.storedDtype();
        }
    }

    public Path dir() { return dir; }

    public LlamaConfig config() { return config; }

    public TensorSource source() {
        if (source == null) throw new IllegalStateException("a quantised model folder has released its file mapping");
        return source;
    }

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
        if (source != null) source.close();
    }
}
