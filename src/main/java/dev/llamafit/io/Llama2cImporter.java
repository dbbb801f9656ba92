// Imports a llama2.c checkpoint (.bin, version 0) into a Hugging Face model folder.
package dev.llamafit.io;

import java.io.IOException;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import java.nio.channels.FileChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.function.IntFunction;

import dev.llamafit.io.safetensors.SafetensorsWriter;
import dev.llamafit.memory.Category;
import dev.llamafit.memory.MemoryLedger;
import dev.llamafit.model.LinearModule;
import dev.llamafit.model.LlamaConfig;
import dev.llamafit.model.ParameterLayout;
import dev.llamafit.model.RopeScaling;
import dev.llamafit.tensor.DType;
import dev.llamafit.tensor.Shape;
import dev.llamafit.tensor.Tensor;

/**
 * Reads Karpathy's llama2.c "version 0" checkpoint: a header of seven little-endian int32 (dim, hidden_dim,
 * n_layers, n_heads, n_kv_heads, vocab_size — negative when the classifier is not shared — and seq_len),
 * then fp32 weights grouped by kind across layers, then the RoPE tables (skipped), then the classifier if
 * unshared. Writes config.json, model.safetensors and the tokenizer.
 *
 * <p>llama2.c rotates adjacent pairs (x[2i], x[2i+1]); Hugging Face rotates halves (x[i], x[i+D/2]). So
 * the rows of wq and wk are permuted within each head: new row i takes old row 2i, new row D/2+i takes old
 * row 2i+1 — the same permutation transformers' conversion script applies to Meta's checkpoints.
 */
public final class Llama2cImporter {
    private static final int HEADER_BYTES = 7 * 4;
    private static final ValueLayout.OfInt I32 = ValueLayout.JAVA_INT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);

    private Llama2cImporter() {}

    /** Converts {@code checkpoint} (+ tokenizer file) into a Hugging Face folder at {@code out}. */
    public static LlamaConfig convert(Path checkpoint, Path tokenizer, Path out, MemoryLedger ledger) throws IOException {
        if (!Files.isRegularFile(checkpoint)) throw InputException.at(checkpoint, "file not found");
        if (tokenizer != null && !Files.isRegularFile(tokenizer)) throw InputException.at(tokenizer, "tokenizer file not found");
        long size = Files.size(checkpoint);
        if (size < HEADER_BYTES) throw InputException.at(checkpoint, "byte 0", "file of " + size + " bytes is shorter than the 28-byte llama2.c header");
        try (FileChannel ch = FileChannel.open(checkpoint, StandardOpenOption.READ);
             MemoryLedger.Buffer map = ledger.map(Category.WEIGHTS, checkpoint.toString(), ch, 0, size)) {
            MemorySegment seg = map.segment();
            int[] h = new int[7];
            for (int i = 0; i < 7; i++) h[i] = seg.get(I32, i * 4L);
            String[] names = {"dim", "hidden_dim", "n_layers", "n_heads", "n_kv_heads", "vocab_size", "seq_len"};
            for (int i = 0; i < 7; i++)
                if (i != 5 && (h[i] <= 0 || h[i] > 1 << 20))
                    throw InputException.at(checkpoint, "header field " + names[i] + " (byte " + i * 4 + ")",
                            "value " + h[i] + " is not a plausible size; is this a llama2.c version-0 .bin checkpoint?");
            int dim = h[0], hidden = h[1], layers = h[2], heads = h[3], kvHeads = h[4], seqLen = h[6];
            boolean shared = h[5] > 0;
            int vocab = Math.abs(h[5]);
            if (vocab == 0 || heads % kvHeads != 0 || dim % heads != 0)
                throw InputException.at(checkpoint, "header", "inconsistent header " + java.util.Arrays.toString(h));
            int headDim = dim / heads, kvDim = kvHeads * headDim;
            LlamaConfig config;
            try {
                config = new LlamaConfig("llama", dim, hidden, layers, heads, kvHeads, headDim, vocab, seqLen,
                        1e-5, 10000.0, new RopeScaling.None(), shared, false, false, false, 0, 1, List.of(2));
            } catch (IllegalArgumentException e) { // the config's own limits (sizes, RoPE's even head_dim) name the field
                throw InputException.at(checkpoint, "header", e.getMessage());
            }

            long floats = (long) vocab * dim
                    + (long) layers * (2L * dim + (long) dim * dim * 2 + 2L * kvDim * dim + 3L * dim * hidden)
                    + dim + (long) seqLen * headDim;
            if (!shared) floats += (long) vocab * dim;
            long expected = HEADER_BYTES + floats * 4;
            if (size != expected)
                throw InputException.at(checkpoint, "file is " + size + " bytes, but its header (" + java.util.Arrays.toString(h)
                        + ") implies " + expected + " bytes: truncated or not a version-0 llama2.c checkpoint");

            List<Tensor> owned = new ArrayList<>();
            try {
                Map<String, Tensor> t = new LinkedHashMap<>();
                long[] pos = {HEADER_BYTES};
                Tensor embed = take(seg, pos, ParameterLayout.EMBED, Shape.of(vocab, dim));
                t.put(ParameterLayout.EMBED, embed);
                Tensor[] attnNorm = takeLayers(seg, pos, layers, ParameterLayout::inputNorm, Shape.of(dim));
                Tensor[] wq = takeLayers(seg, pos, layers, LinearModule.Q::weight, Shape.of(dim, dim));
                Tensor[] wk = takeLayers(seg, pos, layers, LinearModule.K::weight, Shape.of(kvDim, dim));
                Tensor[] wv = takeLayers(seg, pos, layers, LinearModule.V::weight, Shape.of(kvDim, dim));
                Tensor[] wo = takeLayers(seg, pos, layers, LinearModule.O::weight, Shape.of(dim, dim));
                Tensor[] mlpNorm = takeLayers(seg, pos, layers, ParameterLayout::postAttentionNorm, Shape.of(dim));
                Tensor[] w1 = takeLayers(seg, pos, layers, LinearModule.GATE::weight, Shape.of(hidden, dim));
                Tensor[] w2 = takeLayers(seg, pos, layers, LinearModule.DOWN::weight, Shape.of(dim, hidden));
                Tensor[] w3 = takeLayers(seg, pos, layers, LinearModule.UP::weight, Shape.of(hidden, dim));
                Tensor norm = take(seg, pos, ParameterLayout.NORM, Shape.of(dim));
                pos[0] += (long) seqLen * headDim * 4; // freq_cis_real and freq_cis_imag: recomputed, not imported
                Tensor cls = shared ? null : take(seg, pos, ParameterLayout.LM_HEAD, Shape.of(vocab, dim));
                for (int l = 0; l < layers; l++) {
                    t.put(attnNorm[l].name(), attnNorm[l]);
                    t.put(wq[l].name(), permuteRotary(wq[l], heads, headDim, ledger, owned));
                    t.put(wk[l].name(), permuteRotary(wk[l], kvHeads, headDim, ledger, owned));
                    t.put(wv[l].name(), wv[l]);
                    t.put(wo[l].name(), wo[l]);
                    t.put(mlpNorm[l].name(), mlpNorm[l]);
                    t.put(w1[l].name(), w1[l]);
                    t.put(w3[l].name(), w3[l]);
                    t.put(w2[l].name(), w2[l]);
                }
                t.put(ParameterLayout.NORM, norm);
                if (cls != null) t.put(ParameterLayout.LM_HEAD, cls);

                Files.createDirectories(out);
                SafetensorsWriter.write(out.resolve("model.safetensors"), new ArrayList<>(t.values()),
                        Map.of("format", "pt", "source", "llama2.c " + checkpoint.getFileName()));
                AtomicFiles.writeString(out.resolve("config.json"), Json.write(ConfigJson.toJson(config)) + "\n");
                if (tokenizer != null) copyTokenizer(tokenizer, out);
                return config;
            } finally {
                owned.forEach(Tensor::close);
            }
        }
    }

    private static void copyTokenizer(Path tokenizer, Path out) throws IOException {
        String name = tokenizer.getFileName().toString();
        String target = name.endsWith(".model") ? "tokenizer.model" : name.endsWith(".json") ? "tokenizer.json" : "tokenizer.bin";
        AtomicFiles.copy(tokenizer, out.resolve(target));
        // llama2.c tokenizers use <s> = 1 and </s> = 2, as the config says.
        Map<String, Object> tc = new LinkedHashMap<>();
        tc.put("add_bos_token", true);
        tc.put("add_eos_token", false);
        tc.put("bos_token", "<s>");
        tc.put("eos_token", "</s>");
        tc.put("unk_token", "<unk>");
        tc.put("tokenizer_class", "LlamaTokenizer");
        AtomicFiles.writeString(out.resolve("tokenizer_config.json"), Json.write(tc) + "\n");
    }

    private static Tensor take(MemorySegment seg, long[] pos, String name, Shape shape) {
        long bytes = DType.F32.bytesFor(shape.elements());
        Tensor t = new Tensor(name, DType.F32, shape, seg.asSlice(pos[0], bytes));
        pos[0] += bytes;
        return t;
    }

    private static Tensor[] takeLayers(MemorySegment seg, long[] pos, int layers, IntFunction<String> name, Shape shape) {
        Tensor[] out = new Tensor[layers];
        for (int l = 0; l < layers; l++) out[l] = take(seg, pos, name.apply(l), shape);
        return out;
    }

    /** Rows of each head reordered from interleaved pairs to halves: new i ← old 2i, new D/2+i ← old 2i+1. */
    static Tensor permuteRotary(Tensor w, int heads, int headDim, MemoryLedger ledger, List<Tensor> owned) {
        Tensor out = Tensor.allocate(ledger, Category.WORKSPACE, w.name(), DType.F32, w.shape());
        owned.add(out);
        long rowBytes = w.shape().dim(1) * 4;
        int half = headDim / 2;
        for (int h = 0; h < heads; h++)
            for (int i = 0; i < half; i++)
                for (int a = 0; a < 2; a++) {
                    long from = (long) h * headDim + 2L * i + a;
                    long to = (long) h * headDim + (long) a * half + i;
                    MemorySegment.copy(w.segment(), from * rowBytes, out.segment(), to * rowBytes, rowBytes);
                }
        return out;
    }
}
