// The tensors a quantised linear layer is held in (bitsandbytes' keys), their exact sizes, and quantisation on load.
package dev.llamafit.quant;

import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

import dev.llamafit.memory.MemoryLedger;
import dev.llamafit.tensor.DType;
import dev.llamafit.tensor.Shape;
import dev.llamafit.tensor.Tensor;
import dev.llamafit.tensor.TensorSpec;

/**
 * One place that knows which tensors an int8 or NF4 linear layer consists of, so that loading, quantising, saving and
 * the planner agree byte for byte. A module {@code P} (e.g. {@code model.layers.0.self_attn.q_proj}) holds, under the
 * keys transformers writes for bitsandbytes:
 * <ul>
 * <li>int8 ({@link Int8}): {@code P.weight} I8 [out, in], {@code P.SCB} F32 [out], {@code P.weight_format} U8 [];
 * <li>NF4 ({@link Nf4}): {@code P.weight} U8 [⌈n/2⌉, 1], {@code P.weight.absmax} (F32 [blocks], or U8 [blocks] when
 *     double-quantised), {@code P.weight.quant_map} F32 [16], and when double-quantised {@code P.weight.nested_absmax}
 *     F32 [⌈blocks/256⌉] and {@code P.weight.nested_quant_map} F32 [256].
 * </ul>
 * NF4's {@code P.weight.quant_state.bitsandbytes__nf4} is a JSON string (shape, block sizes, the nested offset). It is
 * metadata, like config.json, and is held on the Java heap rather than in a ledger buffer: its length depends on how the
 * offset prints, so no plan could predict it, and it is a few hundred bytes per module.
 */
public final class QuantizedWeights {
    private QuantizedWeights() {}

    /** The ledger-held tensors of module {@code prefix} with an [out, in] weight quantised as {@code q}. */
    public static List<TensorSpec> specs(Quantization q, String prefix, long out, long in) {
        List<TensorSpec> s = new ArrayList<>();
        String w = prefix + ".weight";
        if (q.kind() == Quantization.Kind.INT8) {
            s.add(new TensorSpec(w, Shape.of(out, in), DType.I8, "weights"));
            s.add(new TensorSpec(prefix + "." + Int8.SCB, Shape.of(out), DType.F32, "weights"));
            s.add(new TensorSpec(prefix + "." + Int8.WEIGHT_FORMAT, Shape.of(), DType.U8, "weights"));
            return s;
        }
        long n = Math.multiplyExact(out, in), blocks = (n + Nf4.BLOCK - 1) / Nf4.BLOCK;
        s.add(new TensorSpec(w, Shape.of((n + 1) / 2, 1), DType.U8, "weights"));
        s.add(new TensorSpec(w + ".absmax", Shape.of(blocks), q.doubleQuant() ? DType.U8 : DType.F32, "weights"));
        s.add(new TensorSpec(w + ".quant_map", Shape.of(16), DType.F32, "weights"));
        if (q.doubleQuant()) {
            s.add(new TensorSpec(w + ".nested_absmax", Shape.of((blocks + Nf4.NESTED_BLOCK - 1) / Nf4.NESTED_BLOCK), DType.F32, "weights"));
            s.add(new TensorSpec(w + ".nested_quant_map", Shape.of(256), DType.F32, "weights"));
        }
        return s;
    }

    /** The heap-held metadata key of module {@code prefix} (NF4's quant_state), or null (int8 has none). */
    public static String metadataKey(Quantization q, String prefix) {
        return q.kind() == Quantization.Kind.NF4 ? prefix + ".weight" + Nf4.QUANT_STATE : null;
    }

    /**
     * {@code weight} (F32, BF16 or F16 [out, in]) quantised as {@code q}: the tensors of {@link #specs} allocated from
     * {@code ledger} (the caller owns and closes them), and NF4's quant_state on the heap. {@code weight} is only read.
     */
    public static Map<String, Tensor> quantize(Quantization q, Tensor weight, MemoryLedger ledger, String prefix) {
        if (q.kind() == Quantization.Kind.INT8) return Int8.quantize(weight, ledger, prefix);
        Map<String, Tensor> m = new LinkedHashMap<>(Nf4.quantize(weight, q.doubleQuant(), ledger, prefix));
        String key = metadataKey(q, prefix);
        Tensor state = m.get(key);
        m.put(key, onHeap(state));
        state.close();
        return m;
    }

    /**
     * Checks that the tensors stored for weight {@code weightKey} describe an [out, in] matrix quantised as {@code q}
     * (NF4: its quant_state parses and names that shape).
     *
     * @throws IllegalArgumentException naming what does not match
     */
    public static void check(Quantization q, Map<String, Tensor> w, String weightKey, long out, long in) {
        if (q.kind() != Quantization.Kind.NF4) return;
        long[] shape = Nf4Weight.of(w, weightKey).shape();
        if (shape.length != 2 || shape[0] != out || shape[1] != in)
            throw new IllegalArgumentException("its quant_state gives shape " + java.util.Arrays.toString(shape) + ", but config.json implies ["
                    + out + ", " + in + "]");
    }

    /** A heap copy of a small metadata tensor (the ledger holds tensor buffers, not strings). */
    public static Tensor onHeap(Tensor t) {
        return new Tensor(t.name(), t.dtype(), t.shape(), java.lang.foreign.MemorySegment.ofArray(t.segment().toArray(java.lang.foreign.ValueLayout.JAVA_BYTE)));
    }
}
