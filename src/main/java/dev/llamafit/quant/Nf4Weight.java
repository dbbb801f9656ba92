// An NF4 weight read back from bitsandbytes' tensors, dequantised a run of elements at a time (a GEMM pack source).
package dev.llamafit.quant;

import java.io.IOException;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.Map;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;

import dev.llamafit.kernels.PackSource;
import dev.llamafit.tensor.DType;
import dev.llamafit.tensor.Tensor;

/**
 * The tensors {@link Nf4#quantize} writes (or a pre-quantised bitsandbytes folder holds) under {@code P.weight}, seen as
 * the row-major fp32 matrix they encode, element (i) = quant_map[code(i)] · scale(i / blocksize). With double
 * quantisation the scale of block b is nested_quant_map[absmax[b]] · nested_absmax[b / nested_blocksize] + offset,
 * computed when the block is read, so no fp32 copy of the scales exists either. The maps are the stored ones (a folder
 * written elsewhere may carry a dynamic map that differs from {@link DynamicMap#signed()} in the last bit).
 * Reads are thread-safe: the tensors are only read.
 */
public final class Nf4Weight implements PackSource {
    private static final ObjectMapper JSON = new ObjectMapper();

    private final String name;
    private final long[] shape;
    private final long elements;
    private final int blockSize;
    private final MemorySegment codes;
    private final float[] levels;
    private final MemorySegment absmax;       // F32 [blocks], or U8 codes with double quantisation
    private final boolean nested;
    private final MemorySegment nestedAbsmax; // F32, double quantisation only
    private final float[] nestedMap;
    private final int nestedBlockSize;
    private final float offset;
    private final long bytes;

    private Nf4Weight(String name, long[] shape, int blockSize, MemorySegment codes, float[] levels, MemorySegment absmax,
                      MemorySegment nestedAbsmax, float[] nestedMap, int nestedBlockSize, float offset, long bytes) {
        this.name = name;
        this.shape = shape;
        long n = 1;
        for (long d : shape) n = Math.multiplyExact(n, d);
        this.elements = n;
        this.blockSize = blockSize;
        this.codes = codes;
        this.levels = levels;
        this.absmax = absmax;
        this.nested = nestedAbsmax != null;
        this.nestedAbsmax = nestedAbsmax;
        this.nestedMap = nestedMap;
        this.nestedBlockSize = nestedBlockSize;
        this.offset = offset;
        this.bytes = bytes;
    }

    /**
     * The NF4 weight stored under {@code weightKey} ({@code P.weight}) in {@code w}: its packed codes, absmax,
     * quant_map, the quant_state JSON and, when that names a double quantisation, nested_absmax and nested_quant_map.
     *
     * @throws IllegalArgumentException naming the key when a tensor is missing or its dtype or size does not match the
     *                                  quant_state, or the quant_state is not bitsandbytes' NF4 JSON
     */
    public static Nf4Weight of(Map<String, Tensor> w, String weightKey) {
        Tensor qs = need(w, weightKey + Nf4.QUANT_STATE, DType.U8, -1);
        byte[] json = qs.segment().toArray(ValueLayout.JAVA_BYTE);
        JsonNode state;
        try {
            state = JSON.readTree(json);
        } catch (IOException e) {
            throw new IllegalArgumentException(qs.name() + " is not JSON: " + e.getMessage());
        }
        if (state == null || !"nf4".equals(state.path("quant_type").asText()))
            throw new IllegalArgumentException(qs.name() + " does not describe an nf4 quantisation: " + new String(json, java.nio.charset.StandardCharsets.UTF_8));
        int blockSize = positiveInt(state, "blocksize", qs);
        if (blockSize % 2 != 0) throw new IllegalArgumentException(qs.name() + ": blocksize " + blockSize + " is odd");
        JsonNode dims = state.path("shape");
        if (!dims.isArray() || dims.isEmpty()) throw new IllegalArgumentException(qs.name() + " has no shape");
        long[] shape = new long[dims.size()];
        long n = 1;
        for (int i = 0; i < shape.length; i++) {
            if (!dims.get(i).canConvertToLong() || dims.get(i).asLong() <= 0)
                throw new IllegalArgumentException(qs.name() + ": bad shape " + dims);
            shape[i] = dims.get(i).asLong();
            n = Math.multiplyExact(n, shape[i]);
        }
        long blocks = Nf4.blocks(n, blockSize);
        Tensor codes = need(w, weightKey, DType.U8, (n + 1) / 2);
        Tensor quantMap = need(w, weightKey + ".quant_map", DType.F32, 16);
        long bytes = codes.bytes() + quantMap.bytes() + qs.bytes();
        if (!state.has("nested_offset")) {
            Tensor absmax = need(w, weightKey + ".absmax", DType.F32, blocks);
            return new Nf4Weight(weightKey, shape, blockSize, codes.segment(), quantMap.toFloatArray(), absmax.segment(),
                    null, null, 0, 0f, bytes + absmax.bytes());
        }
        int nestedBlock = positiveInt(state, "nested_blocksize", qs);
        if (!state.path("nested_offset").isNumber()) throw new IllegalArgumentException(qs.name() + ": nested_offset is not a number");
        Tensor absmax = need(w, weightKey + ".absmax", DType.U8, blocks);
        Tensor nestedAbsmax = need(w, weightKey + ".nested_absmax", DType.F32, Nf4.blocks(blocks, nestedBlock));
        Tensor nestedMap = need(w, weightKey + ".nested_quant_map", DType.F32, 256);
        return new Nf4Weight(weightKey, shape, blockSize, codes.segment(), quantMap.toFloatArray(), absmax.segment(),
                nestedAbsmax.segment(), nestedMap.toFloatArray(), nestedBlock, (float) state.path("nested_offset").asDouble(),
                bytes + absmax.bytes() + nestedAbsmax.bytes() + nestedMap.bytes());
    }

    private static Tensor need(Map<String, Tensor> w, String key, DType type, long elements) {
        Tensor t = w.get(key);
        if (t == null) throw new IllegalArgumentException("NF4 weight: missing tensor " + key);
        if (t.dtype() != type || (elements >= 0 && t.elements() != elements))
            throw new IllegalArgumentException("NF4 weight: " + t + " should be " + type + (elements >= 0 ? " with " + elements + " elements" : ""));
        return t;
    }

    private static int positiveInt(JsonNode state, String field, Tensor qs) {
        JsonNode v = state.path(field);
        if (!v.canConvertToInt() || v.asInt() <= 0) throw new IllegalArgumentException(qs.name() + ": " + field + " is not a positive integer");
        return v.asInt();
    }

    /** The weight key ({@code P.weight}). */
    public String name() { return name; }

    /** The original shape (the quant_state's), e.g. [out, in]. A fresh copy. */
    public long[] shape() { return shape.clone(); }

    public long elements() { return elements; }

    public boolean doubleQuantized() { return nested; }

    /** Bytes of every tensor this weight reads (codes, scales, maps, quant_state). */
    public long bytes() { return bytes; }

    /** The fp32 scale of block b (its absmax, decoded from the double quantisation if there is one). */
    public float scale(long block) {
        if (!nested) return absmax.getAtIndex(Tensor.F32_LE, block);
        int code = absmax.get(ValueLayout.JAVA_BYTE, block) & 0xFF;
        return nestedMap[code] * nestedAbsmax.getAtIndex(Tensor.F32_LE, block / nestedBlockSize) + offset;
    }

    /** Dequantises elements [index, index + count) of the row-major weight into dst[dstOff, +count). */
    @Override
    public void read(long index, int count, float[] dst, int dstOff) {
        if (index < 0 || count < 0 || index + count > elements)
            throw new IndexOutOfBoundsException("elements [" + index + ", " + (index + count) + ") of " + name + " (" + elements + ")");
        long i = index, end = index + count;
        int o = dstOff;
        while (i < end) {
            long block = i / blockSize;
            long stop = Math.min(end, (block + 1) * blockSize);
            float s = scale(block);
            if ((i & 1) != 0) dst[o++] = levels[codes.get(ValueLayout.JAVA_BYTE, i++ >> 1) & 0xF] * s;
            // Blocks hold an even count, so pairs never straddle a block: one byte, two elements.
            for (; i + 1 < stop; i += 2) {
                int b = codes.get(ValueLayout.JAVA_BYTE, i >> 1);
                dst[o++] = levels[(b >> 4) & 0xF] * s;
                dst[o++] = levels[b & 0xF] * s;
            }
            if (i < stop) dst[o++] = levels[(codes.get(ValueLayout.JAVA_BYTE, i++ >> 1) >> 4) & 0xF] * s;
        }
    }

    /** The whole weight dequantised into an F32 segment (tests, and converting a folder back to floats). */
    public void dequantize(MemorySegment dst) {
        float[] buf = new float[blockSize];
        for (long i = 0; i < elements; i += blockSize) {
            int len = (int) Math.min(blockSize, elements - i);
            read(i, len, buf, 0);
            MemorySegment.copy(buf, 0, dst, Tensor.F32_LE, i * 4, len);
        }
    }

    @Override
    public String toString() { return name + ":NF4" + java.util.Arrays.toString(shape) + (nested ? " (double quantised)" : ""); }
}
