// Training checkpoints: weights, optimizer state and trainer state in one folder, written atomically.
package dev.llamafit.train;

import java.io.IOException;
import java.nio.file.DirectoryStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.concurrent.ThreadLocalRandom;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

import com.fasterxml.jackson.databind.JsonNode;

import dev.llamafit.io.AtomicFiles;
import dev.llamafit.io.InputException;
import dev.llamafit.io.Json;
import dev.llamafit.io.OutputFolder;
import dev.llamafit.io.OutputWriteException;
import dev.llamafit.io.safetensors.NonFinite;
import dev.llamafit.io.safetensors.SafetensorsFile;
import dev.llamafit.io.safetensors.SafetensorsWriter;
import dev.llamafit.memory.MemoryLedger;
import dev.llamafit.tensor.Tensor;

/**
 * A checkpoint is {@code RUN/checkpoints/step-NNNNNNNN/} holding {@code model.safetensors} (trainable weights),
 * {@code optimizer.safetensors} (optimizer state) and {@code trainer_state.json} (step, data position, seed,
 * options). It is written into a hidden temporary folder beside its final name, every file fsynced, then the
 * folder is renamed into place and the parent fsynced: a process killed at any moment leaves either no new
 * checkpoint or a complete one, and the previous checkpoint untouched. Stale temporary folders are removed at
 * the next save.
 */
public final class Checkpoints {
    public static final String DIR = "checkpoints";
    public static final String MODEL = "model.safetensors";
    public static final String OPTIMIZER = "optimizer.safetensors";
    public static final String STATE = "trainer_state.json";
    private static final Pattern NAME = Pattern.compile("step-(\\d{8})");
    /** Checkpoints kept after a save (the newest ones); older ones are deleted. */
    public static final int KEEP = 2;
    /**
     * Crash-safety tests set {@code -Dllamafit.test.haltInCheckpoint=STEP} in a child JVM to die (Runtime.halt:
     * no finally blocks or shutdown hooks, as under SIGKILL) half-way through writing that step's checkpoint.
     */
    private static final long HALT_IN_CHECKPOINT = Long.getLong("llamafit.test.haltInCheckpoint", -1);

    private Checkpoints() {}

    /**
     * Opens a checkpoint's safetensors file ({@link #MODEL} or {@link #OPTIMIZER}) and checks every tensor for NaN/Inf,
     * as a base model is checked on load: a run never writes a non-finite checkpoint (it stops on a NaN loss first),
     * so one that holds them is damaged, and resuming from it would train on garbage (exit 2 naming the tensor).
     */
    static SafetensorsFile openFinite(Path file, MemoryLedger ledger) {
        SafetensorsFile f = SafetensorsFile.open(file, ledger);
        try {
            for (String name : f.names()) {
                var t = f.find(name).orElseThrow();
                long bad = NonFinite.count(t.segment(), t.dtype(), t.elements());
                if (bad > 0)
                    throw InputException.at(file, "tensor " + name, "has " + bad + " non-finite values (NaN/Inf): the checkpoint is"
                            + " damaged; resume from an earlier one");
            }
            return f;
        } catch (RuntimeException e) {
            f.close();
            throw e;
        }
    }

    /** Saves a checkpoint for {@code step}; returns its folder. */
    public static Path save(Path runDir, long step, List<Tensor> weights, List<Tensor> optimizerState,
                            Map<String, Object> trainerState) throws IOException {
        String operation = "writing checkpoint step " + step + " to";
        Path parent = runDir.resolve(DIR);
        String name = String.format("step-%08d", step);
        Path target = parent.resolve(name);
        Path tmp = parent.resolve("." + name + ".tmp-" + Long.toHexString(ThreadLocalRandom.current().nextLong()));
        try {
            Files.createDirectories(parent);
            removeStaleIn(parent);
            Files.createDirectory(tmp);
        } catch (IOException e) {
            throw OutputWriteException.of(operation, tmp, e);
        }
        try {
            SafetensorsWriter.write(tmp.resolve(MODEL), weights, Map.of("format", "pt", "llamafit", "checkpoint"));
            if (HALT_IN_CHECKPOINT == step) Runtime.getRuntime().halt(137); // test hook: a kill mid-checkpoint
            SafetensorsWriter.write(tmp.resolve(OPTIMIZER), optimizerState, Map.of("llamafit", "optimizer"));
            AtomicFiles.writeString(tmp.resolve(STATE), Json.write(trainerState) + "\n"); // last: marks the folder complete
            AtomicFiles.fsyncDirectory(tmp);
            if (Files.exists(target)) deleteTree(target); // a re-save of the same step after a resume
            Files.move(tmp, target, StandardCopyOption.ATOMIC_MOVE);
            AtomicFiles.fsyncDirectory(parent);
        } catch (IOException | RuntimeException e) {
            try {
                deleteTree(tmp);
            } catch (IOException cleanup) {
                e.addSuppressed(cleanup); // the next run removes it (removeStaleTemporaries)
            }
            if (e instanceof IOException io) throw OutputWriteException.of(operation, tmp, io);
            throw e;
        }
        prune(parent);
        return target;
    }

    /** Deletes all but the newest {@link #KEEP} complete checkpoints under {@code parent}. */
    static void prune(Path parent) throws IOException {
        try {
            List<Path> all = list(parent);
            for (int i = 0; i < all.size() - KEEP; i++) deleteTree(all.get(i));
        } catch (IOException e) {
            throw OutputWriteException.of("deleting old checkpoints in", parent, e);
        }
    }

    /**
     * The checkpoint to resume from: {@code dir} itself if it is a complete checkpoint folder, else the newest
     * complete one under {@code dir/checkpoints}.
     */
    public static Path resolve(Path dir) {
        if (!Files.isDirectory(dir)) throw InputException.at(dir, "--resume: folder not found");
        if (Files.isRegularFile(dir.resolve(STATE))) return dir;
        Path parent = dir.resolve(DIR);
        List<Path> all = Files.isDirectory(parent) ? list(parent) : List.of();
        if (all.isEmpty())
            throw InputException.at(dir, "--resume: no checkpoint here (expected a run folder with checkpoints/step-*/ or a checkpoint folder)");
        return all.getLast();
    }

    /** Complete checkpoints under {@code parent}, oldest first. */
    static List<Path> list(Path parent) {
        List<Path> out = new ArrayList<>();
        try (DirectoryStream<Path> ds = Files.newDirectoryStream(parent)) {
            for (Path p : ds) {
                Matcher m = NAME.matcher(p.getFileName().toString());
                if (m.matches() && Files.isRegularFile(p.resolve(STATE))) out.add(p);
            }
        } catch (IOException e) {
            throw InputException.at(parent, "cannot list checkpoints: " + e.getMessage());
        }
        out.sort(Comparator.comparing(p -> p.getFileName().toString()));
        return out;
    }

    /** The trainer state of a checkpoint folder. */
    public static JsonNode readState(Path checkpoint) {
        return Json.read(checkpoint.resolve(STATE));
    }

    /** Removes temporary checkpoint folders (a killed save's) under {@code parent}; the caller holds the run folder's lock. */
    static void removeStaleIn(Path parent) throws IOException {
        try (DirectoryStream<Path> ds = Files.newDirectoryStream(parent, ".step-*.tmp-*")) {
            for (Path p : ds) deleteTree(p);
        }
    }

    /**
     * Removes what killed or failed writes left in a run folder (temporary checkpoint folders, temporary files) so
     * that they cannot block this run. Only under the folder's lock: another run's temporaries look the same.
     */
    public static void removeStaleTemporaries(OutputFolder.Lock lock) throws IOException {
        Path runDir = lock.folder();
        if (Files.isDirectory(runDir.resolve(DIR))) removeStaleIn(runDir.resolve(DIR));
        for (String sub : new String[] {"", DIR, "final", "adapter"}) AtomicFiles.removeStaleTemporaries(runDir.resolve(sub));
    }

    /**
     * What a failed write leaves to fall back on, for its message: "the last intact checkpoint is RUN/checkpoints/step-N
     * (resume with --resume RUN)", or that there is none yet.
     */
    public static String intactNote(Path runDir) {
        try {
            Path parent = runDir.resolve(DIR);
            List<Path> all = Files.isDirectory(parent) ? list(parent) : List.of();
            if (all.isEmpty()) return "no checkpoint of this run is complete yet (start it again)";
            return "the last intact checkpoint is " + all.getLast() + " (resume with --resume " + runDir + ")";
        } catch (RuntimeException e) {
            return "";
        }
    }

    static void deleteTree(Path p) throws IOException {
        if (!Files.exists(p)) return;
        try (var walk = Files.walk(p)) {
            for (Path q : walk.sorted(Comparator.reverseOrder()).toList()) Files.deleteIfExists(q);
        }
    }

    /** The checkpoint's step, from its folder name. */
    public static Optional<Long> stepOf(Path checkpoint) {
        Matcher m = NAME.matcher(checkpoint.getFileName().toString());
        return m.matches() ? Optional.of(Long.parseLong(m.group(1))) : Optional.empty();
    }
}
