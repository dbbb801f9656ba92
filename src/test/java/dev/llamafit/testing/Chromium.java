// Finds Debian's chromium and chromedriver for the tests that drive `llamafit ui`'s page, or skips them (fails under CI).
package dev.llamafit.testing;

import static org.junit.jupiter.api.Assertions.fail;

import java.io.File;
import java.nio.file.Files;
import java.nio.file.Path;

import org.junit.jupiter.api.Assumptions;

/** The one place the browser tests look for the browser and its driver. */
public final class Chromium {
    private Chromium() {}

    /** A headless-capable browser and the chromedriver that drives it. */
    public record Install(Path browser, Path driver) {}

    /** chromium and chromedriver on the PATH; otherwise the test is aborted with the reason, or fails when CI=true. */
    public static Install require() {
        Path browser = onPath("chromium"), driver = onPath("chromedriver");
        String why = browser == null ? "chromium is not on the PATH" : driver == null ? "chromedriver is not on the PATH" : null;
        if (why != null) {
            if ("true".equals(System.getenv("CI"))) fail(why + "; CI must have chromium and chromium-driver installed");
            Assumptions.abort(why + " (apt-get install -y chromium chromium-driver)");
        }
        return new Install(browser, driver);
    }

    private static Path onPath(String name) {
        for (String dir : System.getenv().getOrDefault("PATH", "").split(File.pathSeparator))
            if (!dir.isEmpty() && Files.isExecutable(Path.of(dir, name))) return Path.of(dir, name);
        return null;
    }
}
