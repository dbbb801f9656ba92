// Creates the demo's starting point: a character-level tokenizer, a tiny LLaMA config and random weights on disk.
package dev.llamafit.demo;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

import dev.llamafit.io.AtomicFiles;
import dev.llamafit.io.HfFolderWriter;
import dev.llamafit.io.Json;
import dev.llamafit.memory.MemoryLedger;
import dev.llamafit.model.LlamaConfig;
import dev.llamafit.model.ParameterLayout;
import dev.llamafit.model.RandomModels;
import dev.llamafit.model.RopeScaling;
import dev.llamafit.tensor.DType;
import dev.llamafit.tensor.Tensor;
import dev.llamafit.tensor.TensorSpec;

/**
 * A model folder that every other command loads, built from nothing, so the demo needs no download. The
 * tokenizer is a Hugging Face tokenizer.json of type BPE with no merges (so it is character-level): one id per
 * letter, digit and the few symbols prompts use, plus {@code <unk>}, {@code <s>}, {@code </s>} and the default
 * chat template's role markers as added tokens (one id each rather than eight characters, which keeps
 * sequences short).
 */
public final class TinyBaseModel {
    public static final String UNK = "<unk>", BOS = "<s>", EOS = "</s>";
    /** Role markers of the data pipeline's default chat template; added tokens so each is a single id. */
    public static final List<String> MARKERS = List.of("<|user|>", "<|assistant|>", "<|system|>");
    /** The plain characters of the vocabulary, after the special tokens and markers. */
    public static final String CHARS = "\n " + SyntheticTasks.LETTERS + "0123456789+-=:,.?";

    private TinyBaseModel() {}

    /** The token pieces in id order: specials, markers, then one per character. */
    public static List<String> pieces() {
        List<String> p = new ArrayList<>(List.of(UNK, BOS, EOS));
        p.addAll(MARKERS);
        for (char c : CHARS.toCharArray()) p.add(String.valueOf(c));
        return p;
    }

    /**
     * A tiny Llama of the given shape (the demo: C 128, 2 layers, 4 heads of D 32, 2 KV heads, F 344, context 64) whose vocabulary is the
     * tokenizer's rounded up to a multiple of 16; ids past the tokenizer are never produced and merely unused rows.
     */
    public static LlamaConfig config(int hidden, int layers, int heads, int kvHeads, int ffn, int context) {
        int vocab = (pieces().size() + 15) / 16 * 16;
        return new LlamaConfig("llama", hidden, ffn, layers, heads, kvHeads, hidden / heads, vocab, context, 1e-5, 10000.0,
                new RopeScaling.None(), true, false, false, false, 0, 1, List.of(2));
    }

    /** Writes tokenizer.json, tokenizer_config.json, config.json and model.safetensors (N(0, 0.02²), norms 1) into {@code dir}. */
    public static void write(Path dir, LlamaConfig config, long seed, MemoryLedger ledger) throws IOException {
        Files.createDirectories(dir);
        AtomicFiles.writeString(dir.resolve("tokenizer.json"), Json.write(tokenizerJson()) + "\n");
        Map<String, Object> tc = new LinkedHashMap<>();
        tc.put("bos_token", BOS);
        tc.put("eos_token", EOS);
        tc.put("unk_token", UNK);
        tc.put("add_bos_token", true);
        tc.put("model_max_length", config.maxPositions());
        AtomicFiles.writeString(dir.resolve("tokenizer_config.json"), Json.write(tc) + "\n");
        Map<String, Tensor> weights = RandomModels.weights(config, ledger, seed, 0.02);
        try {
            List<Tensor> ordered = new ArrayList<>();
            for (TensorSpec spec : ParameterLayout.of(config, DType.F32).specs()) ordered.add(weights.get(spec.name()));
            HfFolderWriter.write(dir, config, ordered, null);
        } finally {
            weights.values().forEach(Tensor::close);
        }
    }

    /** The tokenizer.json object: BPE, empty merges, byte_fallback off, no normalizer, pre-tokenizer or decoder. */
    static Map<String, Object> tokenizerJson() {
        List<String> pieces = pieces();
        Map<String, Object> vocab = new LinkedHashMap<>();
        for (int id = 0; id < pieces.size(); id++) vocab.put(pieces.get(id), id);
        List<Map<String, Object>> added = new ArrayList<>();
        for (int id = 0; id < 3 + MARKERS.size(); id++) {
            Map<String, Object> t = new LinkedHashMap<>();
            t.put("id", id);
            t.put("content", pieces.get(id));
            t.put("single_word", false);
            t.put("lstrip", false);
            t.put("rstrip", false);
            t.put("normalized", false);
            // Markers are not special: they are text of the prompt and show when decoded, as in the data docs.
            t.put("special", id < 3);
            added.add(t);
        }
        Map<String, Object> model = new LinkedHashMap<>();
        model.put("type", "BPE");
        model.put("dropout", null);
        model.put("unk_token", UNK);
        model.put("continuing_subword_prefix", null);
        model.put("end_of_word_suffix", null);
        model.put("fuse_unk", false);
        model.put("byte_fallback", false);
        model.put("vocab", vocab);
        model.put("merges", List.of());
        Map<String, Object> root = new LinkedHashMap<>();
        root.put("version", "1.0");
        root.put("truncation", null);
        root.put("padding", null);
        root.put("added_tokens", added);
        root.put("normalizer", null);
        root.put("pre_tokenizer", null);
        root.put("post_processor", null);
        root.put("decoder", null);
        root.put("model", model);
        return root;
    }
}
