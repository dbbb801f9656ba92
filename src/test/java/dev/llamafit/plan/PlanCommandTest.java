// `llamafit plan` end to end: presets, JSON fields, bad input exit codes, the seed formula, speed of --recommend.
package dev.llamafit.plan;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.PrintWriter;
import java.io.StringWriter;
import java.util.List;

import org.junit.jupiter.api.Test;

import com.fasterxml.jackson.databind.JsonNode;

import dev.llamafit.model.Technique;
import dev.llamafit.plan.pytorch.GpuDevices;
import dev.llamafit.plan.pytorch.PytorchOptions;
import dev.llamafit.plan.pytorch.PytorchProfile;
import dev.llamafit.plan.pytorch.PytorchRecommender;
import dev.llamafit.plan.pytorch.FormulaSeed;
import dev.llamafit.cli.Main;
import dev.llamafit.io.Json;
import dev.llamafit.io.ModelPresets;

class PlanCommandTest {
    record Run(int code, String out, String err) {}

    static Run run(String... args) {
        StringWriter o = new StringWriter(), e = new StringWriter();
        int code = Main.run(args, new PrintWriter(o, true), new PrintWriter(e, true));
        return new Run(code, o.toString(), e.toString());
    }

    @Test
    void jsonHasTheRequiredFieldsAndAnswersFast() throws Exception {
        long t0 = System.nanoTime();
        Run r = run("plan", "--model", "llama-3.1-8b", "--method", "lora", "--precision", "bf16", "--device", "a100-80gb",
                "--gradient-checkpointing", "--batch-size", "2", "--seq-len", "2048", "--max-batch", "--max-seq-len", "--json");
        double secs = (System.nanoTime() - t0) / 1e9;
        assertEquals(0, r.code, r.err);
        JsonNode j = Json.MAPPER.readTree(r.out);
        assertTrue(j.path("device").path("peak_bytes").asLong() > 16e9, r.out);
        assertTrue(j.path("host").has("peak_bytes"));
        assertTrue(j.has("disk_bytes"));
        assertTrue(j.path("fits").asBoolean());
        assertTrue(j.path("components").size() > 4);
        assertTrue(j.path("max_batch_size").asInt() >= 2);
        assertTrue(j.path("max_seq_len").asInt() >= 2048);
        assertTrue(secs < 1.5, "plan took " + secs + " s");
    }

    @Test
    void tableForEveryPresetAndTheCpu() {
        for (String name : ModelPresets.names()) {
            Run r = run("plan", "--model", name, "--device", "h100-80gb", "--precision", "bf16", "--method", "qlora", "--lora-r", "16");
            assertEquals(0, r.code, name + ": " + r.err);
        }
        Run cpu = run("plan", "--model", "src/test/resources/fixtures/tiny-llama-gqa-tied/config.json", "--memory", "24GiB", "--seq-len", "32");
        assertEquals(0, cpu.code, cpu.err);
        assertTrue(cpu.out.contains("fits"), cpu.out);
    }

    /** Everything missing from a plan request is said in one message: the runtime and the device, not one per try. */
    @Test
    void aPlanErrorNamesEverythingMissingAtOnce() {
        Run r = run("plan", "--model", "llama-2-7b", "--optimizer", "adamw8bit", "--precision", "bf16-pure");
        assertEquals(2, r.code);
        assertEquals(1, r.err.lines().count(), r.err);
        assertTrue(r.err.contains("--optimizer adamw8bit with --precision bf16-pure") && r.err.contains("--runtime pytorch") && r.err.contains("GPU --device"), r.err);
        // Following the message plans.
        assertEquals(0, run("plan", "--model", "llama-2-7b", "--precision", "bf16", "--runtime", "pytorch", "--device", "a100-80gb").code);
        // Several pieces the engine lacks, all named; and a CPU device for PyTorch with a bad --attention, both said.
        r = run("plan", "--model", "llama-2-7b", "--precision", "bf16-pure", "--zero", "3", "--workers", "4", "--optimizer", "sgd");
        assertEquals(2, r.code);
        for (String s : new String[]{"--optimizer sgd with --precision bf16-pure", "--zero 3", "--workers 4", "are not implemented"})
            assertTrue(r.err.contains(s), s + " in " + r.err);
        r = run("plan", "--model", "llama-2-7b", "--runtime", "pytorch", "--attention", "sparse");
        assertEquals(2, r.code);
        assertTrue(r.err.contains("GPU --device") && r.err.contains("--attention must be one of"), r.err);
        assertEquals(1, r.err.lines().count(), r.err);
    }

    /** --list-presets: every model preset with its parameters and size, every device with its memory. */
    @Test
    void listPresetsShowsModelsAndDevices() {
        Run r = run("plan", "--list-presets");
        assertEquals(0, r.code, r.err);
        String line = r.out.lines().filter(l -> l.startsWith("llama-3.2-1b ")).findFirst().orElseThrow(() -> new AssertionError(r.out));
        long params = PytorchProfile.counts(ModelPresets.load("llama-3.2-1b")).total();
        assertTrue(line.contains(String.format(java.util.Locale.ROOT, "%,d", params)), line);
        assertTrue(line.contains(dev.llamafit.memory.ByteSize.format(4 * params)), line);
        for (String name : ModelPresets.names()) assertTrue(r.out.contains(name + " "), name);
        String h100 = r.out.lines().filter(l -> l.startsWith("h100-80gb ")).findFirst().orElseThrow();
        assertTrue(h100.contains("80.00 GiB"), h100);
        assertTrue(r.out.lines().anyMatch(l -> l.startsWith("cpu ")), r.out);
        // Without --list-presets, --model is needed: said as bad input.
        Run none = run("plan");
        assertEquals(2, none.code);
        assertTrue(none.err.contains("--model"), none.err);
    }

    @Test
    void badInputExitsWithTwo() {
        Run r = run("plan", "--model", "llama-3-8b");
        assertEquals(2, r.code);
        assertTrue(r.err.contains("did you mean") && r.err.contains("llama-3.1-8b"), r.err);
        r = run("plan", "--model", "llama-2-7b", "--base-dtype", "int8", "--device", "a100-80gb");
        assertEquals(2, r.code);
        assertTrue(r.err.contains("needs --method lora or qlora"), r.err);
        r = run("plan", "--model", "llama-2-7b", "--optimizer", "adamw8bit", "--precision", "bf16-pure");
        assertEquals(2, r.code);
        assertTrue(r.err.contains("not implemented in the llamafit runtime yet"), r.err);
        r = run("plan", "--model", "smollm-135m", "--method", "lora", "--lora-r", "1000", "--lora-targets", "k_proj");
        assertEquals(2, r.code);
        assertTrue(r.err.contains("exceeds the dimension of k_proj"), r.err);
        r = run("plan", "--model", "llama-2-7b", "--memory", "lots");
        assertEquals(2, r.code);
        r = run("plan", "--model", "llama-2-7b", "--device", "a100");
        assertEquals(2, r.code);
        assertTrue(r.err.contains("a100-40gb"), r.err);
        // A name the input is part of comes first, however far by edit distance.
        r = run("plan", "--model", "llama-2-7b", "--device", "h100");
        assertTrue(r.err.contains("did you mean h100-80gb, "), r.err);
        r = run("plan", "--model", "mistral", "--device", "4090");
        assertTrue(r.err.contains("did you mean mistral-7b, "), r.err);
        // Inference does not take --recommend, so a plan that does not fit says what would.
        Run t4 = run("plan", "--model", "llama-3.1-8b", "--device", "t4", "--inference", "--precision", "bf16", "--seq-len", "4096");
        assertEquals(0, t4.code, t4.err);
        assertTrue(t4.out.contains("DOES NOT FIT") && t4.out.contains("--base-dtype int8|nf4") && !t4.out.contains("--recommend"), t4.out);
        r = run("plan", "--model", "llama-2-7b", "--device", "a100-80gb", "--inference", "--loss", "full");
        assertEquals(2, r.code);
        assertTrue(r.err.contains("describe training, not --inference"), r.err);
    }

    @Test
    void seedFormulaReproducesItsExample() {
        // LLaMA-6B in int8: "6B" parameters at LLaMA-7B's shape, 2048-token samples, an 80 GB A100.
        FormulaSeed s = FormulaSeed.of(6e9, 1, ModelPresets.load("llama-7b"), 2048);
        assertEquals(25.3, s.fixedGb(), 1e-9);
        assertEquals(0.99, s.perSampleGb(), 0.005);
        int batch = s.batch(FormulaSeed.asRuleReadsIt(80));
        assertTrue(batch >= 48 && batch <= 50, "batch " + batch);
        Run r = run("plan", "--model", "llama-7b", "--method", "lora", "--base-dtype", "int8", "--precision", "bf16", "--seq-len", "2048",
                "--device", "a100-80gb", "--formula", "seed", "--max-batch");
        assertEquals(0, r.code, r.err);
        assertTrue(r.out.contains("formula seed") && r.out.contains("component model"), r.out);
    }

    @Test
    void recommend70bOnEightGpusUnderFiveSeconds() {
        long t0 = System.nanoTime();
        Run r = run("plan", "--model", "llama-3.1-70b", "--precision", "bf16", "--device", "h100-80gb", "--workers", "8",
                "--batch-size", "8", "--seq-len", "4096", "--recommend");
        double secs = (System.nanoTime() - t0) / 1e9;
        assertEquals(0, r.code, r.err);
        assertTrue(r.out.contains("1. ×"), r.out);
        assertTrue(secs < 5, "recommend took " + secs + " s");
        Run l = run("plan", "--model", "llama-2-7b", "--memory", "16GiB", "--recommend");
        assertEquals(0, l.code, l.err);
        assertTrue(!l.out.contains("bf16") && !l.out.contains("zero"), "llamafit: only what the engine implements\n" + l.out);
    }

    static JsonNode json(String... args) throws Exception {
        String[] all = java.util.stream.Stream.concat(java.util.Arrays.stream(args), java.util.stream.Stream.of("--json")).toArray(String[]::new);
        Run r = run(all);
        assertEquals(0, r.code, r.err);
        return Json.MAPPER.readTree(r.out);
    }

    static long component(JsonNode plan, String name) {
        for (JsonNode c : plan.path("components")) if (c.path("name").asText().equals(name)) return c.path("bytes").asLong();
        return 0;
    }

    @Test
    void fsdpKeepsTheLoadedDtypeWhileDeepSpeedCastsIt() throws Exception {
        String[] base = {"plan", "--model", "llama-2-70b", "--method", "lora", "--lora-targets", "all-linear", "--precision", "bf16",
                "--base-dtype", "fp32", "--device", "h100-80gb", "--zero", "3", "--workers", "8", "--gradient-checkpointing"};
        JsonNode ds = json(concat(base, "--sharding", "deepspeed")), fsdp = json(concat(base, "--sharding", "fsdp"));
        double ratio = (double) component(fsdp, "weights") / component(ds, "weights");
        assertEquals(2.0, ratio, 0.01, "fp32 shards under FSDP vs DeepSpeed's bf16 cast");
        // Unsharded: an fp32 base under autocast is cast at every matmul and each graph keeps its copy for backward:
        // every linear weight and the (tied) LM head in bf16.
        JsonNode single = json("plan", "--model", "llama-3.2-1b", "--method", "lora", "--precision", "bf16", "--base-dtype", "fp32", "--device", "a100-80gb");
        PytorchProfile.Counts n = PytorchProfile.counts(ModelPresets.load("llama-3.2-1b"));
        assertEquals((n.linearWeights() + n.embedding()) * 2, component(single, "weights.autocast_copies"), 2, single.toString());
        assertEquals(0, component(single, "weights.cast"));
    }

    @Test
    void fsdpRootUnitStaysGatheredUnlessTheEmbeddingsAreWrapped() throws Exception {
        // Llama 3.1 70B: embedding and LM head are 128256 × 8192 each; a block is far smaller than the pair.
        String[] base = {"plan", "--model", "llama-3.1-70b", "--method", "lora", "--precision", "bf16-pure", "--stack", "torchtune",
                "--device", "a100-80gb", "--zero", "3", "--workers", "8", "--gradient-checkpointing", "--batch-size", "2", "--seq-len", "2048"};
        JsonNode root = json(concat(base, "--sharding", "fsdp")), wrapped = json(concat(base, "--sharding", "fsdp", "--shard-embeddings"));
        long ends = 2L * 128256 * 8192 * 2;
        long diff = component(root, "weights.gathered") - component(wrapped, "weights.gathered");
        // Root: ends + 2 blocks; wrapped: 2 × max(block, one end). One end (2.1 GB) is larger than a block (1.7 GB).
        assertTrue(diff > 0.2 * ends && diff < ends, "root unit adds the embedding and LM head: " + diff);
        Run bad = run(concat(base, "--sharding", "deepspeed", "--shard-embeddings"));
        assertEquals(2, bad.code, bad.out);
        assertTrue(bad.err.contains("--sharding fsdp"), bad.err);
    }

    @Test
    void bitsandbytesQuantStateIsNeitherShardedNorOffloaded() throws Exception {
        String[] base = {"plan", "--model", "llama-2-70b", "--method", "qlora", "--lora-targets", "all-linear", "--precision", "bf16",
                "--device", "rtx4090", "--zero", "3", "--workers", "2", "--sharding", "fsdp", "--gradient-checkpointing", "--batch-size", "2", "--seq-len", "2048"};
        JsonNode kept = json(base), offloaded = json(concat(base, "--offload", "cpu"));
        long linear = PytorchProfile.counts(ModelPresets.load("llama-2-70b")).linearWeights();
        long expected = Math.round(linear * (1 + 4.0 / 256) / 64); // 8-bit absmax per 64 weights + fp32 per 256 blocks
        assertEquals(expected, component(kept, "weights.quant_state"), 2);
        assertEquals(expected, component(offloaded, "weights.quant_state"), 2);
        for (JsonNode c : offloaded.path("components")) {
            if (c.path("name").asText().equals("weights.quant_state")) assertEquals("device", c.path("column").asText());
            if (c.path("name").asText().equals("weights")) assertEquals("host", c.path("column").asText());
        }
        JsonNode torchtune = json(concat(base, "--stack", "torchtune"));
        assertEquals(0, component(torchtune, "weights.quant_state"), "torchao's NF4 tensor shards its scalers with the data");
    }

    @Test
    void mixedPrecisionStatesFollowTheStack() throws Exception {
        long n = PytorchProfile.counts(ModelPresets.load("llama-3.2-1b")).total();
        // HF without DeepSpeed/FSDP: torch.amp over the fp32 model. fp32 weights and gradients, fp32 AdamW, no master,
        // plus autocast's half copies of the linear weights (the HF docs' 6 + 4 + 8 bytes per parameter).
        JsonNode amp = json("plan", "--model", "llama-3.2-1b", "--precision", "bf16", "--device", "a100-80gb", "--batch-size", "1");
        assertEquals(4 * n, component(amp, "weights"), 8);
        assertEquals(0, component(amp, "master_weights"));
        assertEquals(8 * n, component(amp, "optimizer"), 8);
        assertTrue(component(amp, "weights.autocast_copies") > n, amp.toString());
        // DeepSpeed casts the module to bf16 and keeps an fp32 master; AdamW steps the master, so its states are fp32.
        JsonNode ds = json("plan", "--model", "llama-3.2-1b", "--precision", "bf16", "--device", "a100-80gb", "--batch-size", "1",
                "--zero", "1", "--workers", "2");
        assertEquals(2 * n, component(ds, "weights"), 8);
        assertEquals(4 * n / 2, component(ds, "master_weights"), 8);
        assertEquals(8 * n / 2, component(ds, "optimizer"), 8);
        assertEquals(0, component(ds, "weights.autocast_copies"));
    }

    @Test
    void deepSpeedHoldsItsGradientBucket() throws Exception {
        String[] base = {"plan", "--model", "llama-2-7b", "--method", "lora", "--precision", "bf16", "--device", "a100-40gb",
                "--zero", "3", "--workers", "2"};
        assertEquals(500_000_000L * 2, component(json(concat(base, "--sharding", "deepspeed")), "gradients.reduce_bucket"));
        assertEquals(0, component(json(concat(base, "--sharding", "fsdp")), "gradients.reduce_bucket"));
    }

    @Test
    void loraDropoutAndCheckpointIntervalChangeActivations() throws Exception {
        String[] base = {"plan", "--model", "llama-3.2-1b", "--method", "lora", "--lora-targets", "all-linear", "--precision", "bf16-pure",
                "--device", "a100-80gb", "--seq-len", "1024", "--stack", "torchtune"};
        long none = component(json(base), "activations"), dropout = component(json(concat(base, "--lora-dropout", "0.1")), "activations");
        assertTrue(dropout > none, "dropout keeps a copy of each adapter's input: " + dropout + " vs " + none);
        long every1 = component(json(concat(base, "--gradient-checkpointing")), "activations");
        long every2 = component(json(concat(base, "--gradient-checkpointing", "--checkpoint-every", "2")), "activations");
        assertTrue(every1 < every2 && every2 < none, every1 + " < " + every2 + " < " + none);
        Run bad = run("plan", "--model", "llama-3.2-1b", "--base-dtype", "bf16", "--device", "a100-80gb");
        assertEquals(2, bad.code);
        assertTrue(bad.err.contains("frozen LoRA base"), bad.err);
    }

    @Test
    void ddpBucketsCopyTheGradients() throws Exception {
        String[] base = {"plan", "--model", "llama-3.2-1b", "--device", "a100-80gb", "--precision", "bf16", "--method", "full",
                "--batch-size", "1", "--seq-len", "512", "--workers", "2", "--json"};
        JsonNode noShard = Json.MAPPER.readTree(run(concat(base, "--sharding", "fsdp")).out);
        JsonNode ddp = Json.MAPPER.readTree(run(concat(base, "--sharding", "ddp")).out);
        // torch.amp full fine-tuning keeps fp32 weights and gradients; the buckets repeat the gradients in fp32.
        long grads = component(ddp, "gradients");
        assertEquals(PytorchProfile.counts(ModelPresets.load("llama-3.2-1b")).total() * 4L, grads, 8);
        assertEquals(grads, component(ddp, "gradients.ddp_buckets"));
        assertEquals(0, component(noShard, "gradients.ddp_buckets"));
        // Several workers without a ZeRO stage or a stated sharding: what torchrun / accelerate launch run, DDP.
        JsonNode unstated = Json.MAPPER.readTree(run(base).out);
        assertEquals("ddp", unstated.path("parallelism").path("sharding").asText());
        assertEquals(grads, component(unstated, "gradients.ddp_buckets"));
        JsonNode zero2 = Json.MAPPER.readTree(run(concat(base, "--zero", "2")).out);
        assertEquals("deepspeed", zero2.path("parallelism").path("sharding").asText());
        assertEquals(2, zero2.path("parallelism").path("zero").asInt());
        assertTrue(run(base[0], base[1], base[2], base[3], base[4], "--workers", "2").out.contains(", 2 workers (ddp), runtime pytorch"));
        Run zero = run("plan", "--model", "llama-3.2-1b", "--device", "a100-80gb", "--workers", "2", "--sharding", "ddp", "--zero", "2");
        assertEquals(2, zero.code);
        assertTrue(zero.err.contains("--sharding ddp replicates"), zero.err);
        // Asked for ZeRO while on DDP, the recommender moves the run to FSDP and says so.
        Run rec = run("plan", "--model", "llama-3.1-8b", "--device", "rtx4090", "--precision", "bf16", "--method", "full", "--workers", "4",
                "--sharding", "ddp", "--batch-size", "1", "--seq-len", "1024", "--recommend");
        assertEquals(0, rec.code, rec.err);
        assertTrue(rec.out.contains(" over 4 workers with FSDP") && rec.out.contains("(DDP cannot shard)"), rec.out);
        // FSDP has no optimizer-only stage.
        Run fsdp1 = run("plan", "--model", "llama-3.2-1b", "--device", "a100-80gb", "--workers", "2", "--sharding", "fsdp", "--zero", "1");
        assertEquals(2, fsdp1.code);
        assertTrue(fsdp1.err.contains("FSDP has no ZeRO-1"), fsdp1.err);
    }

    @Test
    void lossFlagChoosesFullOrChunkedLogits() throws Exception {
        String[] base = {"plan", "--model", "llama-3.1-8b", "--device", "a100-80gb", "--precision", "bf16-pure", "--stack", "torchtune",
                "--method", "lora", "--gradient-checkpointing", "--batch-size", "2", "--seq-len", "2048", "--json"};
        long chunked = component(Json.MAPPER.readTree(run(base).out), "logits_and_loss");
        long compiled = component(Json.MAPPER.readTree(run(concat(base, "--compile")).out), "logits_and_loss");
        long full = component(Json.MAPPER.readTree(run(concat(base, "--loss", "full")).out), "logits_and_loss");
        double nv = 2.0 * 2048 * 128256, tokens = 2.0 * 2048;
        assertEquals(12 * nv, full, 1e-6 * full, "fp32 log-softmax with both its gradients");
        assertEquals(nv * (2 + 4) + 4 * nv / 8 + 8 * tokens, chunked, 1e-6 * chunked,
                "eager chunks: bf16 logits and every chunk's fp32 log-softmax, one chunk's fp32 upcast");
        assertEquals(nv * 2 + 2 * nv / 8 + 16 * tokens, compiled, 1e-6 * compiled, "compiled chunks: bf16 logits kept, one chunk's gradient");
        Run hf = run("plan", "--model", "llama-3.1-8b", "--device", "a100-80gb", "--precision", "bf16", "--loss", "chunked");
        assertEquals(2, hf.code);
        assertTrue(hf.err.contains("--loss chunked is torchtune's"), hf.err);
    }

    static String[] concat(String[] a, String... b) {
        return java.util.stream.Stream.concat(java.util.Arrays.stream(a), java.util.Arrays.stream(b)).toArray(String[]::new);
    }

    @Test
    void pytorchOptimizerAndQuantisationFlags() throws Exception {
        String[] base = {"plan", "--model", "llama-3.1-8b", "--device", "rtx4090", "--precision", "bf16-pure", "--stack", "torchtune",
                "--gradient-checkpointing", "--batch-size", "2", "--seq-len", "2048", "--json"};
        JsonNode plain = Json.MAPPER.readTree(run(concat(base, "--method", "full")).out);
        JsonNode lean = Json.MAPPER.readTree(run(concat(base, "--method", "full", "--optimizer", "adamw8bit", "--paged-optimizer", "--optimizer-in-backward")).out);
        // Paged states leave the GPU column; in-backward steps free each gradient as soon as it is used.
        assertTrue(lean.path("host").path("peak_bytes").asLong() > 0, lean.toString());
        assertTrue(lean.path("device").path("peak_bytes").asLong() < plain.path("device").path("peak_bytes").asLong() - 20e9,
                "paged 8-bit AdamW in backward saves the states and most gradients");
        JsonNode dq = Json.MAPPER.readTree(run(concat(base, "--method", "qlora")).out);
        JsonNode noDq = Json.MAPPER.readTree(run(concat(base, "--method", "qlora", "--no-double-quant")).out);
        double linear = 6.98e9; // Llama 3.1 8B linear weights in the blocks
        long extra = component(noDq, "weights") - component(dq, "weights");
        assertEquals(linear * (4.0 / 64 - (1 + 4.0 / 256) / 64), extra, 0.02 * extra, "4.5 vs 4.127 bits per linear weight");
        // The three counters PyTorch users read, in order; peak_bytes is the nvidia-smi one.
        JsonNode d = dq.path("device");
        assertTrue(d.path("max_memory_allocated_bytes").asLong() < d.path("max_memory_reserved_bytes").asLong());
        assertTrue(d.path("max_memory_reserved_bytes").asLong() < d.path("nvidia_smi_bytes").asLong());
        assertEquals(d.path("peak_bytes").asLong(), d.path("nvidia_smi_bytes").asLong());
        // Not for the llamafit runtime, and no NF4 constants to leave single-quantised without an NF4 base.
        Run cpu = run("plan", "--model", "llama-3.2-1b", "--optimizer-in-backward");
        assertEquals(2, cpu.code);
        assertTrue(cpu.err.contains("optimizer in backward is not implemented in the llamafit runtime"), cpu.err);
        Run dqLora = run("plan", "--model", "llama-3.2-1b", "--device", "h100-80gb", "--method", "lora", "--no-double-quant");
        assertEquals(2, dqLora.code);
        assertTrue(dqLora.err.contains("--no-double-quant"), dqLora.err);
    }

    static long phase(JsonNode plan, String name, String phase) {
        for (JsonNode c : plan.path("components")) if (c.path("name").asText().equals(name)) return c.path("bytes_by_phase").path(phase).asLong();
        return 0;
    }

    @Test
    void optimizerImplChoosesTheStepTemporaries() throws Exception {
        String[] base = {"plan", "--model", "llama-3.2-1b", "--device", "h200", "--precision", "fp32", "--method", "full"};
        JsonNode fused = json(base), foreach = json(concat(base, "--optimizer-impl", "foreach"));
        assertEquals(0, component(fused, "optimizer.step_temporaries"));
        // foreach AdamW's step holds sqrt(v) for every tensor: one fp32 state, half of m + v.
        assertEquals(component(foreach, "optimizer") / 2, component(foreach, "optimizer.step_temporaries"), 1);
        assertEquals(component(fused, "optimizer"), component(foreach, "optimizer"));
        Run inference = run("plan", "--model", "llama-3.2-1b", "--device", "h200", "--inference", "--optimizer-impl", "foreach");
        assertEquals(2, inference.code);
        assertTrue(inference.err.contains("--optimizer-impl"), inference.err);
        Run cpu = run("plan", "--model", "llama-3.2-1b", "--optimizer-impl", "fused");
        assertEquals(2, cpu.code);
        assertTrue(cpu.err.contains("--runtime pytorch"), cpu.err);
        Run cpuKeep = run("plan", "--model", "llama-3.2-1b", "--keep-outputs");
        assertEquals(2, cpuKeep.code);
        assertTrue(cpuKeep.err.contains("--runtime pytorch"), cpuKeep.err);
        Run bad = run(concat(base, "--optimizer-impl", "apex"));
        assertEquals(2, bad.code);
        assertTrue(bad.err.contains("fused, foreach"), bad.err);
    }

    @Test
    void keepOutputsHoldsTheLogitsThroughBackward() throws Exception {
        String[] base = {"plan", "--model", "llama-3.2-1b", "--device", "h200", "--precision", "bf16", "--method", "lora", "--gradient-checkpointing",
                "--batch-size", "4", "--seq-len", "1024"};
        JsonNode trainer = json(base), loop = json(concat(base, "--keep-outputs"));
        long logits = 4L * 1024 * 128256 * 2; // N·V in bf16
        assertEquals(logits, phase(loop, "logits_and_loss", "backward_head") - phase(trainer, "logits_and_loss", "backward_head"));
        assertEquals(phase(trainer, "logits_and_loss", "forward"), phase(loop, "logits_and_loss", "forward"));
        Run torchtune = run("plan", "--model", "llama-3.2-1b", "--device", "h200", "--stack", "torchtune", "--keep-outputs");
        assertEquals(2, torchtune.code);
        assertTrue(torchtune.err.contains("--keep-outputs"), torchtune.err);
    }

    @Test
    void fsdpShardGradOpGathersTheWholeModelBetweenForwardAndBackward() throws Exception {
        String[] base = {"plan", "--model", "llama-3.1-8b", "--device", "a100-80gb", "--workers", "8", "--zero", "2", "--precision", "bf16",
                "--method", "full", "--batch-size", "1", "--seq-len", "2048", "--gradient-checkpointing"};
        long params = PytorchProfile.counts(ModelPresets.load("llama-3.1-8b")).total();
        JsonNode fsdp = json(concat(base, "--sharding", "fsdp")), ds = json(concat(base, "--sharding", "deepspeed"));
        // FSDP: fp32 shards (the master weights) at rest, every unit gathered in bf16 from its forward to its backward.
        assertEquals(params * 4.0 / 8, component(fsdp, "weights"), 8);
        assertEquals(params * 2.0, phase(fsdp, "weights.gathered", "forward"), 8 * 4096);
        assertEquals(phase(fsdp, "weights.gathered", "forward"), phase(fsdp, "weights.gathered", "backward"));
        assertEquals(0, phase(fsdp, "weights.gathered", "optimizer_step"));
        assertEquals(0, component(fsdp, "master_weights"));
        // DeepSpeed ZeRO-2: the module cast to bf16 and replicated, fp32 masters partitioned.
        assertEquals(params * 2.0, component(ds, "weights"), 8);
        assertEquals(params * 4.0 / 8, component(ds, "master_weights"), 8);
        assertEquals(0, component(ds, "weights.gathered"));
        // FSDP's CPU offload moves the parameter shards at stage 2 as well (DeepSpeed's stage-2 offload does not).
        JsonNode fsdpOff = json(concat(base, "--sharding", "fsdp", "--offload", "cpu")), dsOff = json(concat(base, "--sharding", "deepspeed", "--offload", "cpu"));
        assertEquals("host", column(fsdpOff, "weights"));
        assertTrue(component(fsdpOff, "weights.offload_staging") > 0);
        assertEquals("device", column(dsOff, "weights"));
        assertEquals("host", column(dsOff, "optimizer"));
    }

    static String column(JsonNode plan, String name) {
        for (JsonNode c : plan.path("components")) if (c.path("name").asText().equals(name)) return c.path("column").asText();
        return "";
    }

    @Test
    void ncclBuffersCountOnlyInNvidiaSmi() throws Exception {
        String[] base = {"plan", "--model", "llama-3.1-8b", "--device", "h100-80gb", "--precision", "bf16", "--method", "lora", "--batch-size", "1"};
        JsonNode one = json(base), two = json(concat(base, "--workers", "2")), eight = json(concat(base, "--workers", "8"));
        assertEquals(0, component(one, "nccl_buffers"));
        assertEquals(544L << 20, component(two, "nccl_buffers"));
        assertEquals(688L << 20, component(eight, "nccl_buffers"));
        for (JsonNode p : List.of(two, eight)) {
            JsonNode d = p.path("device");
            assertEquals(component(p, "cuda_context") + component(p, "nccl_buffers"),
                    d.path("nvidia_smi_bytes").asLong() - d.path("max_memory_reserved_bytes").asLong());
        }
    }

    @Test
    void compileRecomputesSiluAndTheNormUpcasts() throws Exception {
        // Llama 3.1 8B LoRA (q, v) in bf16 without autocast, no checkpointing: compiled, each block saves silu(gate)
        // (F) and the two norms' fp32 upcasts (2C × (4 − 2)) less, per token; the two adapters over the same input
        // share one fp32 cast (C × 4).
        String[] base = {"plan", "--model", "llama-3.1-8b", "--device", "h200", "--precision", "bf16-pure", "--method", "lora",
                "--batch-size", "1", "--seq-len", "1024"};
        JsonNode eager = json(base), compiled = json(concat(base, "--compile"));
        double perToken = 14336 * 2.0 + 2 * 4096 * 2.0 + 4096 * 4.0;
        // (The final norm keeps its half input instead of the fp32 upcast, and the first block's attention norm, whose
        // input needs no gradient under LoRA, keeps nothing either way: the two differences cancel.)
        assertEquals(32 * 1024 * perToken, phase(eager, "activations", "forward") - phase(compiled, "activations", "forward"), 64);
        Run cpu = run("plan", "--model", "llama-3.1-8b", "--compile");
        assertEquals(2, cpu.code);
        assertTrue(cpu.err.contains("--compile") && cpu.err.contains("--runtime pytorch"), cpu.err);
        Run inference = run("plan", "--model", "llama-3.1-8b", "--device", "h200", "--inference", "--compile");
        assertEquals(2, inference.code);
        assertTrue(inference.err.contains("not --inference"), inference.err);
    }

    @Test
    void oldBitsandbytesKeepsEveryFourBitMatmulInput() throws Exception {
        // Llama-2-7B QLoRA with dropout: the adapters read their own dropped-out copies, so with a current bitsandbytes
        // no base layer input is saved but the flash output; 0.43.1 saves the q/k/v input, the gate/up input (the two
        // norm outputs, C each) and the down input (F) for every 4-bit matmul.
        String[] base = {"plan", "--model", "llama-2-7b", "--device", "a100-80gb", "--precision", "bf16", "--method", "qlora", "--lora-targets", "all-linear",
                "--lora-dropout", "0.1", "--batch-size", "2", "--seq-len", "2048"};
        double perToken = (2 * 4096 + 11008) * 2.0, tokens = 2 * 2048;
        JsonNode now = json(base), fixed = json(concat(base, "--bitsandbytes", "0.43.2")), old = json(concat(base, "--bitsandbytes", "0.43.1"));
        assertEquals(phase(now, "activations", "forward"), phase(fixed, "activations", "forward"));
        assertEquals(32 * perToken * tokens, phase(old, "activations", "forward") - phase(now, "activations", "forward"), 64);
        // With checkpointing only the recomputed block holds them.
        String[] ckpt = concat(base, "--gradient-checkpointing");
        JsonNode nowC = json(ckpt), oldC = json(concat(ckpt, "--bitsandbytes", "0.43.0.dev0"));
        assertEquals(phase(nowC, "activations", "forward"), phase(oldC, "activations", "forward"));
        assertEquals(perToken * tokens, phase(oldC, "activations", "backward") - phase(nowC, "activations", "backward"), 64);
        Run lora = run(concat(new String[]{"plan", "--model", "llama-2-7b", "--device", "a100-80gb", "--method", "lora"}, "--bitsandbytes", "0.43.1"));
        assertEquals(2, lora.code);
        assertTrue(lora.err.contains("--bitsandbytes") && lora.err.contains("--method qlora"), lora.err);
        Run bad = run(concat(base, "--bitsandbytes", "new"));
        assertEquals(2, bad.code);
        assertTrue(bad.err.contains("--bitsandbytes takes a version such as 0.43.1, got 'new'"), bad.err);
    }

    @Test
    void fp32SdpaWithGroupedQueriesPlansTheMathBackend() throws Exception {
        // Llama 3.2 1B has 8 KV heads for 32 query heads: fp32 SDPA falls back to the math kernel, as eager does.
        String[] gqa = {"plan", "--model", "llama-3.2-1b", "--device", "h200", "--method", "full", "--batch-size", "2", "--seq-len", "1024"};
        long flash32 = component(json(concat(gqa, "--precision", "fp32", "--attention", "flash")), "activations");
        long eager32 = component(json(concat(gqa, "--precision", "fp32", "--attention", "eager")), "activations");
        assertEquals(eager32, flash32);
        long flash16 = component(json(concat(gqa, "--precision", "bf16", "--attention", "flash")), "activations");
        long eager16 = component(json(concat(gqa, "--precision", "bf16", "--attention", "eager")), "activations");
        assertTrue(flash16 < eager16, flash16 + " vs " + eager16);
        // SmolLM 1.7B has as many KV heads as query heads: fp32 SDPA runs the memory-efficient kernel.
        String[] mha = {"plan", "--model", "smollm-1.7b", "--device", "h200", "--method", "full", "--precision", "fp32", "--batch-size", "2", "--seq-len", "1024"};
        assertTrue(component(json(concat(mha, "--attention", "flash")), "activations") < component(json(concat(mha, "--attention", "eager")), "activations"));
    }

    @Test
    void autocastCopiesOutliveForwardOnlyWithoutCheckpointing() throws Exception {
        String[] base = {"plan", "--model", "llama-3.2-1b", "--device", "h200", "--precision", "bf16", "--method", "full"};
        JsonNode plain = json(base), ckpt = json(concat(base, "--gradient-checkpointing"));
        long all = phase(plain, "weights.autocast_copies", "forward");
        assertEquals(all, phase(ckpt, "weights.autocast_copies", "forward"));
        assertEquals(all, phase(plain, "weights.autocast_copies", "backward_head"));
        // Checkpointed blocks drop their copies with their graphs: backward keeps the LM head's, then one recomputed block's.
        long head = 128256L * 2048 * 2;
        assertEquals(head, phase(ckpt, "weights.autocast_copies", "backward_head"));
        PytorchProfile.Counts n = PytorchProfile.counts(ModelPresets.load("llama-3.2-1b"));
        assertEquals(n.linearWeights() / 16 * 2, phase(ckpt, "weights.autocast_copies", "backward"), 16);
    }

    @Test
    void backwardFreesActivationsWhileGradientsGrow() throws Exception {
        // fp32 full fine-tuning without checkpointing: gradients (all fp32 weights) and activations do not peak together.
        JsonNode p = json("plan", "--model", "smollm-1.7b", "--device", "h200", "--precision", "fp32", "--method", "full",
                "--batch-size", "4", "--seq-len", "1024");
        long grads = phase(p, "gradients", "backward"), fwdActs = phase(p, "activations", "forward"), bwdActs = phase(p, "activations", "backward");
        assertTrue(grads > 0 && bwdActs < fwdActs, grads + " " + fwdActs + " " + bwdActs);
        assertTrue(phase(p, "activations", "backward") + grads < fwdActs + grads, "backward must not hold all activations and all gradients at once");
    }

    /**
     * FSDP1 with each block's adapters in the block's unit (use_orig_params=True, Lightning Fabric's Block policy): the
     * unit's flat parameter requires grad, so its gradient is the whole unit's size, frozen weights included; and
     * accumulation inside no_sync() keeps those gradients unsharded from micro-step to micro-step, sharding them only
     * for the step. Both are counted from the config: 32 blocks of Llama-2-7B in bf16.
     */
    @Test
    void fsdpBlockUnitsAndNoSyncHoldWholeUnitGradients() throws Exception {
        String[] base = {"plan", "--model", "llama-2-7b", "--method", "lora", "--lora-r", "8", "--precision", "bf16-pure", "--device", "a100-40gb",
                "--zero", "3", "--workers", "2", "--sharding", "fsdp", "--gradient-checkpointing", "--batch-size", "1", "--seq-len", "1024"};
        LlamaCounts k = new LlamaCounts(ModelPresets.load("llama-2-7b"));
        long adapters = 8L * (4096 + 4096) * 2 * 32;   // q and v: r·(in + out) per matrix, 32 layers
        JsonNode peft = json(base), blocks = json(concat(base, "--fsdp-wrap", "blocks")),
                sync = json(concat(base, "--fsdp-wrap", "blocks", "--grad-accum", "4", "--no-sync"));
        assertEquals(adapters * 4 / 2.0, phase(peft, "gradients", "backward"), 2, "PEFT's policy: fp32 adapters' gradients, sharded");
        double unitGrads = (k.perLayer * 32 + adapters) * 2.0;
        assertEquals(unitGrads / 2, phase(blocks, "gradients", "backward"), 2, "block units: every block's gradient, sharded over 2");
        assertEquals(k.perLayer * 2.0, phase(blocks, "gradients.unsharded_unit", "backward"), 2, "one unit's whole gradient before its reduce-scatter");
        assertEquals(unitGrads, phase(sync, "gradients", "forward"), 2, "no_sync: unsharded, held through the next forward");
        assertEquals(unitGrads, phase(sync, "gradients", "backward"), 2);
        assertEquals(unitGrads / 2, phase(sync, "gradients", "optimizer_step"), 2, "the synchronising micro-step shards them for the step");
        assertEquals(phase(peft, "optimizer", "optimizer_step") / 2, phase(blocks, "optimizer", "optimizer_step"), 2,
                "the optimizer still steps the adapters alone (now in the blocks' bf16, not fp32)");

        Run full = run("plan", "--model", "llama-2-7b", "--precision", "bf16-pure", "--device", "a100-40gb", "--zero", "3", "--workers", "2",
                "--sharding", "fsdp", "--fsdp-wrap", "blocks");
        assertEquals(2, full.code, full.out);
        assertTrue(full.err.contains("--fsdp-wrap blocks"), full.err);
        Run torchtune = run(concat(base, "--stack", "torchtune", "--fsdp-wrap", "blocks"));
        assertEquals(2, torchtune.code, torchtune.out);
        assertTrue(torchtune.err.contains("FSDP2"), torchtune.err);
        Run ddp = run("plan", "--model", "llama-2-7b", "--device", "a100-40gb", "--workers", "2", "--no-sync");
        assertEquals(2, ddp.code, ddp.out);
        assertTrue(ddp.err.contains("--no-sync"), ddp.err);
        Run once = run(concat(base, "--no-sync"));
        assertEquals(2, once.code, once.out);
        assertTrue(once.err.contains("--grad-accum"), once.err);
        Run wrap = run(concat(base, "--fsdp-wrap", "layers"));
        assertEquals(2, wrap.code, wrap.out);
        assertTrue(wrap.err.contains("adapters or blocks"), wrap.err);
    }

    /** Parameters per decoder block, from the config (attention with GQA, gated MLP, two norms). */
    record LlamaCounts(long perLayer) {
        LlamaCounts(dev.llamafit.model.LlamaConfig c) {
            this((long) c.hiddenSize() * c.qDim() + 2L * c.hiddenSize() * c.kvDim() + (long) c.qDim() * c.hiddenSize()
                    + 3L * c.hiddenSize() * c.intermediateSize() + 2L * c.hiddenSize());
        }
    }

    /**
     * Gradient accumulation: from the second micro-step on the summed gradients are there from the start of forward;
     * without it they exist only from backward on. TinyLlama full fine-tuning in bf16: 1.1B parameters × 2 B.
     */
    @Test
    void accumulationHoldsTheGradientsThroughForward() throws Exception {
        String[] base = {"plan", "--model", "tinyllama-1.1b", "--method", "full", "--precision", "bf16-pure", "--device", "a10g",
                "--batch-size", "4", "--seq-len", "512"};
        JsonNode once = json(base), accum = json(concat(base, "--grad-accum", "8"));
        long params = PytorchProfile.counts(ModelPresets.load("tinyllama-1.1b")).total();
        assertEquals(0, phase(once, "gradients", "forward"));
        assertEquals(params * 2.0, phase(accum, "gradients", "forward"), 2);
        assertEquals(params * 2.0, phase(accum, "gradients", "backward_head"), 2);
        assertTrue(accum.path("device").path("max_memory_allocated_bytes").asLong() > once.path("device").path("max_memory_allocated_bytes").asLong());
        Run inBackward = run(concat(base, "--grad-accum", "2", "--optimizer-in-backward"));
        assertEquals(2, inBackward.code, inBackward.out);
        assertTrue(inBackward.err.contains("--optimizer-in-backward"), inBackward.err);
        Run zero = run(concat(base, "--grad-accum", "0"));
        assertEquals(2, zero.code, zero.out);
        assertTrue(zero.err.contains("--grad-accum"), zero.err);
        // The llamafit engine keeps its gradient buffers for the whole run: accumulation plans the same bytes.
        String[] cpu = {"plan", "--model", "src/test/resources/fixtures/tiny-llama-gqa-tied/config.json", "--memory", "24GiB", "--seq-len", "32"};
        assertEquals(json(cpu).path("device").path("peak_bytes").asLong(), json(concat(cpu, "--grad-accum", "4")).path("device").path("peak_bytes").asLong());
    }

    /** A recommended micro-batch with accumulation is planned with the accumulated gradients held, as it will run. */
    @Test
    void recommendedAccumulationHoldsItsGradients() {
        PytorchOptions want = PytorchOptions.of(Technique.Method.FULL, 0, List.of(), 0, Technique.Precision.BF16_PURE, null, Technique.Optimizer.ADAMW,
                false, 1, 16, 1024, 0, 1, PytorchOptions.Offload.NONE, PytorchOptions.Attention.FLASH, PytorchOptions.Stack.HF,
                PytorchOptions.Sharding.DEEPSPEED, PytorchOptions.PytorchSettings.DEFAULTS, 2);
        List<PytorchRecommender.Recommendation> recs = PytorchRecommender.recommend(ModelPresets.load("llama-3.2-1b"), want, GpuDevices.gpu("l4"), 50);
        int checked = 0;
        for (PytorchRecommender.Recommendation r : recs) {
            PytorchOptions o = r.options();
            assertEquals(2 * (int) Math.ceil(16.0 / o.batchSize()), o.gradAccum(), "the effective batch stays 16 × 2: " + r.steps());
            assertEquals(o.gradAccum(), r.gradAccum());
            long held = r.plan().component("gradients").bytes(Phase.FORWARD);
            if (o.offload() == PytorchOptions.Offload.NONE && !o.optimizerInBackward()) {
                assertTrue(held > 0, "accumulated gradients are held through forward: " + r.steps());
                checked++;
            }
        }
        assertTrue(checked > 0, "some recommendation keeps gradients on the GPU: " + recs.size());
    }

    /**
     * Activation offloading (torchtune's OffloadActivations): what the forward saves goes to the host column; the GPU
     * keeps 5 saved tensors in flight (block inputs, under checkpointing) and the LM head's input, and in backward two
     * block inputs with the block recomputed from one. Llama 3.2 1B full fine-tuning, bf16, B 2 × 1024.
     */
    @Test
    void activationOffloadMovesSavedTensorsToTheHost() throws Exception {
        String[] base = {"plan", "--model", "llama-3.2-1b", "--method", "full", "--precision", "bf16-pure", "--stack", "torchtune", "--device", "a100-80gb",
                "--gradient-checkpointing", "--batch-size", "2", "--seq-len", "1024"};
        JsonNode kept = json(base), offloaded = json(concat(base, "--activation-offload"));
        double blockInput = 2.0 * 1024 * 2048 * 2, headInput = blockInput;
        assertEquals(5 * blockInput + headInput, phase(offloaded, "activations", "forward"), 2);
        assertEquals(phase(kept, "activations", "forward"), phase(offloaded, "activations.offloaded", "forward"), 2, "the host holds what the GPU held");
        assertTrue(phase(offloaded, "activations", "backward") <= phase(kept, "activations", "backward"));
        assertTrue(offloaded.path("host").path("peak_bytes").asLong() >= phase(kept, "activations", "forward"));
        Run inference = run("plan", "--model", "llama-3.2-1b", "--device", "a100-80gb", "--inference", "--activation-offload");
        assertEquals(2, inference.code, inference.out);
        assertTrue(inference.err.contains("--activation-offload"), inference.err);
        Run cpu = run("plan", "--model", "llama-3.2-1b", "--activation-offload");
        assertEquals(2, cpu.code, cpu.out);
        assertTrue(cpu.err.contains("activation offloading is not implemented in the llamafit runtime"), cpu.err);
    }

    /** The known shortfall of FSDP1 with CPU parameter offload is said in the plan, not hidden in a fitted term. */
    @Test
    void fsdpCpuOffloadPlansSayWhatPublishedRunsHeldBeyondThem() throws Exception {
        String[] base = {"plan", "--model", "llama-2-70b", "--method", "qlora", "--precision", "bf16", "--device", "rtx4090", "--zero", "3", "--workers", "2",
                "--sharding", "fsdp", "--gradient-checkpointing", "--batch-size", "2", "--seq-len", "2048"};
        JsonNode offload = json(concat(base, "--offload", "cpu")), kept = json(base);
        assertTrue(offload.path("notes").toString().contains("FSDP1 with CPU parameter offload"), offload.path("notes").toString());
        assertTrue(!kept.path("notes").toString().contains("FSDP1 with CPU parameter offload"), kept.path("notes").toString());
        assertTrue(run(concat(base, "--offload", "cpu")).out.contains("note: FSDP1 with CPU parameter offload"));
    }
}
