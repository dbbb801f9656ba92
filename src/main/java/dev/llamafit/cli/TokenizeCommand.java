// `llamafit tokenize`: show the token ids (and pieces) of a text.
package dev.llamafit.cli;

import java.io.PrintWriter;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.Callable;

import dev.llamafit.io.Json;
import dev.llamafit.io.tokenizer.Tokenizer;
import dev.llamafit.io.tokenizer.Tokenizers;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;
import picocli.CommandLine.Spec;
import picocli.CommandLine.Model.CommandSpec;

@Command(name = "tokenize", mixinStandardHelpOptions = true, description = "Encode text with a model's tokenizer.")
final class TokenizeCommand implements Callable<Integer> {
    @Spec CommandSpec spec;

    @Option(names = "--model", required = true, description = "Model folder holding tokenizer.json, tokenizer.model or tokenizer.bin.")
    Path model;

    @Option(names = "--text", required = true, description = "Text to encode.")
    String text;

    @Option(names = "--no-bos", description = "Do not prepend the BOS token.")
    boolean noBos;

    @Option(names = "--json", description = "Print one JSON object: ids, pieces, count.")
    boolean json;

    @Override
    public Integer call() {
        Tokenizer tok = Tokenizers.load(model);
        int[] ids = tok.encode(text, !noBos && tok.addBosByDefault());
        List<String> pieces = new ArrayList<>();
        for (int id : ids) pieces.add(tok.piece(id));
        PrintWriter out = spec.commandLine().getOut();
        if (json) {
            Map<String, Object> o = new LinkedHashMap<>();
            o.put("ids", ids);
            o.put("pieces", pieces);
            o.put("count", ids.length);
            out.println(Json.write(o));
        } else {
            StringBuilder sb = new StringBuilder();
            for (int i = 0; i < ids.length; i++) sb.append(i == 0 ? "" : " ").append(ids[i]);
            out.println(sb);
            for (int i = 0; i < ids.length; i++) out.printf("%8d  %s%n", ids[i], Json.writeCompact(pieces.get(i)));
            out.printf("%d tokens%n", ids.length);
        }
        return Main.OK;
    }
}
