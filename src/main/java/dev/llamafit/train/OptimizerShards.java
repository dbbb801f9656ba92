// ZeRO stage 1: this rank steps the optimizer on its shard of every unit (ShardLayout), then all-gathers the updated weights.
package dev.llamafit.train;

import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

import dev.llamafit.dist.Collectives;
import dev.llamafit.memory.Category;
import dev.llamafit.memory.MemoryLedger;
import dev.llamafit.model.ShardLayout;
import dev.llamafit.optim.Optimizer;
import dev.llamafit.optim.Param;
import dev.llamafit.tensor.DType;
import dev.llamafit.tensor.Shape;
import dev.llamafit.tensor.Tensor;
import dev.llamafit.tensor.TensorSpec;

/**
 * The trainable tensors are split as {@link ShardLayout} says: per unit (embed, each block, head) one flat range per rank.
 * The optimizer is handed views of this rank's {@link ShardLayout.Piece pieces} only (the tensors' names, flat shapes), so it
 * allocates its state for them alone: each rank's optimizer memory is its shard's, about 1/size of stage 0's. The
 * gradients are already the global sum on every rank, and AdamW and SGD are element-wise, so the updated pieces are bit
 * for bit stage 0's; the all-gather moves bytes without arithmetic, so every rank ends with the same weights stage 0
 * would have. A unit goes through two staging buffers filed under workspace (this rank's padded shard, and the gathered
 * unit), because its tensors are separate allocations.
 */
final class OptimizerShards implements AutoCloseable {
    private final Collectives collectives;
    private final ShardLayout layout;
    private final Map<String, Param> byName = new LinkedHashMap<>();
    private final List<Param> shards = new ArrayList<>();
    private final Tensor shardStage;  // one unit's padded shard
    private final Tensor unitStage;   // one whole unit

    OptimizerShards(Collectives collectives, List<Param> params, MemoryLedger ledger) {
        this.collectives = collectives;
        List<TensorSpec> specs = new ArrayList<>();
        for (Param p : params) {
            if (p.value().dtype() != DType.F32)
                throw new IllegalStateException("parameter " + p.name() + ": ZeRO stage 1 shards fp32 parameters, got " + p.value().dtype());
            specs.add(new TensorSpec(p.name(), p.value().shape(), DType.F32, "trainable"));
            byName.put(p.name(), p);
        }
        this.layout = ShardLayout.of(specs, collectives.size());
        for (ShardLayout.Unit u : layout.units())
            for (ShardLayout.Piece piece : u.pieces(collectives.rank(), collectives.size())) {
                Param p = byName.get(piece.spec().name());
                shards.add(new Param(p.name(), slice(p.value(), piece), slice(p.grad(), piece), p.decay()));
            }
        long shard = 0, unit = 0;
        for (ShardLayout.Unit u : layout.units()) {
            shard = Math.max(shard, u.shard(collectives.size()));
            unit = Math.max(unit, u.elements());
        }
        this.shardStage = Tensor.allocate(ledger, Category.WORKSPACE, "zero.shard_stage", DType.F32, Shape.of(shard));
        try {
            this.unitStage = Tensor.allocate(ledger, Category.WORKSPACE, "zero.unit_stage", DType.F32, Shape.of(unit));
        } catch (RuntimeException e) {
            shardStage.close();
            throw e;
        }
    }

    private static Tensor slice(Tensor t, ShardLayout.Piece piece) {
        return new Tensor(t.name(), DType.F32, Shape.of(piece.length()),
                t.segment().asSlice(piece.from() * Float.BYTES, piece.length() * Float.BYTES));
    }

    /** The views this rank's optimizer steps. */
    List<Param> mine() { return shards; }

    /** The partition. */
    ShardLayout layout() { return layout; }

    /** One optimizer step on this rank's shards, then every parameter gathered whole on every rank. */
    void step(Optimizer optimizer, double lr) {
        // Every rank must step (one step counter serves all its shards); only a model of scalars could leave one none.
        if (shards.isEmpty()) throw new IllegalStateException("rank " + collectives.rank() + " holds no shard of any parameter");
        optimizer.step(shards, lr);
        for (ShardLayout.Unit u : layout.units()) gatherUnit(u, p -> byName.get(p.spec().name()).value(), (spec, whole) -> {
            Tensor dst = byName.get(spec.name()).value();
            java.lang.foreign.MemorySegment.copy(whole, 0, dst.segment(), 0, dst.bytes());
        });
    }

    /** Where a piece's values come from, and what is done with each gathered tensor. */
    private interface Source { Tensor of(ShardLayout.Piece piece); }
    private interface Sink { void accept(TensorSpec spec, java.lang.foreign.MemorySegment whole); }

    /**
     * Collective: unit {@code u} gathered from every rank's pieces (a piece's values are {@code source}'s tensor at the
     * piece's range: a whole tensor, or this rank's piece of it), then each of its tensors handed to {@code sink}.
     */
    private void gatherUnit(ShardLayout.Unit u, Source source, Sink sink) {
        int rank = collectives.rank(), size = collectives.size();
        var stage = shardStage.segment();
        stage.fill((byte) 0); // the padding past the unit's end
        for (ShardLayout.Piece piece : u.pieces(rank, size)) {
            Tensor src = source.of(piece);
            long srcFrom = src.elements() == piece.length() ? 0 : piece.from();
            java.lang.foreign.MemorySegment.copy(src.segment(), srcFrom * Float.BYTES, stage, piece.shardOffset() * Float.BYTES,
                    piece.length() * Float.BYTES);
        }
        collectives.allGather(stage, u.elements(), unitStage.segment());
        for (int i = 0; i < u.specs().size(); i++) {
            TensorSpec spec = u.specs().get(i);
            sink.accept(spec, unitStage.segment().asSlice(u.offsets()[i] * Float.BYTES, spec.bytes()));
        }
    }

    /**
     * The optimizer state whole, for a checkpoint: every entry "kind/param" gathered from the ranks' shards into a tensor
     * of the parameter's shape, allocated under WORKSPACE (the checkpoint's temporary, not the optimizer's held state).
     * Collective: every rank calls it at the same step; the caller closes the tensors.
     */
    List<Tensor> gatherState(Optimizer optimizer, MemoryLedger ledger) {
        Map<String, Tensor> state = optimizer.state();
        List<String> kinds = new ArrayList<>();
        for (String key : state.keySet()) {
            String kind = key.substring(0, key.indexOf('/'));
            if (!kinds.contains(kind)) kinds.add(kind);
        }
        List<Tensor> out = new ArrayList<>();
        try {
            for (String kind : kinds)
                for (ShardLayout.Unit u : layout.units())
                    gatherUnit(u, piece -> {
                        Tensor part = state.get(kind + "/" + piece.spec().name());
                        if (part == null || part.dtype() != DType.F32 || part.elements() != piece.length())
                            throw new IllegalStateException("optimizer state " + kind + "/" + piece.spec().name() + " is not this rank's fp32 piece: " + part);
                        return part;
                    }, (spec, whole) -> {
                        Tensor t = Tensor.allocate(ledger, Category.WORKSPACE, kind + "/" + spec.name(), DType.F32, spec.shape());
                        out.add(t);
                        java.lang.foreign.MemorySegment.copy(whole, 0, t.segment(), 0, t.bytes());
                    });
        } catch (RuntimeException e) {
            out.forEach(Tensor::close);
            throw e;
        }
        // In parameter order, kind by kind (the order a stage-0 optimizer's state() has).
        return out;
    }

    @Override
    public void close() {
        shardStage.close();
        unitStage.close();
    }
}
