// Folds a LoRA adapter into its base weights (W + scale·B·A) and takes it back out (W − scale·B·A).
package dev.llamafit.peft;

import java.lang.foreign.MemorySegment;
import java.util.ArrayList;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.TreeSet;

import dev.llamafit.io.ModelFolder;
import dev.llamafit.io.PeftAdapters;
import dev.llamafit.kernels.Kernels;
import dev.llamafit.memory.Category;
import dev.llamafit.memory.MemoryLedger;
import dev.llamafit.model.LinearModule;
import dev.llamafit.model.LoraConfig;
import dev.llamafit.tensor.DType;
import dev.llamafit.tensor.Shape;
import dev.llamafit.tensor.Tensor;

/**
 * Merging as PEFT's {@code merge_and_unload} does it: for each adapted linear layer, W' = W + scale·B·A with
 * A [r, in], B [out, r] and scale = alpha/r (alpha/√r with rsLoRA, Kalajdzievski 2023). After merging, the model
 * is an ordinary one: y = xW'ᵀ equals the unmerged xWᵀ + scale·(xAᵀ)Bᵀ up to float rounding (Hu et al. 2021, §4.1).
 *
 * <p>Results are new F32 tensors owned by the returned {@link Merged} (ledger: weights); the base tensors are never
 * written, since they are often read-only file mappings. Layers the adapter does not touch are the base tensors
 * themselves (no copy), so {@link Merged#close()} frees only what the merge allocated.
 */
public final class LoraMerge {
    private LoraMerge() {}

    /** A merged or unmerged weight map (Hugging Face names) and the tensors the operation allocated. */
    public record Merged(Map<String, Tensor> weights, List<Tensor> owned) implements AutoCloseable {
        public Merged {
            weights = Collections.unmodifiableMap(weights);
            owned = List.copyOf(owned);
        }

        /** Frees the merged tensors; base tensors in {@link #weights} are untouched. */
        @Override
        public void close() { owned.forEach(Tensor::close); }
    }

    /** A merge that produced, or was handed, NaN or ±Inf: the message names the tensor. */
    public static final class NonFiniteException extends IllegalStateException {
        private static final long serialVersionUID = 1L;
        private final String tensor;

        NonFiniteException(String tensor, String message) {
            super(message);
            this.tensor = tensor;
        }

        /** The adapter key or base weight name that holds the non-finite values. */
        public String tensor() { return tensor; }
    }

    /**
     * W + scale·B·A for every layer the adapter holds.
     *
     * @param base    weights by Hugging Face name, matrices F32, BF16 or F16 (results are F32 either way) (model.layers.{i}.self_attn.q_proj.weight …)
     * @param adapter F32 factors by PEFT key (every A with its B, shapes already validated by the reader)
     * @throws NonFiniteException if a factor or a merged matrix holds NaN/Inf (nothing stays allocated)
     */
    public static Merged merge(Map<String, Tensor> base, LoraConfig config, Map<String, Tensor> adapter, Kernels kernels,
                               MemoryLedger ledger) {
        return apply(base, config, adapter, kernels, ledger, (float) config.scale(), "merged");
    }

    /** W − scale·B·A: the inverse of {@link #merge}, up to float rounding. */
    public static Merged unmerge(Map<String, Tensor> merged, LoraConfig config, Map<String, Tensor> adapter, Kernels kernels,
                                 MemoryLedger ledger) {
        return apply(merged, config, adapter, kernels, ledger, (float) -config.scale(), "unmerged");
    }

    private static Merged apply(Map<String, Tensor> base, LoraConfig config, Map<String, Tensor> adapter, Kernels kernels,
                                MemoryLedger ledger, float scale, String verb) {
        // Every adapter tensor must be used exactly once: sort the A factors, look up their B's.
        TreeSet<String> unused = new TreeSet<>(adapter.keySet());
        Map<String, Tensor> out = new LinkedHashMap<>(base);
        List<Tensor> owned = new ArrayList<>();
        try {
            for (String key : adapter.keySet()) {
                PeftAdapters.Key k = PeftAdapters.parseKey(key).orElseThrow(() -> new IllegalArgumentException("not a PEFT LoRA key: " + key));
                if (k.factor() != 'A') continue;
                LinearModule m = k.module().filter(config::targets).orElseThrow(() -> new IllegalArgumentException(
                        key + ": " + k.name() + " is not among the adapter's targets " + config.targets()));
                String bKey = m.peftKey(k.layer(), 'B');
                Tensor a = adapter.get(key), b = adapter.get(bKey);
                if (b == null) throw new IllegalArgumentException("adapter has " + key + " but no " + bKey);
                String wName = m.weight(k.layer());
                Tensor w = base.get(wName);
                if (w == null) throw new IllegalArgumentException("adapter has " + key + " but the base has no " + wName);
                int outDim = Math.toIntExact(w.shape().dim(0)), inDim = Math.toIntExact(w.shape().dim(1)), r = config.rank();
                check(a, Shape.of(r, inDim), key);
                check(b, Shape.of(outDim, r), bKey);
                if (!dev.llamafit.nn.Linear.isDenseType(w.dtype()) || !w.shape().equals(Shape.of(outDim, inDim)))
                    throw new IllegalArgumentException(wName + " is " + w.dtype() + w.shape() + ", expected F32, BF16 or F16" + Shape.of(outDim, inDim));
                requireFinite(a, key, "adapter tensor");
                requireFinite(b, bKey, "adapter tensor");
                Tensor result = Tensor.allocate(ledger, Category.WEIGHTS, wName, DType.F32, w.shape());
                owned.add(result);
                // A 16-bit base is widened exactly: the sum is computed in fp32 whatever the base's dtype.
                ModelFolder.convert(kernels, w.segment(), w.dtype(), result.segment(), DType.F32, w.elements());
                // result[out, in] += scale · B[out, r] · A[r, in]
                kernels.gemm(false, false, outDim, inDim, r, scale, b.segment(), 0, r, a.segment(), 0, inDim,
                        1f, result.segment(), 0, inDim);
                requireFinite(result, wName, verb + " weight (" + key + ")");
                out.put(wName, result);
                unused.remove(key);
                unused.remove(bKey);
            }
            if (!unused.isEmpty()) throw new IllegalArgumentException("adapter tensors without a matching lora_A: " + unused);
            return new Merged(out, owned);
        } catch (RuntimeException e) {
            owned.forEach(Tensor::close);
            throw e;
        }
    }

    private static void check(Tensor t, Shape expected, String name) {
        if (t.dtype() != DType.F32 || !t.shape().equals(expected))
            throw new IllegalArgumentException(name + " is " + t.dtype() + t.shape() + ", expected F32" + expected);
    }

    /** Counts NaN/Inf and refuses if there are any, naming the tensor and the first bad element. */
    static void requireFinite(Tensor t, String name, String what) {
        long bad = 0, first = -1;
        MemorySegment s = t.segment();
        for (long i = 0, n = t.elements(); i < n; i++) {
            if (!Float.isFinite(s.get(Tensor.F32_LE, i * 4))) {
                if (first < 0) first = i;
                bad++;
            }
        }
        if (bad > 0)
            throw new NonFiniteException(name, what + " " + name + " holds " + bad + " NaN/Inf value" + (bad > 1 ? "s" : "")
                    + " (first at element " + first + " of " + t.shape() + "); refusing to merge");
    }
}
