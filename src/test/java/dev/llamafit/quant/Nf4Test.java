// NF4 codes, absmax and double quantisation equal scripts/make_nf4_fixtures.py's bit for bit; dequantisation errors stay in bounds.
package dev.llamafit.quant;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Iterator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.TreeSet;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;

import dev.llamafit.memory.MemoryLedger;
import dev.llamafit.tensor.DType;
import dev.llamafit.tensor.Shape;
import dev.llamafit.tensor.Tensor;
import org.junit.jupiter.api.Test;

class Nf4Test {
    static final Path FIXTURES = Path.of("src/test/resources/quant");
    static final Path MODEL = Path.of("../shared/models/tinystories-656k/model.safetensors");
    /** Half the widest gap between neighbouring NF4 levels (−1 to −0.6962): the worst rounding of a scaled value. */
    static final double NF4_HALF_GAP = (1 - 0.6961928009986877) / 2;
    /** Half the widest gap of the signed dynamic map (its top decade, steps of 0.9/64): the worst scale rounding. */
    static final double DYNAMIC_HALF_GAP = 0.9 / 64 / 2;

    /** All tensors of a safetensors file (any dtype this engine names), over heap memory; a test-side reader for U8. */
    static Map<String, Tensor> read(Path file) throws IOException {
        byte[] all = Files.readAllBytes(file);
        long n = ByteBuffer.wrap(all, 0, 8).order(ByteOrder.LITTLE_ENDIAN).getLong();
        JsonNode header = new ObjectMapper().readTree(new String(all, 8, (int) n, StandardCharsets.UTF_8));
        Map<String, Tensor> out = new LinkedHashMap<>();
        for (Iterator<Map.Entry<String, JsonNode>> it = header.fields(); it.hasNext(); ) {
            Map.Entry<String, JsonNode> e = it.next();
            if (e.getKey().equals("__metadata__")) continue;
            JsonNode info = e.getValue();
            long[] shape = new long[info.get("shape").size()];
            for (int i = 0; i < shape.length; i++) shape[i] = info.get("shape").get(i).asLong();
            int from = 8 + (int) n + info.get("data_offsets").get(0).asInt(), to = 8 + (int) n + info.get("data_offsets").get(1).asInt();
            MemorySegment seg = Arena.ofAuto().allocate(Math.max(1, to - from), 64).asSlice(0, to - from);
            MemorySegment.copy(MemorySegment.ofArray(all), from, seg, 0, to - from);
            DType type = DType.fromSafetensors(info.get("dtype").asText()).orElseThrow();
            out.put(e.getKey(), new Tensor(e.getKey(), type, Shape.of(shape), seg));
        }
        return out;
    }

    static final List<String> CASES = List.of("edges_f32", "random_f32", "random_bf16", "random_f16",
            "tinystories_l0_k_proj", "tinystories_l1_o_proj", "tinystories_l1_gate_proj");

    static Tensor input(Map<String, Tensor> fixture, String name) throws IOException {
        if (fixture.containsKey("input")) return fixture.get("input");
        String tensor = switch (name) {
            case "tinystories_l0_k_proj" -> "model.layers.0.self_attn.k_proj.weight";
            case "tinystories_l1_o_proj" -> "model.layers.1.self_attn.o_proj.weight";
            case "tinystories_l1_gate_proj" -> "model.layers.1.mlp.gate_proj.weight";
            default -> throw new AssertionError(name);
        };
        return read(MODEL).get(tensor);
    }

    @Test
    void codesAbsmaxAndDoubleQuantisationEqualTheReferenceBitForBit() throws IOException {
        MemoryLedger ledger = new MemoryLedger();
        for (String name : CASES) {
            Map<String, Tensor> fixture = read(FIXTURES.resolve("nf4_" + name + ".safetensors"));
            Tensor w = input(fixture, name);
            for (String prefix : new String[] {"plain", "dq"}) {
                Map<String, Tensor> ours = Nf4.quantize(w, prefix.equals("dq"), ledger, prefix);
                TreeSet<String> expectedKeys = new TreeSet<>();
                for (String k : fixture.keySet()) if (k.startsWith(prefix + ".weight")) expectedKeys.add(k);
                assertEquals(expectedKeys, new TreeSet<>(ours.keySet()), name + " " + prefix + " keys");
                for (String k : expectedKeys) {
                    Tensor e = fixture.get(k), o = ours.get(k);
                    String what = name + " " + k;
                    assertEquals(e.dtype(), o.dtype(), what + " dtype");
                    assertEquals(e.shape(), o.shape(), what + " shape");
                    if (k.endsWith(Nf4.QUANT_STATE))
                        assertEquals(utf8(e), utf8(o), what);
                    byte[] eb = e.segment().toArray(ValueLayout.JAVA_BYTE), ob = o.segment().toArray(ValueLayout.JAVA_BYTE);
                    for (int i = 0; i < eb.length; i++) if (eb[i] != ob[i]) throw new AssertionError(what + ": byte " + i + " is " + ob[i] + ", reference " + eb[i]);
                }
                checkDequantisation(name + " " + prefix, w, ours, prefix + ".weight", fixture.get(prefix + ".dequantized"));
                ours.values().forEach(Tensor::close);
            }
        }
        assertEquals(0, ledger.totalCurrentBytes(), "every tensor allocated through the ledger was freed");
    }

    /** Error bounds for every case; bit equality with the reference's dequantised weight where the fixture has it. */
    static void checkDequantisation(String what, Tensor w, Map<String, Tensor> q, String key, Tensor expected) {
        Nf4Weight nw = Nf4Weight.of(q, key);
        long n = w.elements();
        MemorySegment deq = Arena.ofAuto().allocate(n * 4, 64);
        nw.dequantize(deq);
        if (expected != null)
            for (long i = 0; i < n; i++)
                assertEquals(Float.floatToRawIntBits(expected.getFloat(i)), Float.floatToRawIntBits(deq.getAtIndex(Tensor.F32_LE, i)),
                        what + ": dequantised element " + i);
        Tensor nested = q.get(key + ".nested_absmax");
        for (long b = 0; b * Nf4.BLOCK < n; b++) {
            float amax = 0;
            for (long i = b * Nf4.BLOCK; i < Math.min(n, (b + 1) * Nf4.BLOCK); i++) amax = Math.max(amax, Math.abs(w.getFloat(i)));
            float scale = nw.scale(b);
            double scaleErr = Math.abs(scale - amax);
            if (nested == null) assertEquals(amax, scale, what + ": block " + b + " keeps its absmax exactly");
            else assertTrue(scaleErr <= DYNAMIC_HALF_GAP * nested.getFloat(b / Nf4.NESTED_BLOCK) * 1.0001 + 1e-7,
                    what + ": block " + b + " scale " + scale + " against absmax " + amax);
            for (long i = b * Nf4.BLOCK; i < Math.min(n, (b + 1) * Nf4.BLOCK); i++) {
                double err = Math.abs(deq.getAtIndex(Tensor.F32_LE, i) - w.getFloat(i));
                assertTrue(err <= NF4_HALF_GAP * amax * 1.0001 + scaleErr + 1e-7, what + ": element " + i + " error " + err + ", absmax " + amax);
            }
        }
    }

    static String utf8(Tensor t) { return new String(t.segment().toArray(ValueLayout.JAVA_BYTE), StandardCharsets.UTF_8); }

    @Test
    void firstElementIsTheHighNibbleAndAnOddTailPadsWithZero() {
        MemoryLedger ledger = new MemoryLedger();
        Tensor w = new Tensor("w", DType.F32, Shape.of(3), MemorySegment.ofArray(new float[] {-1f, 1f, 0.5f}));
        Map<String, Tensor> q = Nf4.quantize(w, false, ledger, "m");
        // -1 and 1 are codes 0 and 15; 0.5 is nearest 0.4407 (code 12); the pad is 0.0 (code 7).
        assertArrayEquals(new byte[] {0x0F, (byte) 0xC7}, q.get("m.weight").segment().toArray(ValueLayout.JAVA_BYTE));
        assertEquals(Shape.of(2, 1), q.get("m.weight").shape());
        assertEquals("{\"quant_type\": \"nf4\", \"blocksize\": 64, \"dtype\": \"float32\", \"shape\": [3]}", utf8(q.get("m.weight" + Nf4.QUANT_STATE)));
        q.values().forEach(Tensor::close);
    }

    @Test
    void levelsAreQloraAndTheNestedMapIsTheSignedDynamicMap() throws IOException {
        Map<String, Tensor> f = read(FIXTURES.resolve("nf4_random_f32.safetensors"));
        assertArrayEquals(f.get("dq.weight.quant_map").toFloatArray(), Nf4.levels());
        assertArrayEquals(f.get("dq.weight.nested_quant_map").toFloatArray(), DynamicMap.signed());
        assertEquals(0f, Nf4.levels()[7]);
    }

    @Test
    void offsetsAreWrittenAsPythonWritesFloats() {
        // Expected strings printed by Python 3's repr (what json.dumps writes).
        double[] v = {0.05618889629840851, 1e-05, 1.5e-05, 0.0001, 0.00012345, 123.0, 1e16, 1.2345678e16, 1234567890123456.0, -2.5e-7, 0.1, 3.0000001192092896, 100.0, 0.0};
        String[] py = {"0.05618889629840851", "1e-05", "1.5e-05", "0.0001", "0.00012345", "123.0", "1e+16", "1.2345678e+16", "1234567890123456.0", "-2.5e-07", "0.1", "3.0000001192092896", "100.0", "0.0"};
        for (int i = 0; i < v.length; i++) assertEquals(py[i], Nf4.pythonFloat(v[i]), "repr of " + v[i]);
    }

    @Test
    void badInputsAreRefusedWithTheirNames() {
        MemoryLedger ledger = new MemoryLedger();
        Tensor nan = new Tensor("w", DType.F32, Shape.of(2, 2), MemorySegment.ofArray(new float[] {0f, Float.NaN, 1f, 2f}));
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> Nf4.quantize(nan, true, ledger, "m"));
        assertTrue(e.getMessage().contains("element 1"), e.getMessage());
        assertEquals(0, ledger.totalCurrentBytes(), "a refused weight leaves nothing allocated");
        Tensor i8 = new Tensor("w", DType.I8, Shape.of(4), MemorySegment.ofArray(new byte[4]));
        assertThrows(IllegalArgumentException.class, () -> Nf4.quantize(i8, false, ledger, "m"));

        Tensor w = new Tensor("w", DType.F32, Shape.of(4, 16), MemorySegment.ofArray(new float[64]));
        Map<String, Tensor> q = new LinkedHashMap<>(Nf4.quantize(w, true, ledger, "m"));
        q.remove("m.weight.nested_absmax");
        e = assertThrows(IllegalArgumentException.class, () -> Nf4Weight.of(q, "m.weight"));
        assertTrue(e.getMessage().contains("m.weight.nested_absmax"), e.getMessage());
    }
}
