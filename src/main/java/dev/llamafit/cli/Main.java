// The llamafit command line: subcommands, exit codes, and user-facing error messages.
package dev.llamafit.cli;

import java.io.IOException;
import java.io.PrintWriter;
import java.io.UncheckedIOException;

import dev.llamafit.io.InputException;
import dev.llamafit.train.RunFailure;
import picocli.CommandLine;
import picocli.CommandLine.Command;

/**
 * Entry point. Exit codes: 0 ok, 1 runtime failure, 2 bad usage or input (DESIGN §8). Bad input is a picocli usage
 * error or an {@link InputException}: commands turn the validation failures of the records they build from flags
 * into one ({@link #userInput}). It prints one line without a stack trace. A run that fails for a reason outside the
 * program (I/O, a {@link RunFailure} such as a diverging loss) exits 1 with "failed: …"; any other exception is an
 * internal error (exit 1): one line that says so, and {@code LLAMAFIT_DEBUG=1} adds the trace.
 */
@Command(name = "llamafit", mixinStandardHelpOptions = true, version = "llamafit 0.1.0",
        description = "Fine-tune and run LLaMA-architecture models with measured memory-saving techniques.",
        subcommands = {DemoCommand.class, GenerateCommand.class, TrainCommand.class, PlanCommand.class, EvalCommand.class, TokenizeCommand.class,
                InspectCommand.class, ConvertCommand.class, MergeCommand.class,
                BenchCommand.class, UiCommand.class, CommandLine.HelpCommand.class})
public final class Main implements Runnable {
    public static final int OK = 0;
    public static final int RUNTIME_FAILURE = 1;
    public static final int BAD_INPUT = 2;

    @CommandLine.Spec
    CommandLine.Model.CommandSpec spec;

    @Override
    public void run() {
        spec.commandLine().usage(System.out);
    }

    public static void main(String[] args) {
        System.exit(run(args, new PrintWriter(System.out, true), new PrintWriter(System.err, true)));
    }

    static boolean debug() {
        String v = System.getenv("LLAMAFIT_DEBUG");
        return v != null && !v.isEmpty() && !v.equals("0");
    }

    /**
     * The boundary where flags become records: a record's validation failure (IllegalArgumentException) there is bad
     * input, so it becomes an {@link InputException} (exit 2). Past this boundary an IllegalArgumentException is a bug.
     */
    static <T> T userInput(java.util.function.Supplier<T> flagsToRecord) {
        try {
            return flagsToRecord.get();
        } catch (IllegalArgumentException e) {
            throw new InputException(e.getMessage(), e);
        }
    }

    /** As {@link #userInput(java.util.function.Supplier)}, but collects the message in {@code errors} and returns null, so that one run reports every problem. */
    static <T> T userInput(java.util.function.Supplier<T> flagsToRecord, java.util.List<String> errors) {
        if (errors == null) return userInput(flagsToRecord);
        try {
            return flagsToRecord.get();
        } catch (IllegalArgumentException | InputException e) {
            errors.add(e.getMessage());
            return null;
        }
    }

    /** Runs the command line and returns the exit code (tests call this). */
    public static int run(String[] args, PrintWriter out, PrintWriter err) {
        return execute(new CommandLine(new Main()), args, out, err);
    }

    /** Runs {@code cl} with llamafit's exit codes and error lines (tests pass a command line of their own). */
    static int execute(CommandLine cl, String[] args, PrintWriter out, PrintWriter err) {
        cl.setOut(out);
        cl.setErr(err);
        cl.setExecutionExceptionHandler((ex, commandLine, parseResult) -> {
            if (ex instanceof InputException) {
                err.println("llamafit: error: " + ex.getMessage());
                return BAD_INPUT;
            }
            String message = ex.getMessage() != null ? ex.getMessage() : ex.toString();
            // The run failed for a reason outside the program (a file system error, a diverging loss): say what happened.
            if (ex instanceof IOException || ex instanceof UncheckedIOException || ex instanceof RunFailure) {
                err.println("llamafit: failed: " + message);
                if (debug()) ex.printStackTrace(err);
                return RUNTIME_FAILURE;
            }
            // Anything else is a bug: say so on one line, and how to see where it came from.
            err.println("llamafit: internal error: " + message + (debug() ? "" : " (set LLAMAFIT_DEBUG=1 for the stack trace)"));
            if (debug()) ex.printStackTrace(err);
            return RUNTIME_FAILURE;
        });
        cl.setParameterExceptionHandler((ex, a) -> {
            err.println("llamafit: error: " + ex.getMessage());
            CommandLine.UnmatchedArgumentException.printSuggestions(ex, err);
            err.println("Try 'llamafit " + (ex.getCommandLine().getCommandName().equals("llamafit") ? "" : ex.getCommandLine().getCommandName() + " ") + "--help'.");
            return BAD_INPUT;
        });
        return cl.execute(args);
    }
}
