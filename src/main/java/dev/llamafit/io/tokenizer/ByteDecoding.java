// Shared decoding for tokenizers whose tokens map to bytes: whole-sequence decode and the stream decoder.
package dev.llamafit.io.tokenizer;

import java.io.ByteArrayOutputStream;
import java.nio.charset.StandardCharsets;
import java.util.Arrays;

/**
 * Both tokenizer families decode the same way once each token is seen as a byte string: a SentencePiece
 * piece is its UTF-8 with ▁ as space, a byte-fallback piece {@code <0xNN>} is one byte, a byte-level (GPT-2)
 * piece maps each char back to a byte. Decoding is then "concatenate the bytes, read as UTF-8", which makes
 * the streaming decoder exact: it only has to hold back an unfinished UTF-8 sequence at the end.
 */
abstract class ByteDecoding implements Tokenizer {

    /**
     * The bytes that {@code id} contributes to decoded text. {@code first} is true for the first decoded
     * (non-special) token of a sequence, where the dummy-prefix space is dropped as sentencepiece and
     * Hugging Face's Metaspace/Strip decoders do.
     */
    abstract byte[] tokenBytes(int id, boolean first);

    @Override
    public String decode(int[] ids) {
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        boolean first = true;
        for (int id : ids) {
            checkId(id);
            if (isSpecial(id)) continue;
            out.writeBytes(tokenBytes(id, first));
            first = false;
        }
        return out.toString(StandardCharsets.UTF_8);
    }

    @Override
    public StreamDecoder newStreamDecoder() {
        return new Stream();
    }

    void checkId(int id) {
        if (id < 0 || id >= vocabSize()) {
            throw new IllegalArgumentException("token id " + id + " out of range [0, " + vocabSize() + ")");
        }
    }

    /** Holds the bytes of an unfinished UTF-8 character between calls. */
    private final class Stream implements StreamDecoder {
        private byte[] pending = new byte[0];
        private boolean first = true;

        @Override
        public String next(int id) {
            checkId(id);
            if (isSpecial(id)) return "";
            byte[] bytes = tokenBytes(id, first);
            first = false;
            byte[] all = Arrays.copyOf(pending, pending.length + bytes.length);
            System.arraycopy(bytes, 0, all, pending.length, bytes.length);
            int complete = completePrefix(all);
            pending = Arrays.copyOfRange(all, complete, all.length);
            return new String(all, 0, complete, StandardCharsets.UTF_8);
        }

        @Override
        public String flush() {
            String rest = new String(pending, StandardCharsets.UTF_8);
            pending = new byte[0];
            return rest;
        }
    }

    /**
     * Length of the prefix of {@code bytes} that does not end inside a UTF-8 sequence: if one of the last
     * three bytes is a lead byte whose sequence (RFC 3629: 110xxxxx two bytes, 1110xxxx three, 11110xxx
     * four) runs past the end, the prefix stops before it. Invalid bytes are let through (they decode to
     * U+FFFD either way).
     */
    static int completePrefix(byte[] bytes) {
        int n = bytes.length;
        for (int back = 1; back <= Math.min(3, n); back++) {
            int b = bytes[n - back] & 0xFF;
            if ((b & 0xC0) == 0x80) continue; // continuation byte: look further back for the lead
            int need = (b & 0xE0) == 0xC0 ? 2 : (b & 0xF0) == 0xE0 ? 3 : (b & 0xF8) == 0xF0 ? 4 : 1;
            return need > back ? n - back : n;
        }
        return n;
    }
}
