// AdamW with 8-bit block-wise quantised moments, as bitsandbytes' AdamW8bit (Dettmers et al., 2022).
package dev.llamafit.optim;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.ArrayList;
import java.util.Collections;
import java.util.HashSet;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.Set;

import dev.llamafit.kernels.KernelBackends;
import dev.llamafit.kernels.Kernels;
import dev.llamafit.kernels.UpdateKernels;
import dev.llamafit.memory.Category;
import dev.llamafit.memory.MemoryLedger;
import dev.llamafit.quant.DynamicMap;
import dev.llamafit.tensor.DType;
import dev.llamafit.tensor.Shape;
import dev.llamafit.tensor.Tensor;

/**
 * AdamW whose moments are stored in 8 bits ("8-bit Optimizers via Block-wise Quantization", Dettmers et al. 2022;
 * bitsandbytes' AdamW8bit with its defaults block_wise=True, min_8bit_size=4096). A parameter of at least
 * {@link #MIN_8BIT_SIZE} elements keeps m as U8 codes of the signed dynamic map and v as U8 codes of the unsigned one,
 * each with one F32 absmax per block of {@link #BLOCK} elements. Each step, per block: m and v are dequantised
 * (code value × absmax), updated with exactly {@link AdamW}'s fp32 arithmetic (the same kernel, so the parameter moves
 * by the fp32 formula applied to the dequantised moments), and requantised against the block's new absmax (nearest
 * code, {@link DynamicMap#nearest}). Smaller parameters (norms, biases) keep F32 m and v and are updated exactly as
 * {@link AdamW} updates them. The maps are constants (not stored); states start as zero codes with absmax 0, as in
 * bitsandbytes, which dequantise to zero.
 *
 * <p>State entries, named "&lt;kind&gt;/&lt;param&gt;" like AdamW's: {@code exp_avg} and {@code exp_avg_sq} (U8 of the
 * parameter's shape, or F32 for a small parameter), and for a quantised parameter {@code exp_avg_absmax} and
 * {@code exp_avg_sq_absmax} (F32 [blocks]). Only F32 parameters are supported (bf16-pure keeps BF16 states with AdamW).
 */
public final class AdamW8bit implements Optimizer {
    /** Elements per quantisation block (bitsandbytes' optimizer block size). */
    public static final int BLOCK = DynamicMap.OPTIMIZER_BLOCK;
    /** Parameters with fewer elements keep 32-bit states (bitsandbytes' min_8bit_size). */
    public static final long MIN_8BIT_SIZE = 4096;

    static final String M = "exp_avg", V = "exp_avg_sq", M_ABSMAX = "exp_avg_absmax", V_ABSMAX = "exp_avg_sq_absmax";
    private static final List<String> KINDS = List.of(M, V, M_ABSMAX, V_ABSMAX);
    private static final float[] SIGNED = DynamicMap.signed(), UNSIGNED = DynamicMap.unsigned();

    /** One parameter's state: F32 m and v with null absmax, or U8 m and v with F32 absmax per block. */
    private record State(Tensor m, Tensor v, Tensor mAbsmax, Tensor vAbsmax) {
        boolean quantized() { return mAbsmax != null; }

        Tensor get(int kind) { return switch (kind) { case 0 -> m; case 1 -> v; case 2 -> mAbsmax; default -> vAbsmax; }; }

        void close() {
            m.close();
            v.close();
            if (quantized()) {
                mAbsmax.close();
                vAbsmax.close();
            }
        }
    }

    private final AdamW.Config config;
    private final MemoryLedger ledger;
    /** Parameter name to its state; insertion order is parameter order. */
    private final Map<String, State> byParam = new LinkedHashMap<>();
    private long steps;
    private boolean checkLeftovers;
    private boolean closed;

    public AdamW8bit(AdamW.Config config, MemoryLedger ledger) {
        this.config = Objects.requireNonNull(config, "config");
        this.ledger = Objects.requireNonNull(ledger, "ledger");
    }

    public AdamW8bit(double beta1, double beta2, double eps, double weightDecay, MemoryLedger ledger) {
        this(new AdamW.Config(beta1, beta2, eps, weightDecay), ledger);
    }

    public AdamW.Config config() { return config; }

    /** Whether a parameter of {@code elements} elements gets 8-bit states. */
    public static boolean quantized(long elements) { return elements >= MIN_8BIT_SIZE; }

    /** Quantisation blocks of a parameter of {@code elements} elements (the last may be short). */
    public static long blocks(long elements) { return DynamicMap.blocks(elements, BLOCK); }

    /**
     * Bytes of state for a parameter of {@code elements} elements, exactly as allocated through the ledger: 8 per
     * element below {@link #MIN_8BIT_SIZE} (F32 m and v), else 2 per element (U8 m and v) plus 8 per block of
     * {@link #BLOCK} (an F32 absmax for each).
     */
    public static long stateBytes(long elements) {
        if (elements < 0) throw new IllegalArgumentException("negative element count " + elements);
        if (!quantized(elements)) return Math.multiplyExact(elements, 8L);
        return Math.addExact(Math.multiplyExact(elements, 2L), Math.multiplyExact(blocks(elements), 8L));
    }

    @Override
    public long stateBytes(List<Param> params) {
        long bytes = 0;
        for (Param p : params) bytes = Math.addExact(bytes, stateBytes(p.elements()));
        return bytes;
    }

    @Override
    public void step(List<Param> params, double lr) {
        if (!(lr >= 0 && Double.isFinite(lr))) throw new IllegalArgumentException("learning rate must be finite and >= 0, got " + lr);
        checkParams(params);
        long t = steps + 1;
        Kernels kernels = KernelBackends.get();
        for (Param p : params) {
            var c = AdamW.coefficients(config, lr, t, p.decay());
            State s = stateOf(p);
            MemorySegment pv = p.value().segment(), g = p.grad().segment();
            if (!s.quantized()) {
                MemorySegment m = s.m().segment(), v = s.v().segment();
                UpdateKernels.forBlocks(p.elements(), (from, to) -> kernels.adamw(pv, g, m, v, from, to, c));
                continue;
            }
            long n = p.elements();
            // forBlocks' ranges are multiples of BLOCK elements, so each range holds whole quantisation blocks.
            UpdateKernels.forBlocks(n, (from, to) -> {
                MemorySegment m = MemorySegment.ofArray(new byte[BLOCK * 4]), v = MemorySegment.ofArray(new byte[BLOCK * 4]);
                for (long b0 = from; b0 < to; b0 += BLOCK) updateBlock(kernels, c, s, pv, g, m, v, b0, Math.min(to, b0 + BLOCK));
            });
        }
        steps = t;
    }

    /** Dequantise one block's m and v into the scratch segments, step, requantise against the new absmax. */
    private static void updateBlock(Kernels kernels, UpdateKernels.AdamCoefficients c, State s, MemorySegment p, MemorySegment g,
                                    MemorySegment m, MemorySegment v, long from, long to) {
        int len = (int) (to - from);
        long block = from / BLOCK;
        MemorySegment mc = s.m().segment(), vc = s.v().segment();
        float mAmax = s.mAbsmax().segment().getAtIndex(Tensor.F32_LE, block);
        float vAmax = s.vAbsmax().segment().getAtIndex(Tensor.F32_LE, block);
        for (int i = 0; i < len; i++) {
            m.setAtIndex(Tensor.F32_LE, i, SIGNED[mc.get(ValueLayout.JAVA_BYTE, from + i) & 0xFF] * mAmax);
            v.setAtIndex(Tensor.F32_LE, i, UNSIGNED[vc.get(ValueLayout.JAVA_BYTE, from + i) & 0xFF] * vAmax);
        }
        kernels.adamw(p.asSlice(from * 4, len * 4L), g.asSlice(from * 4, len * 4L), m, v, 0, len, c);
        s.mAbsmax().segment().setAtIndex(Tensor.F32_LE, block, requantize(SIGNED, m, len, mc, from));
        s.vAbsmax().segment().setAtIndex(Tensor.F32_LE, block, requantize(UNSIGNED, v, len, vc, from));
    }

    /** Codes {@code len} values of {@code x} against their absmax, which it returns. */
    private static float requantize(float[] map, MemorySegment x, int len, MemorySegment codes, long at) {
        float amax = 0f;
        for (int i = 0; i < len; i++) amax = Math.max(amax, Math.abs(x.getAtIndex(Tensor.F32_LE, i)));
        // A non-finite moment (a diverged run: its loss stops the run at the next step) has no code; keep zeros.
        boolean finite = Float.isFinite(amax);
        for (int i = 0; i < len; i++)
            codes.set(ValueLayout.JAVA_BYTE, at + i, finite ? (byte) DynamicMap.code(map, x.getAtIndex(Tensor.F32_LE, i), amax) : 0);
        return amax;
    }

    private State stateOf(Param p) {
        return byParam.computeIfAbsent(p.name(), name -> {
            Shape shape = p.value().shape();
            if (!quantized(p.elements())) return new State(allocate(M, name, DType.F32, shape), allocate(V, name, DType.F32, shape), null, null);
            Shape blocks = Shape.of(blocks(p.elements()));
            return new State(allocate(M, name, DType.U8, shape), allocate(V, name, DType.U8, shape),
                    allocate(M_ABSMAX, name, DType.F32, blocks), allocate(V_ABSMAX, name, DType.F32, blocks));
        });
    }

    private Tensor allocate(String kind, String param, DType dtype, Shape shape) {
        return Tensor.allocate(ledger, Category.OPTIMIZER, kind + "/" + param, dtype, shape);
    }

    /** As StateStore.checkParams: same parameters every step, matching shapes, F32 only. */
    private void checkParams(List<Param> params) {
        ensureOpen();
        Set<String> seen = new HashSet<>();
        for (Param p : params) {
            if (!seen.add(p.name())) throw new IllegalArgumentException("parameter " + p.name() + " is passed twice");
            if (p.value().dtype() != DType.F32)
                throw new IllegalArgumentException("parameter " + p.name() + " is " + p.value().dtype() + "; 8-bit AdamW updates F32 parameters");
            State s = byParam.get(p.name());
            if (s == null) {
                if (steps > 0)
                    throw new IllegalArgumentException("optimizer state has no entry " + M + "/" + p.name() + " for parameter " + p.name()
                            + ", but " + steps + " steps were taken (pass the same trainable parameters every step; a resumed checkpoint must cover them all)");
                continue;
            }
            if (!s.m().shape().equals(p.value().shape()))
                throw new IllegalArgumentException("optimizer state " + M + "/" + p.name() + " has shape " + s.m().shape()
                        + " but parameter " + p.name() + " has shape " + p.value().shape());
        }
        if (checkLeftovers) {
            for (String name : byParam.keySet())
                if (!seen.contains(name)) throw new IllegalArgumentException("optimizer state " + M + "/" + name + " matches no parameter given to step");
            checkLeftovers = false;
        }
    }

    @Override
    public long steps() { return steps; }

    @Override
    public Map<String, Tensor> state() {
        ensureOpen();
        Map<String, Tensor> out = new LinkedHashMap<>();
        for (int k = 0; k < KINDS.size(); k++)
            for (Map.Entry<String, State> e : byParam.entrySet()) {
                Tensor t = e.getValue().get(k);
                if (t != null) out.put(KINDS.get(k) + "/" + e.getKey(), t);
            }
        return Collections.unmodifiableMap(out);
    }

    @Override
    public void loadState(Map<String, Tensor> state, long steps) {
        ensureOpen();
        if (steps < 0) throw new IllegalArgumentException("optimizer steps must be >= 0, got " + steps);
        Map<String, Tensor[]> incoming = new LinkedHashMap<>();
        for (Map.Entry<String, Tensor> e : state.entrySet()) {
            String key = e.getKey();
            int slash = key.indexOf('/');
            int kind = slash < 0 ? -1 : KINDS.indexOf(key.substring(0, slash));
            if (kind < 0)
                throw new IllegalArgumentException("unknown optimizer state entry '" + key + "' (expected " + String.join("/<param>, ", KINDS) + "/<param>)");
            if (e.getValue() == null) throw new IllegalArgumentException("optimizer state entry " + key + " is null");
            incoming.computeIfAbsent(key.substring(slash + 1), n -> new Tensor[KINDS.size()])[kind] = e.getValue();
        }
        for (Map.Entry<String, Tensor[]> e : incoming.entrySet()) check(e.getKey(), e.getValue());
        // Copy first, free the old state after: the caller may pass this optimizer's own state() back in.
        Map<String, State> copied = new LinkedHashMap<>();
        for (Map.Entry<String, Tensor[]> e : incoming.entrySet()) {
            Tensor[] t = e.getValue();
            Tensor[] c = new Tensor[4];
            for (int k = 0; k < 4; k++) {
                if (t[k] == null) continue;
                c[k] = allocate(KINDS.get(k), e.getKey(), t[k].dtype(), t[k].shape());
                c[k].segment().copyFrom(t[k].segment());
            }
            copied.put(e.getKey(), new State(c[0], c[1], c[2], c[3]));
        }
        freeAll();
        byParam.putAll(copied);
        this.steps = steps;
        checkLeftovers = true;
    }

    /** One parameter's loaded entries: the layout its element count implies, and values a state can hold. */
    private static void check(String param, Tensor[] t) {
        for (int k = 0; k < 2; k++)
            if (t[k] == null) throw new IllegalArgumentException("optimizer state is missing entry " + KINDS.get(k) + "/" + param);
        Shape shape = t[0].shape();
        if (!t[1].shape().equals(shape))
            throw new IllegalArgumentException("optimizer state entry " + V + "/" + param + " has shape " + t[1].shape() + " but "
                    + M + "/" + param + " has shape " + shape);
        boolean q = quantized(shape.elements());
        DType moments = q ? DType.U8 : DType.F32;
        for (int k = 0; k < 2; k++)
            if (t[k].dtype() != moments)
                throw new IllegalArgumentException("optimizer state entry " + KINDS.get(k) + "/" + param + " is " + t[k].dtype() + ", expected "
                        + moments + " for a parameter of " + shape.elements() + " elements (8-bit states from " + MIN_8BIT_SIZE + " elements on)");
        Shape blocks = Shape.of(blocks(shape.elements()));
        for (int k = 2; k < 4; k++) {
            String key = KINDS.get(k) + "/" + param;
            if (!q) {
                if (t[k] != null) throw new IllegalArgumentException("optimizer state entry " + key + " is not expected: a parameter of "
                        + shape.elements() + " elements keeps 32-bit states (8-bit from " + MIN_8BIT_SIZE + " elements on)");
                continue;
            }
            if (t[k] == null) throw new IllegalArgumentException("optimizer state is missing entry " + key);
            if (t[k].dtype() != DType.F32 || !t[k].shape().equals(blocks))
                throw new IllegalArgumentException("optimizer state entry " + key + " is " + t[k].dtype() + t[k].shape() + ", expected F32"
                        + blocks + " (one absmax per block of " + BLOCK + ")");
            for (long i = 0; i < t[k].elements(); i++)
                if (!(t[k].getFloat(i) >= 0))
                    throw new IllegalArgumentException("optimizer state entry " + key + " has a negative absmax at block " + i);
        }
        // A second moment is a mean of squares: a negative one is damage, and its square root would be NaN.
        if (!q)
            for (long i = 0, n = t[1].elements(); i < n; i++)
                if (t[1].getFloat(i) < 0) throw new IllegalArgumentException("optimizer state entry " + V + "/" + param
                        + " has negative values (a second moment is never negative)");
    }

    @Override
    public void loadState(Map<String, Tensor> state, long steps, List<Param> params) {
        loadState(state, steps);
        checkParams(params);
    }

    private void freeAll() {
        List<State> all = new ArrayList<>(byParam.values());
        byParam.clear();
        for (State s : all) s.close();
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
