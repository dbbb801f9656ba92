// The one rule for strict JSON field reads: defaults for absent/null, one message style, and 3.0 as an integer everywhere.
package dev.llamafit.io;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;

import java.nio.file.Path;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

import com.fasterxml.jackson.databind.JsonNode;

class JsonFieldsTest {
    private static final Path FILE = Path.of("f.json");

    private static JsonNode obj(String json) throws Exception {
        return Json.MAPPER.readTree(json);
    }

    private static String refusal(org.junit.jupiter.api.function.Executable read) {
        return assertThrows(InputException.class, read).getMessage();
    }

    @Test
    void absentAndNullReadAsTheDefault() throws Exception {
        JsonNode o = obj("{\"n\": null}");
        assertEquals(7, JsonFields.optionalInt(o, "n", 7, 0, 9, FILE, ""));
        assertEquals(-1L, JsonFields.optionalLong(o, "m", -1, -1, Long.MAX_VALUE, FILE, ""));
        assertEquals(0.5, JsonFields.optionalNumber(o, "n", 0.5, FILE, "a"));
        assertEquals("f.json: missing required field 'a.n'", refusal(() -> JsonFields.requiredInt(o, "n", 0, 9, FILE, "a")));
    }

    /** Python writers emit 3.0 for an integer; every integer field takes it, in int and long reads alike. */
    @Test
    void wholeFloatsAreIntegers() throws Exception {
        JsonNode o = obj("{\"n\": 3.0}");
        assertEquals(3, JsonFields.requiredInt(o, "n", 0, 9, FILE, ""));
        assertEquals(3L, JsonFields.optionalLong(o, "n", 0, 0, Long.MAX_VALUE, FILE, ""));
    }

    @ParameterizedTest
    @CsvSource(delimiter = '|', value = {
            "3.5     | f.json: field 'x.n' must be an integer, got 3.5",
            "\"3\"   | f.json: field 'x.n' must be an integer, got \"3\"",
            "true    | f.json: field 'x.n' must be an integer, got true",
            "1e400   | f.json: field 'x.n' must be an integer, got Infinity",
            "-1      | f.json: field 'x.n' must be an integer >= 0, got -1",
            "1e30    | f.json: field 'x.n' must be an integer >= 0, got 1.0E30"})
    void longsSayWhatIsWrong(String value, String message) throws Exception {
        JsonNode o = obj("{\"n\": " + value + "}");
        assertEquals(message, refusal(() -> JsonFields.optionalLong(o, "n", 0, 0, Long.MAX_VALUE, FILE, "x")));
    }

    @Test
    void intsNameTheirRangeWhenItIsWhatIsWrong() throws Exception {
        JsonNode o = obj("{\"n\": 3000000000}");
        assertEquals("f.json: field 'n' must be an integer in [0, 2147483647], got 3000000000",
                refusal(() -> JsonFields.requiredInt(o, "n", 0, Integer.MAX_VALUE, FILE, "")));
    }

    @Test
    void numbersMustBeFinite() throws Exception {
        assertEquals("f.json: field 'e' must be a finite number, got Infinity",
                refusal(() -> JsonFields.requiredNumber(obj("{\"e\": 1e400}"), "e", FILE, "")));
        assertEquals("f.json: field 'e' must be a number, got \"tiny\"",
                refusal(() -> JsonFields.optionalNumber(obj("{\"e\": \"tiny\"}"), "e", 1, FILE, "")));
    }

    @Test
    void longValuesAreCutShort() throws Exception {
        String m = refusal(() -> JsonFields.optionalString(obj("{\"s\": [\"" + "a".repeat(200) + "\"]}"), "s", "", FILE, ""));
        assertEquals("f.json: field 's' must be a string, got [\"" + "a".repeat(75) + "...", m);
    }
}
