// The architecture hyper-parameters of a LLaMA-family model (config.json), validated.
package dev.llamafit.model;

import java.util.List;

/**
 * A LLaMA-family architecture: Llama 1/2/3, Mistral, Qwen2 and their relatives (SmolLM, TinyLlama).
 *
 * @param modelType          "llama", "mistral" or "qwen2"
 * @param hiddenSize         C
 * @param intermediateSize   F, the SwiGLU hidden width
 * @param numLayers          L
 * @param numHeads           H
 * @param numKvHeads         KvH, divides H (grouped-query attention; 1 = multi-query)
 * @param headDim            D, usually C / H but may be given explicitly
 * @param vocabSize          V
 * @param maxPositions       the longest sequence the model was trained for
 * @param rmsNormEps         RMSNorm epsilon
 * @param ropeTheta          RoPE base
 * @param ropeScaling        RoPE frequency scaling
 * @param tieWordEmbeddings  the LM head reuses the embedding matrix
 * @param qkvBias            q/k/v projections have biases (Qwen2; Llama with attention_bias)
 * @param oBias              the output projection has a bias (Llama with attention_bias)
 * @param mlpBias            gate/up/down projections have biases (Llama with mlp_bias)
 * @param slidingWindow      attention window in tokens (Mistral), 0 for full causal attention
 * @param bosTokenId         beginning-of-sequence id, −1 if none
 * @param eosTokenIds        end-of-sequence ids (may be several, e.g. Llama 3 instruct)
 */
public record LlamaConfig(
        String modelType,
        int hiddenSize,
        int intermediateSize,
        int numLayers,
        int numHeads,
        int numKvHeads,
        int headDim,
        int vocabSize,
        int maxPositions,
        double rmsNormEps,
        double ropeTheta,
        RopeScaling ropeScaling,
        boolean tieWordEmbeddings,
        boolean qkvBias,
        boolean oBias,
        boolean mlpBias,
        int slidingWindow,
        int bosTokenId,
        List<Integer> eosTokenIds) {

    /** The model types llamafit implements. */
    public static final List<String> SUPPORTED_TYPES = List.of("llama", "mistral", "qwen2");

    public LlamaConfig {
        if (!SUPPORTED_TYPES.contains(modelType))
            throw new IllegalArgumentException("unsupported model_type '" + modelType + "' (llamafit runs " + SUPPORTED_TYPES + ")");
        positive("hidden_size", hiddenSize);
        positive("intermediate_size", intermediateSize);
        positive("num_hidden_layers", numLayers);
        positive("num_attention_heads", numHeads);
        positive("num_key_value_heads", numKvHeads);
        positive("head_dim", headDim);
        positive("vocab_size", vocabSize);
        positive("max_position_embeddings", maxPositions);
        if (numHeads % numKvHeads != 0)
            throw new IllegalArgumentException("num_attention_heads (" + numHeads + ") must be a multiple of num_key_value_heads (" + numKvHeads + ")");
        if (headDim % 2 != 0) throw new IllegalArgumentException("head_dim must be even for RoPE, got " + headDim);
        if (!(rmsNormEps > 0)) throw new IllegalArgumentException("rms_norm_eps must be > 0, got " + rmsNormEps);
        if (!(ropeTheta > 0)) throw new IllegalArgumentException("rope_theta must be > 0, got " + ropeTheta);
        if (slidingWindow < 0) throw new IllegalArgumentException("sliding_window must be >= 0, got " + slidingWindow);
        if (ropeScaling == null) ropeScaling = new RopeScaling.None();
        eosTokenIds = List.copyOf(eosTokenIds);
        for (int id : eosTokenIds)
            if (id < 0 || id >= vocabSize) throw new IllegalArgumentException("eos_token_id " + id + " outside the vocabulary (0.." + (vocabSize - 1) + ")");
        if (bosTokenId >= vocabSize) throw new IllegalArgumentException("bos_token_id " + bosTokenId + " outside the vocabulary");
        // Sizes derived below must not overflow an int index.
        Math.multiplyExact(numHeads, headDim);
        Math.multiplyExact(vocabSize, hiddenSize);
    }

    private static void positive(String field, int value) {
        if (value <= 0) throw new IllegalArgumentException(field + " must be > 0, got " + value);
    }

    /** H·D: width of the query projection's output. */
    public int qDim() { return numHeads * headDim; }

    /** KvH·D: width of each key and value projection's output. */
    public int kvDim() { return numKvHeads * headDim; }

    /** H / KvH: query heads per key/value head. */
    public int groupSize() { return numHeads / numKvHeads; }

    /** A copy with a different vocabulary size or other fields is made with the builder-like withers. */
    public LlamaConfig withMaxPositions(int positions) {
        return new LlamaConfig(modelType, hiddenSize, intermediateSize, numLayers, numHeads, numKvHeads, headDim, vocabSize,
                positions, rmsNormEps, ropeTheta, ropeScaling, tieWordEmbeddings, qkvBias, oBias, mlpBias, slidingWindow,
                bosTokenId, eosTokenIds);
    }
}
