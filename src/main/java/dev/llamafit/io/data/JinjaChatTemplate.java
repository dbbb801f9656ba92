// A Hugging Face chat template (Jinja, from tokenizer_config.json) rendered with Jinjava.
package dev.llamafit.io.data;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;

import com.fasterxml.jackson.databind.JsonNode;
import com.hubspot.jinjava.Jinjava;
import com.hubspot.jinjava.JinjavaConfig;
import com.hubspot.jinjava.interpret.Context;
import com.hubspot.jinjava.interpret.JinjavaInterpreter;
import com.hubspot.jinjava.interpret.TemplateError;
import com.hubspot.jinjava.lib.fn.ELFunctionDefinition;
import com.hubspot.jinjava.tree.Node;

import dev.llamafit.io.InputException;
import dev.llamafit.io.Json;
import dev.llamafit.io.tokenizer.Tokenizer;

/**
 * A model's own chat template, as transformers' {@code apply_chat_template} renders it: variables
 * {@code messages} (list of {role, content}), {@code bos_token}, {@code eos_token}, {@code add_generation_prompt},
 * the function {@code raise_exception(msg)}, and Jinja's trim_blocks and lstrip_blocks on (as transformers sets).
 *
 * <p>Assistant spans are found by rendering incrementally: for the assistant message i, the reply starts where
 * {@code render(messages[0..i), add_generation_prompt=true)} ends (so the generation prompt, e.g.
 * {@code <|assistant|>}, is not trained) and ends where {@code render(messages[0..i], false)} ends (so the
 * end-of-turn marker, e.g. {@code eos_token}, is trained). Both must be prefixes of the full rendering; templates
 * that rewrite earlier turns (dropping reasoning from past replies) are reported as errors for that record.
 */
final class JinjaChatTemplate implements ChatTemplate {
    private final Map<String, Object> specials;
    private final JinjavaConfig config;
    private final Jinjava jinja;
    private final Node tree;  // parsed once: parsing dominated the cost of rendering every record 2k+1 times

    private JinjaChatTemplate(String template, Map<String, Object> specials) {
        this.specials = specials;
        this.config = JinjavaConfig.newBuilder().withTrimBlocks(true).withLstripBlocks(true).build();
        this.jinja = new Jinjava(config);
        jinja.getGlobalContext().registerFunction(
                new ELFunctionDefinition("", "raise_exception", JinjaChatTemplate.class, "raiseException", String.class));
        JinjavaInterpreter parser = jinja.newInterpreter();
        this.tree = parser.parse(template);
        for (TemplateError err : parser.getErrors()) {
            if (err.getSeverity() == TemplateError.ErrorType.FATAL)
                throw new InputException("chat template does not parse (template line " + err.getLineno() + "): " + err.getMessage());
        }
    }

    /**
     * The template of a model folder: {@code chat_template} in tokenizer_config.json (a string, or a list of
     * {name, template} where "default" is used), else a {@code chat_template.jinja} file; empty when neither.
     */
    static java.util.Optional<JinjaChatTemplate> load(Path modelDir, Tokenizer tok) {
        if (modelDir == null) return java.util.Optional.empty();
        Path configFile = modelDir.resolve("tokenizer_config.json");
        JsonNode config = Files.exists(configFile) ? Json.read(configFile) : null;
        String template = null;
        if (config != null) {
            JsonNode t = config.get("chat_template");
            if (t != null && t.isTextual()) template = t.asText();
            else if (t != null && t.isArray()) {
                for (JsonNode named : t) if ("default".equals(named.path("name").asText())) template = named.path("template").asText(null);
                if (template == null)
                    throw InputException.at(configFile, "chat_template is a list without a template named 'default'");
            } else if (t != null && !t.isNull()) throw InputException.at(configFile, "chat_template must be a string or a list");
        }
        Path jinjaFile = modelDir.resolve("chat_template.jinja");
        if (template == null && Files.exists(jinjaFile)) {
            try {
                template = Files.readString(jinjaFile);
            } catch (java.io.IOException e) {
                throw InputException.at(jinjaFile, "cannot read: " + e.getMessage());
            }
        }
        if (template == null) return java.util.Optional.empty();
        Map<String, Object> specials = new HashMap<>();
        specials.put("bos_token", tokenText(config, "bos_token", tok, tok.bosId()));
        specials.put("eos_token", tokenText(config, "eos_token", tok, tok.eosId()));
        return java.util.Optional.of(new JinjaChatTemplate(template, specials));
    }

    /** For tests: a template text with explicit special-token strings. */
    static JinjaChatTemplate of(String template, String bosToken, String eosToken) {
        return new JinjaChatTemplate(template, Map.of("bos_token", bosToken, "eos_token", eosToken));
    }

    private static String tokenText(JsonNode config, String field, Tokenizer tok, int id) {
        JsonNode v = config == null ? null : config.get(field);
        if (v != null && v.isTextual()) return v.asText();
        if (v != null && v.path("content").isTextual()) return v.path("content").asText();
        return id >= 0 ? tok.piece(id) : "";
    }

    /** Called by templates as {@code raise_exception('...')}. */
    public static String raiseException(String message) {
        throw new RenderException("chat template rejected the conversation: " + message);
    }

    @Override
    public boolean addsBos() {
        return false; // as apply_chat_template(tokenize=True): the template writes bos_token where it wants it
    }

    @Override
    public List<Span> render(List<Message> messages) {
        String full = renderText(messages, false);
        List<Span> spans = new ArrayList<>();
        int at = 0;
        for (int i = 0; i < messages.size(); i++) {
            if (!messages.get(i).role().equals("assistant")) continue;
            String before = renderText(messages.subList(0, i), true);
            if (!full.startsWith(before)) before = renderText(messages.subList(0, i), false);
            String through = renderText(messages.subList(0, i + 1), false);
            if (!full.startsWith(before) || !full.startsWith(through) || before.length() < at || through.length() < before.length())
                throw new RenderException("the chat template does not render message " + i
                        + " as an extension of the messages before it, so its reply cannot be located (hint: use --train-on-prompt)");
            if (before.length() > at) spans.add(new Span(full.substring(at, before.length()), false, false));
            spans.add(new Span(full.substring(before.length(), through.length()), true, false));
            at = through.length();
        }
        if (at < full.length()) spans.add(new Span(full.substring(at), false, false));
        return spans;
    }

    private String renderText(List<Message> messages, boolean addGenerationPrompt) {
        List<Map<String, Object>> list = new ArrayList<>(messages.size());
        for (Message m : messages) list.add(Map.of("role", m.role(), "content", m.content()));
        Map<String, Object> vars = new HashMap<>(specials);
        vars.put("messages", list);
        vars.put("add_generation_prompt", addGenerationPrompt);
        JinjavaInterpreter interp = new JinjavaInterpreter(jinja, new Context(jinja.getGlobalContext(), vars), config);
        String out;
        JinjavaInterpreter.pushCurrent(interp);
        try {
            out = interp.render(tree);
        } catch (RuntimeException e) {
            throw asRenderException(e);
        } finally {
            JinjavaInterpreter.popCurrent();
        }
        for (TemplateError err : interp.getErrors()) {
            if (err.getException() != null) throw asRenderException(err.getException());
            if (err.getSeverity() == TemplateError.ErrorType.FATAL)
                throw new RenderException("chat template error (template line " + err.getLineno() + "): " + err.getMessage());
        }
        return out;
    }

    private static RenderException asRenderException(Throwable e) {
        for (Throwable c = e; c != null; c = c.getCause()) if (c instanceof RenderException r) return r;
        return new RenderException("chat template error: " + e.getMessage());
    }
}
