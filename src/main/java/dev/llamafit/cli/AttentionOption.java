// The --attention flag of generate and eval (train and plan take it with their technique flags).
package dev.llamafit.cli;

import dev.llamafit.model.Technique;
import picocli.CommandLine.Option;

/** A picocli mixin: {@code --attention eager|flash}, parsed into {@link Technique.Attention}. */
final class AttentionOption {
    static final String DESCRIPTION = "eager (keeps the softmax probabilities) or flash (tiled with an online softmax: no T×T"
            + " matrix) (default: flash).";

    @Option(names = "--attention", paramLabel = "eager|flash", description = DESCRIPTION) String attention;

    /** The flag's value, or the default; IllegalArgumentException naming the values for another word. */
    Technique.Attention attention() { return parse(attention); }

    static Technique.Attention parse(String value) {
        return value == null ? Technique.DEFAULT_ATTENTION : Technique.parse(Technique.Attention.class, "--attention", value);
    }
}
