// A run of token ids that either all take loss or all do not; records are built from these.
package dev.llamafit.io.data;

import java.util.Arrays;
import java.util.List;

/**
 * Token ids of one part of a rendered record (a prompt, a response) and whether they are targets. Parts are
 * tokenized separately and concatenated, so the trained/untrained boundary falls exactly between parts.
 *
 * @param ids     token ids of this part
 * @param trained whether these tokens are targets (they are the labels of the positions before them)
 */
record Segment(int[] ids, boolean trained) {

    /** The concatenation as one example: labels shifted by one, untrained targets -100, cut to seqLen. */
    static Built build(List<Segment> parts, int seqLen, boolean trainOnPrompt) {
        int total = 0;
        for (Segment s : parts) total = Math.addExact(total, s.ids.length);
        int[] ids = new int[total];
        boolean[] trained = new boolean[total];
        int at = 0;
        for (Segment s : parts) {
            System.arraycopy(s.ids, 0, ids, at, s.ids.length);
            Arrays.fill(trained, at, at + s.ids.length, trainOnPrompt || s.trained);
            at += s.ids.length;
        }
        // n tokens give n-1 (position, next token) pairs; keep at most seqLen of them (the head: the prompt
        // comes first and the response is what gets cut).
        int positions = Math.max(0, total - 1);
        boolean cut = positions > seqLen;
        int t = Math.min(positions, seqLen);
        int[] in = Arrays.copyOf(ids, t);
        int[] labels = new int[t];
        int trainedCount = 0;
        for (int i = 0; i < t; i++) {
            labels[i] = trained[i + 1] ? ids[i + 1] : Example.IGNORE;
            if (trained[i + 1]) trainedCount++;
        }
        return new Built(trainedCount == 0 ? null : new Example(in, labels), cut);
    }

    /** The example ({@code null} when nothing is trained) and whether it was cut to seqLen. */
    record Built(Example example, boolean truncated) {}
}
