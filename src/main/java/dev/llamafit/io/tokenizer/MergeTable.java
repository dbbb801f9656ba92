// Open-addressing hash table from a BPE merge pair (left id, right id) to its rank and merged id.
package dev.llamafit.io.tokenizer;

import java.util.Arrays;

/**
 * Llama 3 has 280k merges; boxing them in a HashMap costs ~40 MB, this costs ~8 MB. Keys are
 * {@code left << 32 | right}; linear probing; the capacity is a power of two at most half full.
 */
final class MergeTable {
    private static final long EMPTY = -1L;
    private final long[] keys;
    private final int[] ranks;
    private final int[] mergedIds;
    private final int mask;

    MergeTable(int expected) {
        int capacity = Integer.highestOneBit(Math.max(4, expected) * 2 - 1) << 1;
        keys = new long[capacity];
        Arrays.fill(keys, EMPTY);
        ranks = new int[capacity];
        mergedIds = new int[capacity];
        mask = capacity - 1;
    }

    /** Adds a merge unless the pair is already there (the first, lowest-rank entry wins, as in tokenizers). */
    void put(int left, int right, int rank, int mergedId) {
        long key = (long) left << 32 | (right & 0xFFFFFFFFL);
        int slot = slot(key);
        while (keys[slot] != EMPTY) {
            if (keys[slot] == key) return;
            slot = (slot + 1) & mask;
        }
        keys[slot] = key;
        ranks[slot] = rank;
        mergedIds[slot] = mergedId;
    }

    /** The slot of the pair, or -1 when the pair does not merge. */
    int find(int left, int right) {
        long key = (long) left << 32 | (right & 0xFFFFFFFFL);
        int slot = slot(key);
        while (keys[slot] != EMPTY) {
            if (keys[slot] == key) return slot;
            slot = (slot + 1) & mask;
        }
        return -1;
    }

    int rank(int slot) {
        return ranks[slot];
    }

    int mergedId(int slot) {
        return mergedIds[slot];
    }

    private int slot(long key) {
        long h = key * 0x9E3779B97F4A7C15L;
        return (int) (h >>> 33) & mask;
    }
}
