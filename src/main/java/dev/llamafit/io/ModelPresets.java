// Model presets: Hugging Face config.json files kept as resources, looked up by name.
package dev.llamafit.io;

import java.io.IOException;
import java.io.InputStream;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.List;
import java.util.Locale;

import dev.llamafit.model.LlamaConfig;

/** The published config.json of well-known checkpoints, under {@code /dev/llamafit/presets/models/NAME.json}. */
public final class ModelPresets {
    private static final String DIR = "/dev/llamafit/presets/models/";

    private ModelPresets() {}

    /** Every preset name, sorted. */
    public static List<String> names() {
        try (InputStream in = ModelPresets.class.getResourceAsStream(DIR + "index.txt")) {
            if (in == null) throw new IllegalStateException("model preset index missing from the build");
            return new String(in.readAllBytes(), StandardCharsets.UTF_8).lines().map(String::trim).filter(s -> !s.isEmpty()).sorted().toList();
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }

    public static boolean exists(String name) { return names().contains(name.toLowerCase(Locale.ROOT)); }

    /** The preset's config; an unknown name is an error that suggests the nearest names. */
    public static LlamaConfig load(String name) {
        String key = name.toLowerCase(Locale.ROOT);
        if (!names().contains(key))
            throw new IllegalArgumentException("unknown model preset '" + name + "'; did you mean " + String.join(", ", nearest(key, names(), 3))
                    + "? (all presets: " + String.join(", ", names()) + "; or give a model folder or config.json)");
        try (InputStream in = ModelPresets.class.getResourceAsStream(DIR + key + ".json")) {
            return ConfigJson.parse(Json.MAPPER.readTree(in), Path.of("preset:" + key));
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }

    /**
     * The {@code k} names a mistyped {@code query} most likely meant: names that contain it (h100 → h100-80gb, 4090 →
     * rtx4090, mistral → mistral-7b) first, then by edit distance, ties alphabetically. Shared with the device list.
     */
    public static List<String> nearest(String query, List<String> names, int k) {
        return names.stream().sorted(java.util.Comparator.comparingInt((String n) -> query.isEmpty() || !n.contains(query) ? 1 : 0)
                .thenComparingInt(n -> editDistance(query, n)).thenComparing(n -> n)).limit(k).toList();
    }

    /** Levenshtein distance (insert, delete, substitute: cost 1 each), for "did you mean" suggestions. */
    public static int editDistance(String a, String b) {
        int[] prev = new int[b.length() + 1], cur = new int[b.length() + 1];
        for (int j = 0; j <= b.length(); j++) prev[j] = j;
        for (int i = 1; i <= a.length(); i++) {
            cur[0] = i;
            for (int j = 1; j <= b.length(); j++)
                cur[j] = Math.min(Math.min(cur[j - 1] + 1, prev[j] + 1), prev[j - 1] + (a.charAt(i - 1) == b.charAt(j - 1) ? 0 : 1));
            int[] t = prev; prev = cur; cur = t;
        }
        return prev[b.length()];
    }
}
