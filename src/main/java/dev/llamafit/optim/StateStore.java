// Per-parameter optimizer state tensors: lazy allocation under OPTIMIZER, checkpoint naming, load validation.
package dev.llamafit.optim;

import java.util.ArrayList;
import java.util.Collections;
import java.util.HashSet;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;

import dev.llamafit.memory.Category;
import dev.llamafit.memory.MemoryLedger;
import dev.llamafit.tensor.DType;
import dev.llamafit.tensor.Shape;
import dev.llamafit.tensor.Tensor;

/**
 * Holds, for each parameter name, one tensor per state kind in the parameter's dtype (F32; BF16 under bf16-pure)
 * (AdamW: exp_avg, exp_avg_sq; SGD: momentum),
 * named "&lt;kind&gt;/&lt;param&gt;" as in a flattened PyTorch optimizer state_dict. Shared by the optimizers so that
 * the naming and the checks are written once.
 */
final class StateStore implements AutoCloseable {
    private final MemoryLedger ledger;
    private final List<String> kinds;
    /** Parameter name to its state tensors, one per kind, in kinds order; insertion order is parameter order. */
    private final Map<String, Tensor[]> byParam = new LinkedHashMap<>();
    /** After a load, the next step also checks that no loaded entry is left without a parameter. */
    private boolean checkLeftovers;
    private boolean closed;

    StateStore(MemoryLedger ledger, List<String> kinds) {
        this.ledger = ledger;
        this.kinds = List.copyOf(kinds);
    }

    /** Bytes of state per element of {@code p}: one value per kind in the parameter's dtype (4 for F32, 2 for BF16). */
    long bytesPerElement(Param p) { return (long) p.value().dtype().bytes() * kinds.size(); }

    long bytesFor(List<Param> params) {
        long bytes = 0;
        for (Param p : params) bytes = Math.addExact(bytes, Math.multiplyExact(p.elements(), bytesPerElement(p)));
        return bytes;
    }

    /** True when {@code p} has no state yet (its first step). */
    boolean isNew(Param p) { return !byParam.containsKey(p.name()); }

    /**
     * Checks the parameter list against the state before a step. A parameter without state is allowed only
     * before the first step ({@code stepsTaken == 0}); with it, a different t would be needed for bias correction.
     */
    void checkParams(List<Param> params, long stepsTaken) {
        ensureOpen();
        Set<String> seen = new HashSet<>();
        for (Param p : params) {
            if (!seen.add(p.name())) throw new IllegalArgumentException("parameter " + p.name() + " is passed twice");
            Tensor[] t = byParam.get(p.name());
            if (t == null) {
                if (stepsTaken > 0 && !kinds.isEmpty()) {
                    throw new IllegalArgumentException("optimizer state has no entry " + kinds.getFirst() + "/" + p.name()
                            + " for parameter " + p.name() + ", but " + stepsTaken
                            + " steps were taken (pass the same trainable parameters every step; a resumed checkpoint must cover them all)");
                }
                continue;
            }
            for (int k = 0; k < kinds.size(); k++) {
                if (t[k].dtype() != p.value().dtype())
                    throw new IllegalArgumentException("optimizer state " + kinds.get(k) + "/" + p.name() + " is " + t[k].dtype()
                            + " but parameter " + p.name() + " is " + p.value().dtype() + " (resume with the run's own --precision)");
                if (!t[k].shape().equals(p.value().shape())) {
                    throw new IllegalArgumentException("optimizer state " + kinds.get(k) + "/" + p.name() + " has shape " + t[k].shape()
                            + " but parameter " + p.name() + " has shape " + p.value().shape());
                }
            }
        }
        if (checkLeftovers) {
            for (String name : byParam.keySet()) {
                if (!seen.contains(name)) {
                    throw new IllegalArgumentException("optimizer state " + kinds.getFirst() + "/" + name + " matches no parameter given to step");
                }
            }
            checkLeftovers = false;
        }
    }

    /** The state tensors of {@code p}, allocated zeroed under OPTIMIZER on first use. */
    Tensor[] of(Param p) {
        return byParam.computeIfAbsent(p.name(), name -> {
            Tensor[] t = new Tensor[kinds.size()];
            for (int k = 0; k < t.length; k++) {
                t[k] = Tensor.allocate(ledger, Category.OPTIMIZER, kinds.get(k) + "/" + name, p.value().dtype(), p.value().shape());
            }
            return t;
        });
    }

    Map<String, Tensor> snapshot() {
        ensureOpen();
        Map<String, Tensor> out = new LinkedHashMap<>();
        for (int k = 0; k < kinds.size(); k++) {
            for (Map.Entry<String, Tensor[]> e : byParam.entrySet()) out.put(kinds.get(k) + "/" + e.getKey(), e.getValue()[k]);
        }
        return Collections.unmodifiableMap(out);
    }

    /** Validates {@code state} completely, then replaces the held state with copies of it. */
    void load(Map<String, Tensor> state) {
        ensureOpen();
        Map<String, Tensor[]> incoming = new LinkedHashMap<>();
        for (Map.Entry<String, Tensor> e : state.entrySet()) {
            String key = e.getKey();
            int slash = key.indexOf('/');
            int kind = slash < 0 ? -1 : kinds.indexOf(key.substring(0, slash));
            if (kind < 0) {
                throw new IllegalArgumentException("unknown optimizer state entry '" + key + "' (expected "
                        + (kinds.isEmpty() ? "no entries" : String.join("/<param>, ", kinds) + "/<param>") + ")");
            }
            Tensor t = e.getValue();
            if (t == null) throw new IllegalArgumentException("optimizer state entry " + key + " is null");
            if (t.dtype() != DType.F32 && t.dtype() != DType.BF16)
                throw new IllegalArgumentException("optimizer state entry " + key + " is " + t.dtype() + ", expected F32 (BF16 in bf16-pure runs)");
            incoming.computeIfAbsent(key.substring(slash + 1), n -> new Tensor[kinds.size()])[kind] = t;
        }
        for (Map.Entry<String, Tensor[]> e : incoming.entrySet()) {
            Tensor[] t = e.getValue();
            Shape shape = null;
            for (int k = 0; k < kinds.size(); k++) {
                String key = kinds.get(k) + "/" + e.getKey();
                if (t[k] == null) throw new IllegalArgumentException("optimizer state is missing entry " + key);
                if (shape == null) shape = t[k].shape();
                else if (!shape.equals(t[k].shape())) {
                    throw new IllegalArgumentException("optimizer state entry " + key + " has shape " + t[k].shape() + " but "
                            + kinds.getFirst() + "/" + e.getKey() + " has shape " + shape);
                }
                if (t[k].dtype() != t[0].dtype())
                    throw new IllegalArgumentException("optimizer state entry " + key + " is " + t[k].dtype() + " but "
                            + kinds.getFirst() + "/" + e.getKey() + " is " + t[0].dtype());
            }
        }
        // Copy first, free the old state after: the caller may pass this optimizer's own state() back in.
        Map<String, Tensor[]> copied = new LinkedHashMap<>();
        for (Map.Entry<String, Tensor[]> e : incoming.entrySet()) {
            Tensor[] copies = new Tensor[kinds.size()];
            for (int k = 0; k < copies.length; k++) {
                Tensor src = e.getValue()[k];
                copies[k] = Tensor.allocate(ledger, Category.OPTIMIZER, kinds.get(k) + "/" + e.getKey(), src.dtype(), src.shape());
                copies[k].segment().copyFrom(src.segment());
            }
            copied.put(e.getKey(), copies);
        }
        freeAll();
        byParam.putAll(copied);
        checkLeftovers = true;
    }

    private void freeAll() {
        List<Tensor> all = new ArrayList<>();
        for (Tensor[] t : byParam.values()) all.addAll(List.of(t));
        byParam.clear();
        for (Tensor t : all) t.close();
    }

    private void ensureOpen() {
        if (closed) throw new IllegalStateException("optimizer is closed");
    }

    @Override
    public void close() {
        if (closed) return;
        freeAll();
        closed = true;
    }
}
