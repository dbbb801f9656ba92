// A child-JVM entry point for RSS tests: runs one llamafit command, then prints the process's peak RSS (VmHWM).
package dev.llamafit.cli;

import java.io.PrintWriter;

import dev.llamafit.memory.ProcessMemory;

/** {@code java … dev.llamafit.cli.PeakRssMain ARGS…}: exits with the command's code after a {@code peak_rss_bytes=N} line. */
public final class PeakRssMain {
    private PeakRssMain() {}

    public static void main(String[] args) {
        PrintWriter out = new PrintWriter(System.out, true), err = new PrintWriter(System.err, true);
        int code = Main.run(args, out, err);
        out.println("peak_rss_bytes=" + ProcessMemory.peakRssBytes().orElse(-1));
        System.exit(code);
    }
}
