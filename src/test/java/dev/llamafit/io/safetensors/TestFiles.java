// Test helpers: hand-assembled safetensors bytes, shared test data lookup, and error assertions.
package dev.llamafit.io.safetensors;

import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;

import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.function.Executable;

import dev.llamafit.io.InputException;

final class TestFiles {
    private TestFiles() {}

    /** The u64 little-endian length prefix of the safetensors format. */
    static byte[] u64(long v) {
        return ByteBuffer.allocate(8).order(ByteOrder.LITTLE_ENDIAN).putLong(v).array();
    }

    /** Little-endian bytes of the given float32 values. */
    static byte[] f32(float... values) {
        ByteBuffer b = ByteBuffer.allocate(values.length * 4).order(ByteOrder.LITTLE_ENDIAN);
        for (float v : values) b.putFloat(v);
        return b.array();
    }

    /** Little-endian bytes of the given 16-bit patterns (F16 or BF16 bits). */
    static byte[] u16(int... bits) {
        ByteBuffer b = ByteBuffer.allocate(bits.length * 2).order(ByteOrder.LITTLE_ENDIAN);
        for (int v : bits) b.putShort((short) v);
        return b.array();
    }

    static byte[] concat(byte[]... parts) {
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        for (byte[] p : parts) out.writeBytes(p);
        return out.toByteArray();
    }

    /** A safetensors file with the given header JSON (unpadded, as written) and data section. */
    static Path file(Path dir, String name, String headerJson, byte[] data) throws IOException {
        byte[] header = headerJson.getBytes(StandardCharsets.UTF_8);
        return raw(dir, name, concat(u64(header.length), header, data));
    }

    static Path raw(Path dir, String name, byte[] bytes) throws IOException {
        Path p = dir.resolve(name);
        Files.write(p, bytes);
        return p;
    }

    /** Asserts an InputException whose message names {@code file} and contains every fragment. */
    static InputException assertInputError(Path file, Executable action, String... fragments) {
        InputException e = assertThrows(InputException.class, action);
        String message = e.getMessage();
        assertTrue(message.contains(file.toString()), () -> "message should name " + file + ": " + message);
        for (String f : fragments) {
            assertTrue(message.contains(f), () -> "message should contain \"" + f + "\": " + message);
        }
        return e;
    }

    /**
     * A path under the shared test data folder (system property llamafit.shared). Missing data skips the test with
     * the reason, except in CI (env CI=true), where it fails: DESIGN §7, never skip silently.
     */
    static Path shared(String relative) {
        String root = System.getProperty("llamafit.shared");
        Path p = root == null ? null : Path.of(root).resolve(relative);
        if (p == null || !Files.exists(p)) {
            String reason = "shared test data " + (p == null ? relative + " (system property llamafit.shared is not set)" : p)
                    + " is missing";
            if ("true".equals(System.getenv("CI"))) fail(reason + "; in CI the shared folder must be present");
            Assumptions.assumeTrue(false, reason);
        }
        return p;
    }
}
