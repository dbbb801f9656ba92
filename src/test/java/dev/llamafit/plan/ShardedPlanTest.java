// The per-rank plan of ZeRO stages on a model whose blocks dominate (Llama 2 7B): model states fall stage by stage and with the rank count.
package dev.llamafit.plan;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.Locale;

import org.junit.jupiter.api.Test;

import dev.llamafit.io.ModelPresets;
import dev.llamafit.memory.Category;
import dev.llamafit.model.LlamaConfig;
import dev.llamafit.model.ParameterLayout;
import dev.llamafit.model.ShardLayout;
import dev.llamafit.model.Sharding;
import dev.llamafit.model.Technique;
import dev.llamafit.tensor.DType;

/**
 * DataParallelTrainingTest shows, under mpirun, that each rank's ledger equals this plan on tinystories-656k, whose tied
 * embedding is 40% of Ψ, so there stages 2-3 (which keep the units outside the blocks whole) do not fall below stage 1.
 * On Llama 2 7B's shape (embedding and LM head 3.9% of Ψ) the same sums fall as the ZeRO paper says: 16Ψ → 4Ψ + 4Ψ + 8Ψ/N →
 * 4Ψ + 4Ψ/N + 8Ψ/N (+ one block's bucket and the units outside the blocks) → (4 + 4 + 8)Ψ/N (+ gathered buffers).
 */
class ShardedPlanTest {
    private static final LlamaConfig C = ModelPresets.load("llama-2-7b");

    private static long modelStates(MemoryPlan p) {
        return p.categoryPeak(Category.WEIGHTS) + p.categoryPeak(Category.MASTER_WEIGHTS) + p.categoryPeak(Category.GRADIENTS)
                + p.categoryPeak(Category.OPTIMIZER);
    }

    @Test
    void fp32AdamWModelStatesPerRankAreTheZeroFormulas() {
        var specs = ParameterLayout.of(C, DType.F32).specs();
        for (int n : new int[] {2, 4, 8}) {
            ShardLayout l = ShardLayout.of(specs, n);
            long psi = l.elements(), outside = 0, outsideGathered = 0;
            for (ShardLayout.Unit u : l.units())
                if (u.layer() < 0) {
                    outside += u.elements();
                    outsideGathered += u.gathered(n);
                }
            assertTrue(outside * 20 < psi, "Llama 2 7B's embedding and head are under a twentieth of Ψ");
            long previous = Long.MAX_VALUE;
            for (int stage = 0; stage <= 3; stage++) {
                int rank = n - 1; // the last rank holds the least (padding), the others the shard
                MemoryPlan p = Planner.plan(C, Technique.FULL, 1, 64, Devices.cpu(64L << 30, 2), new Sharding(n, rank, stage));
                long weights = 4 * (stage < 3 ? psi : l.shardElements() + outsideGathered + 2 * l.largestGatheredBlock());
                long gradients = 4 * (stage < 2 ? psi : l.shardElements() + l.largestBlock() + outside);
                long optimizer = 8 * (stage < 1 ? psi : l.owned(rank));
                assertEquals(weights, p.categoryPeak(Category.WEIGHTS), "weights, stage " + stage + ", N " + n);
                assertEquals(gradients, p.categoryPeak(Category.GRADIENTS), "gradients, stage " + stage + ", N " + n);
                assertEquals(optimizer, p.categoryPeak(Category.OPTIMIZER), "optimizer, stage " + stage + ", N " + n);
                long states = modelStates(p);
                System.out.printf(Locale.ROOT, "llama-2-7b ZeRO-%d on %d ranks: model states %.2f GiB per rank (%.3f × 16Ψ)%n", stage, n,
                        states / 1073741824.0, states / (16.0 * psi));
                assertTrue(states < previous, "stage " + stage + " on " + n + " ranks holds less than stage " + (stage - 1));
                previous = states;
            }
            if (n == 8) assertTrue(previous < 16 * psi / 4, "ZeRO-3 on 8 ranks: under a quarter of 16Ψ, got " + previous);
        }
    }
}
