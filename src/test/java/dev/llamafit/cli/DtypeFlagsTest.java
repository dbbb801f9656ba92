// --dtype on generate, eval and train, --save-dtype on train and merge, through the command line.
package dev.llamafit.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.nio.file.Path;
import java.util.ArrayList;

import com.fasterxml.jackson.databind.JsonNode;
import dev.llamafit.io.HfFolderWriter;
import dev.llamafit.io.Json;
import dev.llamafit.io.ModelFolder;
import dev.llamafit.kernels.KernelBackends;
import dev.llamafit.memory.MemoryLedger;
import dev.llamafit.tensor.DType;
import dev.llamafit.testing.SharedData;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class DtypeFlagsTest {
    @TempDir Path tmp;

    static JsonNode json(String... args) {
        BadInputTest.Run r = BadInputTest.run(args);
        assertEquals(0, r.code(), r.err() + r.out());
        try {
            return Json.MAPPER.readTree(r.out());
        } catch (IOException e) {
            throw new AssertionError(r.out(), e);
        }
    }

    Path bf16Copy(Path fp32) throws IOException {
        Path out = tmp.resolve("bf16");
        MemoryLedger ledger = new MemoryLedger();
        try (ModelFolder f = ModelFolder.open(fp32, ledger, KernelBackends.get())) {
            HfFolderWriter.write(out, f.config(), new ArrayList<>(f.weights().values()), fp32, DType.BF16, ledger, KernelBackends.get());
        }
        return out;
    }

    @Test
    void generateEvalAndTrainRunABf16Checkpoint() throws IOException {
        Path fp32 = SharedData.require("models/tinystories-656k");
        Path data = SharedData.require("datasets/text/tinystories_sample.txt");
        Path bf16 = bf16Copy(fp32);
        String[] gen = {"generate", "--prompt", "Once upon a time", "--max-new-tokens", "24", "--temperature", "0", "--json", "--model"};
        JsonNode a = json(concat(gen, fp32.toString())), b = json(concat(gen, bf16.toString()));
        JsonNode c = json(concat(gen, fp32.toString(), "--dtype", "bf16")), d = json(concat(gen, bf16.toString(), "--dtype", "fp32"));
        // tinystories-656k's fp32 weights are bf16-exact, and the typed GEMM widens exactly: the same tokens every way.
        assertEquals(a.get("ids"), b.get("ids"));
        assertEquals(a.get("ids"), c.get("ids"));
        assertEquals(a.get("ids"), d.get("ids"));
        String[] ev = {"eval", "--data", data.toString(), "--seq-len", "64", "--json", "--model"};
        double l32 = json(concat(ev, fp32.toString())).get("loss").asDouble(), l16 = json(concat(ev, bf16.toString())).get("loss").asDouble();
        double lf16 = json(concat(ev, fp32.toString(), "--dtype", "fp16")).get("loss").asDouble();
        assertEquals(l32, l16, "bf16-exact weights: the same loss");
        assertTrue(Math.abs(lf16 - l32) / l32 < 0.005, "fp16 loss " + lf16 + " vs " + l32);
    }

    @Test
    void loraTrainsOnABf16BaseAsPlanned() throws IOException {
        Path fp32 = SharedData.require("models/tinystories-656k");
        Path data = SharedData.require("datasets/text/tinystories_sample.txt");
        Path bf16 = bf16Copy(fp32);
        // train compares the plan with the process's ledger peaks; earlier in-process runs of other tests raised them.
        MemoryLedger.global().resetPeaks();
        // LoRA on the bf16 base: runs, and the planned weights equal the measured ones (the base mapped at 2 B/param).
        BadInputTest.Run t = BadInputTest.run("train", "--model", bf16.toString(), "--data", data.toString(), "--output", tmp.resolve("run").toString(),
                "--steps", "2", "--batch-size", "1", "--seq-len", "32", "--lora-r", "4");
        assertEquals(0, t.code(), t.err() + t.out());
        String weights = t.out().lines().filter(l -> l.strip().startsWith("weights ")).findFirst().orElseThrow(() -> new AssertionError(t.out()));
        String[] cols = weights.strip().split("\\s{2,}");
        assertEquals(cols[1], cols[2], "planned vs measured weights: " + weights);

        BadInputTest.Run full = BadInputTest.run("train", "--model", bf16.toString(), "--data", data.toString(), "--output", tmp.resolve("full").toString(),
                "--steps", "1", "--dtype", "bf16");
        assertEquals(2, full.code(), full.out());
        assertTrue(full.err().contains("--dtype bf16 applies to a LoRA run"), full.err());
    }

    /** Full fine-tuning trains fp32 weights; final/ keeps the base checkpoint's dtype unless --save-dtype says otherwise. */
    @Test
    void fullFineTuningSavesInTheBaseDtypeUnlessToldOtherwise() throws IOException {
        Path fp32 = SharedData.require("models/tinystories-656k");
        Path data = SharedData.require("datasets/text/tinystories_sample.txt");
        Path bf16 = bf16Copy(fp32);
        String[] run = {"train", "--data", data.toString(), "--steps", "1", "--batch-size", "1", "--seq-len", "32", "--model"};
        Object[][] cases = {{bf16, null, DType.BF16}, {bf16, "fp32", DType.F32}, {fp32, null, DType.F32}, {fp32, "fp16", DType.F16}};
        int i = 0;
        for (Object[] c : cases) {
            Path out = tmp.resolve("full-" + i++);
            String[] args = concat(run, c[0].toString(), "--output", out.toString());
            if (c[1] != null) args = concat(args, "--save-dtype", (String) c[1]);
            BadInputTest.Run r = BadInputTest.run(args);
            assertEquals(0, r.code(), r.err() + r.out());
            assertEquals(c[2], ModelFolder.storedDtype(out.resolve("final"), KernelBackends.get()), c[0] + " --save-dtype " + c[1]);
        }
        BadInputTest.Run lora = BadInputTest.run(concat(run, bf16.toString(), "--output", tmp.resolve("lora").toString(), "--lora-r", "4",
                "--save-dtype", "bf16"));
        assertEquals(2, lora.code(), lora.out());
        assertTrue(lora.err().contains("--save-dtype sets the dtype of a full fine-tuning"), lora.err());
    }

    @Test
    void mergeSavesInTheRequestedDtype() {
        Path fixture = SharedData.fixture("tiny-llama-gqa-tied");
        Path out = tmp.resolve("merged");
        BadInputTest.Run r = BadInputTest.run("merge", "--model", fixture.toString(), "--adapter", fixture.resolve("lora").toString(),
                "--output", out.toString(), "--save-dtype", "fp16");
        assertEquals(0, r.code(), r.err());
        assertEquals("float16", Json.read(out.resolve("config.json")).get("torch_dtype").asText());
        try (ModelFolder f = ModelFolder.open(out, new MemoryLedger(), KernelBackends.get(), null)) {
            assertEquals(DType.F16, f.storedDtype());
        }
        BadInputTest.Run bad = BadInputTest.run("merge", "--model", fixture.toString(), "--adapter", fixture.resolve("lora").toString(),
                "--output", tmp.resolve("x").toString(), "--save-dtype", "int8");
        assertEquals(2, bad.code());
    }

    static String[] concat(String[] a, String... b) {
        String[] out = java.util.Arrays.copyOf(a, a.length + b.length);
        System.arraycopy(b, 0, out, a.length, b.length);
        return out;
    }
}
