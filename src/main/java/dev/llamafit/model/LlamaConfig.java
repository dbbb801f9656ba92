// The architecture hyper-parameters of a LLaMA-family model (config.json), validated.
package dev.llamafit.model;

import java.util.List;

import dev.llamafit.quant.Quantization;

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
 * @param quantization       how the block linear layers are stored when quantised (config.json's quantization_config, or
 *                           a base quantised on load), null when they are not
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
        List<Integer> eosTokenIds,
        Quantization quantization) {

    /** The model types llamafit implements. */
    public static final List<String> SUPPORTED_TYPES = List.of("llama", "mistral", "qwen2");

    // Limits, checked in long arithmetic before anything that grows with a size is built. Each is far above every
    // published LLaMA-family model (Llama 3.1 405B: 126 layers, C 16384, F 53248, V 128256; Llama 4 Scout: 10M context).
    /** Most decoder blocks: a layout lists about a dozen tensors per block. */
    public static final int MAX_LAYERS = 4096;
    /** Widest hidden_size, intermediate_size and attention width (heads × head_dim). */
    public static final int MAX_WIDTH = 1 << 20;
    /** Largest vocab_size. */
    public static final int MAX_VOCAB = 1 << 24;
    /** Largest max_position_embeddings (and so KV cache capacity and RoPE table length). */
    public static final int MAX_POSITIONS = 1 << 24;
    /** Most elements in one weight matrix: the engine indexes a matrix with an int. */
    public static final long MAX_MATRIX_ELEMENTS = Integer.MAX_VALUE;
    /** Most parameters in a model, 2^40 (about 1.1 trillion). */
    public static final long MAX_PARAMETERS = 1L << 40;

    /** An unquantised model's config. */
    public LlamaConfig(String modelType, int hiddenSize, int intermediateSize, int numLayers, int numHeads, int numKvHeads,
                       int headDim, int vocabSize, int maxPositions, double rmsNormEps, double ropeTheta, RopeScaling ropeScaling,
                       boolean tieWordEmbeddings, boolean qkvBias, boolean oBias, boolean mlpBias, int slidingWindow,
                       int bosTokenId, List<Integer> eosTokenIds) {
        this(modelType, hiddenSize, intermediateSize, numLayers, numHeads, numKvHeads, headDim, vocabSize, maxPositions, rmsNormEps,
                ropeTheta, ropeScaling, tieWordEmbeddings, qkvBias, oBias, mlpBias, slidingWindow, bosTokenId, eosTokenIds, null);
    }

    public LlamaConfig {
        if (!SUPPORTED_TYPES.contains(modelType))
            throw new IllegalArgumentException("unsupported model_type '" + modelType + "' (llamafit runs " + SUPPORTED_TYPES + ")");
        within("hidden_size", hiddenSize, MAX_WIDTH);
        within("intermediate_size", intermediateSize, MAX_WIDTH);
        within("num_hidden_layers", numLayers, MAX_LAYERS);
        within("num_attention_heads", numHeads, MAX_WIDTH);
        within("num_key_value_heads", numKvHeads, MAX_WIDTH);
        within("head_dim", headDim, MAX_WIDTH);
        within("vocab_size", vocabSize, MAX_VOCAB);
        within("max_position_embeddings", maxPositions, MAX_POSITIONS);
        if (numHeads % numKvHeads != 0)
            throw new IllegalArgumentException("num_attention_heads (" + numHeads + ") must be a multiple of num_key_value_heads (" + numKvHeads + ")");
        if (headDim % 2 != 0) throw new IllegalArgumentException("head_dim must be even for RoPE, got " + headDim);
        long qDim = (long) numHeads * headDim;
        if (qDim > MAX_WIDTH)
            throw new IllegalArgumentException("num_attention_heads " + numHeads + " × head_dim " + headDim + " = " + qDim
                    + " is wider than llamafit's limit of " + MAX_WIDTH + " for the attention");
        matrix("the embedding (vocab_size " + vocabSize + " × hidden_size " + hiddenSize + ")", (long) vocabSize * hiddenSize);
        matrix("each MLP matrix (intermediate_size " + intermediateSize + " × hidden_size " + hiddenSize + ")", (long) intermediateSize * hiddenSize);
        matrix("q_proj (num_attention_heads × head_dim " + qDim + " × hidden_size " + hiddenSize + ")", qDim * hiddenSize);
        long parameters = parameterCount(hiddenSize, intermediateSize, numLayers, qDim, (long) numKvHeads * headDim, vocabSize,
                tieWordEmbeddings, qkvBias, oBias, mlpBias);
        if (parameters > MAX_PARAMETERS)
            throw new IllegalArgumentException(String.format(java.util.Locale.ROOT, "the config describes %,d parameters (num_hidden_layers %d, "
                            + "hidden_size %d, intermediate_size %d, vocab_size %d), above llamafit's limit of %,d (2^40)",
                    parameters, numLayers, hiddenSize, intermediateSize, vocabSize, MAX_PARAMETERS));
        if (!(rmsNormEps > 0 && rmsNormEps < 1)) throw new IllegalArgumentException("rms_norm_eps must be in (0, 1), got " + rmsNormEps);
        if (!(ropeTheta > 0) || Double.isInfinite(ropeTheta)) throw new IllegalArgumentException("rope_theta must be a finite number > 0, got " + ropeTheta);
        if (slidingWindow < 0) throw new IllegalArgumentException("sliding_window must be >= 0, got " + slidingWindow);
        if (ropeScaling == null) ropeScaling = new RopeScaling.None();
        eosTokenIds = List.copyOf(eosTokenIds);
        for (int id : eosTokenIds)
            if (id < 0 || id >= vocabSize) throw new IllegalArgumentException("eos_token_id " + id + " outside the vocabulary (0.." + (vocabSize - 1) + ")");
        if (bosTokenId < -1 || bosTokenId >= vocabSize)
            throw new IllegalArgumentException("bos_token_id " + bosTokenId + " outside the vocabulary (0.." + (vocabSize - 1) + ")");
    }

    /** A size field: 1..max, named with its value and the limit when out of range. */
    private static void within(String field, int value, long max) {
        if (value <= 0) throw new IllegalArgumentException(field + " must be > 0, got " + value);
        if (value > max)
            throw new IllegalArgumentException(String.format(java.util.Locale.ROOT, "%s %d is above llamafit's limit of %,d", field, value, max));
    }

    private static void matrix(String what, long elements) {
        if (elements > MAX_MATRIX_ELEMENTS)
            throw new IllegalArgumentException(String.format(java.util.Locale.ROOT, "%s has %,d elements, above the %,d one matrix can hold",
                    what, elements, MAX_MATRIX_ELEMENTS));
    }

    /**
     * Parameters of the layout ParameterLayout lists, in closed form (the constructor checks it before a layout of
     * {@code layers} blocks is built): embedding, per block two norms, q/k/v/o, gate/up/down and their biases, final
     * norm, and the LM head unless tied.
     */
    private static long parameterCount(long c, long f, long layers, long qDim, long kvDim, long vocab,
                                       boolean tied, boolean qkvBias, boolean oBias, boolean mlpBias) {
        long perLayer = Math.addExact(Math.addExact(2 * c, Math.multiplyExact(c, Math.addExact(2 * qDim, 2 * kvDim))),
                Math.multiplyExact(3 * c, f));
        if (qkvBias) perLayer = Math.addExact(perLayer, qDim + 2 * kvDim);
        if (oBias) perLayer = Math.addExact(perLayer, c);
        if (mlpBias) perLayer = Math.addExact(perLayer, 2 * f + c);
        long embedding = Math.multiplyExact(vocab, c);
        return Math.addExact(Math.addExact(Math.multiplyExact(layers, perLayer), c), tied ? embedding : 2 * embedding);
    }

    /** Every parameter of the model (ParameterLayout's count, without building the layout). */
    public long parameterCount() {
        return parameterCount(hiddenSize, intermediateSize, numLayers, qDim(), kvDim(), vocabSize, tieWordEmbeddings, qkvBias, oBias, mlpBias);
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
                bosTokenId, eosTokenIds, quantization);
    }

    /** A copy whose block linear layers are quantised as {@code q} (null: not quantised). */
    public LlamaConfig withQuantization(Quantization q) {
        return new LlamaConfig(modelType, hiddenSize, intermediateSize, numLayers, numHeads, numKvHeads, headDim, vocabSize,
                maxPositions, rmsNormEps, ropeTheta, ropeScaling, tieWordEmbeddings, qkvBias, oBias, mlpBias, slidingWindow,
                bosTokenId, eosTokenIds, q);
    }
}
