// `bench gemm --dtype int8`: fp32, bf16 and int8 GEMMs in one run, with the int8/fp32 ratio and the outlier experiment.
package dev.llamafit.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.PrintWriter;
import java.io.StringWriter;

import com.fasterxml.jackson.databind.JsonNode;
import dev.llamafit.io.Json;
import org.junit.jupiter.api.Test;

class BenchGemmInt8Test {
    @Test
    void int8RowsSitNextToFp32AndBf16() throws Exception {
        StringWriter out = new StringWriter(), err = new StringWriter();
        int code = Main.run(new String[] {"bench", "gemm", "--dtype", "int8", "--sizes", "96", "--runs", "1", "--reference", "none", "--json"},
                new PrintWriter(out, true), new PrintWriter(err, true));
        assertEquals(0, code, err.toString());
        JsonNode o = Json.MAPPER.readTree(out.toString());
        assertEquals("int8", o.get("dtype").asText());
        JsonNode row = o.get("results").get(0);
        for (String key : new String[] {"llamafit_fp32_gflops", "llamafit_bf16_gflops", "llamafit_int8_gops", "ratio_llamafit_int8_vs_fp32"})
            assertTrue(row.get(key).asDouble() > 0, key + " in " + row);
        JsonNode e = o.get("int8_outliers");
        assertTrue(e.get("rel_error_int8_plain").asDouble() > 10 * e.get("rel_error_bf16").asDouble(), e.toString());
    }

    @Test
    void anUnknownDtypeNamesTheChoices() {
        StringWriter out = new StringWriter(), err = new StringWriter();
        int code = Main.run(new String[] {"bench", "gemm", "--dtype", "int4"}, new PrintWriter(out, true), new PrintWriter(err, true));
        assertEquals(2, code);
        assertTrue(err.toString().contains("fp32, bf16, int8 or nf4"), err.toString());
    }
}
