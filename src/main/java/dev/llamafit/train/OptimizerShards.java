// ZeRO stages 1-3: this rank steps the optimizer on its shard of every unit (ShardLayout); stages 1-2 then all-gather the weights.
package dev.llamafit.train;

import java.util.ArrayList;
import java.util.List;

import dev.llamafit.dist.Collectives;
import dev.llamafit.model.ShardLayout;
import dev.llamafit.optim.Optimizer;
import dev.llamafit.optim.Param;
import dev.llamafit.tensor.DType;
import dev.llamafit.tensor.Shape;
import dev.llamafit.tensor.Tensor;

/**
 * The trainable tensors are split as {@link ShardLayout} says: per unit (embed, each block, head) one flat range per rank.
 * The optimizer is handed views of this rank's {@link ShardLayout.Piece pieces} only (the tensors' names, flat shapes), so it
 * allocates its state for them alone: each rank's optimizer memory is its shard's, about 1/size of stage 0's. The pieces
 * are views into {@link ZeroState}'s flat buffers: at stage 1 into the whole values and the all-reduced whole gradients,
 * at stage 2 into the whole values and this rank's gradient shards, at stage 3 into the value and gradient shards. AdamW
 * and SGD are element-wise, so the updated pieces are bit for bit what stage 0 computes from the same gradients; stages
 * 1-2 then all-gather each unit (bytes moved without arithmetic), stage 3 leaves the shards for the next forward to gather.
 */
final class OptimizerShards {
    private final Collectives collectives;
    private final ZeroState zero;
    private final ShardLayout layout;
    private final List<Param> shards = new ArrayList<>();

    /** @param decay whether weight decay applies to the tensor of each name */
    OptimizerShards(Collectives collectives, ZeroState zero, java.util.function.Predicate<String> decay) {
        this.collectives = collectives;
        this.zero = zero;
        this.layout = zero.layout;
        int rank = collectives.rank(), size = collectives.size(), stage = zero.stage();
        for (int i = 0; i < layout.units().size(); i++) {
            ShardLayout.Unit u = layout.units().get(i);
            long base = u.from(rank, size);
            for (ShardLayout.Piece piece : u.pieces(rank, size)) {
                Tensor value = zero.valuesSharded() ? slice(zero.values[i], piece.shardOffset(), piece)
                        : slice(zero.values[i], base + piece.shardOffset(), piece);
                Tensor grad = stage >= 2 ? slice(zero.gradShards[i], piece.shardOffset(), piece)
                        : slice(zero.grads[i], base + piece.shardOffset(), piece);
                shards.add(new Param(piece.spec().name(), value, grad, decay.test(piece.spec().name())));
            }
        }
    }

    private static Tensor slice(Tensor flat, long at, ShardLayout.Piece piece) {
        return new Tensor(piece.spec().name(), DType.F32, Shape.of(piece.length()),
                flat.segment().asSlice(at * Float.BYTES, piece.length() * Float.BYTES));
    }

    /** The views this rank's optimizer steps. */
    List<Param> mine() { return shards; }

    /** The partition. */
    ShardLayout layout() { return layout; }

    /** One optimizer step on this rank's shards, then (stages 1-2) every unit gathered whole on every rank. */
    void step(Optimizer optimizer, double lr) {
        // Every rank must step (one step counter serves all its shards); only a model of scalars could leave one none.
        if (shards.isEmpty()) throw new IllegalStateException("rank " + collectives.rank() + " holds no shard of any parameter");
        optimizer.step(shards, lr);
        zero.afterUpdate();
    }
}
