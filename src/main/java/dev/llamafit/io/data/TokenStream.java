// A long run of token ids in fixed blocks, 2 bytes an id when the vocabulary fits in 16 bits, never copied to grow.
package dev.llamafit.io.data;

import java.util.ArrayList;
import java.util.List;

/**
 * The token stream of a text corpus, held once for the whole run. Blocks of {@value #BLOCK} ids are appended as it
 * grows, so there is no doubling copy (which would briefly hold the stream three times); ids below 65536 are stored
 * as {@code char}, which halves the corpus for every LLaMA vocabulary up to 64 Ki entries. An id that does not fit
 * switches the stream to {@code int} blocks once.
 */
final class TokenStream {
    static final int BLOCK = 1 << 16;

    private final List<char[]> narrow = new ArrayList<>();
    private List<int[]> wide;   // null while every id fits in 16 bits
    private long size;

    TokenStream(int vocabSize) {
        if (vocabSize > 0x10000) wide = new ArrayList<>();
    }

    static TokenStream of(int[] ids) {
        TokenStream s = new TokenStream(0);
        for (int id : ids) s.add(id);
        return s;
    }

    long size() {
        return size;
    }

    /** Bytes held by the blocks (for memory accounting). */
    long bytes() {
        return wide != null ? (long) wide.size() * BLOCK * 4 : (long) narrow.size() * BLOCK * 2;
    }

    void add(int id) {
        if (id < 0) throw new IllegalArgumentException("token id " + id + " is negative");
        if (wide == null && id > 0xFFFF) widen();
        int at = (int) (size % BLOCK);
        if (wide != null) {
            if (at == 0) wide.add(new int[BLOCK]);
            wide.getLast()[at] = id;
        } else {
            if (at == 0) narrow.add(new char[BLOCK]);
            narrow.getLast()[at] = (char) id;
        }
        size++;
    }

    void addAll(int[] ids) {
        for (int id : ids) add(id);
    }

    int get(long i) {
        int block = (int) (i / BLOCK), at = (int) (i % BLOCK);
        return wide != null ? wide.get(block)[at] : narrow.get(block)[at];
    }

    /** Ids {@code [from, from + n)} as a new array. */
    int[] slice(long from, int n) {
        if (from < 0 || n < 0 || from + n > size) throw new IndexOutOfBoundsException("slice " + from + "+" + n + " of " + size);
        int[] out = new int[n];
        for (int k = 0; k < n; k++) out[k] = get(from + k);
        return out;
    }

    int[] toArray() {
        return slice(0, Math.toIntExact(size));
    }

    private void widen() {
        wide = new ArrayList<>(narrow.size());
        for (char[] c : narrow) {
            int[] w = new int[BLOCK];
            for (int k = 0; k < BLOCK; k++) w[k] = c[k];
            wide.add(w);
        }
        narrow.clear();
    }
}
