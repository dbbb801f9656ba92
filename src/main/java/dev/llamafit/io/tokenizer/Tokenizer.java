// The tokenizer contract: text <-> token ids, piece lookup, special ids and streaming decode.
package dev.llamafit.io.tokenizer;

import java.util.OptionalInt;
import java.util.Set;

/**
 * Turns text into token ids and back. Implementations: {@link SentencePieceTokenizer} (SentencePiece
 * {@code tokenizer.model} and llama2.c {@code tokenizer.bin}) and {@link HfTokenizer} (Hugging Face
 * {@code tokenizer.json}). {@link Tokenizers#load} picks one for a model folder and applies the folder's
 * BOS/EOS settings. Implementations are immutable and safe to share between threads; a
 * {@link StreamDecoder} is not.
 */
public interface Tokenizer {

    /** Ids of {@code text}; with {@code addBos} the BOS id is put first (when the tokenizer has one). */
    int[] encode(String text, boolean addBos);

    /** Text of {@code ids}; special tokens (BOS, EOS and other control tokens) are skipped. */
    String decode(int[] ids);

    /** A decoder for ids that arrive one at a time (generation); see {@link StreamDecoder}. */
    StreamDecoder newStreamDecoder();

    /** The vocabulary entry of {@code id} as stored in the file (e.g. "▁the", "<0x0A>", "Ġthe"). */
    String piece(int id);

    /** Number of ids: V. */
    int vocabSize();

    /** The beginning-of-sequence id, or -1 if there is none. */
    int bosId();

    /** The (first) end-of-sequence id, or -1 if there is none. */
    int eosId();

    /** Every id that ends generation (Llama 3 has several); empty when there is none. */
    default Set<Integer> eosIds() {
        return eosId() < 0 ? Set.of() : Set.of(eosId());
    }

    /** Whether prompts get a BOS by default (tokenizer_config.json {@code add_bos_token}). */
    default boolean addBosByDefault() {
        return bosId() >= 0;
    }

    /** The id of an exact vocabulary entry, if there is one. */
    OptionalInt tokenId(String piece);

    /** Whether {@code id} is a special (control) token that {@link #decode} skips. */
    boolean isSpecial(int id);

    /**
     * Decodes ids one at a time. {@link #next} returns only text that is complete: the bytes of
     * byte-fallback tokens ({@code <0xE2><0x82><0xAC>}) or byte-level tokens are held back until they form
     * whole UTF-8 characters. Concatenating every {@code next} and a final {@link #flush} gives
     * {@link Tokenizer#decode} of the same ids.
     */
    interface StreamDecoder {
        /** Text made complete by {@code id}, possibly empty. */
        String next(int id);

        /** Whatever bytes are still held (an unfinished character becomes U+FFFD). */
        String flush();
    }
}
