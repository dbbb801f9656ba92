// Issue 15's RSS criterion: generating from a bf16 checkpoint peaks lower than from fp32 by ≥ 40% of the fp32 weight bytes.
package dev.llamafit.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;

import dev.llamafit.io.HfFolderWriter;
import dev.llamafit.kernels.KernelBackends;
import dev.llamafit.memory.ByteSize;
import dev.llamafit.memory.MemoryLedger;
import dev.llamafit.memory.ProcessMemory;
import dev.llamafit.model.LlamaConfig;
import dev.llamafit.model.ParameterLayout;
import dev.llamafit.model.RandomModels;
import dev.llamafit.tensor.DType;
import dev.llamafit.tensor.Tensor;
import dev.llamafit.tensor.TensorSpec;
import dev.llamafit.testing.SharedData;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * tinystories-656k's weights (2.6 MB) are below the JVM's own run-to-run noise, so the criterion is measured on a
 * stories15M-shaped random model (61 MB in fp32), written in fp32 and in bf16; a child JVM started as the launcher starts
 * it runs greedy {@code generate} on each and reports its VmHWM.
 */
class Bf16GenerateRssTest {
    @TempDir Path tmp;

    @Test
    void bf16PeakRssIsLowerByAtLeastFortyPercentOfTheFp32Weights() throws Exception {
        if (ProcessMemory.peakRssBytes().isEmpty()) return; // no /proc (not Linux): nothing to measure
        Path tokenizer = SharedData.require("tokenizers/llama2");
        LlamaConfig c = RandomModels.stories15M();
        MemoryLedger ledger = new MemoryLedger();
        Map<String, Tensor> w = RandomModels.weights(c, ledger, 11, 0.02);
        Path fp32 = tmp.resolve("fp32"), bf16 = tmp.resolve("bf16");
        try {
            List<Tensor> ordered = new ArrayList<>();
            for (TensorSpec s : ParameterLayout.of(c, DType.F32).specs()) ordered.add(w.get(s.name()));
            HfFolderWriter.write(fp32, c, ordered, tokenizer);
            HfFolderWriter.write(bf16, c, ordered, tokenizer, DType.BF16, ledger, KernelBackends.get());
        } finally {
            w.values().forEach(Tensor::close);
        }
        long fp32WeightBytes = ParameterLayout.of(c, DType.F32).bytes();
        long rss32 = peakRss(fp32), rss16 = peakRss(bf16);
        System.out.printf("generate peak RSS: fp32 %s, bf16 %s, lower by %s = %.0f%% of the fp32 weights (%s)%n", ByteSize.format(rss32),
                ByteSize.format(rss16), ByteSize.format(rss32 - rss16), 100.0 * (rss32 - rss16) / fp32WeightBytes, ByteSize.format(fp32WeightBytes));
        assertTrue(rss32 - rss16 >= 0.4 * fp32WeightBytes, "bf16 peak RSS " + rss16 + " vs fp32 " + rss32 + ": lower by less than 40% of "
                + fp32WeightBytes + " weight bytes");
    }

    long peakRss(Path model) throws IOException, InterruptedException {
        String java = ProcessHandle.current().info().command().orElse("java");
        List<String> cmd = new ArrayList<>(List.of(java, "--add-modules", "jdk.incubator.vector", "--enable-native-access=ALL-UNNAMED",
                "-XX:+UseSerialGC", "-cp", System.getProperty("java.class.path"), PeakRssMain.class.getName(),
                "generate", "--model", model.toString(), "--prompt", "Once upon a time", "--max-new-tokens", "32", "--temperature", "0", "--json"));
        Path log = tmp.resolve(model.getFileName() + ".log");
        Process p = new ProcessBuilder(cmd).redirectErrorStream(true).redirectOutput(log.toFile()).start();
        assertTrue(p.waitFor(3, TimeUnit.MINUTES), "child generate did not finish");
        String text = Files.readString(log);
        assertEquals(0, p.exitValue(), text);
        return text.lines().filter(l -> l.startsWith("peak_rss_bytes=")).mapToLong(l -> Long.parseLong(l.substring(15))).findFirst()
                .orElseThrow(() -> new AssertionError(text));
    }
}
