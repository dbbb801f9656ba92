// `bench train --base-dtype nf4,int8,bf16`: LoRA on quantised bases, timed interleaved with the bf16 base in one run.
package dev.llamafit.cli;

import static dev.llamafit.cli.BenchGemmNf4Test.run;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import org.junit.jupiter.api.Test;

class BenchTrainBaseDtypeTest {
    @Test
    void quantisedBasesAreTimedBesideTheBf16BaseWithSameRunRatios() {
        String[] r = run("bench", "train", "--lora-r", "8", "--precision", "bf16", "--base-dtype", "nf4,int8,bf16", "--no-fp32-step",
                "--batch-size", "1", "--seq-len", "16", "--steps", "1", "--reference", "none", "--json");
        assertEquals("0", r[0], r[2]);
        for (String key : new String[] {"\"base_dtype\" : \"nf4\"", "int8_base_tokens_per_s", "bf16_base_tokens_per_s",
                "ratio_nf4_vs_int8_base", "ratio_nf4_vs_bf16_base", "bf16_base_loss"})
            assertTrue(r[1].contains(key), key + " in " + r[1]);
    }

    @Test
    void aBaseDtypeNeedsLoraAndAKnownName() {
        String[] r = run("bench", "train", "--base-dtype", "nf4", "--reference", "none");
        assertEquals("2", r[0], r[2]);
        assertTrue(r[2].contains("--lora-r"), r[2]);
        r = run("bench", "train", "--lora-r", "8", "--precision", "bf16", "--base-dtype", "int4", "--reference", "none");
        assertEquals("2", r[0], r[2]);
        assertTrue(r[2].contains("int8, nf4 or bf16") && r[2].contains("int4"), r[2]);
    }
}
