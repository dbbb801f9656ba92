// SentencePiece BPE tokenizer: reads tokenizer.model (ModelProto) or llama2.c tokenizer.bin, encodes as sentencepiece does.
package dev.llamafit.io.tokenizer;

import dev.llamafit.io.InputException;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Comparator;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.OptionalInt;
import java.util.PriorityQueue;
import java.util.regex.Pattern;

/**
 * A SentencePiece model of type BPE (Llama 1/2, Mistral, TinyLlama, llama2.c's tok512). Encoding follows
 * sentencepiece's {@code bpe_model.cc}: normalise (spaces to ▁, a dummy-prefix ▁), split into characters
 * (user-defined pieces whole and never merged), then repeatedly merge the adjacent pair whose concatenation
 * is a vocabulary piece with the highest score (ties: the leftmost); a symbol left outside the vocabulary
 * becomes one {@code <0xNN>} piece per UTF-8 byte (byte fallback) or the unknown id.
 *
 * <p>Not supported: the UNIGRAM model type (rejected on load), the precompiled normalisation charsmap
 * (an {@code nmt_nfkc} model is approximated by Java's NFKC), re-segmenting UNUSED pieces.
 */
public final class SentencePieceTokenizer extends ByteDecoding {
    /** sentencepiece_model.proto SentencePiece.Type. */
    static final byte NORMAL = 1, UNKNOWN = 2, CONTROL = 3, USER_DEFINED = 4, UNUSED = 5, BYTE = 6;
    private static final String SPACE = "\u2581"; // ▁ LOWER ONE EIGHTH BLOCK, sentencepiece's kSpaceSymbol
    private static final byte[] UNK_SURFACE = " \u2047 ".getBytes(StandardCharsets.UTF_8); // " ⁇ ", kDefaultUnknownSymbol
    private static final Pattern BYTE_PIECE = Pattern.compile("<0x[0-9A-Fa-f]{2}>");

    /** Normaliser and special-id settings (NormalizerSpec and TrainerSpec fields). */
    record Options(boolean addDummyPrefix, boolean removeExtraWhitespaces, boolean escapeWhitespaces,
                   boolean nfkc, boolean byteFallback, int unkId, int bosId, int eosId) {}

    private final String[] pieces;   // [V]
    private final float[] scores;    // [V]
    private final byte[] types;      // [V]
    private final Options options;
    private final Map<String, Integer> mergeable = new HashMap<>(); // NORMAL, USER_DEFINED, UNUSED pieces
    private final Map<String, Integer> all = new HashMap<>();       // every piece, reserved ones winning
    private final int[] byteIds = new int[256];                     // <0xNN> -> id, -1 if absent
    private final Map<Integer, List<String>> userDefined = new HashMap<>(); // first code point -> pieces, longest first
    private final int unkId;

    SentencePieceTokenizer(String[] pieces, float[] scores, byte[] types, Options options) {
        this.pieces = pieces;
        this.scores = scores;
        this.types = types;
        this.options = options;
        Arrays.fill(byteIds, -1);
        int unk = -1;
        for (int id = 0; id < pieces.length; id++) {
            String piece = pieces[id];
            byte type = types[id];
            if (type == NORMAL || type == USER_DEFINED || type == UNUSED) {
                mergeable.putIfAbsent(piece, id);
                all.putIfAbsent(piece, id);
            } else {
                all.put(piece, id);
            }
            if (type == UNKNOWN && unk < 0) unk = id;
            if (type == BYTE && BYTE_PIECE.matcher(piece).matches()) {
                byteIds[Integer.parseInt(piece.substring(3, 5), 16)] = id;
            }
            if (type == USER_DEFINED && !piece.isEmpty()) {
                userDefined.computeIfAbsent(piece.codePointAt(0), k -> new ArrayList<>()).add(piece);
            }
        }
        userDefined.values().forEach(list -> list.sort(Comparator.comparingInt(String::length).reversed()));
        this.unkId = unk >= 0 ? unk : options.unkId();
    }

    /** Loads a SentencePiece {@code tokenizer.model}. */
    public static SentencePieceTokenizer load(Path file) {
        return SentencePieceModelReader.read(file, readAll(file));
    }

    /**
     * Loads a llama2.c {@code tokenizer.bin}: int32 max_token_length, then per token float32 score, int32
     * byte length, UTF-8 bytes (little-endian; llama2.c {@code tokenizer.py} export). Spaces in pieces are
     * stored as ' ' and turned back into ▁ here; ids 0/1/2 are unk/bos/eos. {@code vocabSize} &lt;= 0 means
     * "read tokens to the end of the file". The file carries no normaliser settings; Llama 2's are used
     * (dummy prefix, byte fallback, whitespace kept as is), so a model trained with
     * remove_extra_whitespaces (tok512.model is) encodes runs of spaces differently from its .model file.
     */
    public static SentencePieceTokenizer loadLlama2c(Path file, int vocabSize) {
        byte[] data = readAll(file);
        ByteBuffer in = ByteBuffer.wrap(data).order(ByteOrder.LITTLE_ENDIAN);
        if (data.length < 4) throw InputException.at(file, "byte 0", "file too short for the int32 max_token_length header");
        int maxTokenLength = in.getInt();
        if (maxTokenLength <= 0 || maxTokenLength > 1 << 16) {
            throw InputException.at(file, "byte 0", "max_token_length " + maxTokenLength
                    + " is not in [1, 65536]: not a llama2.c tokenizer.bin");
        }
        List<String> pieces = new ArrayList<>();
        List<Float> scores = new ArrayList<>();
        while (vocabSize > 0 ? pieces.size() < vocabSize : in.hasRemaining()) {
            int at = in.position();
            if (in.remaining() < 8) {
                throw InputException.at(file, "byte " + at, "truncated entry for token " + pieces.size()
                        + (vocabSize > 0 ? " (expected " + vocabSize + " tokens)" : ""));
            }
            float score = in.getFloat();
            int length = in.getInt();
            if (length < 0 || length > maxTokenLength || length > in.remaining()) {
                throw InputException.at(file, "byte " + (at + 4), "token " + pieces.size() + " has length " + length
                        + " (max_token_length " + maxTokenLength + ", " + in.remaining() + " bytes left)");
            }
            String text = new String(data, in.position(), length, StandardCharsets.UTF_8);
            in.position(in.position() + length);
            pieces.add(text);
            scores.add(score);
        }
        int n = pieces.size();
        if (n < 3) throw InputException.at(file, "only " + n + " tokens; expected at least unk, bos, eos");
        String[] pieceArray = new String[n];
        float[] scoreArray = new float[n];
        byte[] types = new byte[n];
        for (int id = 0; id < n; id++) {
            String text = pieces.get(id);
            scoreArray[id] = scores.get(id);
            if (id == 0) {
                types[id] = UNKNOWN;
            } else if (id <= 2) {
                types[id] = CONTROL;
                text = text.strip(); // the export writes "\n<s>\n" and "\n</s>\n"
            } else if (BYTE_PIECE.matcher(text).matches()) {
                types[id] = BYTE;
            } else {
                types[id] = NORMAL;
                text = text.replace(" ", SPACE);
            }
            pieceArray[id] = text;
        }
        Options options = new Options(true, false, true, false, true, 0, 1, 2);
        return new SentencePieceTokenizer(pieceArray, scoreArray, types, options);
    }

    static byte[] readAll(Path file) {
        try {
            return Files.readAllBytes(file);
        } catch (NoSuchFileException e) {
            throw InputException.at(file, "tokenizer file not found");
        } catch (IOException e) {
            throw InputException.at(file, "cannot read tokenizer file: " + e.getMessage());
        }
    }

    // ---- encoding ---------------------------------------------------------------------------------------

    @Override
    public int[] encode(String text, boolean addBos) {
        String normalized = normalize(text);
        IntList out = new IntList(normalized.length() / 3 + 2);
        if (addBos && options.bosId() >= 0) out.add(options.bosId());
        if (!normalized.isEmpty()) encodeNormalized(normalized, out);
        return out.toArray();
    }

    /** sentencepiece normalizer.cc with an identity rule set: whitespace handling and the dummy prefix. */
    String normalize(String text) {
        if (options.nfkc()) text = java.text.Normalizer.normalize(text, java.text.Normalizer.Form.NFKC);
        if (options.removeExtraWhitespaces()) text = text.strip().replaceAll(" {2,}", " ");
        if (text.isEmpty()) return "";
        if (options.escapeWhitespaces()) text = text.replace(" ", SPACE);
        return options.addDummyPrefix() ? (options.escapeWhitespaces() ? SPACE : " ") + text : text;
    }

    /** A candidate merge of symbols left and right; {@code length} detects stale entries after other merges. */
    private record Candidate(float score, int left, int right, int length) {}

    private static final Comparator<Candidate> BEST_FIRST =
            Comparator.comparingDouble((Candidate c) -> -c.score()).thenComparingInt(Candidate::left);

    private void encodeNormalized(String s, IntList out) {
        // Symbols as a doubly linked list over char ranges [start, end) of s, one per code point at first.
        int n = s.length();
        int[] start = new int[n], end = new int[n], prev = new int[n], next = new int[n];
        boolean[] frozen = new boolean[n];
        int count = 0;
        for (int i = 0; i < n; ) {
            int length = userDefinedMatch(s, i);
            frozen[count] = length > 0;
            if (length == 0) length = Character.charCount(s.codePointAt(i));
            start[count] = i;
            end[count] = i + length;
            prev[count] = count - 1;
            next[count] = -1;
            if (count > 0) next[count - 1] = count;
            count++;
            i += length;
        }
        PriorityQueue<Candidate> agenda = new PriorityQueue<>(Math.max(1, count), BEST_FIRST);
        for (int i = 0; i + 1 < count; i++) offer(s, i, i + 1, start, end, frozen, agenda);
        while (!agenda.isEmpty()) {
            Candidate c = agenda.poll();
            int l = c.left(), r = c.right();
            if (start[l] < 0 || start[r] < 0 || next[l] != r || end[r] - start[l] != c.length()) continue; // stale
            end[l] = end[r];
            start[r] = -1;
            next[l] = next[r];
            if (next[r] >= 0) prev[next[r]] = l;
            if (prev[l] >= 0) offer(s, prev[l], l, start, end, frozen, agenda);
            if (next[l] >= 0) offer(s, l, next[l], start, end, frozen, agenda);
        }
        boolean previousUnknown = false;
        for (int i = 0; i >= 0 && count > 0; i = next[i]) {
            String symbol = s.substring(start[i], end[i]);
            Integer id = all.get(symbol);
            if (id != null) {
                out.add(id);
                previousUnknown = false;
            } else if (options.byteFallback()) {
                for (byte b : symbol.getBytes(StandardCharsets.UTF_8)) {
                    int byteId = byteIds[b & 0xFF];
                    out.add(byteId >= 0 ? byteId : unkId);
                }
                previousUnknown = false;
            } else if (!previousUnknown) { // sentencepiece merges a run of unknown pieces into one
                out.add(unkId);
                previousUnknown = true;
            }
        }
    }

    private void offer(String s, int l, int r, int[] start, int[] end, boolean[] frozen, PriorityQueue<Candidate> agenda) {
        if (frozen[l] || frozen[r]) return;
        Integer id = mergeable.get(s.substring(start[l], end[r]));
        if (id != null) agenda.add(new Candidate(scores[id], l, r, end[r] - start[l]));
    }

    private int userDefinedMatch(String s, int i) {
        if (userDefined.isEmpty()) return 0;
        List<String> candidates = userDefined.get(s.codePointAt(i));
        if (candidates == null) return 0;
        for (String piece : candidates) if (s.startsWith(piece, i)) return piece.length();
        return 0;
    }

    // ---- decoding and lookup ----------------------------------------------------------------------------

    @Override
    byte[] tokenBytes(int id, boolean first) {
        byte type = types[id];
        if (type == BYTE) return new byte[] {(byte) Integer.parseInt(pieces[id].substring(3, 5), 16)};
        if (type == UNKNOWN) return UNK_SURFACE.clone();
        if (type == CONTROL) return new byte[0];
        String piece = pieces[id];
        if (first && options.addDummyPrefix() && piece.startsWith(SPACE)) piece = piece.substring(1);
        return piece.replace(SPACE, " ").getBytes(StandardCharsets.UTF_8);
    }

    @Override
    public boolean isSpecial(int id) {
        checkId(id);
        return types[id] == CONTROL;
    }

    @Override
    public String piece(int id) {
        checkId(id);
        return pieces[id];
    }

    /** The sentencepiece_model.proto type of {@code id} ({@link #NORMAL} … {@link #BYTE}). */
    byte pieceType(int id) {
        checkId(id);
        return types[id];
    }

    /** The merge score of {@code id} (sentencepiece: higher merges first). */
    public float score(int id) {
        checkId(id);
        return scores[id];
    }

    @Override
    public int vocabSize() {
        return pieces.length;
    }

    @Override
    public int bosId() {
        return options.bosId() < pieces.length ? options.bosId() : -1;
    }

    @Override
    public int eosId() {
        return options.eosId() < pieces.length ? options.eosId() : -1;
    }

    /** The unknown-token id. */
    public int unkId() {
        return unkId;
    }

    @Override
    public OptionalInt tokenId(String piece) {
        Integer id = all.get(piece);
        return id == null ? OptionalInt.empty() : OptionalInt.of(id);
    }
}
