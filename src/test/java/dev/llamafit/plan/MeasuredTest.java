// The PyTorch profile against this project's own measurements: HF Trainer, hand-written loops and generate on an H200,
// and what one block saves for backward, eager and compiled.
package dev.llamafit.plan;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.Map;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

import com.fasterxml.jackson.databind.JsonNode;

import dev.llamafit.model.Technique;
import dev.llamafit.plan.pytorch.GpuDevices;
import dev.llamafit.plan.pytorch.PytorchOptions;
import dev.llamafit.plan.pytorch.PytorchProfile;
import dev.llamafit.io.Json;

/**
 * src/test/resources/planner/measured_hf_h200_{a,b}.csv are the output of scripts/measure_hf_memory.py on an NVIDIA H200
 * (torch 2.11, transformers 5.17, peft 0.21; the first comment line of each file): randomly initialised models of the
 * presets trained for three steps by the HF Trainer or a hand-written loop, or generating, with
 * torch.cuda.max_memory_allocated and max_memory_reserved per case and the {@code llamafit plan} flags that describe it.
 * Set a was used to find what the profile got wrong; set b was measured afterwards, on other models and settings
 * (docs/PLANNER.md says which of its rows later changes touched). Every row is planned through the command line and
 * must be within ±15% in both counters.
 */
class MeasuredTest {
    record Row(String id, double allocated, double reserved, List<String> flags) {}

    static List<Row> rows(String set) throws Exception {
        Path file = Path.of("src/test/resources/planner/measured_hf_h200_" + set + ".csv");
        List<Row> out = new ArrayList<>();
        for (Map<String, String> m : CalibrationTest.readCsv(file)) {
            if (!m.get("error").isEmpty()) throw new IllegalArgumentException(file + ": " + m.get("id") + " failed on the GPU: " + m.get("error"));
            out.add(new Row(m.get("id"), Double.parseDouble(m.get("max_allocated_bytes")), Double.parseDouble(m.get("max_reserved_bytes")),
                    List.of(m.get("plan_flags").trim().split("\\s+"))));
        }
        return out;
    }

    static JsonNode plan(Row r) throws Exception { return DevelopmentSetTest.planDevice(r.id, r.flags); }

    @ParameterizedTest
    @ValueSource(strings = {"a", "b"})
    void plannedAgainstMeasured(String set) throws Exception {
        List<Row> rows = rows(set);
        assertTrue(rows.size() >= 16, "expected the measured rows of set " + set + ", read " + rows.size());
        double gib = 1L << 30;
        StringBuilder table = new StringBuilder(String.format(Locale.ROOT, "%-4s %10s %10s %6s   %10s %10s %6s%n",
                "case", "alloc GiB", "planned", "ratio", "reserved", "planned", "ratio"));
        List<String> outside = new ArrayList<>();
        int within5 = 0;
        for (Row r : rows) {
            JsonNode d = plan(r);
            double pa = d.get("max_memory_allocated_bytes").asDouble(), pr = d.get("max_memory_reserved_bytes").asDouble();
            double ra = pa / r.allocated, rr = pr / r.reserved;
            if (Math.abs(ra - 1) > CalibrationTest.TOLERANCE || Math.abs(rr - 1) > CalibrationTest.TOLERANCE) outside.add(r.id);
            if (Math.abs(ra - 1) <= 0.05) within5++;
            table.append(String.format(Locale.ROOT, "%-4s %10.2f %10.2f %6.3f   %10.2f %10.2f %6.3f%n",
                    r.id, r.allocated / gib, pa / gib, ra, r.reserved / gib, pr / gib, rr));
        }
        table.append(String.format(Locale.ROOT, "set %s: %d rows, %d outside ±15%%, %d with max_memory_allocated within ±5%%%n",
                set, rows.size(), outside.size(), within5));
        System.out.print(table);
        assertTrue(outside.isEmpty(), "measured rows outside ±15%: " + outside + "\n" + table);
    }

    /**
     * scripts/measure_fsdp_offload.py: FSDP1 FULL_SHARD LoRA over two (emulated) workers on a 12-layer Llama-2-70B-shaped
     * bf16 base, without and with CPU parameter offload. Without offload the plan is within ±15%. With offload it is
     * not: max_memory_allocated is over-predicted (1.44; the plan adds the prefetched unit's staging copy and a whole
     * recomputed block to the gathered units, which the measured peak does not hold together) while max_memory_reserved
     * matches, because that run's allocator keeps 3.9 GB more than it allocates (a 4.8 GB reserve left by
     * materialising each unit on the GPU before offloading it). Kept as a measurement that must stay outside until the
     * profile models the timing inside FSDP's backward; docs/PLANNER.md.
     */
    @Test
    void fsdp1LoraWithAndWithoutOffload() throws Exception {
        double gib = 1L << 30;
        StringBuilder table = new StringBuilder();
        for (String line : Files.readAllLines(Path.of("src/test/resources/planner/measured_fsdp1_h200.jsonl"), StandardCharsets.UTF_8)) {
            JsonNode m = Json.MAPPER.readTree(line);
            List<String> flags = new ArrayList<>(List.of(m.get("plan_flags").asText().split("\\s+")));
            flags.set(flags.indexOf("--model") + 1, "src/test/resources/planner/" + flags.get(flags.indexOf("--model") + 1));
            JsonNode d = plan(new Row(m.get("case").asText(), 0, 0, flags));
            double ra = d.get("max_memory_allocated_bytes").asDouble() / m.get("max_allocated_bytes").asDouble();
            double rr = d.get("max_memory_reserved_bytes").asDouble() / m.get("max_reserved_bytes").asDouble();
            table.append(String.format(Locale.ROOT, "%-20s allocated %6.2f GiB planned %6.2f (%.3f)   reserved %6.2f GiB planned %6.2f (%.3f)%n",
                    m.get("case").asText(), m.get("max_allocated_bytes").asDouble() / gib, d.get("max_memory_allocated_bytes").asDouble() / gib, ra,
                    m.get("max_reserved_bytes").asDouble() / gib, d.get("max_memory_reserved_bytes").asDouble() / gib, rr));
            boolean offload = m.get("case").asText().endsWith("-offload");
            boolean within = Math.abs(ra - 1) <= CalibrationTest.TOLERANCE && Math.abs(rr - 1) <= CalibrationTest.TOLERANCE;
            assertEquals(!offload, within, m.get("case").asText() + (offload ? " now fits: update the docs and this test" : " is outside ±15%") + "\n" + table);
        }
        System.out.print(table);
    }

    /**
     * scripts/measure_ddp_buckets.py: Llama 3.2 1B full fine-tuning in fp32, plain and under DistributedDataParallel over
     * two (emulated) workers. Both within ±15%, and the measured difference between them, DDP's bucket buffers, is the
     * planned {@code gradients.ddp_buckets} within 5%.
     */
    @Test
    void ddpBucketsAgainstMeasured() throws Exception {
        List<String> lines = Files.readAllLines(Path.of("src/test/resources/planner/measured_ddp_h200.jsonl"), StandardCharsets.UTF_8);
        assertEquals(2, lines.size());
        double[] measured = new double[2];
        JsonNode ddpPlan = null;
        for (int i = 0; i < 2; i++) {
            JsonNode m = Json.MAPPER.readTree(lines.get(i));
            List<String> flags = List.of(m.get("plan_flags").asText().split("\\s+"));
            JsonNode d = plan(new Row(m.get("case").asText(), 0, 0, flags));
            double ra = d.get("max_memory_allocated_bytes").asDouble() / m.get("max_allocated_bytes").asDouble();
            double rr = d.get("max_memory_reserved_bytes").asDouble() / m.get("max_reserved_bytes").asDouble();
            System.out.printf(Locale.ROOT, "%-32s allocated ratio %.3f, reserved ratio %.3f%n", m.get("case").asText(), ra, rr);
            assertTrue(Math.abs(ra - 1) <= CalibrationTest.TOLERANCE && Math.abs(rr - 1) <= CalibrationTest.TOLERANCE, m.get("case").asText());
            measured[i] = m.get("max_allocated_bytes").asDouble();
            if (flags.contains("ddp")) ddpPlan = DevelopmentSetTest.planJson("ddp", flags);
        }
        double buckets = 0;
        for (JsonNode c : ddpPlan.path("components")) if (c.path("name").asText().equals("gradients.ddp_buckets")) buckets = c.path("bytes").asDouble();
        assertEquals(1.0, (measured[1] - measured[0]) / buckets, 0.05, "measured DDP − plain against the planned buckets");
    }

    /**
     * scripts/measure_block_saved.py: what one transformers LlamaDecoderLayer (block-512.json, bf16 without autocast)
     * saves for backward per token, eager and under torch.compile, full fine-tuning and PEFT LoRA, summed over the
     * tensors autograd keeps (saved_tensors_hooks), measured on the CPU. The planner's per-block count plus the
     * attention's fp32 logsumexp must match within 0.5%, less the rotary cos/sin (computed once per forward and shared
     * by every layer, so not a per-block term). In the dropout case the CPU keeps an fp32 noise tensor per adapter
     * where CUDA's fused dropout keeps the 1-byte mask the planner counts: that case is compared with 3 more bytes per
     * adapter input element.
     */
    @Test
    void blockSavedTensorsAgainstMeasured() throws Exception {
        dev.llamafit.model.LlamaConfig c = dev.llamafit.io.ConfigJson.read(Path.of("src/test/resources/planner/block-512.json"));
        int compared = 0;
        for (JsonNode m : savedTensorRows(false)) {
            PytorchOptions o = savedTensorsCase(m);
            List<String> targets = o.loraTargets();
            Technique.Precision precision = o.precision();
            // Per block: the saved tensors per token, plus the attention's own: the fp32 logsumexp of SDPA's kernels,
            // or eager attention's H·T probabilities per token (fp32 softmax and its cast). On the CPU, SDPA runs fp32
            // with a flash kernel; on CUDA it has none and falls back to the math kernel (PytorchProfile.attentionKernel).
            PytorchOptions.Attention kernel = o.attention();
            double attention = kernel == PytorchOptions.Attention.EAGER ? PytorchProfile.eagerAttentionBytesPerSequence(c, o) / o.seqLen() : 4.0 * c.numHeads();
            double planned = PytorchProfile.blockBytesPerToken(c, o, kernel) + attention;
            double measured = m.get("saved_bytes_per_token").asDouble() - m.get("rotary_bytes_per_token").asDouble();
            boolean dropout = m.get("lora_dropout").asDouble() > 0;
            if (dropout) for (String t : targets) planned += 3.0 * dev.llamafit.model.LinearModule.byKey(t).orElseThrow().in(c);
            System.out.printf(Locale.ROOT, "%-28s %-16s measured %8.0f B/token  planned %8.0f  ratio %.3f%s%n", m.get("case").asText(), (precision == Technique.Precision.BF16 ? "autocast" : Technique.name(precision)) + " " + m.get("attention").asText(), measured, planned, planned / measured,
                    dropout ? "  (with the CPU's fp32 dropout noise)" : "");
            assertEquals(1.0, planned / measured, 0.005, m.get("case").asText());
            compared++;
        }
        assertEquals(13, compared);
    }

    /**
     * The options of one row of scripts/measure_block_saved.py: full fine-tuning or LoRA (the row's targets), its
     * precision (bf16-pure: the layer in bf16; bf16: in fp32 under bf16 autocast, a LoRA base loaded in fp32),
     * attention, checkpointing and torch.compile, HF stack on one GPU ({@link #savedTensorsCase}); the rows are the
     * block cases or the whole-model ones ({@link #savedTensorRows}).
     */
    static List<JsonNode> savedTensorRows(boolean wholeModel) throws java.io.IOException {
        List<JsonNode> rows = new ArrayList<>();
        for (String line : Files.readAllLines(Path.of("src/test/resources/planner/measured_block_saved_cpu.jsonl"), StandardCharsets.UTF_8)) {
            JsonNode m = Json.MAPPER.readTree(line);
            if (m.path("model").asBoolean() == wholeModel) rows.add(m);
        }
        return rows;
    }

    static PytorchOptions savedTensorsCase(JsonNode m) {
        List<String> targets = new ArrayList<>();
        m.get("lora_targets").forEach(t -> targets.add(t.asText()));
        Technique.Method method = targets.isEmpty() ? Technique.Method.FULL : Technique.Method.LORA;
        Technique.Precision precision = Technique.parse(Technique.Precision.class, "precision", m.get("precision").asText());
        Technique.BaseDtype base = precision.mixed() && method != Technique.Method.FULL ? Technique.BaseDtype.FP32 : null;
        return PytorchOptions.of(method, m.get("lora_r").asInt(), targets, m.get("lora_dropout").asDouble(), precision, base, Technique.Optimizer.ADAMW,
                m.path("gradient_checkpointing").asBoolean(), 1, m.get("batch").asInt(), m.get("seq").asInt(), 0, 1, PytorchOptions.Offload.NONE,
                m.get("attention").asText().equals("eager") ? PytorchOptions.Attention.EAGER : PytorchOptions.Attention.FLASH,
                PytorchOptions.Stack.HF, PytorchOptions.Sharding.DEEPSPEED, PytorchOptions.PytorchSettings.DEFAULTS.withCompiled(m.get("compiled").asBoolean()));
    }

    /**
     * The same script's whole-model cases: a 4-layer model of the same block (model-512x4.json) with its loss, full
     * fine-tuning or LoRA, with and without gradient checkpointing. What the forward saves must be the planner's
     * activations at the end of forward plus what the loss keeps for backward (its fp32 log-softmax and shifted
     * labels), within 0.5%: this checks the checkpointed block inputs, the final norm, the LM head's input and the
     * model-level tensors (token ids, rotary tables) around the per-block count above.
     */
    @Test
    void modelForwardSavedTensorsAgainstMeasured() throws Exception {
        dev.llamafit.model.LlamaConfig c = dev.llamafit.io.ConfigJson.read(Path.of("src/test/resources/planner/model-512x4.json"));
        int compared = 0;
        for (JsonNode m : savedTensorRows(true)) {
            PytorchOptions o = savedTensorsCase(m);
            double tokens = (double) o.batchSize() * o.seqLen();
            MemoryPlan plan = PytorchProfile.plan(c, o, GpuDevices.gpu("h200"));
            double activations = plan.component("activations").bytes(Phase.FORWARD);
            double planned = activations / tokens + 4.0 * c.vocabSize() + 8;
            double measured = m.get("saved_bytes_per_token").asDouble();
            System.out.printf(Locale.ROOT, "%-28s measured %9.0f B/token  planned %9.0f  ratio %.3f%n", m.get("case").asText(), measured, planned, planned / measured);
            assertEquals(1.0, planned / measured, 0.005, m.get("case").asText());
            compared++;
        }
        assertEquals(4, compared);
    }

    /**
     * scripts/measure_loss_saved.py: what one chunk of torchtune's chunked cross-entropy saves, eager and compiled, on
     * bf16 logits (CPU). Eager: the fp32 log-softmax output (4 B per logit), not the logits; compiled: the logits
     * themselves and two fp32 statistics per row. The planner's chunked-loss terms hold exactly these per logit and per
     * row: in backward after the recipe drops its logits (eager), and at the end of forward (compiled).
     */
    @Test
    void chunkedLossSavedTensorsAgainstMeasured() throws Exception {
        dev.llamafit.model.LlamaConfig c = dev.llamafit.io.ConfigJson.read(Path.of("src/test/resources/planner/model-512x4.json"));
        int compared = 0;
        for (String line : Files.readAllLines(Path.of("src/test/resources/planner/measured_loss_saved_cpu.jsonl"), StandardCharsets.UTF_8)) {
            JsonNode m = Json.MAPPER.readTree(line);
            boolean compiled = m.get("case").asText().equals("compiled");
            double perLogit = m.get("input_saved_bytes_per_logit").asDouble() + m.get("other_saved_bytes_per_logit").asDouble();
            double perRow = m.get("other_saved_bytes_per_row").asDouble();
            PytorchOptions o = PytorchOptions.of(Technique.Method.FULL, 0, List.of(), 0, Technique.Precision.BF16_PURE, null, Technique.Optimizer.ADAMW, true, 1, 2, 256,
                    0, 1, PytorchOptions.Offload.NONE, PytorchOptions.Attention.FLASH, PytorchOptions.Stack.TORCHTUNE, PytorchOptions.Sharding.DEEPSPEED,
                    PytorchOptions.PytorchSettings.DEFAULTS.withCompiled(compiled));
            double tokens = 2.0 * 256, nv = tokens * c.vocabSize();
            MemoryPlan plan = PytorchProfile.plan(c, o, GpuDevices.gpu("h200"));
            Component loss = plan.component("logits_and_loss");
            // Saved terms: compiled, everything the forward ends with; eager, what backward starts from less one chunk's temporaries.
            double planned = compiled ? loss.bytes(Phase.FORWARD) : loss.bytes(Phase.BACKWARD_HEAD) - (4 + 4 + 2) * nv / PytorchProfile.LOSS_CHUNKS;
            double measured = perLogit * nv + Math.round(perRow) * tokens;
            System.out.printf(Locale.ROOT, "chunked loss %-9s measured %.2f B/logit + %.0f B/row, planned %.0f B vs %.0f B (%.4f)%n",
                    m.get("case").asText(), perLogit, perRow, planned, measured, planned / measured);
            assertEquals(compiled ? 2.0 : 4.0, perLogit, 1e-9, "saved per logit, " + m.get("case").asText());
            assertEquals(1.0, planned / measured, 0.001, m.get("case").asText());
            compared++;
        }
        assertEquals(2, compared);
    }
}
