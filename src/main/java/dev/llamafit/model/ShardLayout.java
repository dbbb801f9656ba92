// How ZeRO splits the trainable tensors across ranks: flat units (the blocks, and what lies before and after them), each split evenly.
package dev.llamafit.model;

import java.util.ArrayList;
import java.util.List;

import dev.llamafit.tensor.TensorSpec;

/**
 * The trainable tensors, in their layout order, grouped into <b>units</b> as FSDP wraps a transformer: {@code embed} (what
 * comes before block 0: the token embedding), one unit per block (every tensor named {@code …layers.{l}.…}: its weights,
 * or its LoRA adapters), and {@code head} (what comes after the last block: the final norm and an untied LM head). A unit
 * is one flat buffer, its tensors concatenated in order; over {@code ranks} ranks it is split as {@code Collectives}
 * splits a buffer: rank r owns flat elements {@code [r·s, min((r+1)·s, n))} of it, s = ⌈n / ranks⌉.
 *
 * <p>Everything ZeRO allocates, gathers, reduce-scatters, steps and checkpoints is a unit or a rank's shard of one, so the
 * planner and the engine sum the same numbers, and a checkpoint's shards re-partition onto another number of ranks by
 * concatenating and re-splitting each unit. Pure arithmetic: no memory is touched here.
 */
public record ShardLayout(List<Unit> units, int ranks) {
    public ShardLayout {
        units = List.copyOf(units);
        if (ranks < 1) throw new IllegalArgumentException("ranks must be >= 1, got " + ranks);
    }

    /**
     * One flat unit.
     *
     * @param name    "embed", "block.{l}" or "head"
     * @param layer   the block index, or -1 for embed and head
     * @param specs   its tensors in flat order
     * @param offsets each tensor's first flat element within the unit
     */
    public record Unit(String name, int layer, List<TensorSpec> specs, long[] offsets) {
        public Unit {
            specs = List.copyOf(specs);
            if (specs.isEmpty()) throw new IllegalArgumentException("unit " + name + " has no tensors");
            if (offsets.length != specs.size()) throw new IllegalArgumentException("one offset per tensor");
        }

        /** Elements of the whole unit. */
        public long elements() { return offsets[offsets.length - 1] + specs.getLast().elements(); }

        /** Elements of each rank's shard of this unit over {@code ranks}: ⌈elements / ranks⌉ (the last may hold padding). */
        public long shard(int ranks) { return (elements() + ranks - 1) / ranks; }

        /** The first flat element rank {@code rank} owns (clamped to the unit's end). */
        public long from(int rank, int ranks) { return Math.min(elements(), rank * shard(ranks)); }

        /** Elements rank {@code rank} owns: its shard less any padding past the unit's end (0 for a rank past it). */
        public long owned(int rank, int ranks) { return Math.min(elements(), from(rank, ranks) + shard(ranks)) - from(rank, ranks); }

        /** Elements of the buffer an all-gather fills: every rank's padded shard, shard × ranks (views use the first elements()). */
        public long gathered(int ranks) { return Math.multiplyExact(shard(ranks), (long) ranks); }

        /** Per-tensor fp32 views of a flat buffer holding this unit (at least elements() values), by name, in flat order. */
        public java.util.Map<String, dev.llamafit.tensor.Tensor> views(java.lang.foreign.MemorySegment flat) {
            java.util.Map<String, dev.llamafit.tensor.Tensor> out = new java.util.LinkedHashMap<>();
            for (int i = 0; i < specs.size(); i++) {
                TensorSpec s = specs.get(i);
                out.put(s.name(), new dev.llamafit.tensor.Tensor(s.name(), dev.llamafit.tensor.DType.F32, s.shape(),
                        flat.asSlice(offsets[i] * Float.BYTES, s.elements() * Float.BYTES)));
            }
            return out;
        }

        /** The parts of this unit's tensors that rank {@code rank} owns, in flat order. */
        public List<Piece> pieces(int rank, int ranks) {
            long lo = from(rank, ranks), hi = lo + owned(rank, ranks);
            List<Piece> out = new ArrayList<>();
            for (int i = 0; i < specs.size(); i++) {
                long a = Math.max(lo, offsets[i]), b = Math.min(hi, offsets[i] + specs.get(i).elements());
                if (a < b) out.add(new Piece(specs.get(i), a - offsets[i], b - a, a - lo));
            }
            return out;
        }
    }

    /**
     * The part of one tensor that a rank owns.
     *
     * @param spec        the whole tensor
     * @param from        its first element (flat, row-major) in the piece
     * @param length      elements in the piece
     * @param shardOffset where the piece starts in the rank's shard of the unit
     */
    public record Piece(TensorSpec spec, long from, long length, long shardOffset) {}

    /**
     * The units of {@code trainable} (in layout order: a full model's {@link ParameterLayout}, or LoRA's
     * {@link TrainingLayout#adapterSpecs()}) over {@code ranks} ranks. Tensors of block l must be contiguous in the list.
     */
    public static ShardLayout of(List<TensorSpec> trainable, int ranks) {
        List<Unit> units = new ArrayList<>();
        List<TensorSpec> current = new ArrayList<>();
        String currentName = null;
        int currentLayer = -1;
        boolean seenBlock = false;
        for (TensorSpec s : trainable) {
            int layer = layerOf(s.name());
            String name = layer >= 0 ? "block." + layer : seenBlock ? "head" : "embed";
            if (layer >= 0) seenBlock = true;
            if (!name.equals(currentName)) {
                if (currentName != null) units.add(unit(currentName, currentLayer, current));
                for (Unit u : units)
                    if (u.name().equals(name)) throw new IllegalArgumentException("the tensors of " + name + " are not contiguous: " + s.name());
                current = new ArrayList<>();
                currentName = name;
                currentLayer = layer;
            }
            current.add(s);
        }
        if (currentName != null) units.add(unit(currentName, currentLayer, current));
        return new ShardLayout(units, ranks);
    }

    private static Unit unit(String name, int layer, List<TensorSpec> specs) {
        long[] offsets = new long[specs.size()];
        long at = 0;
        for (int i = 0; i < specs.size(); i++) {
            offsets[i] = at;
            at = Math.addExact(at, specs.get(i).elements());
        }
        return new Unit(name, layer, specs, offsets);
    }

    /** The block index in a name containing ".layers.{l}." (Hugging Face and PEFT names alike), else -1. */
    static int layerOf(String name) {
        int at = name.indexOf("layers.");
        if (at < 0 || at > 0 && name.charAt(at - 1) != '.') return -1;
        int start = at + "layers.".length(), end = start;
        while (end < name.length() && Character.isDigit(name.charAt(end))) end++;
        if (end == start || end == name.length() || name.charAt(end) != '.') return -1;
        return Integer.parseInt(name.substring(start, end));
    }

    /** Elements of every unit together (Ψ, the trainable parameter count). */
    public long elements() {
        long n = 0;
        for (Unit u : units) n = Math.addExact(n, u.elements());
        return n;
    }

    /** Elements rank {@code rank} owns across all units (its optimizer state holds this many values per kind). */
    public long owned(int rank) {
        long n = 0;
        for (Unit u : units) n = Math.addExact(n, u.owned(rank, ranks));
        return n;
    }

    /** Elements of rank shards across all units, padding included (the size of a rank's flat shard buffers). */
    public long shardElements() {
        long n = 0;
        for (Unit u : units) n = Math.addExact(n, u.shard(ranks));
        return n;
    }

    /** The largest block unit's elements (the buffer a gathered block, or a block's gradient bucket, needs); 0 if none. */
    public long largestBlock() {
        long n = 0;
        for (Unit u : units) if (u.layer() >= 0) n = Math.max(n, u.elements());
        return n;
    }

    /** The largest unit's shard over this layout's ranks (a buffer one reduce-scatter or all-gather of any unit fits). */
    public long largestShard() {
        long n = 0;
        for (Unit u : units) n = Math.max(n, u.shard(ranks));
        return n;
    }

    /** The largest block unit's gathered size (shard × ranks): ZeRO-3's buffer for one gathered block. */
    public long largestGatheredBlock() {
        long n = 0;
        for (Unit u : units) if (u.layer() >= 0) n = Math.max(n, u.gathered(ranks));
        return n;
    }

    /** Block units. */
    public int blocks() {
        int n = 0;
        for (Unit u : units) if (u.layer() >= 0) n++;
        return n;
    }

    /** This layout over another number of ranks (the same units): what a checkpoint re-partitions onto. */
    public ShardLayout withRanks(int ranks) { return new ShardLayout(units, ranks); }
}
