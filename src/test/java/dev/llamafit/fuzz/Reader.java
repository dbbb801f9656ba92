// The fuzzed readers: for each, which seed file is mutated, how, and which CLI command then reads it.
package dev.llamafit.fuzz;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;

/**
 * One reader of user input. {@link #prepare} builds a case folder from the seed files (unmutated files are symbolic
 * links, so a case costs one written file), mutates one file with the case's {@link Mutator}, and returns the command
 * that reads it. Every command is cheap: a 656k-parameter model, two new tokens, one training step, a few records.
 * {@link #share} is the reader's part of the default number of cases.
 */
enum Reader {
    SAFETENSORS(80), CONFIG(70), TOKENIZER_JSON(60), TOKENIZER_MODEL(50), LLAMA2C(40), ADAPTER(50), CHECKPOINT(50),
    TEXT(40), ALPACA(40), ALPACA_JSONL(30), CHAT(40);

    final int share;

    Reader(int share) {
        this.share = share;
    }

    /** The name used in reports, regressions.txt and -Dllamafit.fuzz.only. */
    String id() {
        return name().toLowerCase().replace('_', '-');
    }

    static Reader byId(String id) {
        for (Reader r : values()) if (r.id().equals(id)) return r;
        throw new IllegalArgumentException("unknown fuzz reader '" + id + "'");
    }

    /** A prepared case: the mutated file, the command line, and what the mutation did. */
    record Case(Path file, String[] args, String mutation) {}

    static final String PROMPT = "Once upon a time";

    Case prepare(Path dir, Mutator m, Fixtures fx) throws IOException {
        Path out = dir.resolve("out");
        return switch (this) {
            case SAFETENSORS -> {
                Path model = linkCopy(fx.model(), dir.resolve("model"));
                Path f = mutate(model.resolve("model.safetensors"), fx.model().resolve("model.safetensors"), m::safetensors);
                yield new Case(f, m.nextInt(2) == 0 ? inspect(model) : generate(model, null), m.description());
            }
            case CONFIG -> {
                Path model = linkCopy(fx.model(), dir.resolve("model"));
                String[] files = {"config.json", "config.json", "config.json", "config.json", "generation_config.json",
                        "tokenizer_config.json", "special_tokens_map.json"};
                String name = files[m.nextInt(files.length)];
                Path f = mutate(model.resolve(name), fx.model().resolve(name), m.nextInt(4) == 0 ? m::bytes : m::json);
                String[] args = switch (m.nextInt(3)) {
                    case 0 -> inspect(model);
                    case 1 -> generate(model, null);
                    default -> name.equals("config.json") ? generate(model, null) : tokenize(model);
                };
                yield new Case(f, args, name + ": " + m.description());
            }
            case TOKENIZER_JSON -> {
                Path model = linkCopy(fx.model(), dir.resolve("model"));
                Path f = mutate(model.resolve("tokenizer.json"), fx.model().resolve("tokenizer.json"), m.nextInt(4) == 0 ? m::bytes : m::json);
                yield new Case(f, m.nextInt(4) == 0 ? generate(model, null) : tokenize(model), m.description());
            }
            case TOKENIZER_MODEL -> {
                Path src = m.nextInt(3) == 0 ? fx.llama2TokenizerModel() : fx.tok512Model();
                Path folder = Files.createDirectories(dir.resolve("tok"));
                Path f = mutate(folder.resolve("tokenizer.model"), src, m::bytes);
                yield new Case(f, tokenize(folder), src.getFileName() + ": " + m.description());
            }
            case LLAMA2C -> {
                boolean checkpoint = m.nextInt(10) < 7;
                Path bin = dir.resolve("stories260K.bin"), tok = dir.resolve("tok512.model");
                Path f;
                if (checkpoint) {
                    f = mutate(bin, fx.stories260kBin(), m.nextInt(2) == 0 ? b -> llama2cHeader(m, b) : m::bytes);
                    Files.createSymbolicLink(tok, fx.tok512Model());
                } else {
                    Files.createSymbolicLink(bin, fx.stories260kBin());
                    f = mutate(tok, fx.tok512Model(), m::bytes);
                }
                yield new Case(f, args("convert", "--from", "llama2c", "--input", bin, "--tokenizer", tok, "--output", out),
                        m.description());
            }
            case ADAPTER -> {
                Path adapter = linkCopy(fx.adapter(), dir.resolve("adapter"));
                String name = m.nextInt(2) == 0 ? "adapter_config.json" : "adapter_model.safetensors";
                Path f = mutate(adapter.resolve(name), fx.adapter().resolve(name),
                        name.endsWith(".json") ? (m.nextInt(4) == 0 ? m::bytes : m::json) : m::safetensors);
                String[] args = m.nextInt(3) == 0
                        ? args("eval", "--model", fx.model(), "--adapter", adapter, "--data", fx.text(), "--seq-len", "32", "--batch-size", "2")
                        : generate(fx.model(), adapter);
                yield new Case(f, args, name + ": " + m.description());
            }
            case CHECKPOINT -> {
                Path ckpt = linkCopy(fx.checkpoint(), dir.resolve("step-00000002"));
                String[] files = {"trainer_state.json", "trainer_state.json", "optimizer.safetensors", "model.safetensors"};
                String name = files[m.nextInt(files.length)];
                Path f = mutate(ckpt.resolve(name), fx.checkpoint().resolve(name),
                        name.endsWith(".json") ? (m.nextInt(4) == 0 ? m::bytes : m::json) : m::safetensors);
                String[] args = args("train", "--model", fx.model(), "--data", fx.text(), "--output", out, "--resume", ckpt,
                        "--steps", "3", "--batch-size", "1", "--seq-len", "32", "--seed", "1");
                yield new Case(f, args, name + ": " + m.description());
            }
            case TEXT -> data(dir, fx.text(), "sample.txt", m, m::bytes, fx);
            case ALPACA -> data(dir, fx.alpaca(), "alpaca.json", m, m.nextInt(3) == 0 ? m::bytes : m::json, fx);
            case ALPACA_JSONL -> data(dir, fx.alpacaJsonl(), "alpaca.jsonl", m, m::jsonLines, fx);
            case CHAT -> data(dir, fx.chat(), "chat.jsonl", m, m::jsonLines, fx);
        };
    }

    /** A data file read by eval (two cases in three) or by one training step that skips bad records. */
    private static Case data(Path dir, Path seed, String name, Mutator m, Mutation how, Fixtures fx) throws IOException {
        Path f = mutate(dir.resolve(name), seed, how);
        String[] args = m.nextInt(3) == 0
                ? args("train", "--model", fx.model(), "--data", f, "--output", dir.resolve("out"), "--steps", "1",
                        "--batch-size", "1", "--seq-len", "128", "--skip-bad-records")
                : args("eval", "--model", fx.model(), "--data", f, "--seq-len", "128", "--batch-size", "2");
        return new Case(f, args, m.description());
    }

    /** Sets one of the seven int32 header fields of a llama2.c checkpoint to a hostile value. */
    private static byte[] llama2cHeader(Mutator m, byte[] in) {
        byte[] out = in.clone();
        int field = m.nextInt(7);
        int[] values = {0, -1, 1, 2, 3, 7, Integer.MAX_VALUE, Integer.MIN_VALUE, 1 << 20, (1 << 20) + 1, 65536, 100_000, -512};
        int v = values[m.nextInt(values.length)];
        java.nio.ByteBuffer.wrap(out, field * 4, 4).order(java.nio.ByteOrder.LITTLE_ENDIAN).putInt(v);
        m.note("header int " + field + " = " + v);
        return out;
    }

    interface Mutation {
        byte[] apply(byte[] in) throws IOException;
    }

    private static Path mutate(Path target, Path seed, Mutation how) throws IOException {
        Files.deleteIfExists(target);
        Files.write(target, how.apply(Files.readAllBytes(seed)));
        return target;
    }

    /** A folder whose entries are symbolic links to {@code src}'s files; the mutated one is replaced by a real file. */
    static Path linkCopy(Path src, Path dst) throws IOException {
        Files.createDirectories(dst);
        try (var s = Files.list(src)) {
            for (Path p : s.toList()) {
                if (Files.isRegularFile(p)) Files.createSymbolicLink(dst.resolve(p.getFileName()), p.toAbsolutePath());
            }
        }
        return dst;
    }

    private static String[] inspect(Path model) {
        return args("inspect", "--model", model);
    }

    private static String[] generate(Path model, Path adapter) {
        List<Object> a = new ArrayList<>(List.of("generate", "--model", model, "--prompt", PROMPT, "--max-new-tokens", "2",
                "--temperature", "0"));
        if (adapter != null) a.addAll(List.of("--adapter", adapter));
        return args(a.toArray());
    }

    private static String[] tokenize(Path model) {
        return args("tokenize", "--model", model, "--text", PROMPT + ", a cat ü 日本 🙂");
    }

    private static String[] args(Object... parts) {
        String[] out = new String[parts.length];
        for (int i = 0; i < parts.length; i++) out[i] = parts[i].toString();
        return out;
    }
}
