// The --allow-non-finite flag shared by the commands that load a base model's weights.
package dev.llamafit.cli;

import java.io.PrintWriter;

import dev.llamafit.io.ModelFolder;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Option;

/**
 * A picocli mixin: with the flag, a command runs with {@link ModelFolder#NON_FINITE_ALLOWED} bound, so a base whose
 * weights hold NaN/Inf loads with one warning line on stderr instead of stopping with exit 2.
 */
final class NonFiniteOption {
    @Option(names = "--allow-non-finite", description = "Load a base model whose weights hold NaN/Inf (refused by default) with a warning.")
    boolean allow;

    /** Runs {@code body}, with the binding when the flag is given. */
    Integer around(CommandSpec spec, ScopedValue.CallableOp<Integer, Exception> body) throws Exception {
        if (!allow) return body.call();
        PrintWriter err = spec.commandLine().getErr();
        return ScopedValue.where(ModelFolder.NON_FINITE_ALLOWED, line -> {
            err.println("llamafit: warning: " + line);
            err.flush();
        }).call(body);
    }
}
