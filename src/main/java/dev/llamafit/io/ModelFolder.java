// Loads a Hugging Face model folder (config.json + safetensors) into a LlamaModel, validating every tensor.
package dev.llamafit.io;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;

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
 * A model folder opened for use: its config, its tensors (memory-mapped) and fp32 views of every
 * parameter. F32 tensors are used in place (ledger: weights, mapped); F16/BF16 tensors are converted
 * once into owned fp32 buffers (ledger: weights).
 */
public final class ModelFolder implements AutoCloseable {
    private final Path dir;
    private final LlamaConfig config;
    private final TensorSource source;
    private final Map<String, Tensor> weights;
    private final List<Tensor> owned;

    private ModelFolder(Path dir, LlamaConfig config, TensorSource source, Map<String, Tensor> weights, List<Tensor> owned) {
        this.dir = dir;
        this.config = config;
        this.source = source;
        this.weights = weights;
        this.owned = owned;
    }

    /** Reads {@code dir/config.json}; an absent folder or file is a clear error. */
    public static LlamaConfig readConfig(Path dir) {
        if (!Files.isDirectory(dir)) throw InputException.at(dir, "model folder not found");
        Path cfg = dir.resolve("config.json");
        if (!Files.isRegularFile(cfg)) throw InputException.at(dir, "no config.json in the model folder");
        return ConfigJson.read(cfg);
    }

    public static ModelFolder open(Path dir, MemoryLedger ledger, Kernels kernels) {
        LlamaConfig config = readConfig(dir);
        TensorSource source = Safetensors.openModelFolder(dir, ledger);
        List<Tensor> owned = new ArrayList<>();
        try {
            Map<String, Tensor> weights = new LinkedHashMap<>();
            ParameterLayout layout = ParameterLayout.of(config, DType.F32);
            for (TensorSpec spec : layout.specs()) {
                Tensor t = find(source, spec.name(), config).orElseThrow(() -> InputException.at(dir,
                        "missing tensor " + spec.name() + " (config.json implies shape " + spec.shape() + ")"));
                if (!t.shape().equals(spec.shape()))
                    throw InputException.at(source.fileOf(sourceName(source, spec.name(), config)), "tensor " + spec.name(),
                            "shape " + t.shape() + " does not match config.json, which implies " + spec.shape());
                weights.put(spec.name(), toF32(t, spec.name(), ledger, kernels, owned));
            }
            for (String name : source.names()) {
                boolean known = weights.containsKey(name) || name.endsWith(".rotary_emb.inv_freq")
                        || config.tieWordEmbeddings() && name.equals(ParameterLayout.LM_HEAD);
                if (!known)
                    throw InputException.at(source.fileOf(name), "tensor " + name,
                            "unexpected tensor: config.json does not describe it (wrong config, or an architecture variant llamafit does not run)");
            }
            return new ModelFolder(dir, config, source, weights, owned);
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
        return new ModelFolder(dir, config, source, new LinkedHashMap<>(weights), keep);
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

    private static Tensor toF32(Tensor t, String name, MemoryLedger ledger, Kernels k, List<Tensor> owned) {
        if (t.dtype() == DType.F32) return t;
        Tensor f = Tensor.allocate(ledger, Category.WEIGHTS, name, DType.F32, t.shape());
        owned.add(f);
        switch (t.dtype()) {
            case F16 -> k.f16ToF32(t.segment(), 0, f.segment(), 0, t.elements());
            case BF16 -> k.bf16ToF32(t.segment(), 0, f.segment(), 0, t.elements());
            default -> throw new IllegalStateException("unsupported weight dtype " + t.dtype() + " for " + name);
        }
        return f;
    }

    public Path dir() { return dir; }

    public LlamaConfig config() { return config; }

    public TensorSource source() { return source; }

    /** fp32 parameter tensors by Hugging Face name (tied: no lm_head entry). */
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
