// ShardLayout: units follow the blocks, and every rank's pieces tile each tensor exactly once.
package dev.llamafit.model;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;

import java.util.List;

import org.junit.jupiter.api.Test;

import dev.llamafit.tensor.DType;
import dev.llamafit.tensor.Shape;
import dev.llamafit.tensor.TensorSpec;

class ShardLayoutTest {
    private static final LlamaConfig STORIES = RandomModels.stories15M();

    @Test
    void fullModelUnitsAreEmbedBlocksAndHead() {
        ShardLayout layout = ShardLayout.of(ParameterLayout.of(STORIES, DType.F32).specs(), 3);
        List<ShardLayout.Unit> u = layout.units();
        assertEquals(STORIES.numLayers() + 2, u.size());
        assertEquals("embed", u.getFirst().name());
        assertEquals("block.0", u.get(1).name());
        assertEquals(0, u.get(1).layer());
        assertEquals("head", u.getLast().name());
        assertEquals(ParameterLayout.of(STORIES, DType.F32).parameterCount(), layout.elements());
        // A block: 2 norms + 7 matrices.
        assertEquals(9, u.get(1).specs().size());
        assertEquals(u.get(1).elements(), layout.largestBlock());
    }

    @Test
    void piecesOfAllRanksTileEveryTensorOnce() {
        for (int ranks : new int[] {1, 2, 3, 4, 7}) {
            ShardLayout layout = ShardLayout.of(ParameterLayout.of(STORIES, DType.F32).specs(), ranks);
            long owned = 0;
            for (ShardLayout.Unit unit : layout.units()) {
                long[] covered = new long[unit.specs().size()];
                for (int r = 0; r < ranks; r++) {
                    long expectShardOffset = 0;
                    for (ShardLayout.Piece p : unit.pieces(r, ranks)) {
                        int i = unit.specs().indexOf(p.spec());
                        assertEquals(covered[i], p.from(), "pieces continue where the previous rank stopped");
                        assertEquals(expectShardOffset, p.shardOffset());
                        covered[i] += p.length();
                        expectShardOffset += p.length();
                    }
                    assertEquals(unit.owned(r, ranks), expectShardOffset);
                    owned += unit.owned(r, ranks);
                }
                for (int i = 0; i < covered.length; i++) assertEquals(unit.specs().get(i).elements(), covered[i]);
            }
            assertEquals(layout.elements(), owned);
            long sumOwned = 0;
            for (int r = 0; r < ranks; r++) sumOwned += layout.owned(r);
            assertEquals(layout.elements(), sumOwned);
        }
    }

    @Test
    void shardIsCeilingAndTheLastRankHoldsTheRemainder() {
        TensorSpec a = new TensorSpec("model.layers.0.a", Shape.of(5), DType.F32, "norm");
        TensorSpec b = new TensorSpec("model.layers.0.b", Shape.of(2), DType.F32, "norm");
        ShardLayout.Unit u = ShardLayout.of(List.of(a, b), 4).units().getFirst();
        assertEquals(7, u.elements());
        assertEquals(2, u.shard(4));
        assertEquals(List.of(2L, 2L, 2L, 1L), List.of(u.owned(0, 4), u.owned(1, 4), u.owned(2, 4), u.owned(3, 4)));
        // Rank 2 owns a[4] and b[0].
        List<ShardLayout.Piece> p = u.pieces(2, 4);
        assertEquals(2, p.size());
        assertEquals(new ShardLayout.Piece(a, 4, 1, 0), p.get(0));
        assertEquals(new ShardLayout.Piece(b, 0, 1, 1), p.get(1));
        // 3 elements over 4 ranks: the last rank owns nothing.
        ShardLayout.Unit small = ShardLayout.of(List.of(new TensorSpec("x", Shape.of(3), DType.F32, "norm")), 4).units().getFirst();
        assertEquals(0, small.owned(3, 4));
        assertEquals(List.of(), small.pieces(3, 4));
    }

    @Test
    void loraAdaptersGroupByBlock() {
        Technique lora = Technique.lora(new LoraConfig(4, 8, 0, List.of("q_proj", "v_proj"), false));
        List<TensorSpec> adapters = TrainingLayout.of(STORIES, 1, 8, lora).adapterSpecs();
        ShardLayout layout = ShardLayout.of(adapters, 2);
        assertEquals(STORIES.numLayers(), layout.units().size());
        for (int l = 0; l < STORIES.numLayers(); l++) {
            assertEquals("block." + l, layout.units().get(l).name());
            assertEquals(4, layout.units().get(l).specs().size());
        }
    }

    @Test
    void refusesABlockSplitInTwo() {
        TensorSpec a = new TensorSpec("model.layers.0.a", Shape.of(2), DType.F32, "norm");
        TensorSpec b = new TensorSpec("model.layers.1.b", Shape.of(2), DType.F32, "norm");
        assertThrows(IllegalArgumentException.class, () -> ShardLayout.of(List.of(a, b, a), 2));
    }

    @Test
    void layerIndexComesFromHuggingFaceAndPeftNames() {
        assertEquals(12, ShardLayout.layerOf("model.layers.12.mlp.up_proj.weight"));
        assertEquals(3, ShardLayout.layerOf("base_model.model.model.layers.3.self_attn.q_proj.lora_A.weight"));
        assertEquals(-1, ShardLayout.layerOf("model.embed_tokens.weight"));
        assertEquals(-1, ShardLayout.layerOf("model.norm.weight"));
        assertEquals(-1, ShardLayout.layerOf("xlayers.3.a"));
    }
}
