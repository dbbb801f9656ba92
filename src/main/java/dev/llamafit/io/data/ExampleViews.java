// Immutable lists of examples that share storage: copying one keeps the view instead of materialising every example.
package dev.llamafit.io.data;

import java.util.AbstractList;
import java.util.List;
import java.util.RandomAccess;

/** {@link #copyOf} is List.copyOf for examples, except that it keeps this package's immutable views as they are. */
public final class ExampleViews {
    private ExampleViews() {}

    /** An immutable list of the same examples; views over packed text are returned as is (they are immutable). */
    public static List<Example> copyOf(List<Example> examples) {
        if (examples instanceof PackedText || examples instanceof Picked) return examples;
        return List.copyOf(examples);
    }

    /** The most positions of any example when the list knows it without building them (a view), else -1. */
    static int longest(List<Example> examples) {
        if (examples instanceof PackedText p) return p.seqLen();
        if (examples instanceof Picked p) return longest(p.base);
        return -1;
    }

    /** The examples of {@code base} at {@code indices}, in that order, without copying them. */
    static List<Example> pick(List<Example> base, int[] indices) {
        return base instanceof PackedText || base instanceof Picked ? new Picked(base, indices.clone()) : pickCopy(base, indices);
    }

    private static List<Example> pickCopy(List<Example> base, int[] indices) {
        Example[] out = new Example[indices.length];
        for (int i = 0; i < indices.length; i++) out[i] = base.get(indices[i]);
        return List.of(out);
    }

    private static final class Picked extends AbstractList<Example> implements RandomAccess {
        private final List<Example> base;
        private final int[] indices;

        Picked(List<Example> base, int[] indices) {
            this.base = base;
            this.indices = indices;
        }

        @Override
        public Example get(int i) {
            return base.get(indices[i]);
        }

        @Override
        public int size() {
            return indices.length;
        }
    }
}
