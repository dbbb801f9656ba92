// Autoregressive generation: prefill the prompt into a KV cache, then decode one token at a time.
package dev.llamafit.model;

import java.util.Set;
import java.util.function.IntConsumer;

import dev.llamafit.tensor.Tensor;

/** Drives a {@link LlamaModel} and a {@link Sampler} for one sequence, stopping at EOS or a token budget. */
public final class Generator {
    private final LlamaModel model;
    private final Sampler sampler;
    private final Set<Integer> eosIds;

    /** What happened: token counts, speeds and why generation stopped ("eos", "max_new_tokens", "context"). */
    public record Result(int promptTokens, int generatedTokens, double prefillTokensPerSecond,
                         double decodeTokensPerSecond, String stopReason) {}

    public Generator(LlamaModel model, Sampler sampler, Set<Integer> eosIds) {
        this.model = model;
        this.sampler = sampler;
        this.eosIds = Set.copyOf(eosIds);
    }

    /** Generates up to {@code maxNewTokens} after {@code promptIds}; each new id goes to {@code onToken} (EOS too). */
    public Result generate(int[] promptIds, int maxNewTokens, IntConsumer onToken) {
        int maxPos = model.config().maxPositions();
        if (promptIds.length > maxPos)
            throw new IllegalArgumentException("prompt of " + promptIds.length + " tokens exceeds the model's context of " + maxPos);
        int capacity = (int) Math.min(maxPos, (long) promptIds.length + Math.max(1, maxNewTokens));
        try (KvCache cache = model.newCache(1, capacity)) {
            if (maxNewTokens == 0) return new Result(promptIds.length, 0, 0, 0, "max_new_tokens");
            long t0 = System.nanoTime();
            Tensor logits = model.forward(new int[][] {promptIds}, cache, LlamaModel.Logits.LAST);
            int next = sampler.sample(logits, 0);
            long t1 = System.nanoTime();
            double prefill = promptIds.length / ((t1 - t0) / 1e9);
            int generated = 0;
            String stop = "max_new_tokens";
            long decodeStart = System.nanoTime();
            int decoded = 0;
            while (true) {
                onToken.accept(next);
                generated++;
                if (eosIds.contains(next)) {
                    stop = "eos";
                    break;
                }
                if (generated >= maxNewTokens) break;
                if (cache.length() >= cache.capacity()) {
                    stop = "context";
                    break;
                }
                logits = model.forward(new int[][] {{next}}, cache, LlamaModel.Logits.LAST);
                next = sampler.sample(logits, 0);
                decoded++;
            }
            double secs = (System.nanoTime() - decodeStart) / 1e9;
            double decode = decoded == 0 ? 0 : decoded / secs;
            return new Result(promptIds.length, generated, prefill, decode, stop);
        }
    }
}
