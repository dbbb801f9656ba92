// Gradient checkpointing: same gradients as without it (full FT and LoRA), and the activation peak the layout states.
package dev.llamafit.model;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.file.Path;
import java.util.Arrays;
import java.util.List;
import java.util.Map;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

import com.fasterxml.jackson.databind.JsonNode;

import dev.llamafit.io.Json;
import dev.llamafit.io.ModelFolder;
import dev.llamafit.kernels.KernelBackends;
import dev.llamafit.kernels.Kernels;
import dev.llamafit.memory.Category;
import dev.llamafit.memory.MemoryLedger;
import dev.llamafit.tensor.Tensor;
import dev.llamafit.testing.SharedData;

class GradientCheckpointingTest {

    /** Gradients of one step with the given options, by name (copied out, the step is closed). */
    static Map<String, float[]> gradients(Path dir, Technique o, int[][] ids, int[][] labels, long counted) {
        Kernels k = KernelBackends.get();
        MemoryLedger ledger = new MemoryLedger();
        try (ModelFolder folder = ModelFolder.open(dir, ledger, k)) {
            Map<String, Tensor> w = TrainingStep.ownedCopy(folder.weights(), ledger);
            try (TrainingStep step = new TrainingStep(folder.config(), w, k, ledger, ids.length, ids[0].length, o, 5)) {
                if (o.lora() != null) LoraTrainingTest.randomizeAdapters(step, 17);
                step.zeroGradients();
                // Two steps: the second draws new dropout masks, and must draw the same ones in the recompute.
                step.forwardBackward(ids, labels, counted);
                step.forwardBackward(ids, labels, counted);
                Map<String, float[]> out = new java.util.LinkedHashMap<>();
                step.gradients().forEach((n, t) -> out.put(n, t.toFloatArray()));
                return out;
            } finally {
                w.values().forEach(Tensor::close);
            }
        }
    }

    @ParameterizedTest
    @ValueSource(strings = {"tiny-llama-gqa-tied", "tiny-llama3-untied", "tiny-qwen2", "tiny-mistral-window"})
    void checkpointingChangesNoGradient(String name) {
        Path dir = SharedData.fixture(name);
        JsonNode base = Json.read(dir.resolve("expected.json"));
        int[][] ids = SharedData.ints(base.get("input_ids")), labels = SharedData.ints(base.get("labels"));
        long counted = Arrays.stream(labels).flatMapToInt(Arrays::stream).filter(l -> l != -100).count();
        List<LoraConfig> modes = Arrays.asList(null, new LoraConfig(4, 8, 0, List.of("q_proj", "v_proj", "o_proj", "down_proj"), false),
                new LoraConfig(2, 4, 0.2, LinearModule.keys(), true));
        for (LoraConfig lc : modes) {
            Map<String, float[]> off = gradients(dir, Technique.of(lc), ids, labels, counted);
            for (int every : new int[] {1, 2}) {
                Map<String, float[]> on = gradients(dir, Technique.of(lc).withGradientCheckpointing(true, every), ids, labels, counted);
                assertEquals(off.keySet(), on.keySet());
                for (String n : off.keySet()) {
                    double scale = LoraTrainingTest.maxAbs(off.get(n)), err = SharedData.maxAbsDiff(off.get(n), on.get(n));
                    assertTrue(err <= 1e-6 * Math.max(scale, 1e-30), name + " " + (lc == null ? "full" : "LoRA " + lc.targets() + " p=" + lc.dropout())
                            + " every " + every + " d" + n + ": |Δ| = " + err + " (scale " + scale + ")");
                }
            }
        }
    }

    /**
     * The activation peak written out by hand for TrainingStepTest.tiny (C 24, F 40, L 2, H 4, KvH 2, D 6, so H·D 24,
     * KvH·D 12) at B 2, T 8 (N 16), in floats:
     * <pre>
     *   one block's full set  = N·(4C + 2 + 2·H·D + 2·KvH·D + 3F) + B·H·T²  = 16·290 + 512 = 5152
     *     (x_in, xn_attn, x_mid, xn_mlp: C; two inv_rms: 1; q, att: H·D; k, v: KvH·D; gate, up, h: F; probs)
     *   head + backward       = N·(3C + 1 + 2·H·D + 2·KvH·D)               = 16·145       = 2320
     *     (final.x, grad.x, grad.xn: C; final.inv_rms; grad.att, grad.q: H·D; grad.k, grad.v; the final norm's output
     *     lives in grad.xn, and the MLP's backward writes over h and up)
     *   full FT, no checkpointing: L·5152 + 3984                               = 14288 floats = 57152 bytes
     *   full FT, every block:      L·N·C (inputs) + (5152 − N·C) shared + 3984 = 9520 floats  = 38080 bytes
     * LoRA r 2 on q_proj, v_proj, dropout 0: a block drops att, xn_mlp, h (no adapter reads them) and adds u_q, u_v [N, r];
     * the three dropped become shared temporaries; backward adds grad.lora_du [N, r]:
     *   LoRA, no checkpointing: L·(5152 − N·(H·D + C + F) + 2·N·r) + N·(H·D + C + F) + 3984 + N·r
     *                         = 2·3808 + 1408 + 3984 + 32                       = 13040 floats = 52160 bytes
     *   LoRA, every block:      L·N·C + (5152 − N·C + 2·N·r) + 3984 + N·r      = 9616 floats  = 38464 bytes
     * </pre>
     */
    @Test
    void activationPeakFallsAsTheLayoutStates() {
        LlamaConfig c = TrainingStepTest.tiny(true);
        int b = 2, t = 8, n = b * t, cc = 24, f = 40, l = 2, h = 4, qd = 24, kvd = 12, r = 2;
        long block = (long) n * (4 * cc + 2 + 2 * qd + 2 * kvd + 3 * f) + (long) b * h * t * t;
        long head = (long) n * (3 * cc + 1 + 2 * qd + 2 * kvd);
        long loraDropped = (long) n * (qd + cc + f);
        assertEquals(5152, block);
        assertEquals(2320, head);
        LoraConfig qv = new LoraConfig(r, 4, 0, List.of("q_proj", "v_proj"), false);
        record Case(LoraConfig lora, int every, long expectedBytes) {
            Technique technique() { // eager: the bytes above count its probabilities
                return Technique.of(lora).withGradientCheckpointing(every > 0, Math.max(1, every)).withAttention(Technique.Attention.EAGER);
            }
        }
        List<Case> cases = List.of(
                new Case(null, 0, 4 * (l * block + head)),
                new Case(null, 1, 4 * ((long) l * n * cc + (block - (long) n * cc) + head)),
                new Case(qv, 0, 4 * (l * (block - loraDropped + 2L * n * r) + loraDropped + head + (long) n * r)),
                new Case(qv, 1, 4 * ((long) l * n * cc + (block - (long) n * cc + 2L * n * r) + head + (long) n * r)));
        assertEquals(List.of(50496L, 31424L, 45504L, 31808L), cases.stream().map(Case::expectedBytes).toList());
        for (Case k : cases) {
            MemoryLedger ledger = new MemoryLedger();
            Map<String, Tensor> w = RandomModels.weights(c, ledger, 1, 0.1);
            TrainingLayout layout = TrainingLayout.of(c, b, t, k.technique());
            assertEquals(k.expectedBytes(), layout.bytes(Category.ACTIVATIONS), k + " layout");
            try (TrainingStep step = new TrainingStep(c, w, KernelBackends.get(), ledger, b, t,
                    k.technique(), 1)) {
                step.forwardBackward(TrainingStepTest.randomIds(b, t, c.vocabSize(), 1, false), TrainingStepTest.randomIds(b, t, c.vocabSize(), 2, true), 10);
                assertEquals(k.expectedBytes(), ledger.peakBytes(Category.ACTIVATIONS), k + " ledger peak");
            } finally {
                w.values().forEach(Tensor::close);
            }
        }
    }
}
