// Strict reads of single JSON fields: the type and range are checked, and a wrong one names the file and the field.
package dev.llamafit.io;

import java.nio.file.Path;

import com.fasterxml.jackson.databind.JsonNode;

/**
 * Typed reads of one field of a JSON object, for the small records llamafit reads beside a model (tokenizer.json,
 * tokenizer_config.json, generation_config.json, adapter_config.json, config.json, a checkpoint's trainer_state.json).
 * Jackson's {@code asBoolean(default)} and friends turn a wrong type into the default silently
 * ({@code "byte_fallback": "yes"} became false); these refuse it instead, with one message, "FILE: field 'PATH' must
 * be WHAT, got VALUE". An absent field or a JSON null reads as the default, since Hugging Face writers emit null for
 * "not set".
 *
 * <p>{@code where} is the dotted path of the object holding the field ("model", "added_tokens[3]"); empty or null
 * for the top level.
 */
public final class JsonFields {
    private JsonFields() {}

    /** The field's dotted path, as messages name it. */
    public static String path(String where, String field) {
        return where == null || where.isEmpty() ? field : where + "." + field;
    }

    /** An InputException "FILE: field 'PATH' must be WHAT, got VALUE". */
    public static InputException wrong(Path file, String where, String field, String what, JsonNode got) {
        return InputException.at(file, "field '" + path(where, field) + "' must be " + what + ", got " + shown(got));
    }

    /** The node of a field that is set: null when absent or JSON null. */
    public static JsonNode value(JsonNode obj, String field) {
        JsonNode v = obj == null ? null : obj.get(field);
        return v == null || v.isNull() || v.isMissingNode() ? null : v;
    }

    public static boolean optionalBoolean(JsonNode obj, String field, boolean dflt, Path file, String where) {
        JsonNode v = value(obj, field);
        if (v == null) return dflt;
        if (!v.isBoolean()) throw wrong(file, where, field, "true or false", v);
        return v.booleanValue();
    }

    public static String optionalString(JsonNode obj, String field, String dflt, Path file, String where) {
        JsonNode v = value(obj, field);
        if (v == null) return dflt;
        if (!v.isTextual()) throw wrong(file, where, field, "a string", v);
        return v.textValue();
    }

    /** A field that must be set: its node, or "missing required field 'PATH'". */
    public static JsonNode required(JsonNode obj, String field, Path file, String where) {
        JsonNode v = value(obj, field);
        if (v == null) throw InputException.at(file, "missing required field '" + path(where, field) + "'");
        return v;
    }

    // Integers, one rule for every file: 3.0 counts as 3 (Python writers emit it), 3.5, "3" and true do not. The
    // message states the range only when the range is what is wrong.

    public static int requiredInt(JsonNode obj, String field, int min, int max, Path file, String where) {
        return intIn(required(obj, field, file, where), min, max, file, path(where, field));
    }

    public static int optionalInt(JsonNode obj, String field, int dflt, int min, int max, Path file, String where) {
        JsonNode v = value(obj, field);
        return v == null ? dflt : intIn(v, min, max, file, path(where, field));
    }

    public static long optionalLong(JsonNode obj, String field, long dflt, long min, long max, Path file, String where) {
        JsonNode v = value(obj, field);
        return v == null ? dflt : longIn(v, min, max, file, path(where, field));
    }

    /** {@code v} as an integer in [min, max]; {@code fieldPath} is the full dotted path for the message. */
    public static int intIn(JsonNode v, int min, int max, Path file, String fieldPath) {
        return (int) longIn(v, min, max, file, fieldPath);
    }

    public static long longIn(JsonNode v, long min, long max, Path file, String fieldPath) {
        boolean integral = v.isIntegralNumber()
                || v.isFloatingPointNumber() && Double.isFinite(v.doubleValue()) && v.doubleValue() == Math.rint(v.doubleValue());
        if (!integral) throw InputException.at(file, "field '" + fieldPath + "' must be an integer, got " + shown(v));
        if (!v.canConvertToLong() || v.longValue() < min || v.longValue() > max) {
            String range = max == Long.MAX_VALUE && min != Long.MIN_VALUE ? ">= " + min : "in [" + min + ", " + max + "]";
            throw InputException.at(file, "field '" + fieldPath + "' must be an integer " + range + ", got " + shown(v));
        }
        return v.longValue();
    }

    /** A finite number (JSON has no NaN, but 1e400 reads as infinity). */
    public static double requiredNumber(JsonNode obj, String field, Path file, String where) {
        JsonNode v = required(obj, field, file, where);
        if (!v.isNumber()) throw wrong(file, where, field, "a number", v);
        if (!Double.isFinite(v.doubleValue())) throw wrong(file, where, field, "a finite number", v);
        return v.doubleValue();
    }

    public static double optionalNumber(JsonNode obj, String field, double dflt, Path file, String where) {
        return value(obj, field) == null ? dflt : requiredNumber(obj, field, file, where);
    }

    /** An array field: absent or null is an empty array. */
    public static JsonNode optionalArray(JsonNode obj, String field, Path file, String where) {
        JsonNode v = value(obj, field);
        if (v == null) return com.fasterxml.jackson.databind.node.JsonNodeFactory.instance.arrayNode();
        if (!v.isArray()) throw wrong(file, where, field, "an array", v);
        return v;
    }

    /** An object field, or null when absent or JSON null. */
    public static JsonNode optionalObject(JsonNode obj, String field, Path file, String where) {
        JsonNode v = value(obj, field);
        if (v != null && !v.isObject()) throw wrong(file, where, field, "an object", v);
        return v;
    }

    /** A value as JSON, cut short so a message stays one readable line; "nothing" for null. */
    public static String shown(JsonNode v) {
        // Jackson writes a number too large for a double (1e400) as the string "Infinity"; show it as the number it was.
        String s = v == null ? "nothing" : v.isNumber() ? v.asText() : v.toString();
        return s.length() > 80 ? s.substring(0, 77) + "..." : s;
    }
}
