// AdamW or SGD whose state lives in a file on disk (ZeRO-Infinity's NVMe tier), streamed through a bounded window per step.
package dev.llamafit.optim;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.channels.FileLock;
import java.nio.channels.OverlappingFileLockException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.nio.file.StandardOpenOption;
import java.util.ArrayList;
import java.util.Collections;
import java.util.HashSet;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;

import dev.llamafit.io.InputException;
import dev.llamafit.kernels.KernelBackends;
import dev.llamafit.kernels.Kernels;
import dev.llamafit.kernels.UpdateKernels;
import dev.llamafit.memory.Category;
import dev.llamafit.memory.MemoryLedger;
import dev.llamafit.tensor.DType;
import dev.llamafit.tensor.Shape;
import dev.llamafit.tensor.Tensor;

/**
 * The same update as {@link AdamW} or {@link Sgd} (their coefficients and the same element kernels, so every element's
 * arithmetic is bit for bit theirs), with the state in one file instead of memory: for each kind (exp_avg, exp_avg_sq;
 * momentum) a region of fp32 values, the parameters in the order of the first step. A step walks each parameter in
 * windows of at most {@link #windowElements} elements: positional reads of the window's state from the file into a
 * buffer, the kernel on that range of the parameter, positional writes back. The buffer is the only state in memory
 * (ledger: OPTIMIZER, at most the window's bytes); the file's bytes are recorded under OFFLOADED_DISK, outside the
 * memory totals. Reads and writes go through the page cache, not a mapping, so the state does not count in the process's
 * RSS. Windows are multiples of {@link #ALIGN} elements, so the kernels split each parameter into the same vector and
 * tail lanes as the in-memory step.
 *
 * <p>Checkpoints: {@link #state()} maps the file read-only and returns views of it (the same bytes the ledger counts
 * under OFFLOADED_DISK, so not recorded again), valid until the next step, load or close. {@link #loadState} writes the
 * given state into a fresh file. The file is scratch: a run's state of record is its checkpoints; it is deleted on
 * close. A lock file keeps two runs off one directory. fp32 parameters only (not bf16-pure), and not 8-bit AdamW.
 */
public final class OffloadedOptimizer implements Optimizer {
    /** The default window: 64 MiB of state in memory at a time. */
    public static final long DEFAULT_WINDOW_BYTES = 64L << 20;
    /** Window lengths are multiples of this many elements (a multiple of every vector width). */
    public static final int ALIGN = 64;
    /** Most elements per kind in one window, so that one kind's part is one ByteBuffer (below 2 GiB). */
    static final long MAX_WINDOW_ELEMENTS = 1L << 28;
    /** The state file under the rank's directory. */
    public static final String STATE_FILE = "optimizer_state.f32";

    private final AdamW adam; // null for SGD; its config and value checks serve here too
    private final Sgd sgd;    // null for AdamW
    private final List<String> kinds;
    private final Path dir;
    private final MemoryLedger ledger;
    private final long windowBytes;
    /** Parameter name to its place, in file order. */
    private final Map<String, Slot> slots = new LinkedHashMap<>();
    private final List<Arena> views = new ArrayList<>();
    private long totalElements;
    private FileChannel lockChannel;
    private FileLock lock;
    private FileChannel channel;
    private MemoryLedger.Buffer disk, window;
    private long windowElements;
    private boolean hasState, checkLeftovers, closed;
    private long steps;

    /** A parameter's place: {@code offset} elements into each kind's region, its shape. */
    private record Slot(long offset, Shape shape) {
        long elements() { return shape.elements(); }
    }

    private OffloadedOptimizer(AdamW adam, Sgd sgd, List<String> kinds, Path dir, long windowBytes, MemoryLedger ledger) {
        if (windowBytes < 1) throw new IllegalArgumentException("the offload window must be > 0 bytes, got " + windowBytes);
        this.adam = adam;
        this.sgd = sgd;
        this.kinds = List.copyOf(kinds);
        this.dir = dir;
        this.windowBytes = windowBytes;
        this.ledger = ledger;
    }

    /** AdamW with its state under {@code dir} (created if needed), at most {@code windowBytes} of it in memory. */
    public static OffloadedOptimizer adamW(AdamW.Config config, Path dir, long windowBytes, MemoryLedger ledger) {
        return new OffloadedOptimizer(new AdamW(config, ledger), null, List.of("exp_avg", "exp_avg_sq"), dir, windowBytes, ledger);
    }

    /** SGD with its momentum under {@code dir} (none without momentum), at most {@code windowBytes} of it in memory. */
    public static OffloadedOptimizer sgd(Sgd.Config config, Path dir, long windowBytes, MemoryLedger ledger) {
        Sgd s = new Sgd(config, ledger);
        return new OffloadedOptimizer(null, s, config.momentum() != 0 ? List.of("momentum") : List.of(), dir, windowBytes, ledger);
    }

    /** Rank {@code rank}'s directory under the --offload-dir: DIR/rank-00003. */
    public static Path rankDir(Path offloadDir, int rank) { return offloadDir.resolve(String.format("rank-%05d", rank)); }

    /**
     * Elements per kind in one window: the window's bytes over the kinds' fp32 bytes, rounded down to a multiple of
     * {@link #ALIGN} (at least one), and no more than the largest parameter needs. The planner uses the same rule.
     */
    public static long windowElements(long windowBytes, int kinds, long largestParam) {
        if (kinds == 0 || largestParam == 0) return 0;
        long per = Math.min(MAX_WINDOW_ELEMENTS, windowBytes / (4L * kinds)) / ALIGN * ALIGN;
        return Math.min(Math.max(per, ALIGN), largestParam);
    }

    /** The kinds of state per element (2 for AdamW, 1 for SGD with momentum, 0 without). */
    public int kinds() { return kinds.size(); }

    @Override
    public long steps() { return steps; }

    @Override
    public void step(List<Param> params, double lr) {
        if (!(lr >= 0 && Double.isFinite(lr))) throw new IllegalArgumentException("learning rate must be finite and >= 0, got " + lr);
        ensureOpen();
        for (Param p : params)
            if (p.value().dtype() != DType.F32)
                throw new IllegalArgumentException("offloaded optimizer state is fp32: parameter " + p.name() + " is " + p.value().dtype());
        if (!hasState) define(params);
        else check(params);
        releaseViews();
        Kernels kernels = KernelBackends.get();
        long t = steps + 1;
        boolean first = !hasState; // SGD's first step clones d into the momentum buffer (torch's rule)
        if (kinds.isEmpty()) { // SGD without momentum: no state, nothing to stream
            for (Param p : params) {
                var c = Sgd.coefficients(sgd.config(), lr, p.decay(), false);
                var pv = p.value().segment();
                var g = p.grad().segment();
                UpdateKernels.forBlocks(p.elements(), (from, to) -> kernels.sgd(pv, g, null, from, to, c));
            }
            hasState = true;
            steps = t;
            return;
        }
        ensureWindow();
        try {
            for (Param p : params) {
                Slot s = slots.get(p.name());
                var adamC = adam != null ? AdamW.coefficients(adam.config(), lr, t, p.decay()) : null;
                var sgdC = sgd != null ? Sgd.coefficients(sgd.config(), lr, p.decay(), first) : null;
                long n = s.elements();
                for (long a = 0; a < n; a += windowElements) {
                    long len = Math.min(windowElements, n - a);
                    MemorySegment[] st = new MemorySegment[kinds.size()];
                    for (int k = 0; k < st.length; k++) {
                        st[k] = window.segment().asSlice(k * windowElements * Float.BYTES, len * Float.BYTES);
                        read(st[k], position(k, s, a));
                    }
                    MemorySegment pv = p.value().segment().asSlice(a * Float.BYTES, len * Float.BYTES);
                    MemorySegment g = p.grad().segment().asSlice(a * Float.BYTES, len * Float.BYTES);
                    if (adamC != null) UpdateKernels.forBlocks(len, (from, to) -> kernels.adamw(pv, g, st[0], st[1], from, to, adamC));
                    else UpdateKernels.forBlocks(len, (from, to) -> kernels.sgd(pv, g, st[0], from, to, sgdC));
                    for (int k = 0; k < st.length; k++) write(st[k], position(k, s, a));
                }
            }
        } catch (IOException e) {
            throw new UncheckedIOException("offloaded optimizer state " + dir.resolve(STATE_FILE) + ": " + e.getMessage(), e);
        }
        hasState = true;
        steps = t;
    }

    /** Byte position of element {@code a} of {@code s}'s kind-{@code k} state in the file. */
    private long position(int k, Slot s, long a) { return ((long) k * totalElements + s.offset() + a) * Float.BYTES; }

    /** The first step's parameters fix the file's layout; the file is created zeroed (AdamW's m, v start at 0). */
    private void define(List<Param> params) {
        Map<String, Shape> shapes = new LinkedHashMap<>();
        for (Param p : params)
            if (shapes.put(p.name(), p.value().shape()) != null) throw new IllegalArgumentException("parameter " + p.name() + " is passed twice");
        layout(shapes);
        if (kinds.isEmpty()) return;
        try {
            lock();
            Path tmp = dir.resolve(STATE_FILE + ".tmp");
            try (FileChannel c = FileChannel.open(tmp, StandardOpenOption.CREATE, StandardOpenOption.WRITE, StandardOpenOption.TRUNCATE_EXISTING)) {
                if (totalBytes() > 0) c.write(ByteBuffer.allocate(1), totalBytes() - 1); // sparse: reads as zeros
            }
            install(tmp);
        } catch (IOException e) {
            throw new UncheckedIOException("creating offloaded optimizer state in " + dir + ": " + e.getMessage(), e);
        }
    }

    private void layout(Map<String, Shape> shapes) {
        slots.clear();
        long offset = 0;
        for (Map.Entry<String, Shape> e : shapes.entrySet()) {
            slots.put(e.getKey(), new Slot(offset, e.getValue()));
            offset = Math.addExact(offset, e.getValue().elements());
        }
        totalElements = offset;
    }

    private long totalBytes() { return Math.multiplyExact(Math.multiplyExact(totalElements, (long) kinds.size()), (long) Float.BYTES); }

    /** Moves a complete state file into place, reopens it and records its bytes. */
    private void install(Path tmp) throws IOException {
        lock();
        releaseViews();
        if (channel != null) channel.close();
        if (disk != null) disk.close();
        Path file = dir.resolve(STATE_FILE);
        Files.move(tmp, file, StandardCopyOption.REPLACE_EXISTING, StandardCopyOption.ATOMIC_MOVE);
        channel = FileChannel.open(file, StandardOpenOption.READ, StandardOpenOption.WRITE);
        disk = ledger.recordFile(Category.OFFLOADED_DISK, "offloaded optimizer state " + file, totalBytes());
    }

    /** The run's claim on the directory: a second run offloading there stops with bad input instead of sharing files. */
    private void lock() throws IOException {
        if (lock != null) return;
        Files.createDirectories(dir);
        lockChannel = FileChannel.open(dir.resolve(".lock"), StandardOpenOption.CREATE, StandardOpenOption.WRITE);
        try {
            lock = lockChannel.tryLock();
        } catch (OverlappingFileLockException e) {
            lock = null;
        }
        if (lock == null) {
            lockChannel.close();
            lockChannel = null;
            throw new InputException("--offload-dir: " + dir + " is in use by another run; give each run its own --offload-dir");
        }
    }

    /** The window buffer, allocated once under OPTIMIZER: kinds × windowElements fp32 values. */
    private void ensureWindow() {
        long largest = 0;
        for (Slot s : slots.values()) largest = Math.max(largest, s.elements());
        long w = windowElements(windowBytes, kinds.size(), largest);
        if (window != null && w == windowElements) return;
        if (window != null) window.close();
        windowElements = w;
        window = ledger.allocate(Category.OPTIMIZER, "offloaded optimizer window", w * kinds.size() * Float.BYTES);
    }

    private void check(List<Param> params) {
        Set<String> seen = new HashSet<>();
        for (Param p : params) {
            if (!seen.add(p.name())) throw new IllegalArgumentException("parameter " + p.name() + " is passed twice");
            Slot s = slots.get(p.name());
            if (s == null)
                throw new IllegalArgumentException("optimizer state has no entry " + (kinds.isEmpty() ? "" : kinds.getFirst() + "/") + p.name()
                        + " for parameter " + p.name() + ", but " + steps
                        + " steps were taken (pass the same trainable parameters every step; a resumed checkpoint must cover them all)");
            if (!s.shape().equals(p.value().shape()))
                throw new IllegalArgumentException("optimizer state " + (kinds.isEmpty() ? "" : kinds.getFirst() + "/") + p.name() + " has shape "
                        + s.shape() + " but parameter " + p.name() + " has shape " + p.value().shape());
        }
        if (checkLeftovers) {
            for (String name : slots.keySet())
                if (!seen.contains(name))
                    throw new IllegalArgumentException("optimizer state " + kinds.getFirst() + "/" + name + " matches no parameter given to step");
            checkLeftovers = false;
        }
    }

    /** Read-only views of the state file, "kind/param" in kind order then parameter order (as the in-memory optimizers). */
    @Override
    public Map<String, Tensor> state() {
        ensureOpen();
        if (!hasState || kinds.isEmpty()) return Map.of();
        Map<String, Tensor> out = new LinkedHashMap<>();
        try {
            Arena arena = Arena.ofShared();
            views.add(arena);
            MemorySegment all = totalBytes() == 0 ? MemorySegment.NULL : channel.map(FileChannel.MapMode.READ_ONLY, 0, totalBytes(), arena);
            for (int k = 0; k < kinds.size(); k++)
                for (Map.Entry<String, Slot> e : slots.entrySet()) {
                    String name = kinds.get(k) + "/" + e.getKey();
                    Slot s = e.getValue();
                    out.put(name, new Tensor(name, DType.F32, s.shape(), all.asSlice(position(k, s, 0), s.elements() * Float.BYTES)));
                }
        } catch (IOException e) {
            throw new UncheckedIOException("mapping offloaded optimizer state " + dir.resolve(STATE_FILE) + ": " + e.getMessage(), e);
        }
        return Collections.unmodifiableMap(out);
    }

    @Override
    public void loadState(Map<String, Tensor> state, long steps) {
        ensureOpen();
        if (steps < 0) throw new IllegalArgumentException("optimizer steps must be >= 0, got " + steps);
        if (adam != null) adam.checkValues(state);
        // The checks the in-memory optimizers make: known kinds, fp32, every kind of a parameter present and of one shape.
        Map<String, Tensor[]> incoming = new LinkedHashMap<>();
        for (Map.Entry<String, Tensor> e : state.entrySet()) {
            String key = e.getKey();
            int slash = key.indexOf('/');
            int kind = slash < 0 ? -1 : kinds.indexOf(key.substring(0, slash));
            if (kind < 0)
                throw new IllegalArgumentException("unknown optimizer state entry '" + key + "' (expected "
                        + (kinds.isEmpty() ? "no entries" : String.join("/<param>, ", kinds) + "/<param>") + ")");
            Tensor t = e.getValue();
            if (t == null) throw new IllegalArgumentException("optimizer state entry " + key + " is null");
            if (t.dtype() != DType.F32)
                throw new IllegalArgumentException("optimizer state entry " + key + " is " + t.dtype() + ", expected F32 (offloaded state is fp32)");
            incoming.computeIfAbsent(key.substring(slash + 1), n -> new Tensor[kinds.size()])[kind] = t;
        }
        Map<String, Shape> shapes = new LinkedHashMap<>();
        for (Map.Entry<String, Tensor[]> e : incoming.entrySet()) {
            Tensor[] t = e.getValue();
            for (int k = 0; k < kinds.size(); k++) {
                String key = kinds.get(k) + "/" + e.getKey();
                if (t[k] == null) throw new IllegalArgumentException("optimizer state is missing entry " + key);
                if (!t[0].shape().equals(t[k].shape()))
                    throw new IllegalArgumentException("optimizer state entry " + key + " has shape " + t[k].shape() + " but "
                            + kinds.getFirst() + "/" + e.getKey() + " has shape " + t[0].shape());
            }
            shapes.put(e.getKey(), t[0].shape());
        }
        // Written into a new file before the old one goes: the caller may pass this optimizer's own state() back in.
        Map<String, Slot> oldSlots = new LinkedHashMap<>(slots);
        long oldTotal = totalElements;
        layout(shapes);
        try {
            lock();
            Path tmp = dir.resolve(STATE_FILE + ".tmp");
            try (FileChannel c = FileChannel.open(tmp, StandardOpenOption.CREATE, StandardOpenOption.WRITE, StandardOpenOption.TRUNCATE_EXISTING)) {
                for (Map.Entry<String, Tensor[]> e : incoming.entrySet())
                    for (int k = 0; k < kinds.size(); k++) writeAll(c, e.getValue()[k].segment(), position(k, slots.get(e.getKey()), 0));
            }
            install(tmp);
        } catch (IOException e) {
            slots.clear();
            slots.putAll(oldSlots);
            totalElements = oldTotal;
            throw new UncheckedIOException("writing offloaded optimizer state in " + dir + ": " + e.getMessage(), e);
        }
        hasState = true;
        checkLeftovers = true;
        this.steps = steps;
    }

    @Override
    public void loadState(Map<String, Tensor> state, long steps, List<Param> params) {
        loadState(state, steps);
        check(params);
    }

    /** The state's bytes (on disk, not in memory) once it has stepped. */
    @Override
    public long stateBytes(List<Param> params) {
        long n = 0;
        for (Param p : params) n = Math.addExact(n, p.elements());
        return Math.multiplyExact(n, (long) kinds.size() * Float.BYTES);
    }

    private void read(MemorySegment to, long position) throws IOException {
        ByteBuffer b = to.asByteBuffer();
        while (b.hasRemaining()) {
            int r = channel.read(b, position + b.position());
            if (r < 0) throw new IOException("the state file ends before byte " + (position + b.position()) + " (changed by something else?)");
        }
    }

    private void write(MemorySegment from, long position) throws IOException { writeAll(channel, from, position); }

    /** Writes a segment at {@code position} in chunks of at most 8 MiB (a ByteBuffer holds below 2 GiB). */
    private static void writeAll(FileChannel c, MemorySegment from, long position) throws IOException {
        long chunk = 8L << 20;
        for (long at = 0; at < from.byteSize(); at += chunk) {
            MemorySegment part = from.asSlice(at, Math.min(chunk, from.byteSize() - at));
            ByteBuffer b = part.isNative() || part.heapBase().map(x -> x instanceof byte[]).orElse(false)
                    ? part.asByteBuffer() : ByteBuffer.wrap(part.toArray(java.lang.foreign.ValueLayout.JAVA_BYTE));
            while (b.hasRemaining()) c.write(b, position + at + b.position());
        }
    }

    private void releaseViews() {
        for (Arena a : views) a.close();
        views.clear();
    }

    private void ensureOpen() {
        if (closed) throw new IllegalStateException("optimizer is closed");
    }

    /** Frees the window, deletes the state file (checkpoints hold the state of record) and releases the directory. */
    @Override
    public void close() {
        if (closed) return;
        closed = true;
        releaseViews();
        if (window != null) window.close();
        if (disk != null) disk.close();
        try {
            if (channel != null) channel.close();
            Files.deleteIfExists(dir.resolve(STATE_FILE));
            Files.deleteIfExists(dir.resolve(STATE_FILE + ".tmp"));
            if (lock != null) {
                Files.deleteIfExists(dir.resolve(".lock"));
                lock.release();
                lockChannel.close();
                try (var left = Files.list(dir)) {
                    if (left.findAny().isEmpty()) Files.delete(dir);
                }
            }
        } catch (IOException e) {
            throw new UncheckedIOException("cleaning up offloaded optimizer state in " + dir + ": " + e.getMessage(), e);
        }
        if (adam != null) adam.close();
        if (sgd != null) sgd.close();
    }
}
