// The dataset file formats: packed plain text, Alpaca instruction records, chat conversations.
package dev.llamafit.io.data;

import java.util.Arrays;
import java.util.Locale;
import java.util.stream.Collectors;

import dev.llamafit.io.InputException;

/** A dataset format; {@code null} in {@link DataOptions} means "detect from the file". */
public enum DataFormat {
    /** Plain text, split into documents on lines {@code <|endoftext|>}, packed into full-length chunks. */
    TEXT,
    /** Alpaca records {@code instruction}, {@code input}, {@code output} (JSON array or JSONL). */
    ALPACA,
    /** Conversations {@code {"messages": [{"role": …, "content": …}, …]}} (JSONL or JSON array). */
    CHAT;

    /** The lower-case name used on the command line ({@code --data-format text|alpaca|chat}). */
    public String id() {
        return name().toLowerCase(Locale.ROOT);
    }

    /** Parses a command-line value; anything else is an InputException listing the choices. */
    public static DataFormat parse(String text) {
        for (DataFormat f : values()) if (f.id().equalsIgnoreCase(text == null ? "" : text.strip())) return f;
        throw new InputException("unknown data format '" + text + "': expected one of "
                + Arrays.stream(values()).map(DataFormat::id).collect(Collectors.joining(", ")));
    }
}
