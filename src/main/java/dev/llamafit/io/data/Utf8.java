// Strict UTF-8 validation over byte ranges, so readers can name the offending byte instead of "Input length = 1".
package dev.llamafit.io.data;

/**
 * The rules of Java's own UTF-8 decoder in REPORT mode (RFC 3629): no overlong forms, no surrogates
 * (ED A0..BF), nothing above U+10FFFF. Callers validate first and then decode with {@code new String(…, UTF_8)},
 * which on valid input gives exactly what a decoding reader gave before.
 */
final class Utf8 {
    private Utf8() {}

    /** Result of {@link #sequence}: the bytes from {@code i} are a valid but unfinished sequence. */
    static final int INCOMPLETE = 0;
    /** Result of {@link #sequence}: the byte at {@code i} cannot start or continue a valid sequence. */
    static final int INVALID = -1;

    /**
     * The length (1-4) of the valid sequence starting at {@code b[i]}, {@link #INCOMPLETE} when the bytes before
     * {@code end} are a valid start of one that continues past {@code end}, or {@link #INVALID}.
     */
    static int sequence(byte[] b, int i, int end) {
        int lead = b[i] & 0xFF;
        if (lead < 0x80) return 1;
        int n, lo = 0x80, hi = 0xBF; // the allowed range of the second byte
        if (lead >= 0xC2 && lead <= 0xDF) n = 2;
        else if (lead >= 0xE0 && lead <= 0xEF) {
            n = 3;
            if (lead == 0xE0) lo = 0xA0;
            if (lead == 0xED) hi = 0x9F;
        } else if (lead >= 0xF0 && lead <= 0xF4) {
            n = 4;
            if (lead == 0xF0) lo = 0x90;
            if (lead == 0xF4) hi = 0x8F;
        } else return INVALID;
        for (int k = 1; k < n; k++) {
            if (i + k >= end) return INCOMPLETE;
            int c = b[i + k] & 0xFF;
            if (k == 1 ? c < lo || c > hi : c < 0x80 || c > 0xBF) return INVALID;
        }
        return n;
    }

    /** The index of the first byte in {@code [from, to)} where valid UTF-8 stops ({@code to} when all is valid). */
    static int validUpTo(byte[] b, int from, int to) {
        int i = from;
        while (i < to) {
            if (b[i] >= 0) { // ASCII fast path
                i++;
                continue;
            }
            int n = sequence(b, i, to);
            if (n <= 0) return i;
            i += n;
        }
        return to;
    }

    /** "0xC3 0x28": the bytes of a bad sequence, for messages (at most 4). */
    static String show(byte[] b, int i, int end) {
        StringBuilder sb = new StringBuilder();
        for (int k = i; k < Math.min(end, i + 4); k++) {
            if (k > i) sb.append(' ');
            sb.append(String.format("0x%02X", b[k] & 0xFF));
            // Up to and including the byte that breaks the sequence (a stray or invalid lead byte is alone).
            if (k == i ? (b[i] & 0xFF) < 0xC2 || (b[i] & 0xFF) > 0xF4 : (b[k] & 0xC0) != 0x80) break;
        }
        return sb.toString();
    }
}
