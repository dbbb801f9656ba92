// The decoder chain of a Hugging Face tokenizer.json, compiled into "the bytes each token contributes".
package dev.llamafit.io.tokenizer;

import com.fasterxml.jackson.databind.JsonNode;
import dev.llamafit.io.InputException;

import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * huggingface/tokenizers decoders run as a chain over the list of token strings. The ones Llama-family
 * files use act per token, except Strip after Fuse, which acts on the start of the fused text, i.e. on the
 * first token. So a chain can be evaluated per token, given whether the token is the first one, which is
 * what lets {@link ByteDecoding} decode in a streaming way. Supported: Sequence, Replace, ByteFallback, Fuse,
 * Strip (start only after Fuse), ByteLevel, Metaspace.
 */
final class HfDecoder {
    private static final Pattern BYTE_TOKEN = Pattern.compile("<0x([0-9A-Fa-f]{2})>");

    sealed interface Step permits ReplaceStep, ByteFallbackStep, FuseStep, StripStep, ByteLevelStep, MetaspaceStep {}
    record ReplaceStep(Pattern pattern, String content) implements Step {}
    record ByteFallbackStep() implements Step {}
    record FuseStep() implements Step {}
    record StripStep(char content, int start, int stop) implements Step {}
    record ByteLevelStep() implements Step {}
    record MetaspaceStep(char replacement, boolean stripFirst) implements Step {}

    private final List<Step> steps;

    private HfDecoder(List<Step> steps) {
        this.steps = steps;
    }

    /** With no "decoder" in the file, tokens are concatenated as they are. */
    static HfDecoder parse(Path file, JsonNode node) {
        List<Step> steps = new ArrayList<>();
        if (node != null && !node.isNull()) add(file, node, "decoder", steps);
        return new HfDecoder(steps);
    }

    private static void add(Path file, JsonNode node, String where, List<Step> steps) {
        String type = HfComponents.type(file, node, where);
        switch (type) {
            case "Sequence" -> {
                JsonNode list = dev.llamafit.io.JsonFields.optionalArray(node, "decoders", file, where);
                for (int i = 0; i < list.size(); i++) add(file, list.get(i), where + ".decoders[" + i + "]", steps);
            }
            case "Replace" -> steps.add(new ReplaceStep(HfComponents.pattern(file, node.path("pattern"), where),
                    HfComponents.text(file, node, "content", where)));
            case "ByteFallback" -> steps.add(new ByteFallbackStep());
            case "Fuse" -> steps.add(new FuseStep());
            case "Strip" -> {
                String content = HfComponents.text(file, node, "content", where);
                int start = dev.llamafit.io.JsonFields.optionalInt(node, "start", 0, 0, Integer.MAX_VALUE, file, where);
                int stop = dev.llamafit.io.JsonFields.optionalInt(node, "stop", 0, 0, Integer.MAX_VALUE, file, where);
                boolean fused = steps.stream().anyMatch(s -> s instanceof FuseStep);
                if (content.length() != 1 || (fused && stop != 0)) {
                    throw InputException.at(file, where, "decoder Strip with content \"" + content + "\", stop " + stop
                            + " after Fuse is not supported (only stripping the start of the text)");
                }
                steps.add(new StripStep(content.charAt(0), start, stop));
            }
            case "ByteLevel" -> steps.add(new ByteLevelStep());
            case "Metaspace" -> steps.add(new MetaspaceStep(HfComponents.replacement(file, node, where),
                    HfComponents.prependScheme(file, node, where) != HfComponents.PrependScheme.NEVER));
            default -> throw HfComponents.unsupported(file, where, "decoder", type);
        }
    }

    /** The bytes {@code token} contributes; {@code first}: it is the first decoded token of the text. */
    byte[] bytes(String token, boolean first) {
        String text = token;
        byte[] raw = null; // set once a step has turned the token into bytes
        boolean fused = false;
        for (Step step : steps) {
            switch (step) {
                case ReplaceStep r -> {
                    if (raw == null) text = r.pattern().matcher(text).replaceAll(Matcher.quoteReplacement(r.content()));
                }
                case ByteFallbackStep b -> {
                    Matcher m = raw == null ? BYTE_TOKEN.matcher(text) : null;
                    if (m != null && m.matches()) raw = new byte[] {(byte) Integer.parseInt(m.group(1), 16)};
                }
                case FuseStep f -> fused = true;
                case StripStep s -> {
                    if (fused && !first) break;
                    if (raw != null) raw = stripBytes(raw, s, fused);
                    else text = stripText(text, s, fused);
                }
                case ByteLevelStep b -> {
                    if (raw == null) raw = ByteLevelMap.decode(text);
                }
                case MetaspaceStep ms -> {
                    if (raw == null) {
                        text = text.replace(ms.replacement(), ' ');
                        if (first && ms.stripFirst() && text.startsWith(" ")) text = text.substring(1);
                    }
                }
            }
        }
        return raw != null ? raw : text.getBytes(StandardCharsets.UTF_8);
    }

    private static String stripText(String text, StripStep s, boolean fused) {
        int begin = 0, end = text.length();
        while (begin < Math.min(s.start(), end) && text.charAt(begin) == s.content()) begin++;
        if (!fused) for (int i = 0; i < s.stop() && end > begin && text.charAt(end - 1) == s.content(); i++) end--;
        return text.substring(begin, end);
    }

    private static byte[] stripBytes(byte[] raw, StripStep s, boolean fused) {
        if (s.content() >= 0x80) return raw;
        int begin = 0, end = raw.length;
        while (begin < Math.min(s.start(), end) && raw[begin] == s.content()) begin++;
        if (!fused) for (int i = 0; i < s.stop() && end > begin && raw[end - 1] == s.content(); i++) end--;
        return java.util.Arrays.copyOfRange(raw, begin, end);
    }
}
