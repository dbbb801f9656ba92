// Chat records ({"messages": [...]}) checked, rendered with a ChatTemplate and tokenized span by span.
package dev.llamafit.io.data;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Locale;
import java.util.Set;

import com.fasterxml.jackson.databind.JsonNode;

import dev.llamafit.io.tokenizer.Tokenizer;

/**
 * A chat record is {@code {"messages": [{"role": "system"|"user"|"assistant", "content": "…"}, …]}}. Its rendered
 * spans are tokenized one by one and concatenated, so the boundary between prompt and reply is exact; by
 * default only assistant replies are trained.
 */
final class ChatFormat {
    static final Set<String> ROLES = Set.of("system", "user", "assistant");

    private ChatFormat() {}

    static List<Segment> segments(JsonRecords.Raw raw, Tokenizer tok, ChatTemplate template, DataOptions o,
                                  JsonRecords.Problems problems) {
        List<ChatTemplate.Message> messages = messages(raw, o, problems);
        List<ChatTemplate.Span> spans;
        try {
            spans = template.render(messages);
        } catch (ChatTemplate.RenderException e) {
            problems.report(raw.position(), e.getMessage());
            throw JsonRecords.Skip.INSTANCE;
        }
        List<Segment> out = new ArrayList<>(spans.size());
        boolean first = true;
        for (ChatTemplate.Span s : spans) {
            int[] ids = tok.encode(s.text(), first && template.addsBos());
            if (s.eos()) ids = AlpacaFormat.withEos(ids, tok);
            out.add(new Segment(ids, s.trained()));
            first = false;
        }
        return out;
    }

    /** The checked messages of a record, placeholders substituted. */
    static List<ChatTemplate.Message> messages(JsonRecords.Raw raw, DataOptions o, JsonRecords.Problems problems) {
        JsonNode r = raw.node();
        JsonNode list = r.isObject() ? r.get("messages") : null;
        if (list == null || !list.isArray()) {
            problems.report(raw.position(), !r.isObject() ? "expected an object with 'messages'"
                    : list == null ? "missing 'messages' (a chat record is {\"messages\": [{\"role\": …, \"content\": …}, …]})"
                    : "'messages' must be a list, found " + type(list));
            throw JsonRecords.Skip.INSTANCE;
        }
        List<ChatTemplate.Message> out = new ArrayList<>(list.size());
        for (int i = 0; i < list.size(); i++) {
            JsonNode m = list.get(i);
            JsonNode role = m.get("role");
            JsonNode content = m.get("content");
            String where = "messages[" + i + "]";
            String problem = !m.isObject() ? where + " must be an object, found " + type(m)
                    : role == null || !role.isTextual() ? where + ".role must be a string"
                    : !ROLES.contains(role.asText()) ? where + ": unknown role '" + role.asText() + "' (expected one of "
                            + String.join(", ", Arrays.asList("system", "user", "assistant")) + ")"
                    : content == null || !content.isTextual() ? where + ".content must be a string, found "
                            + (content == null ? "nothing" : type(content))
                    : null;
            if (problem != null) {
                problems.report(raw.position(), problem);
                throw JsonRecords.Skip.INSTANCE;
            }
            out.add(new ChatTemplate.Message(role.asText(), o.substitute(content.asText())));
        }
        return out;
    }

    private static String type(JsonNode n) {
        return n.getNodeType().name().toLowerCase(Locale.ROOT);
    }
}
