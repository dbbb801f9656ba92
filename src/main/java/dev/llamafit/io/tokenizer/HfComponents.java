// Hugging Face tokenizer.json normalizers and pre-tokenizers, parsed from JSON into small records.
package dev.llamafit.io.tokenizer;

import com.fasterxml.jackson.databind.JsonNode;
import dev.llamafit.io.InputException;
import dev.llamafit.io.JsonFields;

import java.nio.file.Path;
import java.text.Normalizer.Form;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * The text-side stages of a Hugging Face {@code tokenizer.json} (huggingface/tokenizers, "normalizer" and
 * "pre_tokenizer" objects, keyed by "type"). Each record does what the Rust type of the same name does, for
 * the options that Llama-family files use; anything else is rejected on load with the component named.
 */
final class HfComponents {
    private HfComponents() {}

    static final char METASPACE = '\u2581';

    /** GPT-2's regex for ByteLevel(use_regex=true) (openai/gpt-2 encoder.py, tokenizers byte_level.rs). */
    static final String GPT2_PATTERN =
            "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

    // ---- normalizers ------------------------------------------------------------------------------------

    sealed interface Normalizer permits Sequence, Prepend, Replace, Unicode, Lowercase {
        String apply(String text);
    }

    record Sequence(List<Normalizer> steps) implements Normalizer {
        public String apply(String text) {
            for (Normalizer step : steps) text = step.apply(text);
            return text;
        }
    }

    /** Prepends {@code prefix} to non-empty text. */
    record Prepend(String prefix) implements Normalizer {
        public String apply(String text) {
            return text.isEmpty() ? text : prefix + text;
        }
    }

    /** Replaces every match of {@code pattern} (a literal string or a regex) with {@code content}. */
    record Replace(Pattern pattern, String content) implements Normalizer {
        public String apply(String text) {
            return pattern.matcher(text).replaceAll(Matcher.quoteReplacement(content));
        }
    }

    record Unicode(Form form) implements Normalizer {
        public String apply(String text) {
            return java.text.Normalizer.normalize(text, form);
        }
    }

    record Lowercase() implements Normalizer {
        public String apply(String text) {
            return text.toLowerCase(Locale.ROOT);
        }
    }

    static Normalizer normalizer(Path file, JsonNode node, String where) {
        String type = type(file, node, where);
        return switch (type) {
            case "Sequence" -> {
                List<Normalizer> steps = new ArrayList<>();
                JsonNode list = JsonFields.optionalArray(node, "normalizers", file, where);
                for (int i = 0; i < list.size(); i++) steps.add(normalizer(file, list.get(i), where + ".normalizers[" + i + "]"));
                yield new Sequence(steps);
            }
            case "Prepend" -> new Prepend(text(file, node, "prepend", where));
            case "Replace" -> new Replace(pattern(file, node.path("pattern"), where), text(file, node, "content", where));
            case "NFC" -> new Unicode(Form.NFC);
            case "NFD" -> new Unicode(Form.NFD);
            case "NFKC" -> new Unicode(Form.NFKC);
            case "NFKD" -> new Unicode(Form.NFKD);
            case "Lowercase" -> new Lowercase();
            default -> throw unsupported(file, where, "normalizer", type);
        };
    }

    // ---- pre-tokenizers ---------------------------------------------------------------------------------

    /** A piece of text being pre-tokenised; {@code atStart} is true when it begins at offset 0 of the input. */
    record Piece(String text, boolean atStart) {}

    sealed interface PreTokenizer permits PreSequence, Metaspace, ByteLevel, Split {
        void split(Piece piece, List<Piece> out);
    }

    record PreSequence(List<PreTokenizer> steps) implements PreTokenizer {
        public void split(Piece piece, List<Piece> out) {
            List<Piece> current = List.of(piece);
            for (PreTokenizer step : steps) {
                List<Piece> next = new ArrayList<>();
                for (Piece p : current) step.split(p, next);
                current = next;
            }
            out.addAll(current);
        }
    }

    enum PrependScheme { ALWAYS, FIRST, NEVER }

    /** Spaces become {@code replacement}; a replacement is prepended per scheme; optionally split before each. */
    record Metaspace(char replacement, PrependScheme scheme, boolean split) implements PreTokenizer {
        public void split(Piece piece, List<Piece> out) {
            String text = piece.text().replace(' ', replacement);
            boolean prepend = scheme == PrependScheme.ALWAYS || (scheme == PrependScheme.FIRST && piece.atStart());
            if (prepend && !text.isEmpty() && text.charAt(0) != replacement) text = replacement + text;
            if (!split) {
                out.add(new Piece(text, piece.atStart()));
                return;
            }
            // Split with MergedWithNext on each replacement char: that is a cut before every replacement
            // ("▁a▁b" -> "▁a", "▁b"; "▁▁a" -> "▁", "▁a").
            int begin = 0;
            for (int i = 1; i < text.length(); i++) {
                if (text.charAt(i) == replacement) {
                    out.add(new Piece(text.substring(begin, i), piece.atStart() && begin == 0));
                    begin = i;
                }
            }
            if (begin < text.length()) out.add(new Piece(text.substring(begin), piece.atStart() && begin == 0));
        }
    }

    /** GPT-2 byte-level: optional prefix space, optional GPT-2 regex split, then bytes to printable chars. */
    record ByteLevel(boolean addPrefixSpace, boolean useRegex) implements PreTokenizer {
        private static final Pattern REGEX = Pattern.compile(GPT2_PATTERN, Pattern.UNICODE_CHARACTER_CLASS);

        public void split(Piece piece, List<Piece> out) {
            String text = piece.text();
            if (addPrefixSpace && !text.startsWith(" ")) text = " " + text;
            if (useRegex) {
                Matcher m = REGEX.matcher(text);
                int last = 0;
                while (m.find()) {
                    if (m.start() > last) out.add(new Piece(ByteLevelMap.encode(text.substring(last, m.start())), false));
                    out.add(new Piece(ByteLevelMap.encode(m.group()), piece.atStart() && m.start() == 0));
                    last = m.end();
                }
                if (last < text.length()) out.add(new Piece(ByteLevelMap.encode(text.substring(last)), false));
            } else if (!text.isEmpty()) {
                out.add(new Piece(ByteLevelMap.encode(text), piece.atStart()));
            }
        }
    }

    enum Behavior { ISOLATED, REMOVED, MERGED_WITH_PREVIOUS, MERGED_WITH_NEXT }

    /** Splits on a pattern (Llama 3 / Qwen2 put their word regex here). */
    record Split(Pattern pattern, Behavior behavior, boolean invert) implements PreTokenizer {
        public void split(Piece piece, List<Piece> out) {
            String text = piece.text();
            // Spans of text with whether they matched the pattern (flipped by invert).
            List<int[]> spans = new ArrayList<>();
            Matcher m = pattern.matcher(text);
            int last = 0;
            while (m.find()) {
                if (m.end() == m.start()) continue; // empty matches split nothing
                if (m.start() > last) spans.add(new int[] {last, m.start(), invert ? 1 : 0});
                spans.add(new int[] {m.start(), m.end(), invert ? 0 : 1});
                last = m.end();
            }
            if (last < text.length()) spans.add(new int[] {last, text.length(), invert ? 1 : 0});
            List<int[]> merged = new ArrayList<>();
            switch (behavior) {
                case ISOLATED -> merged.addAll(spans);
                case REMOVED -> spans.stream().filter(s -> s[2] == 0).forEach(merged::add);
                case MERGED_WITH_PREVIOUS -> {
                    boolean previousMatch = false;
                    for (int[] s : spans) {
                        if (s[2] == 1 && !previousMatch && !merged.isEmpty()) merged.getLast()[1] = s[1];
                        else merged.add(s.clone());
                        previousMatch = s[2] == 1;
                    }
                }
                case MERGED_WITH_NEXT -> {
                    boolean previousMatch = false; // walking backwards: "previous" is the span to the right
                    for (int i = spans.size() - 1; i >= 0; i--) {
                        int[] s = spans.get(i);
                        if (s[2] == 1 && !previousMatch && !merged.isEmpty()) merged.getLast()[0] = s[0];
                        else merged.add(s.clone());
                        previousMatch = s[2] == 1;
                    }
                    java.util.Collections.reverse(merged);
                }
            }
            for (int[] s : merged) out.add(new Piece(text.substring(s[0], s[1]), piece.atStart() && s[0] == 0));
        }
    }

    static PreTokenizer preTokenizer(Path file, JsonNode node, String where) {
        String type = type(file, node, where);
        return switch (type) {
            case "Sequence" -> {
                List<PreTokenizer> steps = new ArrayList<>();
                JsonNode list = JsonFields.optionalArray(node, "pretokenizers", file, where);
                for (int i = 0; i < list.size(); i++) steps.add(preTokenizer(file, list.get(i), where + ".pretokenizers[" + i + "]"));
                yield new PreSequence(steps);
            }
            case "Metaspace" -> new Metaspace(replacement(file, node, where), prependScheme(file, node, where),
                    JsonFields.optionalBoolean(node, "split", true, file, where));
            case "ByteLevel" -> new ByteLevel(JsonFields.optionalBoolean(node, "add_prefix_space", true, file, where),
                    JsonFields.optionalBoolean(node, "use_regex", true, file, where));
            case "Split" -> {
                String behavior = JsonFields.optionalString(node, "behavior", "Isolated", file, where);
                Behavior b = switch (behavior) {
                    case "Isolated" -> Behavior.ISOLATED;
                    case "Removed" -> Behavior.REMOVED;
                    case "MergedWithPrevious" -> Behavior.MERGED_WITH_PREVIOUS;
                    case "MergedWithNext" -> Behavior.MERGED_WITH_NEXT;
                    default -> throw unsupported(file, where + ".behavior", "Split behavior", behavior);
                };
                yield new Split(pattern(file, node.path("pattern"), where), b, JsonFields.optionalBoolean(node, "invert", false, file, where));
            }
            default -> throw unsupported(file, where, "pre_tokenizer", type);
        };
    }

    static char replacement(Path file, JsonNode node, String where) {
        String r = JsonFields.optionalString(node, "replacement", "\u2581", file, where);
        if (r.length() != 1) throw InputException.at(file, where + ".replacement", "expected one character, got \"" + r + "\"");
        return r.charAt(0);
    }

    /** "prepend_scheme" (tokenizers >= 0.14) or the older boolean "add_prefix_space". */
    static PrependScheme prependScheme(Path file, JsonNode node, String where) {
        if (JsonFields.value(node, "prepend_scheme") != null) {
            String s = JsonFields.optionalString(node, "prepend_scheme", null, file, where);
            return switch (s) {
                case "always" -> PrependScheme.ALWAYS;
                case "first" -> PrependScheme.FIRST;
                case "never" -> PrependScheme.NEVER;
                default -> throw unsupported(file, where + ".prepend_scheme", "Metaspace prepend_scheme", s);
            };
        }
        return JsonFields.optionalBoolean(node, "add_prefix_space", true, file, where) ? PrependScheme.ALWAYS : PrependScheme.NEVER;
    }

    // ---- shared helpers ---------------------------------------------------------------------------------

    /** {"String": "..."} is a literal; {"Regex": "..."} a regex (Oniguruma syntax, which Java's covers here). */
    static Pattern pattern(Path file, JsonNode node, String where) {
        if (node.has("String")) return Pattern.compile(Pattern.quote(JsonFields.optionalString(node, "String", "", file, where + ".pattern")));
        if (node.has("Regex")) {
            String regex = JsonFields.optionalString(node, "Regex", "", file, where + ".pattern");
            try {
                // Oniguruma's \s and \d are Unicode-aware; Java's are ASCII unless asked.
                return Pattern.compile(regex, Pattern.UNICODE_CHARACTER_CLASS);
            } catch (java.util.regex.PatternSyntaxException e) {
                throw InputException.at(file, where + ".pattern", "regex not supported by Java: " + e.getDescription() + ": " + regex);
            }
        }
        throw InputException.at(file, where + ".pattern", "expected {\"String\": ...} or {\"Regex\": ...}");
    }

    static String type(Path file, JsonNode node, String where) {
        if (!node.isObject()) throw InputException.at(file, "field '" + where + "' must be an object, got " + node);
        JsonNode type = node.get("type");
        if (type == null || !type.isTextual()) throw InputException.at(file, where, "missing \"type\"");
        return type.asText();
    }

    static String text(Path file, JsonNode node, String field, String where) {
        JsonNode value = node.get(field);
        if (value == null || !value.isTextual()) throw InputException.at(file, where + "." + field, "expected a string");
        return value.asText();
    }

    static InputException unsupported(Path file, String where, String kind, String type) {
        return InputException.at(file, where, kind + " \"" + type + "\" is not supported (llamafit reads BPE "
                + "tokenizers of the Llama / Mistral / Qwen2 / GPT-2 families)");
    }
}
