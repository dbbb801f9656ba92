// Training progress: a live bar on a terminal, plain log lines otherwise.
package dev.llamafit.train;

import java.io.PrintStream;
import java.util.Locale;

import dev.llamafit.memory.ByteSize;
import me.tongfei.progressbar.ProgressBar;
import me.tongfei.progressbar.ProgressBarBuilder;
import me.tongfei.progressbar.ProgressBarStyle;

/** Shows step, loss, lr, tokens/s, ETA and memory. */
final class Progress implements AutoCloseable {
    private final PrintStream log;
    private final long total;
    private final long logEvery;
    private final ProgressBar bar;

    Progress(PrintStream log, long start, long total) {
        this.log = log;
        this.total = total;
        this.logEvery = Math.max(1, (total - start) / 20);
        boolean terminal = System.console() != null && System.console().isTerminal() && log == System.out;
        this.bar = terminal ? new ProgressBarBuilder().setTaskName("train").setInitialMax(total).startsFrom(start, java.time.Duration.ZERO)
                .setStyle(ProgressBarStyle.ASCII).setUpdateIntervalMillis(250).build() : null;
    }

    /** {@code lossScale} is NaN without loss scaling (fp32, bf16); then the line is as it always was. */
    void update(long step, double loss, double lr, double gradNorm, double tokensPerSecond, double evalLoss, long memoryBytes,
                double lossScale, boolean skipped) {
        String scale = Double.isNaN(lossScale) ? "" : String.format(Locale.ROOT, " scale %s%s",
                lossScale >= 1 && lossScale < 0x1p53 ? Long.toString((long) lossScale) : String.format(Locale.ROOT, "%.3g", lossScale),
                skipped ? " (skipped: overflow)" : "");
        String extra = String.format(Locale.ROOT, "loss %.4f lr %.2e %.0f tok/s mem %s%s%s", loss, lr, tokensPerSecond,
                ByteSize.format(memoryBytes), Double.isNaN(evalLoss) ? "" : String.format(Locale.ROOT, " eval %.4f", evalLoss), scale);
        if (bar != null) {
            bar.stepTo(step);
            bar.setExtraMessage(extra);
        } else if (step == total || step % logEvery == 0 || step == 1 || !Double.isNaN(evalLoss) || skipped) {
            log.printf(Locale.ROOT, "step %d/%d  %s  grad_norm %.3f%n", step, total, extra, gradNorm);
        }
    }

    @Override
    public void close() {
        if (bar != null) bar.close();
    }
}
