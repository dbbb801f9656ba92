// Locates ../shared test data; missing data skips a test for users, but fails it under CI.
package dev.llamafit.testing;

import static org.junit.jupiter.api.Assertions.fail;

import java.nio.file.Files;
import java.nio.file.Path;

import org.junit.jupiter.api.Assumptions;

/** Test data from the shared folder (models, tokenizers, datasets), path from -Dllamafit.shared. */
public final class SharedData {
    private SharedData() {}

    public static Path root() {
        return Path.of(System.getProperty("llamafit.shared", "../shared")).toAbsolutePath().normalize();
    }

    /** The path under the shared folder; skips the test (or fails it when CI=true) if it is absent. */
    public static Path require(String relative) {
        Path p = root().resolve(relative);
        if (!Files.exists(p)) {
            String why = "shared test data " + p + " is missing (set -Dllamafit.shared=DIR)";
            if ("true".equals(System.getenv("CI"))) fail(why + "; CI must have it");
            Assumptions.abort(why);
        }
        return p;
    }

    /** An int matrix from a fixture's JSON (e.g. expected.json's "input_ids" or "labels"). */
    public static int[][] ints(com.fasterxml.jackson.databind.JsonNode rows) {
        int[][] out = new int[rows.size()][];
        for (int b = 0; b < rows.size(); b++) {
            out[b] = new int[rows.get(b).size()];
            for (int t = 0; t < out[b].length; t++) out[b][t] = rows.get(b).get(t).asInt();
        }
        return out;
    }

    /** expected.json's "input_ids" of a fixture folder. */
    public static int[][] inputIds(Path dir) {
        return ints(dev.llamafit.io.Json.read(dir.resolve("expected.json")).get("input_ids"));
    }

    /** Largest |a[i] − b[i]|, in double. */
    public static double maxAbsDiff(float[] a, float[] b) {
        double m = 0;
        for (int i = 0; i < a.length; i++) m = Math.max(m, Math.abs((double) a[i] - b[i]));
        return m;
    }

    /** A fixture folder under src/test/resources/fixtures. */
    public static Path fixture(String name) {
        return Path.of("src/test/resources/fixtures", name).toAbsolutePath();
    }
}
