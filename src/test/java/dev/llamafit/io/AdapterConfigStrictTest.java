// Issue 19, finding 6: adapter_config.json fields of the wrong JSON type are refused, naming the file and the field.
package dev.llamafit.io;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.file.Path;

import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;
import org.junit.jupiter.api.Test;

import com.fasterxml.jackson.databind.node.ObjectNode;

import dev.llamafit.model.LlamaConfig;
import dev.llamafit.testing.SharedData;

class AdapterConfigStrictTest {
    private static final Path FILE = Path.of("adapter", "adapter_config.json");

    private static LlamaConfig base() {
        return ModelFolder.readConfig(SharedData.require("models/tinystories-656k"));
    }

    private static ObjectNode valid() {
        ObjectNode o = Json.MAPPER.createObjectNode();
        o.put("peft_type", "LORA").put("task_type", "CAUSAL_LM").put("r", 4).put("lora_alpha", 8).put("lora_dropout", 0.0)
                .put("bias", "none").put("use_rslora", false);
        o.putArray("target_modules").add("q_proj").add("v_proj");
        return o;
    }

    @Test
    void validConfigIsRead() {
        var c = PeftAdapters.parseConfig(valid(), FILE, base());
        assertEquals(4, c.lora().rank());
    }

    /** Each of these read as a default before (use_rslora "yes" was false, lora_dropout "0.1" was 0). */
    @ParameterizedTest
    @CsvSource(delimiter = '|', value = {
            "use_rslora|\"yes\"|true or false",
            "use_dora|\"no\"|true or false",
            "lora_dropout|\"0.1\"|a number",
            "bias|0|a string",
            "task_type|7|a string",
            "peft_type|[\"LORA\"]|a string",
            "base_model_name_or_path|{}|a string"})
    void wrongTypeIsRefused(String field, String json, String expected) throws Exception {
        ObjectNode o = valid();
        o.set(field, Json.MAPPER.readTree(json));
        InputException e = assertThrows(InputException.class, () -> PeftAdapters.parseConfig(o, FILE, base()));
        assertTrue(e.getMessage().contains("adapter_config.json"), e.getMessage());
        assertTrue(e.getMessage().contains("'" + field + "'"), e.getMessage());
        assertTrue(e.getMessage().contains(expected), e.getMessage());
    }
}
