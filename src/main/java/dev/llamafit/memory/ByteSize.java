// Human-readable byte sizes (binary units) and parsing of sizes such as "24GiB".
package dev.llamafit.memory;

import java.util.Locale;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/** Formats and parses byte counts. Binary units (KiB, MiB, GiB) unless a decimal unit is written. */
public final class ByteSize {
    private static final Pattern SIZE = Pattern.compile("\\s*([0-9]+(?:\\.[0-9]+)?)\\s*([KMGT]?i?B?)\\s*", Pattern.CASE_INSENSITIVE);

    private ByteSize() {}

    public static String format(long bytes) {
        long abs = Math.abs(bytes);
        if (abs < 1024) return bytes + " B";
        String[] units = {"KiB", "MiB", "GiB", "TiB"};
        double v = bytes;
        int u = -1;
        while (Math.abs(v) >= 1024 && u < units.length - 1) { v /= 1024; u++; }
        return String.format(Locale.ROOT, "%.2f %s", v, units[u]);
    }

    /** Parses "512", "1.5GiB", "24GB" (decimal), "300MiB". */
    public static long parse(String text) {
        Matcher m = SIZE.matcher(text);
        if (!m.matches()) throw new IllegalArgumentException("not a byte size: '" + text + "' (expected e.g. 24GiB, 512MiB, 80GB)");
        double v = Double.parseDouble(m.group(1));
        String unit = m.group(2).toUpperCase(Locale.ROOT);
        boolean binary = unit.contains("I") || unit.length() == 1 && !unit.equals("B");
        double base = binary ? 1024 : 1000;
        int power = unit.isEmpty() || unit.equals("B") ? 0 : "KMGT".indexOf(unit.charAt(0)) + 1;
        return (long) (v * Math.pow(base, power));
    }
}
