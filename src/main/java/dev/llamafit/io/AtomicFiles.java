// Atomic file writes: temporary file in the same folder, fsync, rename, fsync the folder.
package dev.llamafit.io;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.nio.file.StandardOpenOption;
import java.util.concurrent.ThreadLocalRandom;

/**
 * Writes that never leave a half-written file under the final name: a crash at any moment leaves either
 * the old file or the new one (DESIGN §8).
 */
public final class AtomicFiles {
    private AtomicFiles() {}

    /** A body that writes the whole content to an open channel. */
    @FunctionalInterface
    public interface Writer {
        void write(FileChannel channel) throws IOException;
    }

    public static void writeString(Path target, String content) throws IOException {
        byte[] bytes = content.getBytes(StandardCharsets.UTF_8);
        write(target, ch -> {
            ByteBuffer b = ByteBuffer.wrap(bytes);
            while (b.hasRemaining()) ch.write(b);
        });
    }

    /**
     * Writes through {@code body} to a temporary sibling (same folder, so the rename stays on one file system
     * and is atomic), forces it to disk, renames it over {@code target}, then fsyncs the folder. The temporary
     * file gets default permissions, not the 0600 of {@code Files.createTempFile}.
     */
    public static void write(Path target, Writer body) throws IOException {
        Path absolute = target.toAbsolutePath();
        Path dir = absolute.getParent();
        Files.createDirectories(dir);
        Path tmp = dir.resolve("." + absolute.getFileName() + "." + Long.toHexString(ThreadLocalRandom.current().nextLong()) + ".tmp");
        boolean moved = false;
        try {
            try (FileChannel ch = FileChannel.open(tmp, StandardOpenOption.CREATE_NEW, StandardOpenOption.WRITE)) {
                body.write(ch);
                ch.force(true);
            }
            Files.move(tmp, absolute, StandardCopyOption.ATOMIC_MOVE);
            moved = true;
        } finally {
            if (!moved) Files.deleteIfExists(tmp);
        }
        fsyncDirectory(dir);
    }

    /** Copies {@code source} to {@code target} atomically (the file is small enough to hold in memory). */
    public static void copy(Path source, Path target) throws IOException {
        byte[] bytes = Files.readAllBytes(source);
        write(target, ch -> {
            ByteBuffer b = ByteBuffer.wrap(bytes);
            while (b.hasRemaining()) ch.write(b);
        });
    }

    /** Makes a rename durable; not every platform allows opening a directory, which is then skipped. */
    public static void fsyncDirectory(Path dir) {
        try (FileChannel ch = FileChannel.open(dir, StandardOpenOption.READ)) {
            ch.force(true);
        } catch (IOException | UnsupportedOperationException ignored) {
            // Best effort: the rename itself is atomic; only its durability across power loss is at stake.
        }
    }
}
