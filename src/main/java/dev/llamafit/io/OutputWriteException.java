// A write to an output that failed (disk full, I/O error): names the operation, the path and the reason in plain words.
package dev.llamafit.io;

import java.io.IOException;
import java.nio.file.AccessDeniedException;
import java.nio.file.DirectoryNotEmptyException;
import java.nio.file.FileAlreadyExistsException;
import java.nio.file.FileSystemException;
import java.nio.file.NoSuchFileException;
import java.nio.file.NotDirectoryException;
import java.nio.file.Path;

/**
 * An output write that failed for a reason outside the program. The CLI prints its message after "failed: " (exit
 * 1), so it is one line: "OPERATION PATH: REASON[; NOTE]", e.g. "writing checkpoint step 60 to OUT/…/model.safetensors:
 * No space left on device; the last intact checkpoint is …". A JDK exception names the path only sometimes (never for
 * a failed write(2)), which is why writers wrap theirs in this.
 */
public final class OutputWriteException extends IOException {
    private static final long serialVersionUID = 1L;

    private final String operation;
    private final transient Path path;
    private final String reason;
    private final String note;

    private OutputWriteException(String operation, Path path, String reason, String note, Throwable cause) {
        super(operation + " " + path + ": " + reason + (note == null ? "" : "; " + note), cause);
        this.operation = operation;
        this.path = path;
        this.reason = reason;
        this.note = note;
    }

    /**
     * {@code cause} as a failure of {@code operation} (e.g. "writing") on {@code path}; a file system exception's own
     * file, when it names one, is the more precise path. An OutputWriteException keeps its path and reason.
     */
    public static OutputWriteException of(String operation, Path path, IOException cause) {
        if (cause instanceof OutputWriteException o) return new OutputWriteException(operation, o.path, o.reason, o.note, o.getCause());
        Path where = path;
        if (cause instanceof FileSystemException f && f.getFile() != null) where = Path.of(f.getFile());
        return new OutputWriteException(operation, where, reason(cause), null, cause);
    }

    /** This failure with {@code note} (what is still intact, what to do) after the reason. */
    public OutputWriteException withNote(String note) {
        return new OutputWriteException(operation, path, reason, note == null || note.isEmpty() ? null : note, getCause());
    }

    public String operation() { return operation; }
    public Path path() { return path; }
    public String reason() { return reason; }

    /** The operating system's words for what went wrong, without the JDK's class names. */
    static String reason(IOException e) {
        String why = e instanceof FileSystemException f ? f.getReason() : e.getMessage();
        if (why != null && !why.isBlank()) return why;
        return switch (e) {
            case AccessDeniedException x -> "permission denied";
            case FileAlreadyExistsException x -> "already exists";
            case NoSuchFileException x -> "no such file or folder";
            case NotDirectoryException x -> "not a folder";
            case DirectoryNotEmptyException x -> "folder not empty";
            default -> e.getClass().getSimpleName();
        };
    }
}
