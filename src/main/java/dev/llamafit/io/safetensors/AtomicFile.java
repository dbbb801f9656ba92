// Atomic file replacement: write a temporary file in the same folder, fsync it, rename it over the target.
package dev.llamafit.io.safetensors;

import java.io.IOException;
import java.nio.channels.FileChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.nio.file.StandardOpenOption;
import java.util.concurrent.ThreadLocalRandom;

/**
 * Writes a file so that readers (and a crash) see either the old content or the complete new content, never a
 * partial file (DESIGN §8). The temporary file lives in the target's folder so the rename stays on one file system
 * and is atomic (rename(2) on POSIX); it is created with the default permissions, not the 0600 of
 * {@code Files.createTempFile}, so the result looks like any other file the user writes.
 */
final class AtomicFile {
    /** What to write into the open temporary file. */
    @FunctionalInterface
    interface Body {
        void writeTo(FileChannel channel) throws IOException;
    }

    private AtomicFile() {}

    static void write(Path target, Body body) throws IOException {
        Path absolute = target.toAbsolutePath();
        Path dir = absolute.getParent();
        String tmpName = "." + absolute.getFileName() + "." + Long.toHexString(ThreadLocalRandom.current().nextLong()) + ".tmp";
        Path tmp = dir.resolve(tmpName);
        boolean moved = false;
        try {
            try (FileChannel channel = FileChannel.open(tmp, StandardOpenOption.CREATE_NEW, StandardOpenOption.WRITE)) {
                body.writeTo(channel);
                channel.force(true);
            }
            Files.move(tmp, absolute, StandardCopyOption.ATOMIC_MOVE);
            moved = true;
        } finally {
            if (!moved) Files.deleteIfExists(tmp);
        }
        syncDirectory(dir);
    }

    /**
     * Fsyncs the folder so the rename itself survives a power cut. Linux allows opening a directory for reading and
     * forcing it; other systems (Windows) refuse, and there the rename is as durable as the OS makes it.
     */
    private static void syncDirectory(Path dir) {
        try (FileChannel channel = FileChannel.open(dir, StandardOpenOption.READ)) {
            channel.force(true);
        } catch (IOException | UnsupportedOperationException e) {
            // Not supported on this platform; the data itself was already forced before the rename.
        }
    }
}
