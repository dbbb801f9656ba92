// One safetensors file, validated and memory-mapped, handing out zero-copy tensor views.
package dev.llamafit.io.safetensors;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.lang.foreign.MemorySegment;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.channels.FileChannel;
import java.nio.file.AccessDeniedException;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.Optional;
import java.util.Set;

import dev.llamafit.io.InputException;
import dev.llamafit.memory.Category;
import dev.llamafit.memory.MemoryLedger;
import dev.llamafit.tensor.Tensor;

/**
 * A safetensors file (https://github.com/huggingface/safetensors). {@link #open} reads and validates the header
 * (see {@link SafetensorsHeader}) before mapping anything, then maps the data section once, read-only, as one
 * {@link Category#WEIGHTS} mapping in the ledger. Tensors are views into that mapping and stay valid until
 * {@link #close()}.
 */
public final class SafetensorsFile implements TensorSource {
    private final Path file;
    private final Map<String, Tensor> tensors;
    private final Map<String, String> metadata;
    private final MemoryLedger.Buffer mapping;
    private volatile boolean closed;

    private SafetensorsFile(Path file, Map<String, Tensor> tensors, Map<String, String> metadata, MemoryLedger.Buffer mapping) {
        this.file = file;
        this.tensors = tensors;
        this.metadata = metadata;
        this.mapping = mapping;
    }

    /**
     * Opens and validates {@code file}, mapping its data section through {@code ledger}.
     *
     * @throws InputException       if the file is missing or not a valid safetensors file
     * @throws UncheckedIOException on other I/O failures
     */
    public static SafetensorsFile open(Path file, MemoryLedger ledger) {
        if (Files.isDirectory(file)) throw InputException.at(file, "is a folder, expected a .safetensors file");
        try (FileChannel channel = FileChannel.open(file, StandardOpenOption.READ)) {
            long fileBytes = channel.size();
            if (fileBytes < SafetensorsHeader.PREFIX_BYTES) {
                throw InputException.at(file, "byte 0", "file is truncated: " + fileBytes
                        + " bytes, but a safetensors file starts with an 8-byte header length");
            }
            ByteBuffer prefix = ByteBuffer.allocate(SafetensorsHeader.PREFIX_BYTES).order(ByteOrder.LITTLE_ENDIAN);
            readFully(channel, prefix, 0);
            long headerBytes = prefix.getLong(0); // a u64; a negative long means >= 2^63
            long available = fileBytes - SafetensorsHeader.PREFIX_BYTES;
            // Check the untrusted length against the cap and the file size before allocating anything from it.
            if (headerBytes < 0 || headerBytes > SafetensorsHeader.MAX_HEADER_BYTES) {
                throw InputException.at(file, "byte 0", "header length " + Long.toUnsignedString(headerBytes)
                        + " exceeds the " + SafetensorsHeader.MAX_HEADER_BYTES + "-byte limit (not a safetensors file, or corrupt)");
            }
            if (headerBytes > available) {
                throw InputException.at(file, "byte 0", "header length " + headerBytes + " reaches past the end of the file ("
                        + fileBytes + " bytes; file truncated?)");
            }
            ByteBuffer json = ByteBuffer.allocate((int) headerBytes);
            readFully(channel, json, SafetensorsHeader.PREFIX_BYTES);
            long dataStart = SafetensorsHeader.PREFIX_BYTES + headerBytes;
            long dataBytes = fileBytes - dataStart;
            SafetensorsHeader header = SafetensorsHeader.parse(file, json.array(), dataStart, dataBytes);

            MemoryLedger.Buffer mapping = dataBytes == 0 ? null
                    : ledger.map(Category.WEIGHTS, file.toString(), channel, dataStart, dataBytes);
            MemorySegment data = mapping == null ? MemorySegment.ofArray(new byte[0]) : mapping.segment();
            Map<String, Tensor> tensors = new LinkedHashMap<>();
            for (SafetensorsHeader.Entry e : header.entries()) {
                tensors.put(e.name(), new Tensor(e.name(), e.dtype(), e.shape(), data.asSlice(e.beginByte(), e.bytes())));
            }
            return new SafetensorsFile(file, Collections.unmodifiableMap(tensors), header.metadata(), mapping);
        } catch (NoSuchFileException e) {
            throw InputException.at(file, "file not found");
        } catch (AccessDeniedException e) {
            throw InputException.at(file, "permission denied");
        } catch (IOException e) {
            throw new UncheckedIOException("reading " + file + ": " + e.getMessage(), e);
        }
    }

    private static void readFully(FileChannel channel, ByteBuffer into, long position) throws IOException {
        while (into.hasRemaining()) {
            int n = channel.read(into, position + into.position());
            if (n < 0) throw new IOException("file shrank while reading (" + into.remaining() + " bytes missing)");
        }
    }

    /** The file this was opened from. */
    public Path file() { return file; }

    /** Bytes of the mapped data section (the sum of all tensor sizes). */
    public long dataBytes() { return mapping == null ? 0 : mapping.bytes(); }

    @Override
    public Set<String> names() { return tensors.keySet(); }

    @Override
    public Optional<Tensor> find(String name) {
        if (closed) throw new IllegalStateException(file + " is closed");
        return Optional.ofNullable(tensors.get(name));
    }

    /** {@code file} for every name: the one file is where any tensor is, or would have been. */
    @Override
    public Path fileOf(String name) { return file; }

    @Override
    public Map<String, String> metadata() { return metadata; }

    /** Unmaps the data section; tensors handed out become invalid (access throws IllegalStateException). */
    @Override
    public void close() {
        closed = true;
        if (mapping != null) mapping.close();
    }

    @Override
    public String toString() { return "SafetensorsFile[" + file + ", " + tensors.size() + " tensors]"; }
}
