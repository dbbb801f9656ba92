// A base model folder with a PEFT LoRA adapter merged in: opened in memory (--adapter) or written out (llamafit merge).
package dev.llamafit.peft;

import java.io.IOException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;

import dev.llamafit.io.HfFolderWriter;
import dev.llamafit.io.InputException;
import dev.llamafit.io.ModelFolder;
import dev.llamafit.io.PeftAdapters;
import dev.llamafit.kernels.Kernels;
import dev.llamafit.memory.MemoryLedger;
import dev.llamafit.tensor.DType;
import dev.llamafit.tensor.Tensor;

/**
 * Assembles base + adapter: io reads the model folder ({@link ModelFolder}) and the adapter folder
 * ({@link PeftAdapters}), {@link LoraMerge} computes W + scale·B·A, and this class joins them. io knows nothing of
 * merging, so the layering runs io → peft and never back.
 */
public final class MergedFolders {
    private MergedFolders() {}

    /**
     * The model in {@code dir} with the PEFT LoRA adapter in {@code adapterDir} merged in memory (W + scale·B·A):
     * what {@code generate --adapter} and {@code eval --adapter} run. The adapted matrices are owned F32 copies (the
     * file mapping is read-only); an F16/BF16 base's converted matrices they replace are freed, and the adapter's
     * factors are freed once merged.
     *
     * @throws InputException if either folder is bad or the adapter does not fit the model
     */
    public static ModelFolder open(Path dir, Path adapterDir, MemoryLedger ledger, Kernels kernels) {
        return open(dir, adapterDir, ledger, kernels, DType.F32);
    }

    /**
     * As {@link #open(Path, Path, MemoryLedger, Kernels)} with the base's matrices in {@code dtype} (null: the
     * checkpoint's own, used in place): the adapted matrices are owned F32 (W widened + scale·B·A), the others stay.
     */
    public static ModelFolder open(Path dir, Path adapterDir, MemoryLedger ledger, Kernels kernels, DType dtype) {
        ModelFolder base = ModelFolder.open(dir, ledger, kernels, dtype);
        try (PeftAdapters.Adapter adapter = PeftAdapters.read(adapterDir, base.config(), ledger)) {
            LoraMerge.Merged merged = merge(adapterDir, base.weights(), adapter, kernels, ledger);
            return base.withWeights(merged.weights(), merged.owned());
        } catch (RuntimeException e) {
            base.close();
            throw e;
        }
    }

    /** Refuses an output folder that is one of the inputs, which are read while the output is written (exit 2). */
    public static void checkOutput(Path model, Path adapter, Path out) {
        Path o = out.toAbsolutePath().normalize();
        if (o.equals(model.toAbsolutePath().normalize()) || o.equals(adapter.toAbsolutePath().normalize()))
            throw InputException.at(out, "the output folder must differ from the model and adapter folders (they are read while writing)");
    }

    /**
     * {@code llamafit merge --model DIR --adapter DIR --output DIR}: writes a full Hugging Face folder whose adapted
     * weights are W + scale·B·A (F32), with the model's config and tokenizer files: every tensor F32, as before issue 15.
     *
     * @throws InputException if a folder is bad, the adapter does not fit the model, the output is one of the inputs,
     *                        or the merge produces NaN/Inf
     */
    public static void write(Path model, Path adapter, Path out, Kernels kernels, MemoryLedger ledger) throws IOException {
        write(model, adapter, out, kernels, ledger, DType.F32, DType.F32);
    }

    /**
     * {@code llamafit merge} with {@code --dtype} ({@code dtype}: the base's matrices converted on load, null: as stored)
     * and {@code --save-dtype} ({@code saveDtype}; null: the base's dtype, i.e. {@code dtype} or else the checkpoint's).
     * W + scale·B·A is computed in fp32 either way.
     */
    public static void write(Path model, Path adapter, Path out, Kernels kernels, MemoryLedger ledger, DType dtype, DType saveDtype)
            throws IOException {
        checkOutput(model, adapter, out);
        try (ModelFolder folder = ModelFolder.open(model, ledger, kernels, dtype);
             PeftAdapters.Adapter a = PeftAdapters.read(adapter, folder.config(), ledger);
             LoraMerge.Merged merged = merge(adapter, folder.weights(), a, kernels, ledger)) {
            List<Tensor> named = new ArrayList<>();
            // Name each tensor by its map key: a tied model may have stored the embedding as lm_head.weight.
            for (Map.Entry<String, Tensor> e : merged.weights().entrySet()) {
                Tensor t = e.getValue();
                named.add(t.name().equals(e.getKey()) ? t : new Tensor(e.getKey(), t.dtype(), t.shape(), t.segment()));
            }
            DType store = saveDtype != null ? saveDtype : dtype != null ? dtype : folder.storedDtype();
            HfFolderWriter.write(out, folder.config(), named, model, store, ledger, kernels);
        }
    }

    /** {@link LoraMerge#merge}, with a non-finite result reported as bad input naming the adapter file and tensor. */
    static LoraMerge.Merged merge(Path adapterDir, Map<String, Tensor> base, PeftAdapters.Adapter a, Kernels kernels,
                                  MemoryLedger ledger) {
        try {
            return LoraMerge.merge(base, a.config(), a.weights(), kernels, ledger);
        } catch (LoraMerge.NonFiniteException e) {
            throw InputException.at(adapterDir.resolve(PeftAdapters.WEIGHTS_FILE), "tensor " + e.tensor(), e.getMessage());
        }
    }
}
