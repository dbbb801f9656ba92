// Alpaca instruction records rendered with the Stanford Alpaca prompt; loss on the response and EOS only.
package dev.llamafit.io.data;

import java.util.List;

import com.fasterxml.jackson.databind.JsonNode;

import dev.llamafit.io.tokenizer.Tokenizer;

/**
 * Alpaca records {@code {"instruction": …, "input": …, "output": …}} ({@code input} optional, may be empty),
 * rendered with the prompt of Stanford Alpaca (tatsu-lab/stanford_alpaca, train.py):
 * <pre>
 * Below is an instruction that describes a task, paired with an input that provides further context. Write a response that appropriately completes the request.
 *
 * ### Instruction:
 * {instruction}
 *
 * ### Input:
 * {input}
 *
 * ### Response:
 * </pre>
 * and without an input:
 * <pre>
 * Below is an instruction that describes a task. Write a response that appropriately completes the request.
 *
 * ### Instruction:
 * {instruction}
 *
 * ### Response:
 * </pre>
 * (each ends with a newline after "### Response:"), followed by {@code output} and EOS. The prompt (with BOS
 * first when the tokenizer adds BOS by default) and the response are tokenized separately and concatenated, so
 * the boundary is exact; prompt targets are -100 unless trainOnPrompt. {@code {{name}}}-style placeholders in all
 * three fields are substituted from {@link DataOptions#placeholders()}.
 */
final class AlpacaFormat {
    static final String PROMPT_WITH_INPUT = "Below is an instruction that describes a task, paired with an input that provides "
            + "further context. Write a response that appropriately completes the request.\n\n"
            + "### Instruction:\n%s\n\n### Input:\n%s\n\n### Response:\n";
    static final String PROMPT_NO_INPUT = "Below is an instruction that describes a task. Write a response that appropriately "
            + "completes the request.\n\n### Instruction:\n%s\n\n### Response:\n";

    private AlpacaFormat() {}

    /** The prompt text of a record. */
    static String prompt(String instruction, String input) {
        return input == null || input.isEmpty()
                ? PROMPT_NO_INPUT.formatted(instruction)
                : PROMPT_WITH_INPUT.formatted(instruction, input);
    }

    /** The record's parts, or throws {@link JsonRecords.Skip} after reporting what is wrong. */
    static List<Segment> segments(JsonRecords.Raw raw, Tokenizer tok, DataOptions o, JsonRecords.Problems problems) {
        JsonNode r = raw.node();
        if (!r.isObject()) {
            problems.report(raw.position(), "expected an object with instruction, input, output; found " + r.getNodeType().name().toLowerCase(java.util.Locale.ROOT));
            throw JsonRecords.Skip.INSTANCE;
        }
        String instruction = JsonRecords.text(r, "instruction", raw, problems);
        String input = JsonRecords.text(r, "input", raw, problems);
        String output = JsonRecords.text(r, "output", raw, problems);
        if (instruction == null || output == null) {
            problems.report(raw.position(), "missing '" + (instruction == null ? "instruction" : "output")
                    + "' (an Alpaca record needs instruction and output; input is optional)");
            throw JsonRecords.Skip.INSTANCE;
        }
        int[] prompt = tok.encode(prompt(o.substitute(instruction), input == null ? null : o.substitute(input)), tok.addBosByDefault());
        int[] response = withEos(tok.encode(o.substitute(output), false), tok);
        return List.of(new Segment(prompt, false), new Segment(response, true));
    }

    static int[] withEos(int[] ids, Tokenizer tok) {
        if (tok.eosId() < 0) return ids;
        int[] out = java.util.Arrays.copyOf(ids, ids.length + 1);
        out[ids.length] = tok.eosId();
        return out;
    }
}
