// The PyTorch/CUDA profile against published measurements (calibration_cases.csv), each in its own metric and unit.
package dev.llamafit.plan;

import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;

import org.apache.commons.csv.CSVFormat;
import org.apache.commons.csv.CSVParser;
import org.apache.commons.csv.CSVRecord;
import org.junit.jupiter.api.Test;

import dev.llamafit.model.Technique;
import dev.llamafit.plan.pytorch.GpuDevices;
import dev.llamafit.plan.pytorch.PytorchOptions;
import dev.llamafit.plan.pytorch.PytorchProfile;
import dev.llamafit.io.ModelPresets;
import dev.llamafit.model.LlamaConfig;
import dev.llamafit.plan.pytorch.PytorchOptions.Attention;
import dev.llamafit.model.Technique.BaseDtype;
import dev.llamafit.model.Technique.Method;
import dev.llamafit.plan.pytorch.PytorchOptions.Offload;
import dev.llamafit.model.Technique.Optimizer;
import dev.llamafit.model.Technique.Precision;
import dev.llamafit.plan.pytorch.PytorchOptions.Sharding;
import dev.llamafit.plan.pytorch.PytorchOptions.Stack;

/**
 * Every row of calibration_cases.csv predicted from the row's stated inputs (model, method, precision, batch, sequence,
 * parallelism, offload, stack) with no per-row constants, compared in the row's metric and unit. Tolerance ±15%
 * (issue 5). Rows the model cannot yet predict within it are listed in {@link #KNOWN_OUTSIDE} with the reason, printed,
 * and documented in docs/PLANNER.md; they are not silently dropped, and if one starts passing the test says so.
 */
class CalibrationTest {
    static final double TOLERANCE = 0.15;
    /** Rows outside the tolerance today, with why (see docs/PLANNER.md). */
    static final Map<String, String> KNOWN_OUTSIDE = Map.of(
            "peft-13", "FSDP1 + CPU param offload: 15.2 GB predicted; the no-offload twin peft-14 is 0.98, so ~5 GB that stays on the GPU with offload is not modelled (the held-out FSDP1 offload runs aa-13..19 read 0.75-0.89 too); "
                    + "the same recipe on a bf16 base, measured here with the other rank emulated, is over-predicted (MeasuredTest.fsdp1LoraWithAndWithoutOffload), "
                    + "and Answer.AI's bf16-base offload run aa-13 reads low too, so the gap comes with real ranks, not the 4-bit base",
            "tt-15", "infeasible as stated: at micro-batch 2 × 2048 the NF4 shards, the FSDP root unit and the checkpointed block inputs alone exceed 44.8 GB "
                    + "(statedShapeOfTt15ExceedsItsMeasurement); the shipped config's batch_size 1 gives 1.17");

    /**
     * Rows that do not exercise the planner's total: hf-bert-00 is the CUDA context alone, hf-bert-01 the context plus
     * BERT's fp32 weights (counted here, BERT is not a LLaMA), ql-01 the NF4 weights component alone. They check one
     * term each; they are reported apart and not counted as passes of the model.
     */
    static final Map<String, String> NOT_THE_TOTAL = Map.of(
            "hf-bert-00", "the CUDA context constant alone",
            "hf-bert-01", "context + BERT weights counted in this test, not by the planner",
            "ql-01", "the NF4 weights component alone, not the peak");

    record Row(String id, double measured, String unit, String metric) {}

    record Prediction(double value, Metric metric) {}

    /**
     * The PEFT rows ran TRL's SFTTrainer on transformers before torch 2.8, whose default optim was adamw_torch
     * (torch.optim.AdamW, foreach); torchtune's configs of 2024-09 set fused: True (the planner's default).
     */
    static final PytorchOptions.PytorchSettings PEFT_ERA = new PytorchOptions.PytorchSettings(false, false, true, false, null, PytorchOptions.OptimizerImpl.FOREACH, false, false, false);
    /** The PEFT QLoRA rows (March 2024) ran bitsandbytes 0.43.0, the first with quant_storage, whose 4-bit matmul saved its input. */
    static final PytorchOptions.PytorchSettings PEFT_ERA_BNB = new PytorchOptions.PytorchSettings(false, false, true, false, null, PytorchOptions.OptimizerImpl.FOREACH, false,
            PytorchOptions.PytorchSettings.bnbSavesInputs("0.43.0"), false);
    /** torchtune's 8B_full_single_device: paged 8-bit AdamW stepped in backward. */
    static final PytorchOptions.PytorchSettings LOW_MEMORY = new PytorchOptions.PytorchSettings(true, true, true, false, null, null, false, false, false);
    static final PytorchOptions.PytorchSettings DEFAULTS = PytorchOptions.PytorchSettings.DEFAULTS;

    /*
     * The PEFT guides' launch commands accumulate: --gradient_accumulation_steps 4 (peft-10, peft-12: the rows' grad_accum
     * column) and 2 (the QLoRA commands, peft-11, peft-13, peft-14); under FSDP, accelerate (0.28, before sync_each_batch)
     * accumulates inside no_sync().
     */

    /** PEFT examples/sft pass --lora_dropout 0.1; torchtune's configs of 2024-09 set lora_dropout: 0.0. */
    static final List<String> Q_V = List.of("q_proj", "v_proj");
    static final List<String> QKV = List.of("q_proj", "k_proj", "v_proj");

    static PytorchOptions opts(Method m, int r, List<String> targets, double dropout, Precision p, BaseDtype base, Optimizer opt, boolean gc, int b, int t,
                            int zero, int workers, Offload off, Attention att, Stack stack, Sharding sharding, PytorchOptions.PytorchSettings run) {
        return opts(m, r, targets, dropout, p, base, opt, gc, b, t, zero, workers, off, att, stack, sharding, run, 1);
    }

    /** As above, accumulating gradients over {@code accum} micro-steps. */
    static PytorchOptions opts(Method m, int r, List<String> targets, double dropout, Precision p, BaseDtype base, Optimizer opt, boolean gc, int b, int t,
                               int zero, int workers, Offload off, Attention att, Stack stack, Sharding sharding, PytorchOptions.PytorchSettings run, int accum) {
        return PytorchOptions.of(m, r, targets, dropout, p, base, opt, gc, 1, b, t, zero, workers, off, att, stack, sharding, run, accum);
    }

    /** The planner's value for a row, in bytes, and the metric it is read with. */
    static Prediction predict(String id) {
        LlamaConfig l2_70 = ModelPresets.load("llama-2-70b"), l31_8 = ModelPresets.load("llama-3.1-8b"),
                l31_70 = ModelPresets.load("llama-3.1-70b"), l31_405 = ModelPresets.load("llama-3.1-405b"), l1_7 = ModelPresets.load("llama-7b");
        Device h100 = GpuDevices.gpu("h100-80gb"), a100 = GpuDevices.gpu("a100-80gb"), a40 = GpuDevices.gpu("a100-40gb"), r4090 = GpuDevices.gpu("rtx4090");
        Device a6000 = GpuDevices.custom("rtx-a6000", 48L << 30);
        // CUDA 11.2 (the HF rows) loads every kernel image at start-up: no lazy loading.
        Device v100 = new Device("v100-16gb", 16L << 30, true, GpuDevices.EAGER_CONTEXT_BYTES, 1);
        List<String> all = dev.llamafit.model.LinearModule.keys();
        PytorchOptions o;
        LlamaConfig c;
        Device d;
        Metric metric;
        switch (id) {
            case "hf-bert-00" -> { return new Prediction(v100.contextBytes(), Metric.NVIDIA_SMI); }
            case "hf-bert-01" -> { return new Prediction(v100.contextBytes() + 4.0 * bertLargeParams(), Metric.NVIDIA_SMI); }
            case "peft-10" -> { c = l2_70; d = h100; metric = Metric.NVIDIA_SMI;
                o = opts(Method.LORA, 8, all, 0.1, Precision.BF16, BaseDtype.FP32, Optimizer.ADAMW, true, 8, 2048, 3, 8, Offload.NONE, Attention.FLASH, Stack.HF, Sharding.DEEPSPEED, PEFT_ERA, 4); }
            case "peft-11" -> { c = l2_70; d = a40; metric = Metric.NVIDIA_SMI;
                o = opts(Method.QLORA, 8, all, 0.1, Precision.BF16, BaseDtype.NF4, Optimizer.ADAMW, true, 2, 2048, 3, 2, Offload.NONE, Attention.FLASH, Stack.HF, Sharding.DEEPSPEED, PEFT_ERA_BNB, 2); }
            case "peft-12" -> { c = l2_70; d = h100; metric = Metric.NVIDIA_SMI;
                o = opts(Method.LORA, 8, all, 0.1, Precision.BF16, BaseDtype.FP32, Optimizer.ADAMW, true, 8, 2048, 3, 8, Offload.NONE, Attention.FLASH, Stack.HF, Sharding.FSDP, PEFT_ERA.withFsdp(false, true), 4); }
            case "peft-13" -> { c = l2_70; d = r4090; metric = Metric.NVIDIA_SMI;
                o = opts(Method.QLORA, 8, all, 0.1, Precision.BF16, BaseDtype.NF4, Optimizer.ADAMW, true, 2, 2048, 3, 2, Offload.CPU, Attention.FLASH, Stack.HF, Sharding.FSDP, PEFT_ERA_BNB.withFsdp(false, true), 2); }
            case "peft-14" -> { c = l2_70; d = a40; metric = Metric.NVIDIA_SMI;
                o = opts(Method.QLORA, 8, all, 0.1, Precision.BF16, BaseDtype.NF4, Optimizer.ADAMW, true, 2, 2048, 3, 2, Offload.NONE, Attention.FLASH, Stack.HF, Sharding.FSDP, PEFT_ERA_BNB.withFsdp(false, true), 2); }
            case "tt-08" -> { c = l31_8; d = r4090; metric = Metric.ALLOCATED;
                o = opts(Method.FULL, 0, List.of(), 0, Precision.BF16_PURE, null, Optimizer.ADAMW8BIT, true, 2, 2048, 0, 1, Offload.NONE, Attention.FLASH, Stack.TORCHTUNE, Sharding.FSDP, LOW_MEMORY); }
            case "tt-09" -> { c = l31_8; d = a6000; metric = Metric.ALLOCATED;
                o = opts(Method.FULL, 0, List.of(), 0, Precision.BF16_PURE, null, Optimizer.ADAMW8BIT, false, 2, 2048, 0, 1, Offload.NONE, Attention.FLASH, Stack.TORCHTUNE, Sharding.FSDP, LOW_MEMORY); }
            case "tt-10" -> { c = l31_8; d = r4090; metric = Metric.ALLOCATED;
                o = opts(Method.LORA, 8, Q_V, 0, Precision.BF16_PURE, null, Optimizer.ADAMW, true, 2, 2048, 0, 1, Offload.NONE, Attention.FLASH, Stack.TORCHTUNE, Sharding.FSDP, DEFAULTS); }
            case "tt-11" -> { c = l31_8; d = a6000; metric = Metric.ALLOCATED;
                o = opts(Method.LORA, 8, Q_V, 0, Precision.BF16_PURE, null, Optimizer.ADAMW, false, 2, 2048, 0, 1, Offload.NONE, Attention.FLASH, Stack.TORCHTUNE, Sharding.FSDP, DEFAULTS); }
            case "tt-12" -> { c = l31_8; d = r4090; metric = Metric.ALLOCATED;
                o = opts(Method.QLORA, 8, all, 0, Precision.BF16_PURE, BaseDtype.NF4, Optimizer.ADAMW, true, 2, 2048, 0, 1, Offload.NONE, Attention.FLASH, Stack.TORCHTUNE, Sharding.FSDP, DEFAULTS); }
            case "tt-13" -> { c = l31_70; d = a100; metric = Metric.ALLOCATED;
                // 70B_full.yaml: custom_sharded_layers: ['tok_embeddings', 'output'] wraps both as units of their own.
                o = opts(Method.FULL, 0, List.of(), 0, Precision.BF16_PURE, null, Optimizer.ADAMW, true, 2, 2048, 3, 8, Offload.CPU, Attention.FLASH, Stack.TORCHTUNE, Sharding.FSDP,
                        new PytorchOptions.PytorchSettings(true, false, true, true, null, null, false, false, false)); }
            case "tt-14" -> { c = l31_70; d = a100; metric = Metric.ALLOCATED;
                o = opts(Method.LORA, 16, QKV, 0, Precision.BF16_PURE, null, Optimizer.ADAMW, true, 2, 2048, 3, 8, Offload.NONE, Attention.FLASH, Stack.TORCHTUNE, Sharding.FSDP, DEFAULTS); }
            case "tt-15" -> { c = l31_405; d = a100; metric = Metric.ALLOCATED;
                // 405B_qlora.yaml (unlike the other Llama 3.1 configs of that commit) uses a plain torch.nn.CrossEntropyLoss.
                o = opts(Method.QLORA, 16, all, 0, Precision.BF16_PURE, BaseDtype.NF4, Optimizer.ADAMW, true, 2, 2048, 3, 8, Offload.NONE, Attention.FLASH, Stack.TORCHTUNE, Sharding.FSDP,
                        new PytorchOptions.PytorchSettings(false, false, true, false, PytorchOptions.Loss.FULL, null, false, false, false)); }
            case "ql-01" -> {
                // The row states components; the first is the 4-bit base model (weights component alone).
                o = opts(Method.QLORA, 64, all, 0.1, Precision.BF16, BaseDtype.NF4, Optimizer.ADAMW, false, 1, 512, 0, 1, Offload.NONE, Attention.FLASH, Stack.HF, Sharding.DEEPSPEED, DEFAULTS);
                MemoryPlan p = PytorchProfile.plan(l1_7, o, a100);
                long w = p.component("weights").bytes();
                return new Prediction(w, Metric.ALLOCATED);
            }
            default -> throw new IllegalArgumentException("no inputs for row " + id);
        }
        // The torchtune README's table: "all the below numbers are provided for ... torch compile enabled".
        if (id.startsWith("tt-")) o = o.withPytorch(o.pytorch().withCompiled(true));
        MemoryPlan p = PytorchProfile.plan(c, o, d);
        return new Prediction(p.peak(Column.DEVICE, metric), metric);
    }

    /** bert-large-uncased + a 2-label head, counted from its architecture (BERT is not a LLaMA: no config preset). */
    static double bertLargeParams() {
        long h = 1024, f = 4096, v = 30522, layers = 24, pos = 512;
        long emb = v * h + pos * h + 2 * h + 2 * h;
        long layer = 4 * (h * h + h) + (h * f + f) + (f * h + h) + 2 * 2 * h;
        long pooler = h * h + h, classifier = 2 * h + 2;
        return emb + layers * layer + pooler + classifier;
    }

    static double toUnit(double bytes, String unit) {
        return switch (unit) {
            case "B" -> bytes;
            case "MiB" -> bytes / (1 << 20);
            case "GiB" -> bytes / (1L << 30);
            case "GB" -> bytes / 1e9;
            case "MB" -> bytes / 1e6;
            default -> throw new IllegalArgumentException("unit " + unit);
        };
    }

    /**
     * tt-15 cannot have peaked at 44.8 GB at the shape the row states (405B QLoRA, micro-batch 2 × 2048, FSDP over 8 A100s,
     * activation checkpointing): three terms that such a step holds at once already exceed it, counted here from the
     * config alone, independently of the planner: each GPU's NF4 shard (4 bits + double-quantised block constants for the
     * linear weights, bf16 for the rest, 1/8 of it), the root unit (embedding + LM head in bf16), which FSDP2 does not
     * reshard after forward, and one bf16 block input per layer kept by checkpointing. The row is therefore listed in
     * KNOWN_OUTSIDE rather than predicted at a batch chosen to match.
     */
    @Test
    void statedShapeOfTt15ExceedsItsMeasurement() {
        LlamaConfig c = ModelPresets.load("llama-3.1-405b");
        long h = c.hiddenSize(), v = c.vocabSize();
        long perLayerLinear = h * c.qDim() + 2 * h * c.kvDim() + c.qDim() * h + 3 * h * c.intermediateSize();
        double linear = (double) perLayerLinear * c.numLayers();
        double nf4 = 0.5 + (1 + 4.0 / 256) / 64;
        double shard = (linear * nf4 + 2.0 * v * h * 2) / 8;
        double root = 2.0 * v * h * 2;
        double checkpoints = (double) c.numLayers() * 2 * 2048 * h * 2;
        double lowerBound = shard + root + checkpoints;
        assertTrue(lowerBound > 44.8e9 && lowerBound > 44.8 * (1L << 30),
                String.format(Locale.ROOT, "shard %.1f GB + root %.1f GB + checkpoints %.1f GB = %.1f GB", shard / 1e9, root / 1e9, checkpoints / 1e9, lowerBound / 1e9));
        double planned = PytorchProfile.plan(c, opts(Method.QLORA, 16, dev.llamafit.model.LinearModule.keys(), 0, Precision.BF16_PURE, BaseDtype.NF4, Optimizer.ADAMW, true, 2, 2048,
                3, 8, Offload.NONE, Attention.FLASH, Stack.TORCHTUNE, Sharding.FSDP, DEFAULTS), GpuDevices.gpu("a100-80gb")).peak(Column.DEVICE, Metric.ALLOCATED);
        assertTrue(planned >= lowerBound, "the plan holds at least the certain terms: " + planned + " < " + lowerBound);
    }

    @Test
    void publishedMeasurementsWithinTolerance() throws IOException {
        List<Row> rows = rows();
        assertTrue(rows.size() >= 16, "expected 16 calibration rows, read " + rows.size());
        StringBuilder table = new StringBuilder(String.format(Locale.ROOT, "%-11s %10s %10s %6s %-5s %-11s %s%n",
                "case", "measured", "predicted", "ratio", "unit", "metric", "status"));
        List<String> failures = new ArrayList<>(), unexpectedPasses = new ArrayList<>();
        int totals = 0, totalsOk = 0, terms = 0;
        for (Row r : rows) {
            Prediction p = predict(r.id);
            double predicted = toUnit(p.value, r.unit);
            double ratio = predicted / r.measured;
            boolean ok = Math.abs(ratio - 1) <= TOLERANCE;
            boolean term = NOT_THE_TOTAL.containsKey(r.id);
            if (term) terms++;
            else { totals++; if (ok) totalsOk++; }
            String status = term ? (ok ? "term ok" : "term FAIL") + " (not the total: " + NOT_THE_TOTAL.get(r.id) + ")"
                    : ok ? "ok" : KNOWN_OUTSIDE.containsKey(r.id) ? "KNOWN OUTSIDE: " + KNOWN_OUTSIDE.get(r.id) : "FAIL";
            table.append(String.format(Locale.ROOT, "%-11s %10.1f %10.1f %6.3f %-5s %-11s %s%n", r.id, r.measured, predicted, ratio, r.unit,
                    p.metric.name().toLowerCase(Locale.ROOT), status));
            if (!ok && !KNOWN_OUTSIDE.containsKey(r.id)) failures.add(r.id);
            if (ok && KNOWN_OUTSIDE.containsKey(r.id)) unexpectedPasses.add(r.id);
        }
        table.append(String.format(Locale.ROOT, "%d of %d rows that exercise the planner's total within ±%d%%; %d rows check one term only (not counted)%n",
                totalsOk, totals, (int) (TOLERANCE * 100), terms));
        System.out.print(table);
        assertTrue(failures.isEmpty(), "rows outside ±" + (int) (TOLERANCE * 100) + "%: " + failures + "\n" + table);
        assertTrue(unexpectedPasses.isEmpty(), "rows listed as outside now pass; remove them from KNOWN_OUTSIDE: " + unexpectedPasses);
    }

    static List<Row> rows() throws IOException {
        List<Row> out = new ArrayList<>();
        // Read from the shared data folder (never copied into the project): skipped for users without it, required in CI.
        java.nio.file.Path csvFile = dev.llamafit.testing.SharedData.require("planner/calibration_cases.csv");
        for (Map<String, String> m : readCsv(csvFile))
            out.add(new Row(m.get("case_id"), measured(m.get("measured_value")), m.get("unit"), m.get("metric")));
        return out;
    }

    /** "64" -> 64; "72-80" (a range read off a screenshot) -> its midpoint; "5048 (4-bit base); …" -> the first figure. */
    static double measured(String v) {
        java.util.regex.Matcher m = java.util.regex.Pattern.compile("^\\s*([0-9.]+)(?:-([0-9.]+))?").matcher(v);
        if (!m.find()) throw new IllegalArgumentException("unreadable measured value " + v);
        double lo = Double.parseDouble(m.group(1));
        return m.group(2) == null ? lo : (lo + Double.parseDouble(m.group(2))) / 2;
    }

    /**
     * The records of a CSV file with a header row, each as column → value (missing trailing cells empty); lines starting
     * with '#' are comments.
     */
    static List<Map<String, String>> readCsv(java.nio.file.Path file) throws IOException {
        CSVFormat format = CSVFormat.DEFAULT.builder().setHeader().setSkipHeaderRecord(true).setCommentMarker('#')
                .setIgnoreEmptyLines(true).setAllowMissingColumnNames(true).get();
        List<Map<String, String>> out = new ArrayList<>();
        try (java.io.Reader in = java.nio.file.Files.newBufferedReader(file, StandardCharsets.UTF_8); CSVParser parser = format.parse(in)) {
            for (CSVRecord r : parser) {
                Map<String, String> m = new LinkedHashMap<>();
                for (String column : parser.getHeaderNames()) m.put(column, r.isSet(column) ? r.get(column) : "");
                out.add(m);
            }
        }
        return out;
    }
}
