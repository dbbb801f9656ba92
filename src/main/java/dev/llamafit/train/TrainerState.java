// A checkpoint's trainer_state.json: where the run stands (step, optimizer, data position, RNG) and what run it is.
package dev.llamafit.train;

import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.Map;

import com.fasterxml.jackson.databind.JsonNode;

import dev.llamafit.io.InputException;
import dev.llamafit.io.JsonFields;
import dev.llamafit.io.data.Batches;
import dev.llamafit.optim.LossScaler;

/**
 * Everything besides tensors that the next step depends on, and the run's identity for the resume check.
 *
 * <p>Format 2 adds {@code identity}; format 1 (written before the resume checks) is read as well: its identity holds
 * only the seed, and {@code dropout_calls} and {@code total_steps} default as they always did (0 and "the new
 * length"). The keys of format 1 are all still written, so an older reader still finds what it read.
 *
 * <p>An fp16 run adds {@code loss_scaler}: {@code {"scale": 65536.0, "growth_tracker": 12, "consecutive_skips": 0}},
 * the {@link LossScaler}'s state, so a resumed run scales, skips and grows as the uninterrupted one. It is absent for
 * fp32 and bf16 runs and optional on reading, so the format stays 2 (no older llamafit trains fp16 at all).
 *
 * @param step           optimizer steps done in the run (the checkpoint's step)
 * @param optimizerSteps the optimizer's own step count (bias correction)
 * @param data           where the data order continues
 * @param seed           seed of data order and dropout
 * @param totalSteps     the length the run was planned for when saved; -1 when unknown (format 1 without it)
 * @param dropoutCalls   LoRA dropout masks drawn so far, so a resumed run draws the same next masks
 * @param identity       what run this is (model, data, shapes, technique)
 * @param extra          further keys written for readers of the file only (the PEFT view of the LoRA config); not read back
 * @param scaler         the fp16 loss scaler's state; null when the run has none
 */
record TrainerState(long step, long optimizerSteps, Batches.Position data, long seed, long totalSteps, long dropoutCalls,
                    RunIdentity identity, Map<String, Object> extra, LossScaler.State scaler) {
    static final int FORMAT = 2;
    static final String SCALER = "loss_scaler";

    TrainerState {
        if (step < 0 || optimizerSteps < 0 || dropoutCalls < 0)
            throw new IllegalArgumentException("step, optimizer_steps and dropout_calls must be >= 0");
        if (data == null || identity == null) throw new IllegalArgumentException("data position and identity are required");
        extra = extra == null ? Map.of() : java.util.Collections.unmodifiableMap(new LinkedHashMap<>(extra));
    }

    /** The JSON object Checkpoints writes (keys of format 1 first, then {@code identity}). */
    Map<String, Object> toJson() {
        Map<String, Object> m = new LinkedHashMap<>();
        m.put("format", FORMAT);
        m.put("step", step);
        m.put("optimizer_steps", optimizerSteps);
        m.put("data_epoch", data.epoch());
        m.put("data_batch", data.batch());
        m.put("seed", seed);
        m.put("total_steps", totalSteps);
        m.put("model", identity.fields().getOrDefault("model_path", ""));
        m.put("data", identity.fields().getOrDefault("data_path", ""));
        m.put("dropout_calls", dropoutCalls);
        m.putAll(extra);
        if (scaler != null) {
            Map<String, Object> ls = new LinkedHashMap<>();
            ls.put("scale", (double) scaler.scale());
            ls.put("growth_tracker", scaler.growthTracker());
            ls.put("consecutive_skips", scaler.consecutiveSkips());
            m.put(SCALER, ls);
        }
        m.put("identity", identity.fields());
        return m;
    }

    /**
     * Reads a checkpoint folder's state. Every field read is type- and range-checked: a file missing a required key,
     * holding a wrong type or an out-of-range count, or of a newer format, is bad input naming the file and the key.
     */
    static TrainerState read(Path checkpoint) {
        Path file = checkpoint.resolve(Checkpoints.STATE);
        JsonNode n = Checkpoints.readState(checkpoint);
        if (n == null || !n.isObject())
            throw InputException.at(file, "trainer state must be a JSON object, got " + JsonFields.shown(n));
        long format = JsonFields.optionalLong(n, "format", 1, 1, Long.MAX_VALUE, file, "");
        if (format > FORMAT)
            throw InputException.at(file, "trainer state format " + format + " is newer than this llamafit reads (" + FORMAT + ")");
        return new TrainerState(count(n, "step", file), count(n, "optimizer_steps", file),
                new Batches.Position(count(n, "data_epoch", file), count(n, "data_batch", file)),
                JsonFields.optionalLong(n, "seed", 0, Long.MIN_VALUE, Long.MAX_VALUE, file, ""),
                JsonFields.optionalLong(n, "total_steps", -1, -1, Long.MAX_VALUE, file, ""),
                JsonFields.optionalLong(n, "dropout_calls", 0, 0, Long.MAX_VALUE, file, ""),
                RunIdentity.fromState(file, n), Map.of(), scaler(n, file));
    }

    /** The loss scaler's state, or null when the file has none. */
    private static LossScaler.State scaler(JsonNode n, Path file) {
        JsonNode o = JsonFields.optionalObject(n, SCALER, file, "");
        if (o == null) return null;
        double scale = JsonFields.requiredNumber(o, "scale", file, SCALER);
        // Only a positive float the scaler can hold: anything else was not written by it.
        if (!(scale > 0) || (double) (float) scale != scale)
            throw JsonFields.wrong(file, SCALER, "scale", "a positive number that is a float (the loss scale)", o.get("scale"));
        int tracker = JsonFields.requiredInt(o, "growth_tracker", 0, LossScaler.GROWTH_INTERVAL - 1, file, SCALER);
        long skips = JsonFields.optionalLong(o, "consecutive_skips", 0, 0, Long.MAX_VALUE, file, SCALER);
        return new LossScaler.State((float) scale, tracker, skips);
    }

    /** A required count (>= 0). */
    private static long count(JsonNode n, String field, Path file) {
        return JsonFields.longIn(JsonFields.required(n, field, file, ""), 0, Long.MAX_VALUE, file, field);
    }
}
