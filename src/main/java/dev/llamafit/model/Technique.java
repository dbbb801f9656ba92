// The training technique of an engine run: what `train`, the engine's planner and the training layouts take.
package dev.llamafit.model;

import java.util.ArrayList;
import java.util.List;
import java.util.Locale;

import dev.llamafit.quant.Quantization;

/**
 * How the engine trains, independent of the data and of any PyTorch stack: the method (full fine-tuning or adapters),
 * the adapters' settings, the precision and storage of the weights, the optimizer, gradient checkpointing and gradient
 * accumulation. Sharding and offload join this record when the engine implements them.
 *
 * <p>The enums name every value the project plans for; {@link #notImplemented()} lists the ones this engine does not run
 * yet, so the planner of the engine and {@code train} refuse them with one message.
 *
 * @param method                full fine-tuning, LoRA, or QLoRA (LoRA on an NF4 base)
 * @param lora                  adapter settings; null exactly when the method is full fine-tuning
 * @param precision             compute precision
 * @param baseDtype             storage of the frozen base; null = the compute dtype
 * @param optimizer             optimizer kind
 * @param gradientCheckpointing keep only block inputs and recompute blocks in backward
 * @param checkpointEvery       N ≥ 1: with checkpointing, blocks whose index is a multiple of N are checkpointed
 * @param gradAccum             micro-batches per optimizer step (k ≥ 1); the engine keeps its gradients for the whole run,
 *                              so accumulation changes time, not memory
 * @param attention             eager (saves the softmax probabilities, B·H·T² per block) or flash (tiled, saves one
 *                              log-sum-exp per row)
 * @param quantization          with an int8 or NF4 base: its settings (double quantisation, outlier threshold); derived
 *                              from {@code baseDtype} with bitsandbytes' defaults when null, and null otherwise
 */
public record Technique(Method method, LoraConfig lora, Precision precision, BaseDtype baseDtype, Optimizer optimizer,
                        boolean gradientCheckpointing, int checkpointEvery, int gradAccum, Attention attention,
                        Quantization quantization) {

    /** Full fine-tuning or low-rank adapters on a frozen base. */
    public enum Method { FULL, LORA, QLORA }

    /** fp32; bf16/fp16 compute with fp32 master weights; bf16-pure (everything bf16). */
    public enum Precision {
        FP32, BF16, FP16, BF16_PURE;

        /** Bytes per element of activations and half weights: 4 for fp32, 2 otherwise. */
        public int computeBytes() { return this == FP32 ? 4 : 2; }

        /** Half compute with fp32 master weights. */
        public boolean mixed() { return this == BF16 || this == FP16; }
    }

    /** Storage of a frozen base: as loaded (fp32/bf16/fp16) or quantised. */
    public enum BaseDtype {
        FP32, BF16, FP16, INT8, NF4;

        public boolean quantised() { return this == INT8 || this == NF4; }

        /** Bytes per element of an unquantised base (0 for int8/NF4, which count their own block constants). */
        public int floatBytes() { return this == FP32 ? 4 : this == BF16 || this == FP16 ? 2 : 0; }
    }

    /** How attention runs: eager (probabilities kept for backward) or flash (tiled, online softmax, recomputed). */
    public enum Attention { EAGER, FLASH }

    /** The attention a technique gets when none is named. */
    public static final Attention DEFAULT_ATTENTION = Attention.FLASH;

    /** AdamW (fp32 states), AdamW with 8-bit states, SGD with momentum. */
    public enum Optimizer { ADAMW, ADAMW8BIT, SGD }

    public Technique {
        if (method == null || precision == null || optimizer == null)
            throw new IllegalArgumentException("method, precision and optimizer are required");
        if ((method == Method.FULL) != (lora == null))
            throw new IllegalArgumentException(method == Method.FULL ? "full fine-tuning takes no LoRA settings" : "--method " + name(method) + " needs LoRA settings");
        if (checkpointEvery < 1) throw new IllegalArgumentException("--checkpoint-every must be >= 1, got " + checkpointEvery);
        if (gradAccum < 1) throw new IllegalArgumentException("--grad-accum must be >= 1, got " + gradAccum);
        if (attention == null) throw new IllegalArgumentException("an attention kind is required");
        // QLoRA is LoRA on an NF4 base: the method names the base when no dtype does.
        if (method == Method.QLORA && baseDtype == null) baseDtype = BaseDtype.NF4;
        if (method == Method.QLORA && baseDtype != BaseDtype.NF4)
            throw new IllegalArgumentException("--method qlora means an nf4 base, not --base-dtype " + name(baseDtype));
        if (quantization != null && baseDtype != null && !baseDtype.quantised()) quantization = null;
        if (baseDtype != null && baseDtype.quantised()) {
            Quantization.Kind kind = baseDtype == BaseDtype.INT8 ? Quantization.Kind.INT8 : Quantization.Kind.NF4;
            if (quantization == null || quantization.kind() != kind)
                quantization = kind == Quantization.Kind.INT8 ? Quantization.int8(Quantization.DEFAULT_INT8_THRESHOLD) : Quantization.nf4(true);
        } else if (quantization != null) {
            baseDtype = quantization.kind() == Quantization.Kind.INT8 ? BaseDtype.INT8 : BaseDtype.NF4;
        }
    }

    public Technique(Method method, LoraConfig lora, Precision precision, BaseDtype baseDtype, Optimizer optimizer,
                     boolean gradientCheckpointing, int checkpointEvery, int gradAccum, Attention attention) {
        this(method, lora, precision, baseDtype, optimizer, gradientCheckpointing, checkpointEvery, gradAccum, attention, null);
    }

    /** With a base quantised as {@code q} (its kind becomes the base dtype). */
    public Technique withQuantization(Quantization q) {
        return new Technique(method, lora, precision, q.kind() == Quantization.Kind.INT8 ? BaseDtype.INT8 : BaseDtype.NF4, optimizer,
                gradientCheckpointing, checkpointEvery, gradAccum, attention, q);
    }

    /** With the default attention ({@link #DEFAULT_ATTENTION}). */
    public Technique(Method method, LoraConfig lora, Precision precision, BaseDtype baseDtype, Optimizer optimizer,
                     boolean gradientCheckpointing, int checkpointEvery, int gradAccum) {
        this(method, lora, precision, baseDtype, optimizer, gradientCheckpointing, checkpointEvery, gradAccum, DEFAULT_ATTENTION);
    }

    public Technique withAttention(Attention a) {
        return new Technique(method, lora, precision, baseDtype, optimizer, gradientCheckpointing, checkpointEvery, gradAccum, a, quantization);
    }

    /** Full fine-tuning in fp32 with AdamW, no checkpointing, no accumulation. */
    public static final Technique FULL = new Technique(Method.FULL, null, Precision.FP32, null, Optimizer.ADAMW, false, 1, 1);

    /** Full fine-tuning when {@code lora} is null, else LoRA with those settings; otherwise as {@link #FULL}. */
    public static Technique of(LoraConfig lora) { return lora == null ? FULL : lora(lora); }

    /** LoRA with these settings, otherwise as {@link #FULL}. */
    public static Technique lora(LoraConfig lora) {
        return new Technique(Method.LORA, lora, Precision.FP32, null, Optimizer.ADAMW, false, 1, 1);
    }

    public boolean adapters() { return lora != null; }

    /**
     * How a LoRA base is stored: {@link #baseDtype()}, or when that is null the compute dtype (bf16-pure: bf16), as a
     * PyTorch run loads its model; null for full fine-tuning. {@code train} names the checkpoint's dtype explicitly.
     */
    public BaseDtype baseStorage() {
        if (!adapters()) return null;
        if (baseDtype != null) return baseDtype;
        return switch (precision) {
            case FP32 -> BaseDtype.FP32;
            case BF16, BF16_PURE -> BaseDtype.BF16;
            case FP16 -> BaseDtype.FP16;
        };
    }

    /** The layouts' checkpoint interval: 0 when checkpointing is off, else N. */
    public int checkpointInterval() { return gradientCheckpointing ? checkpointEvery : 0; }

    public Technique withGradientCheckpointing(boolean on, int every) {
        return new Technique(method, lora, precision, baseDtype, optimizer, on, every, gradAccum, attention, quantization);
    }

    public Technique withOptimizer(Optimizer o) {
        return new Technique(method, lora, precision, baseDtype, o, gradientCheckpointing, checkpointEvery, gradAccum, attention, quantization);
    }

    public Technique withMethod(Method m, LoraConfig l, BaseDtype base) {
        return new Technique(m, l, precision, base, optimizer, gradientCheckpointing, checkpointEvery, gradAccum, attention, quantization);
    }

    /** How many of {@code layers} blocks are checkpointed. */
    public int checkpointedBlocks(int layers) { return gradientCheckpointing ? (layers + checkpointEvery - 1) / checkpointEvery : 0; }

    public Technique withGradAccum(int k) {
        return new Technique(method, lora, precision, baseDtype, optimizer, gradientCheckpointing, checkpointEvery, k, attention, quantization);
    }

    /**
     * What this engine cannot run yet, one phrase per setting with its flag ("--precision bf16"); empty when it can
     * run the whole technique.
     */
    public List<String> notImplemented() {
        List<String> out = new ArrayList<>();
        // bf16-pure's BF16 optimizer states exist for AdamW only (optim.AdamW); SGD updates fp32 parameters.
        if (precision == Precision.BF16_PURE && optimizer == Optimizer.SGD) out.add("--optimizer sgd with --precision bf16-pure");
        // A bf16/fp16 frozen base is read in place by the typed GEMM, an int8/NF4 one by its quantised projection (adapters
        // only: full fine-tuning trains its weights, so they are never frozen in another format).
        if (baseDtype != null && baseDtype != BaseDtype.FP32 && !adapters()) out.add("--base-dtype " + name(baseDtype));
        // 8-bit states quantise fp32 moments of fp32 parameters (optim.AdamW8bit); bf16-pure has BF16 parameters.
        if (precision == Precision.BF16_PURE && optimizer == Optimizer.ADAMW8BIT) out.add("--optimizer adamw8bit with --precision bf16-pure");
        return out;
    }

    /** The command-line spelling of an enum constant: BF16_PURE → bf16-pure. */
    public static String name(Enum<?> e) { return e.name().toLowerCase(Locale.ROOT).replace('_', '-'); }

    /** Parses a command-line spelling ("bf16-pure") into {@code type}'s constant, or says which values there are. */
    public static <E extends Enum<E>> E parse(Class<E> type, String flag, String value) {
        for (E e : type.getEnumConstants())
            if (name(e).equals(value.toLowerCase(Locale.ROOT))) return e;
        List<String> names = new ArrayList<>();
        for (E e : type.getEnumConstants()) names.add(name(e));
        throw new IllegalArgumentException(flag + " must be one of " + String.join(", ", names) + ", got '" + value + "'");
    }
}
