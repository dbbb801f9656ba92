// "Did you mean" suggestions for a mistyped name (model presets, devices), ranked by Levenshtein distance.
package dev.llamafit.io;

import java.util.Comparator;
import java.util.List;

import org.apache.commons.text.similarity.LevenshteinDistance;

/** Shared by the model presets here and the device presets of the planner (which may import io, not the reverse). */
public final class DidYouMean {
    private static final LevenshteinDistance LEVENSHTEIN = LevenshteinDistance.getDefaultInstance();

    private DidYouMean() {}

    /**
     * The {@code k} names a mistyped {@code query} most likely meant: names that contain it (h100 → h100-80gb, 4090 →
     * rtx4090, mistral → mistral-7b) first, then by edit distance, ties alphabetically.
     */
    public static List<String> nearest(String query, List<String> names, int k) {
        return names.stream().sorted(Comparator.comparingInt((String n) -> query.isEmpty() || !n.contains(query) ? 1 : 0)
                .thenComparingInt(n -> LEVENSHTEIN.apply(query, n)).thenComparing(n -> n)).limit(k).toList();
    }
}
