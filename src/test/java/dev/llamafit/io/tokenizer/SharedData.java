// Locates ../shared test data; skips with a reason when it is absent, but fails when CI=true.
package dev.llamafit.io.tokenizer;

import org.junit.jupiter.api.Assertions;
import org.junit.jupiter.api.Assumptions;

import java.nio.file.Files;
import java.nio.file.Path;

final class SharedData {
    private SharedData() {}

    /** The path {@code relative} under the shared folder (system property llamafit.shared). */
    static Path require(String relative) {
        String root = System.getProperty("llamafit.shared");
        Path path = root == null ? null : Path.of(root).resolve(relative);
        if (path == null || !Files.exists(path)) {
            String reason = "shared test data missing: " + (path == null
                    ? "system property llamafit.shared is not set" : path + " does not exist");
            if ("true".equals(System.getenv("CI"))) Assertions.fail(reason + " (CI=true: real-data tests must run)");
            Assumptions.abort(reason);
        }
        return path;
    }
}
