// Plain text to training examples: documents, tokenized, joined with EOS and packed into full-length chunks.
package dev.llamafit.io.data;

import java.io.BufferedReader;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;

import dev.llamafit.io.InputException;
import dev.llamafit.io.tokenizer.Tokenizer;

/**
 * Plain text, as pre-training corpora are commonly shipped (TinyStories' {@code <|endoftext|>} separators):
 * <ol>
 * <li>The file is split into documents on lines that are exactly {@value #SEPARATOR} (a trailing CR is
 * ignored); without such lines the whole file is one document. Whitespace around each document is dropped and
 * empty documents are skipped.</li>
 * <li>Each document is tokenized, with BOS first when the tokenizer adds BOS by default, and followed by EOS
 * (when the tokenizer has one), so the model learns where a document ends and that a new one starts.</li>
 * <li>The stream of N ids is cut into chunks of T+1 ids with stride T: chunk k is {@code stream[kT, kT+T+1)},
 * inputs are its first T ids and labels its last T. Consecutive chunks share one id, so every id after the
 * first is a target exactly once. Every label counts (documents attend across EOS, as in GPT-style packing).</li>
 * <li>The tail (fewer than T targets left) is kept as a shorter example, which {@link Batches} pads, when it has
 * at least T/4 targets or when it is the only example; otherwise it is dropped, because a mostly-padding batch
 * row costs a full row of compute for little signal.</li>
 * </ol>
 */
final class TextPacker {
    static final String SEPARATOR = "<|endoftext|>";

    /** Refused above this size: the whole token stream is held in memory. */
    static final long MAX_FILE_BYTES = 1L << 30;

    private TextPacker() {}

    static List<Example> load(Path file, Tokenizer tok, int seqLen) {
        int[] stream = tokenize(file, tok);
        return pack(stream, seqLen);
    }

    /** The token stream of the file: [BOS] doc EOS [BOS] doc EOS … */
    static int[] tokenize(Path file, Tokenizer tok) {
        Ids out = new Ids();
        try {
            long size = Files.size(file);
            if (size > MAX_FILE_BYTES)
                throw InputException.at(file, "text file of " + size + " bytes is above the " + MAX_FILE_BYTES + "-byte limit");
            try (BufferedReader r = Files.newBufferedReader(file, StandardCharsets.UTF_8)) {
                StringBuilder doc = new StringBuilder();
                String line;
                while ((line = r.readLine()) != null) {
                    if (line.endsWith("\r")) line = line.substring(0, line.length() - 1);
                    if (line.equals(SEPARATOR)) {
                        addDocument(doc, tok, out);
                        doc.setLength(0);
                    } else {
                        if (!doc.isEmpty()) doc.append('\n');
                        doc.append(line);
                    }
                }
                addDocument(doc, tok, out);
            }
        } catch (NoSuchFileException e) {
            throw InputException.at(file, "file not found");
        } catch (java.nio.charset.MalformedInputException e) {
            throw InputException.at(file, "not UTF-8 text (hint: convert it with iconv -t UTF-8)");
        } catch (IOException e) {
            throw InputException.at(file, "cannot read: " + e.getMessage());
        }
        return out.toArray();
    }

    private static void addDocument(StringBuilder doc, Tokenizer tok, Ids out) {
        String text = doc.toString().strip();
        if (text.isEmpty()) return;
        out.addAll(tok.encode(text, tok.addBosByDefault()));
        if (tok.eosId() >= 0) out.add(tok.eosId());
    }

    /** Chunks of T+1 with stride T; see the class comment for the tail rule. */
    static List<Example> pack(int[] stream, int seqLen) {
        List<Example> out = new ArrayList<>();
        int targets = stream.length - 1;
        int start = 0;
        for (; targets - start >= seqLen; start += seqLen) {
            out.add(new Example(Arrays.copyOfRange(stream, start, start + seqLen),
                    Arrays.copyOfRange(stream, start + 1, start + seqLen + 1)));
        }
        int tail = targets - start;
        if (tail > 0 && (tail >= Math.max(1, seqLen / 4) || out.isEmpty())) {
            out.add(new Example(Arrays.copyOfRange(stream, start, start + tail),
                    Arrays.copyOfRange(stream, start + 1, start + tail + 1)));
        }
        return out;
    }

    /** A growable int array, to collect a long token stream without boxing. */
    private static final class Ids {
        private int[] values = new int[1024];
        private int size;

        void add(int v) {
            if (size == values.length) values = Arrays.copyOf(values, Math.multiplyExact(values.length, 2));
            values[size++] = v;
        }

        void addAll(int[] vs) {
            for (int v : vs) add(v);
        }

        int[] toArray() {
            return Arrays.copyOf(values, size);
        }
    }
}
