// Sharded checkpoints (ZeRO stage >= 1): each rank writes its pieces of the state; a load re-partitions them onto any number of ranks.
package dev.llamafit.train;

import java.io.IOException;
import java.lang.foreign.MemorySegment;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.SequencedMap;

import com.fasterxml.jackson.databind.JsonNode;

import dev.llamafit.dist.Collectives;
import dev.llamafit.io.AtomicFiles;
import dev.llamafit.io.InputException;
import dev.llamafit.io.Json;
import dev.llamafit.io.JsonFields;
import dev.llamafit.io.OutputWriteException;
import dev.llamafit.io.safetensors.NonFinite;
import dev.llamafit.io.safetensors.SafetensorsFile;
import dev.llamafit.io.safetensors.SafetensorsWriter;
import dev.llamafit.memory.Category;
import dev.llamafit.memory.MemoryLedger;
import dev.llamafit.model.ShardLayout;
import dev.llamafit.optim.Param;
import dev.llamafit.tensor.DType;
import dev.llamafit.tensor.Shape;
import dev.llamafit.tensor.Tensor;
import dev.llamafit.tensor.TensorSpec;

/**
 * A sharded checkpoint is an ordinary checkpoint folder ({@code model.safetensors} consolidated, {@code trainer_state.json}
 * last) whose optimizer state is not one {@code optimizer.safetensors} but {@code zero/}: {@code partition.json} (the
 * {@link ShardLayout}: rank count, state kinds, and per unit its tensors' names, shapes and flat offsets) and one
 * {@code rank-RRRRR-of-NNNNN.safetensors} per rank holding, per kind and {@link ShardLayout.Piece piece} of that rank, one
 * flat fp32 tensor "kind/tensor name" of the piece's elements (what a ZeRO-1 optimizer's {@code state()} holds; a ZeRO-3
 * engine adds kind "weights" alike). No rank ever holds more than its own pieces.
 *
 * <p><b>Commit.</b> Every rank writes and fsyncs its file into the hidden temporary folder, then a barrier; only then does
 * rank 0 write the trainer state (the marker) and rename the folder into place. A job killed at any moment leaves the
 * previous checkpoint as the newest complete one; the temporary folder is removed at the next start.
 *
 * <p><b>Re-partition.</b> As DeepSpeed's universal checkpoints: a unit's state is the concatenation, in rank order, of the
 * old ranks' owned ranges; the new rank r reads elements {@code [r·s', min((r+1)·s', n))} of it, wherever they lie. A
 * whole {@code optimizer.safetensors} (one process, or ZeRO stage 0) is read the same way, so any checkpoint resumes on
 * any number of ranks at any stage.
 */
final class ShardedCheckpoint {
    static final String DIR = "zero";
    static final String PARTITION = "partition.json";
    static final int FORMAT = 1;
    /**
     * Fault tests set {@code -Dllamafit.test.pauseInCheckpoint=STEP:RANK:FILE}: that rank, about to write its shard of that
     * step's checkpoint, writes its pid to FILE and waits to be killed (kill -9), deterministically inside the write.
     */
    private static final String PAUSE = System.getProperty("llamafit.test.pauseInCheckpoint", "");

    private ShardedCheckpoint() {}

    /** A rank's file name. */
    static String rankFile(int rank, int ranks) { return String.format("rank-%05d-of-%05d.safetensors", rank, ranks); }

    /** Whether {@code checkpoint} holds its optimizer state sharded. */
    static boolean isSharded(Path checkpoint) { return Files.isRegularFile(checkpoint.resolve(DIR).resolve(PARTITION)); }

    /** The partition of {@code params} over {@code ranks} (the one {@link OptimizerShards} steps). */
    static ShardLayout layoutOf(List<Param> params, int ranks) {
        List<TensorSpec> specs = new ArrayList<>();
        for (Param p : params) specs.add(new TensorSpec(p.name(), p.value().shape(), DType.F32, "trainable"));
        return ShardLayout.of(specs, ranks);
    }

    /**
     * Writes the consolidated weights file. Collective: every rank calls it at the same point of a save; it must have
     * written {@code file} completely (fsynced) on rank 0 when it returns there. With stage <= 2 rank 0 holds every weight
     * and writes them; a ZeRO-3 engine gathers unit by unit instead.
     */
    @FunctionalInterface
    interface ConsolidatedWeights {
        void write(Path file, boolean leader) throws IOException;
    }

    /** {@link ConsolidatedWeights} of weights every rank holds whole (stages 0-2): rank 0 writes them. */
    static ConsolidatedWeights replicated(List<Tensor> weights) {
        return (file, leader) -> {
            if (leader) SafetensorsWriter.write(file, weights, Map.of("format", "pt", "llamafit", "checkpoint"));
        };
    }

    /**
     * Saves step {@code step}'s checkpoint. Collective. {@code pieces} is this rank's state, "kind/tensor name" to a flat fp32
     * tensor of the piece's length ({@code layout} over the job's ranks); {@code trainerState} is read on rank 0 only.
     * Returns the checkpoint folder.
     */
    static Path save(Collectives c, Path runDir, long step, ShardLayout layout, Map<String, Tensor> pieces, ConsolidatedWeights weights,
                     Map<String, Object> trainerState) throws IOException {
        if (layout.ranks() != c.size()) throw new IllegalArgumentException("a layout over " + layout.ranks() + " ranks in a job of " + c.size());
        boolean leader = c.rank() == 0;
        String operation = "writing checkpoint step " + step + " to";
        Path parent = runDir.resolve(Checkpoints.DIR);
        String name = String.format("step-%08d", step);
        Path target = parent.resolve(name);
        // A fixed name every rank knows; rank 0 removed any stale one (a killed job's) under the run folder's lock.
        Path tmp = parent.resolve("." + name + ".tmp-ranks");
        List<String> kinds = kinds(pieces);
        SequencedMap<String, Tensor> mine = mine(layout, c.rank(), kinds, pieces);
        try {
            if (leader) {
                Files.createDirectories(parent);
                Checkpoints.removeStaleIn(parent);
                Files.createDirectories(tmp.resolve(DIR));
                AtomicFiles.writeString(tmp.resolve(DIR).resolve(PARTITION), Json.write(partition(layout, kinds)) + "\n");
            }
            c.barrier(); // the folder exists
            weights.write(tmp.resolve(Checkpoints.MODEL), leader);
            pauseIfAsked(step, c.rank());
            SafetensorsWriter.write(tmp.resolve(DIR).resolve(rankFile(c.rank(), c.size())), mine,
                    Map.of("llamafit", "optimizer-shard", "rank", Integer.toString(c.rank()), "ranks", Integer.toString(c.size())));
            c.barrier(); // every rank's file is on disk: only now may the checkpoint count
            if (!leader) return target;
            AtomicFiles.fsyncDirectory(tmp.resolve(DIR));
            AtomicFiles.writeString(tmp.resolve(Checkpoints.STATE), Json.write(trainerState) + "\n"); // the marker, last
            AtomicFiles.fsyncDirectory(tmp);
            if (Files.exists(target)) Checkpoints.deleteTree(target); // a re-save of the same step after a resume
            Files.move(tmp, target, StandardCopyOption.ATOMIC_MOVE);
            AtomicFiles.fsyncDirectory(parent);
        } catch (IOException e) {
            // Another rank may still be writing into tmp: leave it for the next start (a failure here aborts the job).
            throw OutputWriteException.of(operation, tmp, e);
        }
        Checkpoints.prune(parent);
        return target;
    }

    /** The state kinds ("exp_avg", "exp_avg_sq", ...) in the order of their first entry. */
    private static List<String> kinds(Map<String, Tensor> pieces) {
        List<String> out = new ArrayList<>();
        for (String key : pieces.keySet()) {
            int slash = key.indexOf('/');
            if (slash <= 0) throw new IllegalStateException("state entry " + key + " is not kind/tensor");
            String kind = key.substring(0, slash);
            if (!out.contains(kind)) out.add(kind);
        }
        return out;
    }

    /** This rank's file content, kind by kind in layout order; every piece must be there with its length. */
    private static SequencedMap<String, Tensor> mine(ShardLayout layout, int rank, List<String> kinds, Map<String, Tensor> pieces) {
        SequencedMap<String, Tensor> out = new LinkedHashMap<>();
        for (String kind : kinds)
            for (ShardLayout.Unit u : layout.units())
                for (ShardLayout.Piece p : u.pieces(rank, layout.ranks())) {
                    String key = kind + "/" + p.spec().name();
                    Tensor t = pieces.get(key);
                    if (t == null || t.dtype() != DType.F32 || t.elements() != p.length())
                        throw new IllegalStateException("state " + key + " is not rank " + rank + "'s fp32 piece of " + p.length() + ": " + t);
                    out.put(key, t);
                }
        if (out.size() != pieces.size()) throw new IllegalStateException("state entries outside this rank's pieces: " + pieces.keySet());
        return out;
    }

    private static Map<String, Object> partition(ShardLayout layout, List<String> kinds) {
        List<Object> units = new ArrayList<>();
        for (ShardLayout.Unit u : layout.units()) {
            List<Object> tensors = new ArrayList<>();
            for (int i = 0; i < u.specs().size(); i++) {
                Map<String, Object> t = new LinkedHashMap<>();
                t.put("name", u.specs().get(i).name());
                t.put("shape", u.specs().get(i).shape().dims());
                t.put("offset", u.offsets()[i]);
                tensors.add(t);
            }
            Map<String, Object> m = new LinkedHashMap<>();
            m.put("name", u.name());
            m.put("elements", u.elements());
            m.put("tensors", tensors);
            units.add(m);
        }
        List<String> files = new ArrayList<>();
        for (int r = 0; r < layout.ranks(); r++) files.add(rankFile(r, layout.ranks()));
        Map<String, Object> m = new LinkedHashMap<>();
        m.put("format", FORMAT);
        m.put("ranks", layout.ranks());
        m.put("dtype", "F32");
        m.put("kinds", kinds);
        m.put("files", files);
        m.put("units", units);
        return m;
    }

    private static void pauseIfAsked(long step, int rank) throws IOException {
        if (PAUSE.isEmpty()) return;
        String[] p = PAUSE.split(":", 3);
        if (Long.parseLong(p[0]) != step || Integer.parseInt(p[1]) != rank) return;
        Files.writeString(Path.of(p[2]), Long.toString(ProcessHandle.current().pid()));
        while (true) {
            try {
                Thread.sleep(60_000);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                throw new IllegalStateException("interrupted in the checkpoint pause test hook");
            }
        }
    }

    // ---- loading ----

    /**
     * The optimizer state of {@code checkpoint} re-partitioned for rank {@code rank} of {@code target}: "kind/tensor name"
     * to a new tensor (WORKSPACE; the caller closes them) of that rank's piece, flat ({@code flat}, the views a ZeRO
     * optimizer steps), or of the tensor's shape (one rank holding everything). The checkpoint may be sharded over any
     * number of ranks or whole. Damaged or mismatched files are bad input naming the file and entry.
     */
    static Map<String, Tensor> load(Path checkpoint, ShardLayout target, int rank, boolean flat, MemoryLedger ledger) {
        try (Source src = isSharded(checkpoint) ? new Sharded(checkpoint, target, ledger) : new Whole(checkpoint, ledger)) {
            Map<String, Tensor> out = new LinkedHashMap<>();
            try {
                for (String kind : src.kinds())
                    for (ShardLayout.Unit u : target.units())
                        for (ShardLayout.Piece p : u.pieces(rank, target.ranks())) {
                            String key = kind + "/" + p.spec().name();
                            Shape shape = flat ? Shape.of(p.length()) : p.spec().shape();
                            if (!flat && p.length() != p.spec().elements()) throw new IllegalArgumentException("a whole load needs whole pieces");
                            Tensor t = Tensor.allocate(ledger, Category.WORKSPACE, key, DType.F32, shape);
                            out.put(key, t);
                            int i = u.specs().indexOf(p.spec());
                            src.copy(kind, u, u.offsets()[i] + p.from(), p.length(), t.segment());
                            long bad = NonFinite.count(t.segment(), DType.F32, t.elements());
                            if (bad > 0)
                                throw InputException.at(src.where(), "optimizer state " + key + " has " + bad
                                        + " non-finite values (NaN/Inf): the checkpoint is damaged; resume from an earlier one");
                        }
            } catch (RuntimeException e) {
                out.values().forEach(Tensor::close);
                throw e;
            }
            return out;
        }
    }

    /**
     * A sharded checkpoint's optimizer state whole, each entry of its tensor's shape (as a one-process checkpoint's
     * optimizer.safetensors holds it), for tools and tests; the caller closes the tensors.
     */
    static Map<String, Tensor> consolidated(Path checkpoint, MemoryLedger ledger) {
        Path file = checkpoint.resolve(DIR).resolve(PARTITION);
        List<TensorSpec> specs = new ArrayList<>();
        for (JsonNode u : JsonFields.required(Json.read(file), "units", file, ""))
            for (JsonNode t : u.path("tensors")) {
                long[] dims = new long[t.path("shape").size()];
                for (int i = 0; i < dims.length; i++) dims[i] = t.path("shape").get(i).asLong();
                specs.add(new TensorSpec(t.path("name").asText(), Shape.of(dims), DType.F32, "trainable"));
            }
        return load(checkpoint, ShardLayout.of(specs, 1), 0, false, ledger);
    }

    /** Optimizer state read by unit ranges. */
    private interface Source extends AutoCloseable {
        List<String> kinds();

        /** Elements {@code [from, from+length)} of unit {@code u}'s flat state of {@code kind} into {@code dst}. */
        void copy(String kind, ShardLayout.Unit u, long from, long length, MemorySegment dst);

        Path where();

        @Override void close();
    }

    /** A whole optimizer.safetensors: tensor "kind/name" of the tensor's shape. */
    private static final class Whole implements Source {
        private final SafetensorsFile file;

        Whole(Path checkpoint, MemoryLedger ledger) {
            this.file = SafetensorsFile.open(checkpoint.resolve(Checkpoints.OPTIMIZER), ledger);
        }

        @Override public Path where() { return file.file(); }

        @Override
        public List<String> kinds() {
            List<String> out = new ArrayList<>();
            for (String n : file.names()) {
                int slash = n.indexOf('/');
                if (slash <= 0) throw InputException.at(file.file(), "tensor " + n, "is not an optimizer state entry (kind/tensor name)");
                if (!out.contains(n.substring(0, slash))) out.add(n.substring(0, slash));
            }
            return out;
        }

        @Override
        public void copy(String kind, ShardLayout.Unit u, long from, long length, MemorySegment dst) {
            for (int i = 0; i < u.specs().size(); i++) {
                TensorSpec s = u.specs().get(i);
                long lo = Math.max(from, u.offsets()[i]), hi = Math.min(from + length, u.offsets()[i] + s.elements());
                if (lo >= hi) continue;
                String key = kind + "/" + s.name();
                Tensor t = file.find(key).orElseThrow(() -> InputException.at(file.file(), "tensor " + key, "is missing (the model's "
                        + s.name() + " has no " + kind + " state here): is this checkpoint of this model and optimizer?"));
                if (t.dtype() != DType.F32 || !t.shape().equals(s.shape()))
                    throw InputException.at(file.file(), "tensor " + key, "is " + t.dtype() + " " + t.shape() + " but the model's "
                            + s.name() + " needs F32 " + s.shape() + " (this run re-partitions fp32 state only)");
                MemorySegment.copy(t.segment(), (lo - u.offsets()[i]) * Float.BYTES, dst, (lo - from) * Float.BYTES, (hi - lo) * Float.BYTES);
            }
        }

        @Override public void close() { file.close(); }
    }

    /** zero/partition.json and the old ranks' files, opened on first use. */
    private static final class Sharded implements Source {
        private final Path dir;
        private final ShardLayout old;
        private final List<String> kinds = new ArrayList<>();
        private final Map<Integer, SafetensorsFile> open = new HashMap<>();
        private final MemoryLedger ledger;

        Sharded(Path checkpoint, ShardLayout target, MemoryLedger ledger) {
            this.dir = checkpoint.resolve(DIR);
            this.ledger = ledger;
            Path file = dir.resolve(PARTITION);
            JsonNode n = Json.read(file);
            if (n == null || !n.isObject()) throw InputException.at(file, "must be a JSON object");
            int format = JsonFields.requiredInt(n, "format", 1, Integer.MAX_VALUE, file, "");
            if (format > FORMAT) throw InputException.at(file, "partition format " + format + " is newer than this llamafit reads (" + FORMAT + ")");
            int ranks = JsonFields.requiredInt(n, "ranks", 1, 1 << 20, file, "");
            JsonNode k = JsonFields.required(n, "kinds", file, "");
            if (!k.isArray()) throw JsonFields.wrong(file, "", "kinds", "an array of strings", k);
            for (JsonNode e : k) {
                if (!e.isTextual()) throw JsonFields.wrong(file, "", "kinds", "an array of strings", k);
                kinds.add(e.textValue());
            }
            checkUnits(file, JsonFields.required(n, "units", file, ""), target);
            this.old = target.withRanks(ranks);
        }

        /** The checkpoint's units must be this run's: same names, tensors, shapes and offsets, in order. */
        private static void checkUnits(Path file, JsonNode units, ShardLayout target) {
            List<String> saved = new ArrayList<>(), now = new ArrayList<>();
            if (units.isArray())
                for (JsonNode u : units) {
                    StringBuilder sb = new StringBuilder(u.path("name").asText()).append('[');
                    for (JsonNode t : u.path("tensors")) sb.append(t.path("name").asText()).append(t.path("shape")).append('@').append(t.path("offset").asLong()).append(' ');
                    saved.add(sb.append(']').toString());
                }
            for (ShardLayout.Unit u : target.units()) {
                StringBuilder sb = new StringBuilder(u.name()).append('[');
                for (int i = 0; i < u.specs().size(); i++)
                    sb.append(u.specs().get(i).name()).append(Json.writeCompact(u.specs().get(i).shape().dims())).append('@').append(u.offsets()[i]).append(' ');
                now.add(sb.append(']').toString());
            }
            if (saved.equals(now)) return;
            int i = 0;
            while (i < Math.min(saved.size(), now.size()) && saved.get(i).equals(now.get(i))) i++;
            String what = i < Math.min(saved.size(), now.size()) ? "unit " + i + " is " + saved.get(i) + " in the checkpoint but " + now.get(i) + " here"
                    : "the checkpoint has " + saved.size() + " units, this model " + now.size();
            throw InputException.at(file, "units", "do not match this run's trainable tensors: " + what + " (another model, or another --method?)");
        }

        @Override public List<String> kinds() { return kinds; }

        @Override public Path where() { return dir; }

        @Override
        public void copy(String kind, ShardLayout.Unit u, long from, long length, MemorySegment dst) {
            for (int r = 0; r < old.ranks(); r++) {
                long owned = u.owned(r, old.ranks()), start = u.from(r, old.ranks());
                if (owned == 0 || start >= from + length || start + owned <= from) continue;
                for (ShardLayout.Piece p : u.pieces(r, old.ranks())) {
                    int i = u.specs().indexOf(p.spec());
                    long pFrom = u.offsets()[i] + p.from();
                    long lo = Math.max(from, pFrom), hi = Math.min(from + length, pFrom + p.length());
                    if (lo >= hi) continue;
                    SafetensorsFile f = file(r);
                    String key = kind + "/" + p.spec().name();
                    Tensor t = f.find(key).orElseThrow(() -> InputException.at(f.file(), "tensor " + key, "is missing: this rank's piece of "
                            + p.spec().name() + " must be here"));
                    if (t.dtype() != DType.F32 || t.elements() != p.length())
                        throw InputException.at(f.file(), "tensor " + key, "is " + t.dtype() + " of " + t.elements() + " elements but rank " + r
                                + " of " + old.ranks() + " owns " + p.length() + " fp32 elements of it");
                    MemorySegment.copy(t.segment(), (lo - pFrom) * Float.BYTES, dst, (lo - from) * Float.BYTES, (hi - lo) * Float.BYTES);
                }
            }
        }

        private SafetensorsFile file(int rank) {
            return open.computeIfAbsent(rank, r -> {
                Path f = dir.resolve(rankFile(r, old.ranks()));
                if (!Files.isRegularFile(f))
                    throw InputException.at(f, "is missing: the checkpoint's optimizer state was written by " + old.ranks() + " ranks and each one's file is needed");
                return SafetensorsFile.open(f, ledger);
            });
        }

        @Override
        public void close() {
            open.values().forEach(SafetensorsFile::close);
        }
    }
}
