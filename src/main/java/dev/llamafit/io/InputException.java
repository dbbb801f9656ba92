// A user-input error (bad file, bad flag value): reported as one clear message with exit code 2, no stack trace.
package dev.llamafit.io;

import java.nio.file.Path;

/**
 * Bad input from the user: a malformed or missing file, or an invalid option. The message names the file,
 * the position (line, tensor, byte offset) where one applies, what was expected, and a hint where one helps.
 * The command line prints it without a stack trace and exits with code 2.
 */
public class InputException extends RuntimeException {
    private static final long serialVersionUID = 1L;

    public InputException(String message) {
        super(message);
    }

    public InputException(String message, Throwable cause) {
        super(message, cause);
    }

    private static final java.util.regex.Pattern LINE = java.util.regex.Pattern.compile("line (\\d+)(?:, column (\\d+))?");

    /**
     * "FILE: message" or "FILE: POSITION: message". A position "line N" or "line N, column C" is written the
     * way compilers do, "FILE:N: message" and "FILE:N:C: message", so editors and terminals can jump to it.
     */
    public static InputException at(Path file, String position, String message) {
        String where = file == null ? "" : file.toString();
        if (position != null && !position.isEmpty()) {
            java.util.regex.Matcher m = LINE.matcher(position);
            if (file != null && m.matches()) where += ":" + m.group(1) + (m.group(2) != null ? ":" + m.group(2) : "");
            else where += (where.isEmpty() ? "" : ": ") + position;
        }
        return new InputException(where.isEmpty() ? message : where + ": " + message);
    }

    public static InputException at(Path file, String message) {
        return at(file, null, message);
    }
}
