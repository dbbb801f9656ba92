// Writes tensors as safetensors files (single or sharded with an index), atomically and streaming.
package dev.llamafit.io.safetensors;

import dev.llamafit.io.AtomicFiles;

import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.lang.foreign.MemorySegment;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.channels.FileChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.SequencedMap;
import java.util.Set;
import java.util.TreeMap;

import com.fasterxml.jackson.core.JsonGenerator;
import com.fasterxml.jackson.databind.SerializationFeature;
import com.fasterxml.jackson.databind.json.JsonMapper;

import dev.llamafit.tensor.Tensor;

/**
 * Writes the safetensors format (https://github.com/huggingface/safetensors): u64 little-endian header length, the
 * JSON header padded with spaces so the data section starts at a multiple of 8 (as the reference writer pads), then
 * the tensors' bytes back to back in the given order. Tensor data is streamed from each tensor's segment to the
 * file; only the header is built in memory. Every file is written atomically ({@link AtomicFiles}).
 */
public final class SafetensorsWriter {
    /** Tensor bytes go to the file in pieces of at most this size, so no piece needs a large buffer. */
    private static final int CHUNK_BYTES = 8 << 20;

    private static final JsonMapper JSON = JsonMapper.builder().build();

    private SafetensorsWriter() {}

    /** A tensor under the name it gets in the file (which may differ from {@link Tensor#name()}). */
    private record Named(String name, Tensor tensor) {}

    /** The files a sharded write produced. */
    public record ShardedOutput(Path index, List<Path> shards, long totalBytes) {
        public ShardedOutput {
            shards = List.copyOf(shards);
        }
    }

    /** Writes {@code tensors}, each under its own {@link Tensor#name()}, in list order. */
    public static void write(Path file, List<Tensor> tensors, Map<String, String> metadata) throws IOException {
        write(file, byTensorName(tensors), metadata);
    }

    /** Writes {@code tensors} under their map keys, in the map's order; {@code metadata} may be null or empty. */
    public static void write(Path file, SequencedMap<String, Tensor> tensors, Map<String, String> metadata) throws IOException {
        writeFile(file, named(tensors), metadata);
    }

    /** {@link #writeSharded(Path, SequencedMap, Map, long)} with each tensor under its own name. */
    public static ShardedOutput writeSharded(Path dir, List<Tensor> tensors, Map<String, String> metadata, long maxShardBytes)
            throws IOException {
        return writeSharded(dir, byTensorName(tensors), metadata, maxShardBytes);
    }

    /**
     * Writes {@code tensors} into {@code dir} as shards {@code model-0000i-of-0000N.safetensors} plus {@code
     * model.safetensors.index.json}, as transformers' {@code save_pretrained} lays them out. Tensors fill a shard in
     * order until the next one would take its data past {@code maxShardBytes}; a tensor larger than the limit gets a
     * shard of its own (as in transformers). Each shard carries {@code metadata} as its {@code __metadata__}; the
     * index carries {@code metadata.total_size} (the sum of tensor bytes, headers excluded, as transformers counts).
     * The index is written last, so it never names a shard that is not complete. Shards from an earlier write with
     * a different shard count are not removed.
     */
    public static ShardedOutput writeSharded(Path dir, SequencedMap<String, Tensor> tensors, Map<String, String> metadata,
                                             long maxShardBytes) throws IOException {
        if (maxShardBytes <= 0) throw new IllegalArgumentException("maxShardBytes must be positive: " + maxShardBytes);
        List<Named> all = named(tensors);
        List<List<Named>> groups = new ArrayList<>();
        List<Named> current = new ArrayList<>();
        long currentBytes = 0;
        long totalBytes = 0;
        for (Named n : all) {
            long bytes = n.tensor().bytes();
            if (!current.isEmpty() && Math.addExact(currentBytes, bytes) > maxShardBytes) {
                groups.add(current);
                current = new ArrayList<>();
                currentBytes = 0;
            }
            current.add(n);
            currentBytes = Math.addExact(currentBytes, bytes);
            totalBytes = Math.addExact(totalBytes, bytes);
        }
        if (!current.isEmpty() || groups.isEmpty()) groups.add(current);

        Files.createDirectories(dir);
        List<Path> shardPaths = new ArrayList<>();
        Map<String, String> weightMap = new TreeMap<>(); // transformers writes the index with sorted keys
        for (int i = 0; i < groups.size(); i++) {
            String shardName = Safetensors.shardName(i + 1, groups.size());
            Path shard = dir.resolve(shardName);
            writeFile(shard, groups.get(i), metadata);
            shardPaths.add(shard);
            for (Named n : groups.get(i)) weightMap.put(n.name(), shardName);
        }
        Map<String, Object> index = new LinkedHashMap<>();
        index.put("metadata", Map.of("total_size", totalBytes));
        index.put("weight_map", weightMap);
        byte[] json = JSON.writer(SerializationFeature.INDENT_OUTPUT).writeValueAsBytes(index);
        Path indexPath = dir.resolve(Safetensors.INDEX_FILE);
        AtomicFiles.write(indexPath, channel -> {
            writeAll(channel, ByteBuffer.wrap(json));
            writeAll(channel, ByteBuffer.wrap(new byte[] {'\n'}));
        });
        return new ShardedOutput(indexPath, shardPaths, totalBytes);
    }

    private static SequencedMap<String, Tensor> byTensorName(List<Tensor> tensors) {
        SequencedMap<String, Tensor> map = new LinkedHashMap<>();
        for (Tensor t : tensors) {
            if (map.put(t.name(), t) != null) throw new IllegalArgumentException("duplicate tensor name " + t.name());
        }
        return map;
    }

    private static List<Named> named(SequencedMap<String, Tensor> tensors) {
        List<Named> out = new ArrayList<>(tensors.size());
        Set<String> seen = new HashSet<>();
        for (Map.Entry<String, Tensor> e : tensors.entrySet()) {
            String name = Objects.requireNonNull(e.getKey(), "tensor name");
            if (name.equals(SafetensorsHeader.METADATA_KEY)) {
                throw new IllegalArgumentException("\"" + name + "\" is reserved for metadata in safetensors headers");
            }
            if (!seen.add(name)) throw new IllegalArgumentException("duplicate tensor name " + name);
            out.add(new Named(name, Objects.requireNonNull(e.getValue(), name)));
        }
        return out;
    }

    private static void writeFile(Path file, List<Named> tensors, Map<String, String> metadata) throws IOException {
        byte[] header = header(tensors, metadata);
        AtomicFiles.write(file, channel -> {
            ByteBuffer prefix = ByteBuffer.allocate(SafetensorsHeader.PREFIX_BYTES).order(ByteOrder.LITTLE_ENDIAN);
            prefix.putLong(0, header.length);
            writeAll(channel, prefix);
            writeAll(channel, ByteBuffer.wrap(header));
            for (Named n : tensors) writeSegment(channel, n.tensor().segment());
        });
    }

    /** The JSON header, {@code __metadata__} first, then tensors in order, space-padded to a multiple of 8 bytes. */
    private static byte[] header(List<Named> tensors, Map<String, String> metadata) throws IOException {
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        try (JsonGenerator g = JSON.getFactory().createGenerator(out)) {
            g.writeStartObject();
            if (metadata != null && !metadata.isEmpty()) {
                g.writeObjectFieldStart(SafetensorsHeader.METADATA_KEY);
                for (Map.Entry<String, String> e : metadata.entrySet()) {
                    g.writeStringField(e.getKey(), Objects.requireNonNull(e.getValue(), "metadata value of " + e.getKey()));
                }
                g.writeEndObject();
            }
            long offset = 0;
            for (Named n : tensors) {
                Tensor t = n.tensor();
                long end = Math.addExact(offset, t.bytes());
                g.writeObjectFieldStart(n.name());
                g.writeStringField("dtype", t.dtype().safetensorsName());
                g.writeArrayFieldStart("shape");
                for (long d : t.shape().dims()) g.writeNumber(d);
                g.writeEndArray();
                g.writeArrayFieldStart("data_offsets");
                g.writeNumber(offset);
                g.writeNumber(end);
                g.writeEndArray();
                g.writeEndObject();
                offset = end;
            }
            g.writeEndObject();
        }
        int padding = (8 - out.size() % 8) % 8;
        for (int i = 0; i < padding; i++) out.write(' ');
        byte[] bytes = out.toByteArray();
        if (bytes.length > SafetensorsHeader.MAX_HEADER_BYTES) {
            throw new IllegalArgumentException("safetensors header would be " + bytes.length + " bytes, above the "
                    + SafetensorsHeader.MAX_HEADER_BYTES + "-byte limit readers enforce");
        }
        return bytes;
    }

    /**
     * Streams a segment in chunks. Native and mapped segments are written directly; heap segments backed by arrays
     * other than byte[] cannot be viewed as a ByteBuffer, so their chunks are copied through one small byte array.
     */
    private static void writeSegment(FileChannel channel, MemorySegment segment) throws IOException {
        long size = segment.byteSize();
        boolean direct = segment.isNative() || segment.heapBase().map(b -> b instanceof byte[]).orElse(false);
        byte[] staging = direct ? null : new byte[(int) Math.min(CHUNK_BYTES, size)];
        for (long at = 0; at < size; at += CHUNK_BYTES) {
            int len = (int) Math.min(CHUNK_BYTES, size - at);
            MemorySegment chunk = segment.asSlice(at, len);
            if (direct) {
                writeAll(channel, chunk.asByteBuffer());
                // A read-only file mapping (e.g. offloaded optimizer state) need not stay resident once written: dropping
                // its pages from this process (they stay in the page cache) keeps a checkpoint from adding it to the RSS.
                if (chunk.isMapped() && chunk.isReadOnly()) chunk.unload();
            } else {
                MemorySegment.copy(chunk, 0, MemorySegment.ofArray(staging), 0, len);
                writeAll(channel, ByteBuffer.wrap(staging, 0, len));
            }
        }
    }

    private static void writeAll(FileChannel channel, ByteBuffer buffer) throws IOException {
        while (buffer.hasRemaining()) channel.write(buffer);
    }
}
