// Content fingerprints of a model folder and a data file, so a resume can tell whether it continues on the same inputs.
package dev.llamafit.train;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.channels.FileChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.util.HexFormat;
import java.util.List;
import java.util.stream.Stream;

import dev.llamafit.io.InputException;

/**
 * SHA-256 fingerprints, hex encoded.
 *
 * <p>A model folder's fingerprint covers {@code config.json} in full and, for each {@code *.safetensors} file (and the
 * shard index), its name, its size, its whole header (tensor names, dtypes, shapes, offsets) and three 1 MiB windows of
 * its data (start, middle, end). Hashing a 7B model in full would read ~14-28 GB at every start; this reads under 4 MiB
 * per file, yet still tells a fine-tuned variant of the same architecture apart (a fine-tune changes essentially every
 * weight, so every window). Files of up to 3 MiB are hashed whole. Modification times are left out on purpose: a copy
 * or a checkout changes them without changing the model.
 *
 * <p>A data file is hashed in full: it is tokenised in full anyway, which costs far more than hashing it.
 */
final class Fingerprints {
    static final int WINDOW = 1 << 20;

    private Fingerprints() {}

    /** The fingerprint of a model folder (config.json plus its safetensors files). */
    static String model(Path dir) {
        MessageDigest md = sha256();
        try {
            Path config = dir.resolve("config.json");
            if (Files.isRegularFile(config)) feed(md, "config.json", Files.readAllBytes(config));
            List<Path> files;
            try (Stream<Path> s = Files.list(dir)) {
                files = s.filter(p -> {
                    String n = p.getFileName().toString();
                    return n.endsWith(".safetensors") || n.equals("model.safetensors.index.json");
                }).sorted().toList();
            }
            for (Path f : files) weightsFile(md, f);
        } catch (IOException e) {
            throw new UncheckedIOException("cannot fingerprint the model folder " + dir, e);
        }
        return HexFormat.of().formatHex(md.digest());
    }

    /** The SHA-256 of a whole file. */
    static String file(Path file) {
        MessageDigest md = sha256();
        try (FileChannel ch = FileChannel.open(file, StandardOpenOption.READ)) {
            ByteBuffer buf = ByteBuffer.allocate(1 << 16);
            while (ch.read(buf.clear()) > 0) md.update(buf.flip());
        } catch (IOException e) {
            throw InputException.at(file, "cannot read: " + e.getMessage());
        }
        return HexFormat.of().formatHex(md.digest());
    }

    private static void weightsFile(MessageDigest md, Path f) throws IOException {
        try (FileChannel ch = FileChannel.open(f, StandardOpenOption.READ)) {
            long size = ch.size();
            feed(md, f.getFileName().toString(), Long.toString(size).getBytes(StandardCharsets.UTF_8));
            if (size <= 3L * WINDOW) {
                md.update(read(ch, 0, (int) size));
                return;
            }
            // safetensors: an 8-byte little-endian header length, the JSON header, then the tensor data.
            long headerLen = read(ch, 0, 8).order(ByteOrder.LITTLE_ENDIAN).getLong();
            long dataStart = 8 + Math.max(0, Math.min(headerLen, size - 8));
            md.update(read(ch, 0, (int) Math.min(dataStart, Integer.MAX_VALUE - 8)));
            long dataLen = size - dataStart;
            for (long at : new long[] {dataStart, dataStart + dataLen / 2 - WINDOW / 2, size - WINDOW})
                md.update(read(ch, Math.max(dataStart, at), (int) Math.min(WINDOW, dataLen)));
        }
    }

    private static ByteBuffer read(FileChannel ch, long at, int n) throws IOException {
        ByteBuffer b = ByteBuffer.allocate(n);
        while (b.hasRemaining() && ch.read(b, at + b.position()) > 0) {}
        return b.flip();
    }

    /** A name and its bytes, length-prefixed so that no two different sequences of parts feed the same bytes. */
    private static void feed(MessageDigest md, String name, byte[] bytes) {
        byte[] n = name.getBytes(StandardCharsets.UTF_8);
        md.update(ByteBuffer.allocate(16).putLong(n.length).putLong(bytes.length).flip());
        md.update(n);
        md.update(bytes);
    }

    private static MessageDigest sha256() {
        try {
            return MessageDigest.getInstance("SHA-256");
        } catch (NoSuchAlgorithmException e) {
            throw new AssertionError("every JDK has SHA-256", e);
        }
    }
}
