// How a dataset file becomes examples: sequence length, loss masking, bad-record policy, format, placeholders.
package dev.llamafit.io.data;

import java.util.LinkedHashMap;
import java.util.Map;

/**
 * Options for {@link Datasets#load}.
 *
 * @param seqLen         T: the longest example; text is packed into chunks of exactly T, records longer than T
 *                       are truncated to T (and counted)
 * @param trainOnPrompt  take loss on prompt / user / system tokens too (default: only responses)
 * @param skipBadRecords skip malformed records (counted, first reasons kept) instead of stopping at the first
 * @param format         the format, or {@code null} to detect it from the file name and content
 * @param placeholders   {@code {{key}}} substitutions in record text (identity datasets); {@code null} means
 *                       {@link #DEFAULT_PLACEHOLDERS}, and given keys override those defaults
 */
public record DataOptions(int seqLen, boolean trainOnPrompt, boolean skipBadRecords, DataFormat format,
                          Map<String, String> placeholders) {

    /** {@code {{name}}} and {@code {{author}}}, as used by LLaMA-Factory's identity.json. */
    public static final Map<String, String> DEFAULT_PLACEHOLDERS = Map.of("name", "llamafit", "author", "the llamafit authors");

    /** Longest sequence accepted; far above any context length, it only guards against overflow in sizes. */
    public static final int MAX_SEQ_LEN = 1 << 20;

    public DataOptions {
        if (seqLen < 1 || seqLen > MAX_SEQ_LEN)
            throw new IllegalArgumentException("seqLen must be in [1, " + MAX_SEQ_LEN + "], got " + seqLen);
        Map<String, String> merged = new LinkedHashMap<>(DEFAULT_PLACEHOLDERS);
        if (placeholders != null) {
            for (var e : placeholders.entrySet()) {
                if (e.getKey() == null || e.getKey().isBlank() || e.getValue() == null)
                    throw new IllegalArgumentException("placeholder keys must be non-blank and values non-null: " + e);
                merged.put(e.getKey(), e.getValue());
            }
        }
        placeholders = Map.copyOf(merged);
    }

    /** Defaults: responses-only loss, stop at the first bad record, detect the format. */
    public static DataOptions of(int seqLen) {
        return new DataOptions(seqLen, false, false, null, null);
    }

    public DataOptions withTrainOnPrompt(boolean on) {
        return new DataOptions(seqLen, on, skipBadRecords, format, placeholders);
    }

    public DataOptions withSkipBadRecords(boolean on) {
        return new DataOptions(seqLen, trainOnPrompt, on, format, placeholders);
    }

    public DataOptions withFormat(DataFormat f) {
        return new DataOptions(seqLen, trainOnPrompt, skipBadRecords, f, placeholders);
    }

    /** {@code text} with every {@code {{key}}} of {@link #placeholders} replaced; other braces stay. */
    String substitute(String text) {
        if (text.indexOf("{{") < 0) return text;
        String out = text;
        for (var e : placeholders.entrySet()) out = out.replace("{{" + e.getKey() + "}}", e.getValue());
        return out;
    }
}
