// What makes two stretches of training one run: the inputs and settings a resume must not silently change.
package dev.llamafit.train;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

import com.fasterxml.jackson.databind.JsonNode;

import dev.llamafit.io.InputException;
import dev.llamafit.io.JsonFields;
import dev.llamafit.model.LoraConfig;
import dev.llamafit.model.Technique;

/**
 * The identity of a training run, as named fields with string values (compared as strings, so what was written is
 * what is compared). {@code model} and {@code data} are content fingerprints (see {@link Fingerprints}); their paths
 * ride along in {@code model_path} and {@code data_path} for the messages but are not compared: a data file moved or
 * a model folder copied elsewhere is still the same input. The learning rate, schedule, length and save/eval
 * intervals are deliberately absent: changing them on resume is a legitimate continuation.
 *
 * @param fields field name to value, in a fixed order; names ending in {@code _path} are shown, never compared
 */
record RunIdentity(Map<String, String> fields) {
    static final String PATH_SUFFIX = "_path";

    RunIdentity {
        fields = java.util.Collections.unmodifiableMap(new LinkedHashMap<>(fields));
        for (Map.Entry<String, String> e : fields.entrySet())
            if (e.getValue() == null) throw new IllegalArgumentException("run identity field " + e.getKey() + " has no value");
    }

    /** One compared field whose value differs; {@code saved} or {@code asked} include the path for model and data. */
    record Difference(String field, String saved, String asked) {
        @Override public String toString() { return field + ": " + saved + " (checkpoint) vs " + asked + " (now)"; }
    }

    /** The identity of the run {@code o} asks for; reads the data file in full and samples the model's weight files. */
    static RunIdentity of(TrainOptions o) {
        return of(o, 1);
    }

    /**
     * {@link #of(TrainOptions)} for a job of {@code ranks} data-parallel ranks: {@code batch_size} is the global batch
     * (ranks × --batch-size), the unit of the checkpoint's data position, so a checkpoint resumes with any split of the
     * same global batch and any other is a difference.
     */
    static RunIdentity of(TrainOptions o, int ranks) {
        Map<String, String> f = new LinkedHashMap<>();
        f.put("model", Fingerprints.model(o.model()));
        f.put("model_path", o.model().toString());
        f.put("data", dataFingerprint(o.data()));
        f.put("data_path", o.data().toString());
        f.put("seed", Long.toString(o.seed()));
        f.put("batch_size", Integer.toString(Math.multiplyExact(o.batchSize(), ranks)));
        f.put("seq_len", Integer.toString(o.seqLen()));
        Technique t = o.technique();
        f.put("grad_accum", Integer.toString(t.gradAccum()));
        f.put("method", Technique.name(t.method()));
        f.put("precision", Technique.name(t.precision()));
        f.put("optimizer", Technique.name(t.optimizer()));
        LoraConfig l = o.lora();
        f.put("lora_r", l == null ? "none" : Integer.toString(l.rank()));
        f.put("lora_alpha", l == null ? "none" : Double.toString(l.alpha()));
        f.put("lora_dropout", l == null ? "none" : Double.toString(l.dropout()));
        f.put("lora_targets", l == null ? "none" : String.join(",", l.targets()));
        f.put("lora_rslora", l == null ? "none" : Boolean.toString(l.useRslora()));
        return new RunIdentity(f);
    }

    private static String dataFingerprint(Path data) {
        if (!Files.isRegularFile(data)) throw InputException.at(data, "data file not found");
        try {
            return "sha256:" + Fingerprints.file(data) + " size:" + Files.size(data);
        } catch (java.io.IOException e) {
            throw InputException.at(data, "cannot read: " + e.getMessage());
        }
    }

    /**
     * The identity a checkpoint's trainer state recorded ({@code file}'s content {@code state}). Checkpoints written
     * before these checks have no {@code identity} object; of their fields only {@code seed} is known (the paths they
     * hold are not compared). Identity values are written as strings; anything else is bad input naming the field.
     */
    static RunIdentity fromState(Path file, JsonNode state) {
        Map<String, String> f = new LinkedHashMap<>();
        JsonNode id = JsonFields.optionalObject(state, "identity", file, "");
        if (id != null) {
            for (Map.Entry<String, JsonNode> e : id.properties()) {
                if (!e.getValue().isTextual()) throw JsonFields.wrong(file, "identity", e.getKey(), "a string", e.getValue());
                f.put(e.getKey(), e.getValue().textValue());
            }
        } else {
            if (state.has("seed")) f.put("seed", state.get("seed").asText());
            for (String[] k : new String[][] {{"model", "model_path"}, {"data", "data_path"}}) {
                String v = JsonFields.optionalString(state, k[0], null, file, "");
                if (v != null) f.put(k[1], v);
            }
        }
        return new RunIdentity(f);
    }

    /** The compared fields that differ between this (saved) identity and {@code asked}, in {@code asked}'s order. */
    List<Difference> differences(RunIdentity asked) {
        List<Difference> out = new ArrayList<>();
        for (Map.Entry<String, String> e : asked.fields.entrySet()) {
            String k = e.getKey();
            if (k.endsWith(PATH_SUFFIX) || !fields.containsKey(k) || fields.get(k).equals(e.getValue())) continue;
            out.add(new Difference(k, shown(k), asked.shown(k)));
        }
        return out;
    }

    /** Compared fields of {@code asked} that this (older) identity did not record, so were not checked. */
    List<String> unchecked(RunIdentity asked) {
        return asked.fields.keySet().stream().filter(k -> !k.endsWith(PATH_SUFFIX) && !fields.containsKey(k)).toList();
    }

    /** A field's value for a message; a fingerprint is shortened and paired with its path. */
    private String shown(String field) {
        String v = fields.get(field);
        String path = fields.get(field + PATH_SUFFIX);
        if (v.startsWith("sha256:")) {
            int space = v.indexOf(' ') < 0 ? v.length() : v.indexOf(' ');
            if (space > 7 + 12) v = v.substring(0, 7 + 12) + "…" + v.substring(space);
        } else if (field.equals("model")) v = "sha256:" + v.substring(0, Math.min(12, v.length())) + "…";
        return path == null ? v : path + " (" + v + ")";
    }
}
