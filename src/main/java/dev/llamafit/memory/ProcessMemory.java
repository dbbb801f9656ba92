// The process's resident memory as the kernel reports it (Linux /proc/self/status).
package dev.llamafit.memory;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.OptionalLong;

/** Current and peak resident set size, for comparing the ledger with what the OS sees. */
public final class ProcessMemory {
    private static final Path STATUS = Path.of("/proc/self/status");

    private ProcessMemory() {}

    /** VmRSS: resident bytes now. */
    public static OptionalLong rssBytes() { return field("VmRSS:"); }

    /** VmHWM: the peak resident bytes of the process so far. */
    public static OptionalLong peakRssBytes() { return field("VmHWM:"); }

    /** MemTotal from /proc/meminfo: the machine's physical RAM; the JVM's max heap where that is unavailable. */
    public static long physicalRamBytes() {
        try {
            for (String line : Files.readAllLines(Path.of("/proc/meminfo")))
                if (line.startsWith("MemTotal:")) return Long.parseLong(line.replaceAll("[^0-9]", "")) * 1024;
        } catch (IOException | NumberFormatException e) {
            // Not Linux: fall back below.
        }
        return Runtime.getRuntime().maxMemory();
    }

    private static OptionalLong field(String name) {
        try {
            for (String line : Files.readAllLines(STATUS)) {
                if (line.startsWith(name)) {
                    String[] parts = line.substring(name.length()).trim().split("\\s+");
                    return OptionalLong.of(Long.parseLong(parts[0]) * 1024);
                }
            }
        } catch (IOException | RuntimeException e) {
            // Not Linux, or an unexpected format: report nothing rather than a wrong number.
        }
        return OptionalLong.empty();
    }
}
