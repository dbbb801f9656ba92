// Exit codes: bad input exits 2 with one line; anything else is an internal error (exit 1) with a hint for the trace.
package dev.llamafit.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.PrintWriter;
import java.io.StringWriter;
import java.util.concurrent.Callable;

import org.junit.jupiter.api.Test;

import dev.llamafit.io.InputException;
import picocli.CommandLine;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

class ExitCodesTest {
    /** A command that fails as told: a bug deep inside (IllegalArgumentException, IllegalStateException) or bad input. */
    @Command(name = "fail")
    static final class Fail implements Callable<Integer> {
        @Option(names = "--with") String with;

        @Override public Integer call() {
            switch (with) {
                case "iae" -> throw new IllegalArgumentException("index 7 out of range for a tensor of 4");
                case "ise" -> throw new IllegalStateException("ledger closed twice");
                case "io" -> throw new java.io.UncheckedIOException(new java.io.IOException("No space left on device"));
                case "nan" -> throw new dev.llamafit.train.RunFailure("loss became NaN at step 3; stopping");
                case "input" -> throw new InputException("data.txt: empty file");
                case "record" -> Main.userInput(() -> { throw new IllegalArgumentException("--lora-r must be >= 1, got 0"); });
                default -> { }
            }
            return Main.OK;
        }
    }

    static BadInputTest.Run run(String... args) {
        StringWriter out = new StringWriter(), err = new StringWriter();
        int code = Main.execute(new CommandLine(new Fail()), args, new PrintWriter(out, true), new PrintWriter(err, true));
        return new BadInputTest.Run(code, out.toString(), err.toString());
    }

    @Test
    void unexpectedExceptionsAreInternalErrorsWithExitOne() {
        for (String kind : new String[]{"iae", "ise"}) {
            BadInputTest.Run r = run("--with", kind);
            assertEquals(Main.RUNTIME_FAILURE, r.code(), r.err());
            assertTrue(r.err().startsWith("llamafit: internal error: "), r.err());
            assertTrue(r.err().contains(kind.equals("iae") ? "index 7 out of range" : "ledger closed twice"), r.err());
            // Without LLAMAFIT_DEBUG the trace is not printed, but how to get it is.
            if (System.getenv("LLAMAFIT_DEBUG") == null) {
                assertTrue(r.err().contains("LLAMAFIT_DEBUG=1"), r.err());
                assertFalse(r.err().contains("\tat "), r.err());
                assertEquals(1, r.err().lines().count(), "one line: " + r.err());
            }
        }
    }

    /** A run that fails for a reason outside the program exits 1 too, but says what failed, not "internal error". */
    @Test
    void runtimeFailuresExitOneWithoutCallingThemBugs() {
        for (String kind : new String[]{"io", "nan"}) {
            BadInputTest.Run r = run("--with", kind);
            assertEquals(Main.RUNTIME_FAILURE, r.code(), r.err());
            assertTrue(r.err().startsWith("llamafit: failed: "), r.err());
            assertTrue(r.err().contains(kind.equals("io") ? "No space left on device" : "loss became NaN"), r.err());
        }
    }

    @Test
    void badInputAndRecordValidationAtTheFlagBoundaryExitTwo() {
        BadInputTest.assertBadInput(run("--with", "input"), "data.txt: empty file");
        BadInputTest.assertBadInput(run("--with", "record"), "--lora-r must be >= 1");
        BadInputTest.Run usage = run("--nope");
        assertEquals(Main.BAD_INPUT, usage.code(), usage.err());
        assertEquals(Main.OK, run("--with", "none").code());
    }

    /** `train --help` lists only what train does; `plan --help` lists both runtimes and says which options are PyTorch's. */
    @Test
    void trainHelpListsOnlyWhatTrainDoes() {
        BadInputTest.Run train = BadInputTest.run("train", "--help");
        assertEquals(0, train.code(), train.err());
        // --zero, --workers and --offload are train's since data-parallel training and disk offload run; these stay plan's.
        for (String absent : new String[]{"--sharding", "--activation-offload", "--runtime"})
            assertFalse(train.out().contains(absent), absent + " in train --help:\n" + train.out());
        for (String present : new String[]{"--method", "--lora-r", "--lora-targets", "--optimizer", "--gradient-checkpointing", "--batch-size", "--seq-len", "--grad-accum", "--precision", "bf16-pure", "adamw8bit", "--base-dtype", "qlora", "--int8-threshold", "--zero", "--workers", "--offload-dir"})
            assertTrue(train.out().contains(present), present + " missing from train --help");
        BadInputTest.Run plan = BadInputTest.run("plan", "--help");
        assertEquals(0, plan.code(), plan.err());
        for (String present : new String[]{"--precision", "--zero", "qlora", "adamw8bit", "(pytorch runtime)", "--list-presets", "q_proj"})
            assertTrue(plan.out().contains(present), present + " missing from plan --help:\n" + plan.out());
    }
}
