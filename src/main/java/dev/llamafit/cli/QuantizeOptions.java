// The quantised-base flags of train, generate and eval: --base-dtype int8|nf4, --[no-]double-quant, --int8-threshold.
package dev.llamafit.cli;

import dev.llamafit.quant.Quantization;
import picocli.CommandLine.Option;

/**
 * A picocli mixin. The block linear layers of the base are quantised on load (from fp32, bf16 or f16); the embeddings,
 * the LM head and the norms stay in their stored dtype, as transformers does with bitsandbytes. A folder quantised
 * already (config.json's quantization_config) loads as stored without these flags.
 */
final class QuantizeOptions {
    @Option(names = "--base-dtype", paramLabel = "int8|nf4", description = "Quantise the base's block linear layers on load: int8"
            + " (LLM.int8(): per-channel absmax, outlier columns in fp32) or nf4 (QLoRA's 4-bit NormalFloat, blocks of 64);"
            + " embeddings, LM head and norms stay as stored (default: as stored; a bitsandbytes-quantised folder loads quantised).")
    String baseDtype;

    @Option(names = "--double-quant", negatable = true, defaultValue = "true", fallbackValue = "true",
            description = "nf4: quantise the per-block absmax constants to 8 bits too, in blocks of 256 (default: on, as the QLoRA recipes;"
                    + " --no-double-quant keeps them fp32).")
    boolean doubleQuant;

    @Option(names = "--int8-threshold", description = "int8: activation columns holding a value with |x| >= this are outliers,"
            + " multiplied in fp32; 0 = plain vector-wise int8 (default: 6.0, or a quantised folder's llm_int8_threshold).")
    Double int8Threshold;

    /** The quantisation asked for, or null; IllegalArgumentException for another word or a flag that needs another dtype. */
    Quantization quantization() { return quantization(baseDtype); }

    /** As {@link #quantization()} for {@code dtype} (int8, nf4, or null), the other flags as given. */
    Quantization quantization(String dtype) {
        if (dtype == null) {
            if (int8Threshold != null) throw new IllegalArgumentException("--int8-threshold needs --base-dtype int8 (also for a folder"
                    + " quantised as int8 already)");
            if (!doubleQuant) throw new IllegalArgumentException("--no-double-quant needs --base-dtype nf4");
            return null;
        }
        return switch (dtype.toLowerCase(java.util.Locale.ROOT)) {
            case "int8" -> {
                if (!doubleQuant) throw new IllegalArgumentException("--no-double-quant concerns nf4's block constants, not an int8 base");
                yield Quantization.int8(int8Threshold != null ? int8Threshold : Quantization.DEFAULT_INT8_THRESHOLD);
            }
            case "nf4" -> {
                if (int8Threshold != null) throw new IllegalArgumentException("--int8-threshold concerns an int8 base, not nf4");
                yield Quantization.nf4(doubleQuant);
            }
            case "fp32", "bf16", "fp16" -> throw new IllegalArgumentException("--base-dtype takes int8 or nf4 here; for a "
                    + dtype + " base use --dtype " + dtype);
            default -> throw new IllegalArgumentException("--base-dtype must be int8 or nf4, got '" + dtype + "'");
        };
    }
}
