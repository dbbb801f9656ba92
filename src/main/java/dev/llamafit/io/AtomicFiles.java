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
     * file gets default permissions, not the 0600 of {@code Files.createTempFile}. A failure (disk full, I/O error)
     * is an {@link OutputWriteException} naming {@code target}; the temporary is removed and {@code target} is as it was.
     */
    public static void write(Path target, Writer body) throws IOException {
        Path absolute = target.toAbsolutePath();
        Path dir = absolute.getParent();
        try {
            Files.createDirectories(dir);
        } catch (IOException e) {
            throw OutputWriteException.of("creating folder", dir, e);
        }
        Path tmp = dir.resolve("." + absolute.getFileName() + "." + Long.toHexString(ThreadLocalRandom.current().nextLong()) + TMP);
        boolean moved = false;
        try {
            try (FileChannel ch = FileChannel.open(tmp, StandardOpenOption.CREATE_NEW, StandardOpenOption.WRITE)) {
                body.write(ch);
                ch.force(true);
            } catch (OutputWriteException e) {
                throw e;
            } catch (IOException e) {
                // write(2) failures (ENOSPC, EIO, EFBIG) carry no path: name the file the caller asked for.
                throw OutputWriteException.of("writing", target, e);
            }
            try {
                Files.move(tmp, absolute, StandardCopyOption.ATOMIC_MOVE);
            } catch (IOException e) {
                throw OutputWriteException.of("renaming " + tmp + " to", target, e);
            }
            moved = true;
        } finally {
            if (!moved) {
                try {
                    Files.deleteIfExists(tmp);
                } catch (IOException ignored) {
                    // Left for removeStaleTemporaries at the next run; the failure being reported matters more.
                }
            }
        }
        fsyncDirectory(dir);
    }

    /** The suffix of the temporaries {@link #write} makes: ".NAME.HEX.tmp". */
    private static final String TMP = ".tmp";
    private static final java.util.regex.Pattern TEMPORARY = java.util.regex.Pattern.compile("\\..+\\.[0-9a-f]{1,16}\\.tmp");

    /**
     * Deletes the temporaries a killed or failed {@link #write} left in {@code dir} (not recursive; a missing folder
     * is fine). Call it only while holding the folder's lock ({@link OutputFolder}): another writer's temporaries
     * look the same.
     */
    public static void removeStaleTemporaries(Path dir) throws IOException {
        if (!Files.isDirectory(dir)) return;
        try (java.nio.file.DirectoryStream<Path> ds = Files.newDirectoryStream(dir, p -> TEMPORARY.matcher(p.getFileName().toString()).matches())) {
            for (Path p : ds) if (Files.isRegularFile(p, java.nio.file.LinkOption.NOFOLLOW_LINKS)) Files.deleteIfExists(p);
        }
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
