// SGD with PyTorch's torch.optim.SGD semantics: coupled weight decay, optional (Nesterov) momentum.
package dev.llamafit.optim;

import java.util.List;
import java.util.Objects;

import dev.llamafit.kernels.KernelBackends;
import dev.llamafit.kernels.Kernels;
import dev.llamafit.kernels.UpdateKernels;
import dev.llamafit.memory.MemoryLedger;

/**
 * Stochastic gradient descent exactly as torch.optim.SGD (PyTorch 1.13, maximize=False) computes it:
 * <pre>
 *   d ← g + wd·p                              coupled decay (wd = 0 when !param.decay); g itself is not changed
 *   buf ← d                                   first step (the momentum buffer starts as a clone, not zero)
 *   buf ← momentum·buf + (1 − dampening)·d    later steps
 *   d ← d + momentum·buf  (nesterov)   or   d ← buf
 *   p ← p − lr·d
 * </pre>
 * The momentum buffer is F32 (4 bytes per trainable parameter) under {@code Category.OPTIMIZER}, allocated
 * lazily on the first step; with momentum 0 there is no state at all.
 */
public final class Sgd extends StoredStateOptimizer {
    /** Hyper-parameters. As in PyTorch, Nesterov needs momentum &gt; 0 and zero dampening. */
    public record Config(double momentum, double weightDecay, double dampening, boolean nesterov) {
        public Config {
            if (!(momentum >= 0 && Double.isFinite(momentum))) throw new IllegalArgumentException("SGD momentum must be finite and >= 0, got " + momentum);
            if (!(weightDecay >= 0 && Double.isFinite(weightDecay))) {
                throw new IllegalArgumentException("SGD weight decay must be finite and >= 0, got " + weightDecay);
            }
            if (!Double.isFinite(dampening)) throw new IllegalArgumentException("SGD dampening must be finite, got " + dampening);
            if (nesterov && (momentum <= 0 || dampening != 0)) {
                throw new IllegalArgumentException("SGD Nesterov momentum requires momentum > 0 and dampening 0 (got momentum "
                        + momentum + ", dampening " + dampening + ")");
            }
        }
    }

    private final Config config;

    public Sgd(Config config, MemoryLedger ledger) {
        super(ledger, Objects.requireNonNull(config, "config").momentum() != 0 ? List.of("momentum") : List.of());
        this.config = config;
    }

    public Sgd(double momentum, double weightDecay, double dampening, boolean nesterov, MemoryLedger ledger) {
        this(new Config(momentum, weightDecay, dampening, nesterov), ledger);
    }

    /** Momentum and weight decay with PyTorch's defaults dampening = 0, nesterov = false. */
    public Sgd(double momentum, double weightDecay, MemoryLedger ledger) {
        this(momentum, weightDecay, 0, false, ledger);
    }

    public Config config() { return config; }

    /** The update's scalars, as torch/optim/sgd.py passes them to the kernel. Shared with {@link OffloadedOptimizer}. */
    static UpdateKernels.SgdCoefficients coefficients(Config config, double lr, boolean decay, boolean first) {
        return new UpdateKernels.SgdCoefficients((float) (decay ? config.weightDecay() : 0.0), (float) config.momentum(),
                (float) (1 - config.dampening()), config.nesterov(), first, (float) -lr);
    }

    @Override
    public void step(List<Param> params, double lr) {
        beginStep(params, lr);
        for (Param p : params)
            if (p.value().dtype() != dev.llamafit.tensor.DType.F32)
                throw new IllegalArgumentException("SGD updates F32 parameters; " + p.name() + " is " + p.value().dtype() + " (use AdamW for bf16-pure)");
        boolean useMomentum = config.momentum() != 0;
        Kernels kernels = KernelBackends.get();
        for (Param p : params) {
            // torch/optim/sgd.py (_single_tensor_sgd): a parameter's first step clones d into the buffer.
            boolean first = useMomentum && store.isNew(p);
            var c = coefficients(config, lr, p.decay(), first);
            var pv = p.value().segment();
            var g = p.grad().segment();
            var buf = useMomentum ? store.of(p)[0].segment() : null;
            UpdateKernels.forBlocks(p.elements(), (from, to) -> kernels.sgd(pv, g, buf, from, to, c));
        }
        steps++;
    }
}
