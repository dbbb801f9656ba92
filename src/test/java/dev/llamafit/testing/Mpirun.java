// Finds Open MPI's mpirun for the tests that launch ranks, or skips them (fails under CI, which installs Open MPI).
package dev.llamafit.testing;

import static org.junit.jupiter.api.Assertions.fail;

import java.io.File;
import java.nio.file.Files;
import java.nio.file.Path;

import org.junit.jupiter.api.Assumptions;

import dev.llamafit.dist.OpenMpi;

/** The one place the multi-rank tests look for mpirun and libmpi. */
public final class Mpirun {
    private Mpirun() {}

    /** mpirun on the PATH with a loadable libmpi.so.40; otherwise the test is aborted with the reason, or fails when CI=true. */
    public static Path require() {
        Path found = null;
        for (String dir : System.getenv().getOrDefault("PATH", "").split(File.pathSeparator))
            if (!dir.isEmpty() && Files.isExecutable(Path.of(dir, "mpirun"))) { found = Path.of(dir, "mpirun"); break; }
        String why = found == null ? "mpirun is not on the PATH" : OpenMpi.unavailableReason();
        if (why != null) {
            if ("true".equals(System.getenv("CI"))) fail(why + "; CI must have openmpi-bin and libopenmpi-dev installed");
            Assumptions.abort(why + " (apt-get install -y openmpi-bin libopenmpi-dev)");
        }
        return found;
    }
}
