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

    /** A fixture folder under src/test/resources/fixtures. */
    public static Path fixture(String name) {
        return Path.of("src/test/resources/fixtures", name).toAbsolutePath();
    }
}
