// `bench gemm --dtype nf4` times the NF4 GEMM beside fp32 and bf16 in one run; other dtypes are refused with exit 2.
package dev.llamafit.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.PrintWriter;
import java.io.StringWriter;

import org.junit.jupiter.api.Test;

class BenchGemmNf4Test {
    static String[] run(String... args) {
        StringWriter out = new StringWriter(), err = new StringWriter();
        int code = Main.run(args, new PrintWriter(out, true), new PrintWriter(err, true));
        return new String[] {String.valueOf(code), out.toString(), err.toString()};
    }

    @Test
    void nf4RowsSitBesideFp32AndBf16() {
        String[] r = run("bench", "gemm", "--dtype", "nf4", "--sizes", "64", "--shapes", "3x70x130", "--runs", "1", "--reference", "none", "--json");
        assertEquals("0", r[0], r[2]);
        for (String key : new String[] {"llamafit_fp32_gflops", "llamafit_bf16_gflops", "llamafit_nf4_gflops", "ratio_llamafit_nf4_vs_fp32",
                "ratio_llamafit_nf4_vs_bf16", "\"3x70x130\""})
            assertTrue(r[1].contains(key), key + " in " + r[1]);
    }

    @Test
    void anUnknownDtypeIsBadInput() {
        String[] r = run("bench", "gemm", "--dtype", "nf3", "--sizes", "64", "--reference", "none");
        assertEquals("2", r[0]);
        assertTrue(r[2].contains("fp32, bf16, int8 or nf4"), r[2]);
    }
}
