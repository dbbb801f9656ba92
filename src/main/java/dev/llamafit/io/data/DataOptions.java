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
 * @param maxRecordBytes the longest JSONL line read; a longer one is a bad record, found without holding it
 *                       ({@code --max-record-bytes}, default {@link #DEFAULT_MAX_RECORD_BYTES})
 */
public record DataOptions(int seqLen, boolean trainOnPrompt, boolean skipBadRecords, DataFormat format,
                          Map<String, String> placeholders, long maxRecordBytes) {

    /** 1 MiB: far above any instruction record or conversation a model with a few thousand positions can train on. */
    public static final long DEFAULT_MAX_RECORD_BYTES = 1L << 20;

    /** A record can be held in a Java array at most (and a JSON dataset file is smaller still). */
    public static final long MAX_MAX_RECORD_BYTES = Integer.MAX_VALUE - 8;

    /** {@code {{name}}} and {@code {{author}}}, as used by LLaMA-Factory's identity.json. */
    public static final Map<String, String> DEFAULT_PLACEHOLDERS = Map.of("name", "llamafit", "author", "the llamafit authors");

    /** Longest sequence accepted; far above any context length, it only guards against overflow in sizes. */
    public static final int MAX_SEQ_LEN = 1 << 20;

    public DataOptions {
        if (seqLen < 1 || seqLen > MAX_SEQ_LEN)
            throw new IllegalArgumentException("seqLen must be in [1, " + MAX_SEQ_LEN + "], got " + seqLen);
        if (maxRecordBytes < 1 || maxRecordBytes > MAX_MAX_RECORD_BYTES)
            throw new IllegalArgumentException("--max-record-bytes must be in [1, " + MAX_MAX_RECORD_BYTES + "], got " + maxRecordBytes);
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

    /** With the default record limit. */
    public DataOptions(int seqLen, boolean trainOnPrompt, boolean skipBadRecords, DataFormat format, Map<String, String> placeholders) {
        this(seqLen, trainOnPrompt, skipBadRecords, format, placeholders, DEFAULT_MAX_RECORD_BYTES);
    }

    /** Defaults: responses-only loss, stop at the first bad record, detect the format. */
    public static DataOptions of(int seqLen) {
        return new DataOptions(seqLen, false, false, null, null);
    }

    public DataOptions withTrainOnPrompt(boolean on) {
        return new DataOptions(seqLen, on, skipBadRecords, format, placeholders, maxRecordBytes);
    }

    public DataOptions withSkipBadRecords(boolean on) {
        return new DataOptions(seqLen, trainOnPrompt, on, format, placeholders, maxRecordBytes);
    }

    public DataOptions withFormat(DataFormat f) {
        return new DataOptions(seqLen, trainOnPrompt, skipBadRecords, f, placeholders, maxRecordBytes);
    }

    public DataOptions withMaxRecordBytes(long bytes) {
        return new DataOptions(seqLen, trainOnPrompt, skipBadRecords, format, placeholders, bytes);
    }

    /** {@code text} with every {@code {{key}}} of {@link #placeholders} replaced; other braces stay. */
    String substitute(String text) {
        if (text.indexOf("{{") < 0) return text;
        String out = text;
        for (var e : placeholders.entrySet()) out = out.replace("{{" + e.getKey() + "}}", e.getValue());
        return out;
    }
}
