// The result of loading a dataset file: examples plus what was skipped, truncated and counted.
package dev.llamafit.io.data;

import java.util.List;

/**
 * Examples loaded from one file and a report of how they were made.
 *
 * @param examples      the examples, in file order
 * @param badRecords    malformed records skipped ({@link DataOptions#skipBadRecords})
 * @param badReasons    "FILE: line N: why" for the first few of them
 * @param truncated     records longer than seqLen, cut to seqLen
 * @param format        the format used (given or detected)
 * @param tokens        input positions over all examples
 * @param trainedTokens positions that take loss
 * @param emptySkipped  records with no trained position after masking (e.g. a chat without an assistant turn,
 *                      or a prompt that fills seqLen), left out
 */
public record LoadedDataset(List<Example> examples, int badRecords, List<String> badReasons, int truncated,
                            DataFormat format, long tokens, long trainedTokens, int emptySkipped) {
    /** How many bad-record reasons are kept. */
    public static final int MAX_REASONS = 5;

    public LoadedDataset {
        examples = ExampleViews.copyOf(examples);
        badReasons = List.copyOf(badReasons);
    }

    /** One line for logs: "412 examples (chat), 51234 tokens, 20111 trained; 3 truncated, 1 bad, 0 empty". */
    public String summary() {
        return examples.size() + " examples (" + format.id() + "), " + tokens + " tokens, " + trainedTokens + " trained; "
                + truncated + " truncated, " + badRecords + " bad, " + emptySkipped + " empty";
    }
}
