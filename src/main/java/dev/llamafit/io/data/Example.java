// One training sequence: input ids and the already-shifted targets, -100 where no loss is taken.
package dev.llamafit.io.data;

/**
 * One training sequence. {@code labels[t]} is the target of position {@code t}, i.e. the token that follows
 * {@code inputIds[t]} (the shift is done here, not in the loss), or {@link #IGNORE} where the position takes
 * no loss (prompt tokens, padding). Both arrays have the same length T ≤ seqLen; {@link Batches} pads.
 *
 * @param inputIds [T] token ids fed to the model
 * @param labels   [T] next-token targets or {@link #IGNORE}
 */
public record Example(int[] inputIds, int[] labels) {
    /** The label of a position without loss (the value PyTorch's cross entropy ignores by default). */
    public static final int IGNORE = -100;

    public Example {
        if (inputIds == null || labels == null) throw new IllegalArgumentException("inputIds and labels must not be null");
        if (inputIds.length != labels.length)
            throw new IllegalArgumentException("inputIds has " + inputIds.length + " ids but labels has " + labels.length);
        if (inputIds.length == 0) throw new IllegalArgumentException("an example needs at least one position");
    }

    /** T: the number of positions. */
    public int length() {
        return inputIds.length;
    }

    /** Positions that take loss. */
    public int trainedTokens() {
        int n = 0;
        for (int l : labels) if (l != IGNORE) n++;
        return n;
    }
}
