// `llamafit inspect`: what a model folder holds: architecture, parameter counts, tensors, memory.
package dev.llamafit.cli;

import java.io.PrintWriter;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.Callable;

import dev.llamafit.io.ConfigJson;
import dev.llamafit.io.Json;
import dev.llamafit.io.ModelFolder;
import dev.llamafit.kernels.KernelBackends;
import dev.llamafit.memory.ByteSize;
import dev.llamafit.memory.Category;
import dev.llamafit.memory.MemoryLedger;
import dev.llamafit.model.LlamaConfig;
import dev.llamafit.model.ParameterLayout;
import dev.llamafit.tensor.DType;
import dev.llamafit.tensor.Tensor;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;
import picocli.CommandLine.Spec;
import picocli.CommandLine.Model.CommandSpec;

@Command(name = "inspect", mixinStandardHelpOptions = true,
        description = "Describe a model folder: architecture, parameter counts, tensors, memory by ledger category.")
final class InspectCommand implements Callable<Integer> {
    @Spec CommandSpec spec;

    @Option(names = "--model", required = true, description = "Hugging Face model folder.")
    Path model;

    @Option(names = "--json", description = "Print one JSON object.")
    boolean json;

    private static long nonFiniteTotal(ModelFolder folder) {
        return folder.nonFinite().values().stream().mapToLong(Long::longValue).sum();
    }

    @Override
    public Integer call() {
        // Inspecting is how a user finds NaN/Inf weights, so they are reported per tensor here, never refused.
        return ScopedValue.where(ModelFolder.NON_FINITE_ALLOWED, line -> {}).call(this::run);
    }

    private Integer run() {
        MemoryLedger ledger = new MemoryLedger();
        try (ModelFolder folder = ModelFolder.open(model, ledger, KernelBackends.get(), null)) {
            LlamaConfig c = folder.config();
            ParameterLayout layout = ParameterLayout.of(c, DType.F32);
            List<Map<String, Object>> tensors = new ArrayList<>();
            for (String name : folder.source().names()) {
                Tensor t = folder.source().find(name).orElseThrow();
                Map<String, Object> row = new LinkedHashMap<>();
                row.put("name", name);
                row.put("dtype", t.dtype().safetensorsName());
                row.put("shape", t.shape().dims());
                row.put("bytes", t.bytes());
                row.put("non_finite", folder.nonFinite().getOrDefault(name, 0L));
                tensors.add(row);
            }
            Map<String, Object> memory = new LinkedHashMap<>();
            for (Category cat : Category.values()) {
                long b = ledger.currentBytes(cat);
                if (b == 0) continue;
                memory.put(cat.key(), Map.of("bytes", b, "mapped_bytes", ledger.mappedBytes(cat)));
            }
            PrintWriter out = spec.commandLine().getOut();
            if (json) {
                Map<String, Object> o = new LinkedHashMap<>();
                o.put("model", model.toString());
                o.put("config", ConfigJson.toJson(c));
                o.put("parameters", layout.parameterCount());
                o.put("parameters_by_component", layout.countsByComponent());
                o.put("tensors", tensors);
                o.put("non_finite_values", nonFiniteTotal(folder));
                o.put("memory", memory);
                out.println(Json.write(o));
                return Main.OK;
            }
            out.printf("model        %s%n", model);
            out.printf("architecture %s (%s)%n", c.modelType(), ConfigJson.toJson(c).get("architectures"));
            out.printf("dimensions   C=%d  F=%d  L=%d  H=%d  KvH=%d  D=%d  V=%d  context=%d%n", c.hiddenSize(),
                    c.intermediateSize(), c.numLayers(), c.numHeads(), c.numKvHeads(), c.headDim(), c.vocabSize(), c.maxPositions());
            out.printf("rope         theta=%s scaling=%s%n", c.ropeTheta(), c.ropeScaling());
            out.printf("embeddings   %s%n", c.tieWordEmbeddings() ? "tied (LM head = embedding)" : "untied");
            out.printf("biases       qkv=%s o=%s mlp=%s   sliding window=%s%n", c.qkvBias(), c.oBias(), c.mlpBias(),
                    c.slidingWindow() == 0 ? "none" : c.slidingWindow());
            out.printf("parameters   %,d%n", layout.parameterCount());
            layout.countsByComponent().forEach((k, v) ->
                    out.printf("  %-10s %,15d  (%5.1f%%)%n", k, v, 100.0 * v / layout.parameterCount()));
            out.printf("tensors      %d%n", tensors.size());
            for (Map<String, Object> t : tensors)
                out.printf("  %-52s %-5s %-14s %s%s%n", t.get("name"), t.get("dtype"),
                        java.util.Arrays.toString((long[]) t.get("shape")), ByteSize.format((Long) t.get("bytes")),
                        (Long) t.get("non_finite") > 0 ? "  " + t.get("non_finite") + " non-finite (NaN/Inf)" : "");
            long bad = nonFiniteTotal(folder);
            out.printf("non-finite   %s%n", bad == 0 ? "none (every weight is a finite number)"
                    : bad + " NaN/Inf values in " + folder.nonFinite().size() + " tensors: generate, eval, train and merge "
                    + "refuse this model unless given --allow-non-finite");
            out.println("memory (ledger)");
            for (Category cat : Category.values()) {
                long b = ledger.currentBytes(cat);
                if (b == 0) continue;
                long mapped = ledger.mappedBytes(cat);
                out.printf("  %-14s %12s%s%n", cat.key(), ByteSize.format(b), mapped > 0 ? "  (" + ByteSize.format(mapped) + " mapped)" : "");
            }
            return Main.OK;
        }
    }
}
