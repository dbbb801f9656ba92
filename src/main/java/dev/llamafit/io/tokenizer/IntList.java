// A growable int array, to collect token ids without boxing.
package dev.llamafit.io.tokenizer;

import java.util.Arrays;

final class IntList {
    private int[] values;
    private int size;

    IntList(int capacity) {
        values = new int[Math.max(4, capacity)];
    }

    void add(int value) {
        if (size == values.length) values = Arrays.copyOf(values, Math.multiplyExact(values.length, 2));
        values[size++] = value;
    }

    void addAll(int[] more) {
        for (int v : more) add(v);
    }

    int size() {
        return size;
    }

    int[] toArray() {
        return Arrays.copyOf(values, size);
    }
}
