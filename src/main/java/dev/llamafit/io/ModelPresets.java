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
            throw new InputException("unknown model preset '" + name + "'; did you mean " + String.join(", ", DidYouMean.nearest(key, names(), 3))
                    + "? (all presets: " + String.join(", ", names()) + "; or give a model folder or config.json)");
        try (InputStream in = ModelPresets.class.getResourceAsStream(DIR + key + ".json")) {
            return ConfigJson.parse(Json.MAPPER.readTree(in), Path.of("preset:" + key));
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }
}
