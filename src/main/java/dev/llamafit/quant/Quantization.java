// How a model's linear layers are quantised: LLM.int8() or NF4, as bitsandbytes and config.json's quantization_config say.
package dev.llamafit.quant;

import java.util.LinkedHashMap;
import java.util.Map;

/**
 * The quantisation of a frozen base: its block linear layers (q/k/v/o, gate/up/down) are int8 or NF4, while the
 * embeddings, the LM head and the norms stay in their stored dtype, as transformers does with bitsandbytes (its
 * {@code llm_int8_skip_modules} default keeps {@code lm_head} unquantised, and embeddings are never Linear modules).
 *
 * @param kind          int8 (LLM.int8(): per-channel absmax, outlier columns in 16/32-bit) or nf4 (QLoRA)
 * @param doubleQuant   NF4 only: the per-block absmax values are themselves 8-bit quantised (QLoRA §3)
 * @param int8Threshold int8 only: an activation column holding a value with |x| ≥ this is an outlier, computed in
 *                      32-bit; 0 turns the decomposition off (plain vector-wise int8), as in bitsandbytes
 */
public record Quantization(Kind kind, boolean doubleQuant, double int8Threshold) {
    /** The two quantised formats. */
    public enum Kind { INT8, NF4 }

    /** bitsandbytes' and transformers' default outlier threshold (LLM.int8() §3.2: |x| ≥ 6). */
    public static final double DEFAULT_INT8_THRESHOLD = 6.0;

    public Quantization {
        if (kind == null) throw new IllegalArgumentException("quantisation kind is required");
        if (doubleQuant && kind != Kind.NF4) throw new IllegalArgumentException("double quantisation applies to nf4, not " + kind);
        if (!(int8Threshold >= 0) || Double.isInfinite(int8Threshold))
            throw new IllegalArgumentException("the int8 outlier threshold (--int8-threshold, llm_int8_threshold) must be a finite number >= 0, got " + int8Threshold);
    }

    /** LLM.int8() with outlier threshold {@code threshold} (0: no decomposition). */
    public static Quantization int8(double threshold) { return new Quantization(Kind.INT8, false, threshold); }

    /** NF4, with or without double quantisation of its block constants. */
    public static Quantization nf4(boolean doubleQuant) { return new Quantization(Kind.NF4, doubleQuant, DEFAULT_INT8_THRESHOLD); }

    /**
     * config.json's {@code quantization_config} as transformers' BitsAndBytesConfig writes it (to_dict), so that
     * transformers loads the folder as a bitsandbytes-quantised model. {@code computeDtype} is the torch dtype name of
     * bnb_4bit_compute_dtype ("float32", "bfloat16").
     */
    public Map<String, Object> toConfig(String computeDtype) {
        Map<String, Object> m = new LinkedHashMap<>();
        m.put("quant_method", "bitsandbytes");
        m.put("load_in_8bit", kind == Kind.INT8);
        m.put("load_in_4bit", kind == Kind.NF4);
        m.put("llm_int8_threshold", int8Threshold);
        m.put("llm_int8_skip_modules", null);
        m.put("llm_int8_enable_fp32_cpu_offload", false);
        m.put("llm_int8_has_fp16_weight", false);
        m.put("bnb_4bit_quant_type", "nf4");
        m.put("bnb_4bit_use_double_quant", doubleQuant);
        m.put("bnb_4bit_compute_dtype", computeDtype);
        m.put("bnb_4bit_quant_storage", "uint8");
        return m;
    }

    /** "int8 (threshold 6.0)", "nf4 (double-quantised)". */
    public String describe() {
        return kind == Kind.INT8 ? "int8 (LLM.int8(), outlier threshold " + int8Threshold + ")"
                : "nf4" + (doubleQuant ? " (double-quantised block constants)" : "");
    }
}
