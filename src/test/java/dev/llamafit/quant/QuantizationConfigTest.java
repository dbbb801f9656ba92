// config.json's quantization_config (transformers' BitsAndBytesConfig) read into Quantization and written back.
package dev.llamafit.quant;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.file.Path;
import java.util.Map;

import org.junit.jupiter.api.Test;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;

import dev.llamafit.io.ConfigJson;
import dev.llamafit.io.InputException;
import dev.llamafit.model.LlamaConfig;

class QuantizationConfigTest {
    private static final ObjectMapper M = new ObjectMapper();
    private static final Path FILE = Path.of("model/config.json");

    private static ObjectNode base() {
        ObjectNode n = M.createObjectNode();
        n.put("model_type", "llama").put("hidden_size", 64).put("intermediate_size", 96).put("num_hidden_layers", 2)
                .put("num_attention_heads", 4).put("vocab_size", 100);
        return n;
    }

    private static LlamaConfig parse(String quantizationConfig) throws Exception {
        ObjectNode n = base();
        if (quantizationConfig != null) n.set("quantization_config", M.readTree(quantizationConfig));
        return ConfigJson.parse(n, FILE);
    }

    @Test
    void readsTransformersFourBitAndEightBitConfigs() throws Exception {
        assertNull(parse(null).quantization());
        // As transformers writes them for a QLoRA base and an LLM.int8() one.
        assertEquals(Quantization.nf4(true), parse("""
                {"_load_in_4bit": true, "_load_in_8bit": false, "bnb_4bit_compute_dtype": "bfloat16", "bnb_4bit_quant_storage": "uint8",
                 "bnb_4bit_quant_type": "nf4", "bnb_4bit_use_double_quant": true, "llm_int8_enable_fp32_cpu_offload": false,
                 "llm_int8_has_fp16_weight": false, "llm_int8_skip_modules": null, "llm_int8_threshold": 6.0,
                 "load_in_4bit": true, "load_in_8bit": false, "quant_method": "bitsandbytes"}""").quantization());
        assertEquals(Quantization.nf4(false), parse("""
                {"load_in_4bit": true, "bnb_4bit_quant_type": "nf4", "quant_method": "bitsandbytes"}""").quantization());
        assertEquals(Quantization.int8(6.0), parse("""
                {"load_in_8bit": true, "llm_int8_threshold": 6.0, "quant_method": "bitsandbytes"}""").quantization());
        assertEquals(Quantization.int8(0.0), parse("""
                {"load_in_8bit": true, "llm_int8_threshold": 0.0}""").quantization());
    }

    @Test
    void writesWhatItReads() throws Exception {
        for (Quantization q : new Quantization[] {Quantization.nf4(true), Quantization.nf4(false), Quantization.int8(6.0), Quantization.int8(0)}) {
            LlamaConfig c = parse(null).withQuantization(q);
            Map<String, Object> json = ConfigJson.toJson(c);
            JsonNode back = M.valueToTree(json);
            assertEquals(q, ConfigJson.parse(back, FILE).quantization());
            assertEquals("bitsandbytes", back.path("quantization_config").path("quant_method").asText());
        }
    }

    @Test
    void refusesWhatItCannotRunByName() {
        for (String[] c : new String[][] {
                {"{\"quant_method\": \"gptq\", \"bits\": 4}", "quant_method 'gptq' is not supported"},
                {"{\"load_in_4bit\": true, \"bnb_4bit_quant_type\": \"fp4\"}", "bnb_4bit_quant_type 'fp4' is not supported"},
                {"{\"load_in_4bit\": true, \"load_in_8bit\": true}", "exactly one of load_in_8bit and load_in_4bit"},
                {"{\"load_in_8bit\": true, \"llm_int8_threshold\": -1}", "must be a finite number >= 0"},
                {"[1, 2]", "quantization_config"}}) {
            InputException e = assertThrows(InputException.class, () -> parse(c[0]), c[0]);
            assertTrue(e.getMessage().contains(c[1]) && e.getMessage().contains("config.json"), e.getMessage());
        }
    }
}
