// Plain text to training examples: documents, tokenized, joined with EOS and packed into full-length chunks.
package dev.llamafit.io.data;

import java.io.IOException;
import java.io.InputStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.List;

import dev.llamafit.io.InputException;
import dev.llamafit.io.tokenizer.Tokenizer;

/**
 * Plain text, as pre-training corpora are commonly shipped (TinyStories' {@code <|endoftext|>} separators):
 * <ol>
 * <li>The file is split into documents on lines that are exactly {@value #SEPARATOR}; without such lines the whole
 * file is one document. Line breaks (LF, CRLF, CR) become LF; whitespace around each document is dropped and empty
 * documents are skipped.</li>
 * <li>Each document is tokenized, with BOS first when the tokenizer adds BOS by default, and followed by EOS
 * (when the tokenizer has one), so the model learns where a document ends and that a new one starts.</li>
 * <li>The stream of N ids is cut into chunks of T+1 ids with stride T: chunk k is {@code stream[kT, kT+T+1)},
 * inputs are its first T ids and labels its last T. Consecutive chunks share one id, so every id after the
 * first is a target exactly once. Every label counts (documents attend across EOS, as in GPT-style packing).</li>
 * <li>The tail (fewer than T targets left) is kept as a shorter example, which {@link Batches} pads, when it has
 * at least T/4 targets or when it is the only example; otherwise it is dropped, because a mostly-padding batch
 * row costs a full row of compute for little signal.</li>
 * </ol>
 *
 * <p>Memory is bounded whatever the line length: the file is read in blocks of {@value #READ_BLOCK} bytes, and a
 * document is held as text only up to {@value #WHOLE_DOCUMENT_CHARS} characters. A longer document (a 50 MB line)
 * is tokenized in pieces of at most {@value #PIECE_CHARS} characters; see {@link Documents#cut}. The ids go to a
 * {@link TokenStream} and the examples are a {@link PackedText} view over it.
 */
final class TextPacker {
    static final String SEPARATOR = "<|endoftext|>";

    /** Refused above this size. */
    static final long MAX_FILE_BYTES = 1L << 30;

    /**
     * Documents up to this many characters are tokenized whole, exactly as before streaming (every shared corpus,
     * e.g. a whole Austen novel of 0.9 M characters, is below it).
     */
    static final int WHOLE_DOCUMENT_CHARS = 1 << 20;

    /** Longer documents are tokenized in pieces of at most this many characters. */
    static final int PIECE_CHARS = 1 << 16;

    static final int READ_BLOCK = 1 << 16;

    private TextPacker() {}

    static List<Example> load(Path file, Tokenizer tok, int seqLen) {
        return new PackedText(read(file, tok), seqLen);
    }

    /** The token stream of the file: [BOS] doc EOS [BOS] doc EOS … */
    static int[] tokenize(Path file, Tokenizer tok) {
        return read(file, tok).toArray();
    }

    /** Chunks of T+1 with stride T; see the class comment for the tail rule. */
    static List<Example> pack(int[] stream, int seqLen) {
        return List.copyOf(new PackedText(TokenStream.of(stream), seqLen));
    }

    private static TokenStream read(Path file, Tokenizer tok) {
        TokenStream out = new TokenStream(tok.vocabSize());
        Documents docs = new Documents(tok, out);
        try {
            long size = Files.size(file);
            if (size > MAX_FILE_BYTES)
                throw InputException.at(file, "text file of " + size + " bytes is above the " + MAX_FILE_BYTES + "-byte limit");
            try (InputStream in = Files.newInputStream(file)) {
                byte[] buf = new byte[READ_BLOCK + 4];
                int have = 0;     // bytes in buf (a carried unfinished sequence first)
                long offset = 0;  // file offset of buf[0]
                while (true) {
                    int n = in.read(buf, have, READ_BLOCK);
                    boolean eof = n < 0;
                    if (!eof) have += n;
                    int valid = Utf8.validUpTo(buf, 0, have);
                    int carry = 0;
                    if (valid < have) {
                        // An unfinished sequence at the block's end is carried to the next read; anything else is bad.
                        if (!eof && Utf8.sequence(buf, valid, have) == Utf8.INCOMPLETE) carry = have - valid;
                        else {
                            docs.accept(new String(buf, 0, valid, StandardCharsets.UTF_8));
                            throw InputException.at(file, "line " + docs.line, "invalid UTF-8 at byte offset " + (offset + valid)
                                    + " of the file (" + Utf8.show(buf, valid, have) + ") (hint: convert it with iconv -t UTF-8)");
                        }
                    }
                    if (valid > 0) docs.accept(new String(buf, 0, valid, StandardCharsets.UTF_8));
                    if (eof) break;
                    System.arraycopy(buf, valid, buf, 0, carry);
                    offset += valid;
                    have = carry;
                }
            }
        } catch (NoSuchFileException e) {
            throw InputException.at(file, "file not found");
        } catch (IOException e) {
            throw InputException.at(file, "cannot read: " + e.getMessage());
        }
        docs.finish();
        return out;
    }

    /** Characters in, documents out: finds lines, separator lines and document ends, and tokenizes each document. */
    private static final class Documents {
        private final Tokenizer tok;
        private final TokenStream out;
        private final StringBuilder head = new StringBuilder(); // the current line's first characters, up to a separator's length + 1
        private boolean atLineStart = true;
        private boolean afterCr;
        private final StringBuilder doc = new StringBuilder();  // the current document's text not yet tokenized
        private boolean pieces;                                  // the current document is being tokenized in pieces
        private Boolean dropCutSpace;                            // see cut(); probed once, when a long document first appears
        private boolean first = true;                            // the next encode starts a document
        long line = 1;                                           // for messages

        Documents(Tokenizer tok, TokenStream out) {
            this.tok = tok;
            this.out = out;
        }

        void accept(String chars) {
            for (int i = 0; i < chars.length(); i++) {
                char c = chars.charAt(i);
                if (afterCr) {
                    afterCr = false;
                    if (c == '\n') continue; // CRLF is one line break, as BufferedReader.readLine reads it
                }
                if (c == '\n' || c == '\r') {
                    afterCr = c == '\r';
                    endLine();
                    line++;
                } else if (atLineStart) {
                    head.append(c);
                    if (head.length() > SEPARATOR.length()) flushHead();
                } else {
                    append(c);
                }
            }
        }

        void finish() {
            if (atLineStart && !head.isEmpty() && !head.toString().equals(SEPARATOR)) flushHead();
            endDocument();
        }

        private void endLine() {
            if (atLineStart && head.toString().equals(SEPARATOR)) {
                head.setLength(0);
                endDocument();
                return;
            }
            flushHead();
            append('\n');
            atLineStart = true;
        }

        private void flushHead() {
            for (int i = 0; i < head.length(); i++) append(head.charAt(i));
            head.setLength(0);
            atLineStart = false;
        }

        private void append(char c) {
            // Leading whitespace of a document is dropped here, trailing whitespace at its end: String.strip's rule.
            if (doc.isEmpty() && !pieces && Character.isWhitespace(c)) return;
            doc.append(c);
            if (pieces ? doc.length() >= 2 * PIECE_CHARS : doc.length() > WHOLE_DOCUMENT_CHARS) {
                pieces = true;
                while (doc.length() >= 2 * PIECE_CHARS) cut();
            }
        }

        /**
         * Tokenizes one piece of at most {@link #PIECE_CHARS} from the front of a long document. The cut is at the
         * last space in the piece's second half (else at another whitespace, else between two code points). For
         * tokenizers that prepend a dummy "▁" to every input (SentencePiece, and tokenizer.json files with a Prepend
         * normalizer, as LLaMA 1/2 and TinyStories use) the space at the cut is dropped and the next piece's dummy
         * prefix stands in for it, so the normalized text is exactly the document's; for byte-level tokenizers
         * (GPT-2 style, LLaMA 3) the space starts the next piece, where their pre-tokenizer would split anyway.
         * This is an approximation only in that BPE merges never cross a cut: the ids at each cut (one in 64 Ki
         * characters) may differ from tokenizing the whole document, e.g. "the▁" can no longer form across it.
         */
        private void cut() {
            int at = -1;
            for (int i = PIECE_CHARS - 1; i >= PIECE_CHARS / 2 && at < 0; i--) if (doc.charAt(i) == ' ') at = i;
            for (int i = PIECE_CHARS - 1; i >= PIECE_CHARS / 2 && at < 0; i--) if (Character.isWhitespace(doc.charAt(i))) at = i;
            boolean space = at >= 0 && doc.charAt(at) == ' ';
            if (at < 0) at = Character.isHighSurrogate(doc.charAt(PIECE_CHARS - 1)) ? PIECE_CHARS - 1 : PIECE_CHARS;
            encode(doc.substring(0, at));
            int next = space && dropCutSpace() ? at + 1 : at;
            doc.delete(0, next);
        }

        private boolean dropCutSpace() {
            if (dropCutSpace == null) {
                int[] whole = tok.encode("x y", false);
                boolean prefixed = Arrays.equals(whole, concat(tok.encode("x", false), tok.encode("y", false)));
                boolean spaced = Arrays.equals(whole, concat(tok.encode("x", false), tok.encode(" y", false)));
                dropCutSpace = prefixed || !spaced;
            }
            return dropCutSpace;
        }

        /** Ids of a document or of a piece of one; only a document's first gets BOS. */
        private void encode(String text) {
            out.addAll(tok.encode(text, first && tok.addBosByDefault()));
            first = false;
        }

        private void endDocument() {
            int end = doc.length();
            while (end > 0 && Character.isWhitespace(doc.charAt(end - 1))) end--;
            if (end > 0) encode(doc.substring(0, end));
            if ((end > 0 || pieces) && tok.eosId() >= 0) out.add(tok.eosId());
            doc.setLength(0);
            pieces = false;
            first = true;
            atLineStart = true;
        }
    }

    private static int[] concat(int[] a, int[] b) {
        int[] out = Arrays.copyOf(a, a.length + b.length);
        System.arraycopy(b, 0, out, a.length, b.length);
        return out;
    }
}
