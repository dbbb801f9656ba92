package dev.llamafit;

import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import java.util.stream.Stream;

import org.junit.jupiter.api.Test;

/** DESIGN §2: imports only point down the package list (a package may use those listed before it). */
class ArchitectureTest {
    static final List<String> ORDER = List.of("memory", "tensor", "kernels", "quant", "nn", "model", "io", "peft", "optim",
            "plan", "dist", "train", "cli");
    static final Pattern REF = Pattern.compile("\\bdev\\.llamafit\\.([a-z]+)\\b");

    @Test
    void importsPointDownThePackageList() throws IOException {
        Path root = Path.of("src/main/java/dev/llamafit");
        List<String> violations = new ArrayList<>();
        int files = 0;
        try (Stream<Path> s = Files.walk(root)) {
            for (Path p : (Iterable<Path>) s.filter(f -> f.toString().endsWith(".java"))::iterator) {
                files++;
                String pkg = root.relativize(p).getName(0).toString();
                int own = ORDER.indexOf(pkg);
                assertTrue(own >= 0, p + " is in package " + pkg + ", which the architecture does not list");
                String src = Files.readString(p);
                Matcher m = REF.matcher(src);
                while (m.find()) {
                    int used = ORDER.indexOf(m.group(1));
                    if (used > own) violations.add(p + " (" + pkg + ") uses dev.llamafit." + m.group(1));
                }
            }
        }
        assertTrue(files > 10, "scanned " + files + " files");
        assertTrue(violations.isEmpty(), "imports against the arrows:\n" + String.join("\n", violations));
    }
}
