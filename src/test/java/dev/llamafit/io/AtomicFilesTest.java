package dev.llamafit.io;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** A failed atomic write names the file and the operation, leaves the old content, and leaves no temporary behind. */
class AtomicFilesTest {
    @TempDir Path tmp;

    @Test
    void aFailedWriteNamesTheTargetAndKeepsTheOldFile() throws IOException {
        Path target = Files.writeString(tmp.resolve("config.json"), "old");
        // What FileChannel.write throws on a full disk: the reason only, no path.
        OutputWriteException e = assertThrows(OutputWriteException.class,
                () -> AtomicFiles.write(target, ch -> { throw new IOException("No space left on device"); }));
        assertEquals("writing " + target + ": No space left on device", e.getMessage());
        assertEquals("old", Files.readString(target));
        try (var s = Files.list(tmp)) {
            assertEquals(1, s.count(), "the temporary is removed");
        }
    }

    @Test
    void staleTemporariesAreRemovedAndOtherFilesKept() throws IOException {
        Files.writeString(tmp.resolve(".model.safetensors.3fa9c01b2d.tmp"), "torn");
        Files.writeString(tmp.resolve("notes.tmp"), "the user's");
        Files.writeString(tmp.resolve(".hidden.tmp"), "the user's");
        AtomicFiles.removeStaleTemporaries(tmp);
        try (var s = Files.list(tmp)) {
            assertEquals(java.util.List.of(".hidden.tmp", "notes.tmp"), s.map(p -> p.getFileName().toString()).sorted().toList());
        }
        AtomicFiles.removeStaleTemporaries(tmp.resolve("missing")); // a folder that does not exist yet is fine
        assertTrue(Files.isDirectory(tmp));
    }
}
