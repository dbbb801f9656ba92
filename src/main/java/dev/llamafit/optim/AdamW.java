// AdamW with PyTorch's torch.optim.AdamW semantics: decoupled weight decay, bias correction, no amsgrad.
package dev.llamafit.optim;

import java.util.List;
import java.util.Map;
import java.util.Objects;

import dev.llamafit.kernels.KernelBackends;
import dev.llamafit.kernels.Kernels;
import dev.llamafit.kernels.UpdateKernels;
import dev.llamafit.memory.MemoryLedger;
import dev.llamafit.tensor.DType;
import dev.llamafit.tensor.Tensor;

/**
 * AdamW (Loshchilov &amp; Hutter, "Decoupled Weight Decay Regularization", 2019) exactly as torch.optim.AdamW
 * (PyTorch 1.13, amsgrad=False, maximize=False) computes it, per parameter, with step t = steps() + 1:
 * <pre>
 *   p ← p·(1 − lr·wd)                        decoupled decay, before the moments (wd = 0 when !param.decay)
 *   m ← β1·m + (1 − β1)·g
 *   v ← β2·v + (1 − β2)·g²
 *   p ← p − lr/(1 − β1^t) · m / (√v / √(1 − β2^t) + eps)
 * </pre>
 * The scalars are computed in double, as Python does, then rounded to float, as ATen does when it receives
 * them; m and v are F32 (8 bytes per trainable parameter), allocated lazily on the first step under
 * {@code Category.OPTIMIZER}, for the parameters passed only. A BF16 parameter (bf16-pure, as torchtune's full bf16)
 * has BF16 m and v (4 bytes) and is updated by {@code adamwBf16}: the same fp32 arithmetic on widened values, m and v
 * rounded to nearest even, p stochastically (see UpdateKernels#adamwBf16 and docs/ARCHITECTURE.md for the measurement).
 */
public final class AdamW extends StoredStateOptimizer {
    /** Hyper-parameters; PyTorch's defaults are (0.9, 0.999, 1e-8, 0.01). */
    public record Config(double beta1, double beta2, double eps, double weightDecay) {
        public Config {
            if (!(beta1 >= 0 && beta1 < 1)) throw new IllegalArgumentException("AdamW beta1 must be in [0, 1), got " + beta1);
            if (!(beta2 >= 0 && beta2 < 1)) throw new IllegalArgumentException("AdamW beta2 must be in [0, 1), got " + beta2);
            if (!(eps >= 0 && Double.isFinite(eps))) throw new IllegalArgumentException("AdamW eps must be finite and >= 0, got " + eps);
            if (!(weightDecay >= 0 && Double.isFinite(weightDecay))) {
                throw new IllegalArgumentException("AdamW weight decay must be finite and >= 0, got " + weightDecay);
            }
        }
    }

    private static final List<String> KINDS = List.of("exp_avg", "exp_avg_sq");

    private final Config config;

    /** A second moment is a mean of squares: a negative one is damage, and its square root would be NaN. */
    @Override
    void checkValues(Map<String, Tensor> state) {
        for (Map.Entry<String, Tensor> e : state.entrySet()) {
            Tensor t = e.getValue();
            if (!e.getKey().startsWith("exp_avg_sq/") || t.dtype() != DType.F32 && t.dtype() != DType.BF16) continue;
            long negative = 0;
            for (long i = 0, n = t.elements(); i < n; i++)
                if (t.getFloat(i) < 0) negative++;
            if (negative > 0)
                throw new IllegalArgumentException("optimizer state entry " + e.getKey() + " has " + negative
                        + " negative values (a second moment is never negative)");
        }
    }

    public AdamW(Config config, MemoryLedger ledger) {
        super(ledger, KINDS);
        this.config = Objects.requireNonNull(config, "config");
    }

    public AdamW(double beta1, double beta2, double eps, double weightDecay, MemoryLedger ledger) {
        this(new Config(beta1, beta2, eps, weightDecay), ledger);
    }

    public Config config() { return config; }

    /**
     * The update's scalars at step {@code t} (1-based) as torch/optim/adamw.py (_single_tensor_adamw) computes them: bias
     * corrections and step size in double (Python floats), each rounded to float once. Shared with {@link AdamW8bit}.
     */
    static UpdateKernels.AdamCoefficients coefficients(Config config, double lr, long t, boolean decay) {
        double bc1 = 1 - Math.pow(config.beta1(), t);
        double bc2 = 1 - Math.pow(config.beta2(), t);
        double stepSize = lr / bc1;
        double wd = decay ? config.weightDecay() : 0.0;
        return new UpdateKernels.AdamCoefficients((float) (1 - lr * wd), (float) config.beta1(), (float) (1 - config.beta1()),
                (float) config.beta2(), (float) (1 - config.beta2()), (float) -stepSize, (float) Math.sqrt(bc2), (float) config.eps());
    }

    @Override
    public void step(List<Param> params, double lr) {
        beginStep(params, lr);
        long t = steps + 1;
        Kernels kernels = KernelBackends.get();
        for (Param p : params) {
            var c = coefficients(config, lr, t, p.decay());
            Tensor[] s = store.of(p);
            var pv = p.value().segment();
            var g = p.grad().segment();
            var m = s[0].segment();
            var v = s[1].segment();
            // bf16-pure: the new p is rounded stochastically, with bits drawn from (parameter, step, element) alone.
            int seed = p.name().hashCode() ^ Long.hashCode(t * 0x9E3779B97F4A7C15L);
            if (p.value().dtype() == DType.BF16) UpdateKernels.forBlocks(p.elements(), (from, to) -> kernels.adamwBf16(pv, g, m, v, from, to, c, seed));
            else UpdateKernels.forBlocks(p.elements(), (from, to) -> kernels.adamw(pv, g, m, v, from, to, c));
        }
        steps = t;
    }
}
