// Quantised bases through the command line: convert --quantize writes bitsandbytes folders that reload to the same model,
// quantise-on-load keeps a real model's eval loss, and bad quantised folders and flag mixes are bad input.
package dev.llamafit.cli;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import com.fasterxml.jackson.databind.JsonNode;

import dev.llamafit.io.Json;
import dev.llamafit.io.ModelFolder;
import dev.llamafit.io.safetensors.SafetensorsFile;
import dev.llamafit.io.safetensors.SafetensorsWriter;
import dev.llamafit.kernels.KernelBackends;
import dev.llamafit.memory.MemoryLedger;
import dev.llamafit.model.LlamaModel;
import dev.llamafit.model.Technique;
import dev.llamafit.quant.Quantization;
import dev.llamafit.tensor.DType;
import dev.llamafit.tensor.Shape;
import dev.llamafit.tensor.Tensor;
import dev.llamafit.testing.SharedData;

class QuantizedBaseTest {
    @TempDir Path tmp;

    private static final String Q = "model.layers.0.self_attn.q_proj";

    private Path convert(Path model, String name, String... flags) {
        Path out = tmp.resolve(name);
        List<String> args = new ArrayList<>(List.of("convert", "--from", "hf", "--input", model.toString(), "--output", out.toString()));
        args.addAll(List.of(flags));
        BadInputTest.Run r = BadInputTest.run(args.toArray(String[]::new));
        assertEquals(0, r.code(), r.err() + r.out());
        return out;
    }

    /** All logits of a fixed batch through the inference model. */
    private static float[] logits(Path model, Quantization q) {
        MemoryLedger ledger = new MemoryLedger();
        try (ModelFolder f = ModelFolder.open(model, ledger, KernelBackends.get(), null, q);
             LlamaModel m = new LlamaModel(f.config(), f.weights(), KernelBackends.get(), ledger, Technique.Attention.EAGER)) {
            int[][] ids = {{1, 400, 20, 77, 2000, 12, 9, 255, 2047, 5}, {1, 2, 3, 4, 5, 6, 7, 8, 9, 10}};
            return m.forward(ids, null, LlamaModel.Logits.ALL).toFloatArray();
        }
    }

    @Test
    void convertWritesBitsandbytesFoldersThatReloadToTheSameLogits() throws IOException {
        Path model = SharedData.require("models/tinystories-656k");
        Path nf4 = convert(model, "nf4", "--quantize", "nf4");
        Path nf4Plain = convert(model, "nf4-plain", "--quantize", "nf4", "--no-double-quant");
        Path int8 = convert(model, "int8", "--quantize", "int8");
        // The keys, dtypes and shapes transformers writes for bitsandbytes (docs/QUANTISATION.md).
        try (SafetensorsFile f = SafetensorsFile.open(nf4.resolve("model.safetensors"), new MemoryLedger())) {
            assertEquals(DType.U8, f.find(Q + ".weight").orElseThrow().dtype());
            assertEquals(Shape.of(128 * 128 / 2, 1), f.find(Q + ".weight").orElseThrow().shape());
            assertEquals(DType.U8, f.find(Q + ".weight.absmax").orElseThrow().dtype());
            assertEquals(Shape.of(16), f.find(Q + ".weight.quant_map").orElseThrow().shape());
            assertEquals(Shape.of(1), f.find(Q + ".weight.nested_absmax").orElseThrow().shape());
            assertEquals(Shape.of(256), f.find(Q + ".weight.nested_quant_map").orElseThrow().shape());
            String state = new String(f.find(Q + ".weight.quant_state.bitsandbytes__nf4").orElseThrow().segment()
                    .toArray(java.lang.foreign.ValueLayout.JAVA_BYTE), StandardCharsets.UTF_8);
            assertTrue(state.startsWith("{\"quant_type\": \"nf4\", \"blocksize\": 64, \"dtype\": \"float32\", \"shape\": [128, 128]"), state);
            assertEquals(DType.F32, f.find("model.embed_tokens.weight").orElseThrow().dtype(),
                    "the embedding stays as stored");
        }
        try (SafetensorsFile f = SafetensorsFile.open(nf4Plain.resolve("model.safetensors"), new MemoryLedger())) {
            assertEquals(DType.F32, f.find(Q + ".weight.absmax").orElseThrow().dtype());
            assertTrue(f.find(Q + ".weight.nested_absmax").isEmpty());
        }
        try (SafetensorsFile f = SafetensorsFile.open(int8.resolve("model.safetensors"), new MemoryLedger())) {
            assertEquals(DType.I8, f.find(Q + ".weight").orElseThrow().dtype());
            assertEquals(Shape.of(128), f.find(Q + ".SCB").orElseThrow().shape());
            assertEquals(DType.U8, f.find(Q + ".weight_format").orElseThrow().dtype());
        }
        JsonNode cfg = Json.read(nf4.resolve("config.json")).get("quantization_config");
        assertEquals("bitsandbytes", cfg.get("quant_method").asText());
        assertTrue(cfg.get("load_in_4bit").asBoolean() && cfg.get("bnb_4bit_use_double_quant").asBoolean());
        assertEquals("nf4", cfg.get("bnb_4bit_quant_type").asText());
        assertTrue(Json.read(int8.resolve("config.json")).get("quantization_config").get("load_in_8bit").asBoolean());

        // Reloaded, each folder is the model quantised on load: the same logits, bit for bit.
        assertArrayEquals(logits(model, Quantization.nf4(true)), logits(nf4, null));
        assertArrayEquals(logits(model, Quantization.nf4(false)), logits(nf4Plain, null));
        assertArrayEquals(logits(model, Quantization.int8(6.0)), logits(int8, null));
        // and the folder's own quantisation is the one named again (int8's threshold may be changed at load).
        assertArrayEquals(logits(model, Quantization.int8(0)), logits(int8, Quantization.int8(0)));
    }

    @Test
    void aRealModelKeepsItsEvalLossOnTextItWasNotTrainedOn() throws IOException {
        // tinystories-656k was trained on TinyStories; a slice of Emma is text it never saw.
        Path model = SharedData.require("models/tinystories-656k");
        Path text = tmp.resolve("emma.txt");
        Files.write(text, java.util.Arrays.copyOf(Files.readAllBytes(SharedData.require("datasets/text/austen_emma.txt")), 20_000));
        String[] ev = {"eval", "--model", model.toString(), "--data", text.toString(), "--seq-len", "128", "--json"};
        double fp32 = DtypeFlagsTest.json(ev).get("loss").asDouble();
        double int8 = DtypeFlagsTest.json(DtypeFlagsTest.concat(ev, "--base-dtype", "int8")).get("loss").asDouble();
        double nf4 = DtypeFlagsTest.json(DtypeFlagsTest.concat(ev, "--base-dtype", "nf4")).get("loss").asDouble();
        assertTrue(Math.abs(int8 - fp32) / fp32 <= 0.01, "int8 " + int8 + " vs fp32 " + fp32);
        assertTrue(Math.abs(nf4 - fp32) / fp32 <= 0.05, "nf4 " + nf4 + " vs fp32 " + fp32);
        assertTrue(nf4 != fp32 && int8 != fp32, "the bases were quantised");
    }

    @Test
    void badQuantisedFoldersAndFlagMixesAreBadInput() throws IOException {
        Path model = SharedData.require("models/tinystories-656k");
        Path nf4 = convert(model, "nf4", "--quantize", "nf4");
        String data = SharedData.require("datasets/text/tinystories_sample.txt").toString();
        // A quantised folder missing one of a layer's tensors, or with a damaged quant_state.
        Path missing = rewrite(nf4, "missing", Map.of(Q + ".weight.nested_absmax", ""));
        Path damaged = rewrite(nf4, "damaged", Map.of(Q + ".weight.quant_state.bitsandbytes__nf4", "{\"quant_type\": \"fp4\"}"));
        expect(2, "missing tensor " + Q + ".weight.nested_absmax", "eval", "--model", missing.toString(), "--data", data);
        expect(2, "does not describe an nf4 quantisation", "eval", "--model", damaged.toString(), "--data", data);
        expect(2, "model.safetensors", "eval", "--model", damaged.toString(), "--data", data);
        // Flag mixes.
        expect(2, "quantised as nf4", "eval", "--model", nf4.toString(), "--data", data, "--base-dtype", "int8");
        expect(2, "--int8-threshold needs --base-dtype int8", "eval", "--model", model.toString(), "--data", data, "--int8-threshold", "3");
        expect(2, "--base-dtype takes int8 or nf4", "eval", "--model", model.toString(), "--data", data, "--base-dtype", "bf16");
        expect(2, "--adapter merges", "generate", "--model", nf4.toString(), "--adapter", tmp.toString(), "--max-new-tokens", "1");
        expect(2, "train adapters on it", "train", "--model", nf4.toString(), "--data", data, "--output", tmp.resolve("run").toString(), "--steps", "1");
        expect(2, "--method qlora means an nf4 base", "train", "--model", model.toString(), "--data", data, "--output",
                tmp.resolve("run2").toString(), "--steps", "1", "--method", "qlora", "--base-dtype", "int8");
        expect(2, "quantised already", "convert", "--from", "hf", "--input", nf4.toString(), "--output", tmp.resolve("again").toString(),
                "--quantize", "int8");
    }

    @Test
    void anInt8FolderWithoutItsFormatBytesLoadsAsRowLayout() throws IOException {
        // transformers may save Linear8bitLt without weight_format; bitsandbytes accepts only the row layout (0).
        Path model = SharedData.require("models/tinystories-656k");
        Path int8 = convert(model, "int8", "--quantize", "int8");
        Map<String, String> drop = new java.util.HashMap<>(), bad = new java.util.HashMap<>();
        for (int l = 0; l < 2; l++)
            for (String m : List.of("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj", "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"))
                drop.put("model.layers." + l + "." + m + ".weight_format", "");
        bad.put(Q + ".weight_format", "\u0001");
        Path without = rewrite(int8, "without", drop);
        assertArrayEquals(logits(int8, null), logits(without, null));
        expect(2, "only the row layout", "generate", "--model", rewrite(int8, "col", bad).toString(), "--max-new-tokens", "1");
    }

    private static void expect(int code, String part, String... args) {
        BadInputTest.Run r = BadInputTest.run(args);
        assertEquals(code, r.code(), String.join(" ", args) + "\n" + r.err() + r.out());
        assertTrue(r.err().contains(part), "expected '" + part + "' in: " + r.err());
    }

    /** A copy of {@code dir} whose model.safetensors drops (value "") or replaces (UTF-8 bytes) some tensors. */
    private Path rewrite(Path dir, String name, Map<String, String> changes) throws IOException {
        Path out = tmp.resolve(name);
        Files.createDirectories(out);
        for (Path p : Files.list(dir).toList()) if (!p.getFileName().toString().equals("model.safetensors")) Files.copy(p, out.resolve(p.getFileName()));
        try (SafetensorsFile f = SafetensorsFile.open(dir.resolve("model.safetensors"), new MemoryLedger())) {
            List<Tensor> keep = new ArrayList<>();
            for (String n : f.names()) {
                String c = changes.get(n);
                if (c == null) keep.add(f.find(n).orElseThrow());
                else if (!c.isEmpty()) {
                    byte[] b = c.getBytes(StandardCharsets.UTF_8);
                    keep.add(new Tensor(n, DType.U8, Shape.of(b.length), java.lang.foreign.MemorySegment.ofArray(b)));
                }
            }
            SafetensorsWriter.write(out.resolve("model.safetensors"), keep, Map.of("format", "pt"));
        }
        return out;
    }
}
