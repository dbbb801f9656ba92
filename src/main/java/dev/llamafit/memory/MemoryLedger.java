// The memory ledger: every engine allocation is recorded here by category, with current and peak bytes.
package dev.llamafit.memory;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.nio.channels.FileChannel;
import java.util.EnumMap;
import java.util.Map;

/**
 * Allocates 64-byte aligned off-heap buffers and accounts for them by {@link Category}.
 * Peaks are tracked per category and for the total (the peak of the sum, not the sum of peaks).
 * Memory-mapped file regions are recorded too, flagged as mapped, since they occupy address space and
 * page cache that the process touches.
 */
public final class MemoryLedger {
    /** Alignment of every allocation: one cache line, and a full AVX-512 register. */
    public static final long ALIGNMENT = 64;

    private static final MemoryLedger GLOBAL = new MemoryLedger();

    private final long[] currentBytes = new long[Category.values().length];
    private final long[] peakBytes = new long[Category.values().length];
    private final long[] mappedBytes = new long[Category.values().length];
    private long totalCurrentBytes;
    private long totalPeakBytes;

    /** The process-wide ledger that the engine uses unless given another. */
    public static MemoryLedger global() { return GLOBAL; }

    /** Allocates {@code bytes} zeroed bytes under {@code category}. Close the buffer to free it. */
    public Buffer allocate(Category category, String label, long bytes) {
        if (bytes < 0) throw new IllegalArgumentException("negative allocation for " + label + ": " + bytes);
        Arena arena = Arena.ofShared();
        MemorySegment segment = arena.allocate(Math.max(bytes, 1), ALIGNMENT);
        record(category, bytes, false);
        return new Buffer(this, category, label, segment.asSlice(0, bytes), arena, bytes, false, true);
    }

    /** Maps a read-only region of a file and records it under {@code category} as mapped. */
    public Buffer map(Category category, String label, FileChannel channel, long offset, long bytes) throws java.io.IOException {
        Arena arena = Arena.ofShared();
        MemorySegment segment = channel.map(FileChannel.MapMode.READ_ONLY, offset, bytes, arena);
        record(category, bytes, true);
        return new Buffer(this, category, label, segment, arena, bytes, true, true);
    }

    /**
     * Records {@code bytes} of a file that holds engine state off memory (e.g. optimizer state offloaded to disk) under
     * {@code category}: counted and peaked in that category, but not in the totals, which are memory. The returned
     * buffer has no memory ({@link Buffer#segment()} is empty); closing it removes the record, not the file.
     */
    public Buffer recordFile(Category category, String label, long bytes) {
        if (bytes < 0) throw new IllegalArgumentException("negative file size for " + label + ": " + bytes);
        record(category, bytes, false, false);
        return new Buffer(this, category, label, MemorySegment.NULL, null, bytes, false, false);
    }

    private void record(Category category, long bytes, boolean mapped) { record(category, bytes, mapped, true); }

    private synchronized void record(Category category, long bytes, boolean mapped, boolean memory) {
        int i = category.ordinal();
        currentBytes[i] = Math.addExact(currentBytes[i], bytes);
        if (mapped) mappedBytes[i] = Math.addExact(mappedBytes[i], bytes);
        peakBytes[i] = Math.max(peakBytes[i], currentBytes[i]);
        if (!memory) return;
        totalCurrentBytes = Math.addExact(totalCurrentBytes, bytes);
        totalPeakBytes = Math.max(totalPeakBytes, totalCurrentBytes);
    }

    synchronized void release(Category category, long bytes, boolean mapped, boolean memory) {
        int i = category.ordinal();
        currentBytes[i] -= bytes;
        if (mapped) mappedBytes[i] -= bytes;
        if (memory) totalCurrentBytes -= bytes;
    }

    public synchronized long currentBytes(Category c) { return currentBytes[c.ordinal()]; }

    public synchronized long peakBytes(Category c) { return peakBytes[c.ordinal()]; }

    /** Bytes of {@code c} that are file mappings rather than heap-independent allocations. */
    public synchronized long mappedBytes(Category c) { return mappedBytes[c.ordinal()]; }

    public synchronized long totalCurrentBytes() { return totalCurrentBytes; }

    public synchronized long totalPeakBytes() { return totalPeakBytes; }

    /** Resets peaks to the current values, to measure the peak of one phase. */
    public synchronized void resetPeaks() {
        System.arraycopy(currentBytes, 0, peakBytes, 0, currentBytes.length);
        totalPeakBytes = totalCurrentBytes;
    }

    /** A snapshot of the ledger, for reports. */
    public synchronized Snapshot snapshot() {
        Map<Category, Snapshot.Line> lines = new EnumMap<>(Category.class);
        for (Category c : Category.values()) {
            int i = c.ordinal();
            lines.put(c, new Snapshot.Line(currentBytes[i], peakBytes[i], mappedBytes[i]));
        }
        return new Snapshot(lines, totalCurrentBytes, totalPeakBytes);
    }

    /** An immutable copy of the ledger's counters. */
    public record Snapshot(Map<Category, Line> lines, long totalCurrentBytes, long totalPeakBytes) {
        public record Line(long currentBytes, long peakBytes, long mappedBytes) {}
    }

    /** An owned region of memory; closing it frees (or unmaps) the memory and updates the ledger. */
    public static final class Buffer implements AutoCloseable {
        private final MemoryLedger ledger;
        private final Category category;
        private final String label;
        private final MemorySegment segment;
        private final Arena arena;
        private final long bytes;
        private final boolean mapped;
        private final boolean memory; // false for a file's bytes (recordFile): not in the ledger's totals
        private boolean closed;

        Buffer(MemoryLedger ledger, Category category, String label, MemorySegment segment, Arena arena, long bytes, boolean mapped,
               boolean memory) {
            this.memory = memory;
            this.ledger = ledger;
            this.category = category;
            this.label = label;
            this.segment = segment;
            this.arena = arena;
            this.bytes = bytes;
            this.mapped = mapped;
        }

        public MemorySegment segment() { return segment; }

        public Category category() { return category; }

        public String label() { return label; }

        public long bytes() { return bytes; }

        public boolean mapped() { return mapped; }

        @Override
        public synchronized void close() {
            if (closed) return;
            closed = true;
            if (arena != null) arena.close();
            ledger.release(category, bytes, mapped, memory);
        }
    }
}
