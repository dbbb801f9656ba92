// Renders a conversation as text spans that are trained or not: the model's Jinja template or a default one.
package dev.llamafit.io.data;

import java.util.ArrayList;
import java.util.List;

/**
 * How a conversation becomes text. A template renders the whole conversation as consecutive {@link Span}s; a
 * span is trained when it is an assistant reply (its content and the end-of-turn marker after it).
 */
sealed interface ChatTemplate permits ChatTemplate.Default, JinjaChatTemplate {

    /** One chat message; role is system, user or assistant. */
    record Message(String role, String content) {}

    /**
     * A piece of the rendered text; {@code eos} appends the EOS id after the text's tokens (the default template
     * ends replies with the EOS token itself rather than with its text, which a tokenizer may not map back).
     */
    record Span(String text, boolean trained, boolean eos) {}

    /** The spans of the whole conversation, in order; throws {@link RenderException} with a reason. */
    List<Span> render(List<Message> messages);

    /** Whether the first span should be encoded with BOS (Jinja templates write bos_token themselves). */
    boolean addsBos();

    /** A template failure for one record (raise_exception, a template that is not incremental). */
    final class RenderException extends RuntimeException {
        private static final long serialVersionUID = 1L;

        RenderException(String message) {
            super(message, null, false, false);
        }
    }

    /**
     * The template used when the model has none (tokenizer_config.json without {@code chat_template}):
     * <pre>
     * [BOS]&lt;|system|&gt;\n{content}\n&lt;|user|&gt;\n{content}\n&lt;|assistant|&gt;\n{content}[EOS]&lt;|user|&gt;\n…
     * </pre>
     * Every system and user message is {@code "<|ROLE|>\n" + content + "\n"}; an assistant message is the header
     * {@code "<|assistant|>\n"} (the generation prompt, not trained) then {@code content} and the EOS token
     * (trained). BOS starts the text when the tokenizer adds BOS by default. The markers are plain text, so they
     * work with any vocabulary; a model learns them during fine-tuning.
     */
    record Default(boolean addsBos) implements ChatTemplate {
        static final String ASSISTANT_HEADER = "<|assistant|>\n";

        @Override
        public List<Span> render(List<Message> messages) {
            List<Span> spans = new ArrayList<>();
            StringBuilder prompt = new StringBuilder();
            for (Message m : messages) {
                if (m.role().equals("assistant")) {
                    prompt.append(ASSISTANT_HEADER);
                    spans.add(new Span(prompt.toString(), false, false));
                    prompt.setLength(0);
                    spans.add(new Span(m.content(), true, true));
                } else {
                    prompt.append("<|").append(m.role()).append("|>\n").append(m.content()).append('\n');
                }
            }
            if (!prompt.isEmpty()) spans.add(new Span(prompt.toString(), false, false));
            return spans;
        }
    }
}
