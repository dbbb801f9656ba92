// The key/value cache for incremental decoding, filed under the ledger's kv_cache category.
package dev.llamafit.model;

import dev.llamafit.memory.Category;
import dev.llamafit.memory.MemoryLedger;
import dev.llamafit.nn.Attention;
import dev.llamafit.tensor.DType;
import dev.llamafit.tensor.Shape;
import dev.llamafit.tensor.Tensor;

/**
 * Keys and values of every layer for B sequences, up to {@code capacity} positions:
 * two tensors [L, B, KvH, capacity, D] (fp32). All sequences advance together.
 */
public final class KvCache implements AutoCloseable {
    private final LlamaConfig config;
    private final int batch;     // B
    private final int capacity;  // positions held
    private final Tensor keys;   // [L, B, KvH, capacity, D]
    private final Tensor values; // [L, B, KvH, capacity, D]
    private int length;

    public KvCache(MemoryLedger ledger, LlamaConfig config, int batch, int capacity) {
        if (capacity <= 0 || capacity > config.maxPositions())
            throw new IllegalArgumentException("KV cache capacity " + capacity + " outside 1.." + config.maxPositions()
                    + " (max_position_embeddings)");
        this.config = config;
        this.batch = batch;
        this.capacity = capacity;
        Shape shape = shape(config, batch, capacity);
        this.keys = Tensor.allocate(ledger, Category.KV_CACHE, "kv_cache.keys", DType.F32, shape);
        this.values = Tensor.allocate(ledger, Category.KV_CACHE, "kv_cache.values", DType.F32, shape);
    }

    public static Shape shape(LlamaConfig config, int batch, int capacity) {
        return Shape.of(config.numLayers(), batch, config.numKvHeads(), capacity, config.headDim());
    }

    /** Bytes a cache of this size takes (both tensors). */
    public static long bytes(LlamaConfig config, int batch, int capacity) {
        return Math.multiplyExact(2L, DType.F32.bytesFor(shape(config, batch, capacity).elements()));
    }

    public int batch() { return batch; }

    public int capacity() { return capacity; }

    /** Positions filled so far. */
    public int length() { return length; }

    void advance(int tokens) { length += tokens; }

    /** Forgets everything (keeps the memory). */
    public void reset() { length = 0; }

    long layerOffset(int layer) { return (long) layer * batch * config.numKvHeads() * capacity * config.headDim(); }

    Attention.KvView keyView(int layer) { return view(keys, layer); }

    Attention.KvView valueView(int layer) { return view(values, layer); }

    private Attention.KvView view(Tensor t, int layer) {
        int d = config.headDim();
        long strideH = (long) capacity * d;
        return new Attention.KvView(t.segment(), layerOffset(layer), strideH * config.numKvHeads(), strideH, d);
    }

    @Override
    public void close() {
        keys.close();
        values.close();
    }
}
