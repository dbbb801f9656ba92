// Strict reads of single JSON fields: the type and range are checked, and a wrong one names the file and the field.
package dev.llamafit.io;

import java.nio.file.Path;

import com.fasterxml.jackson.databind.JsonNode;

/**
 * Typed reads of one field of a JSON object, for the small records llamafit reads beside a model (tokenizer.json,
 * tokenizer_config.json, generation_config.json, adapter_config.json). Jackson's {@code asBoolean(default)} and
 * friends turn a wrong type into the default silently ({@code "byte_fallback": "yes"} became false); these refuse
 * it instead, with one message naming the file and the field's dotted path. An absent field or a JSON null reads
 * as the default, since Hugging Face writers emit null for "not set".
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

    /** An integer in [min, max]; 3.0 counts as 3 (Python writers emit it), 3.5 and "3" do not. */
    public static int optionalInt(JsonNode obj, String field, int dflt, int min, int max, Path file, String where) {
        JsonNode v = value(obj, field);
        return v == null ? dflt : intIn(v, min, max, file, path(where, field));
    }

    /** {@code v} as an integer in [min, max]; {@code fieldPath} is the full dotted path for the message. */
    public static int intIn(JsonNode v, int min, int max, Path file, String fieldPath) {
        boolean integral = v.isIntegralNumber() || v.isFloatingPointNumber() && v.doubleValue() == Math.rint(v.doubleValue());
        if (!integral || !v.canConvertToLong() || v.longValue() < min || v.longValue() > max) {
            throw InputException.at(file, "field '" + fieldPath + "' must be an integer in [" + min + ", " + max + "], got " + shown(v));
        }
        return (int) v.longValue();
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

    /** A value as JSON, cut short so a message stays one readable line. */
    static String shown(JsonNode v) {
        String s = v == null ? "nothing" : v.toString();
        return s.length() > 80 ? s.substring(0, 77) + "..." : s;
    }
}
