// GPT-2's reversible byte <-> printable-character map used by byte-level BPE (GPT-2, Llama 3, Qwen2).
package dev.llamafit.io.tokenizer;

import java.io.ByteArrayOutputStream;
import java.nio.charset.StandardCharsets;

/**
 * openai/gpt-2 {@code encoder.py bytes_to_unicode}: bytes '!'..'~', '¡'..'¬' and '®'..'ÿ' stand for
 * themselves; the other 68 bytes (controls, space, DEL, NBSP, soft hyphen) map in order to U+0100, U+0101, …,
 * so every byte string becomes a printable string (space is 'Ġ', newline 'Ċ').
 */
final class ByteLevelMap {
    private static final char[] BYTE_TO_CHAR = new char[256];
    private static final int[] CHAR_TO_BYTE = new int[512];

    static {
        java.util.Arrays.fill(CHAR_TO_BYTE, -1);
        int next = 256;
        for (int b = 0; b < 256; b++) {
            boolean printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
            char c = (char) (printable ? b : next++);
            BYTE_TO_CHAR[b] = c;
            CHAR_TO_BYTE[c] = b;
        }
    }

    private ByteLevelMap() {}

    /** The printable char that stands for byte {@code b} (0..255). */
    static char charOf(int b) {
        return BYTE_TO_CHAR[b & 0xFF];
    }

    /** The UTF-8 bytes of {@code text}, each as its printable char. */
    static String encode(String text) {
        byte[] bytes = text.getBytes(StandardCharsets.UTF_8);
        char[] chars = new char[bytes.length];
        for (int i = 0; i < bytes.length; i++) chars[i] = BYTE_TO_CHAR[bytes[i] & 0xFF];
        return new String(chars);
    }

    /** The bytes that the chars of {@code token} stand for; a char outside the map keeps its UTF-8. */
    static byte[] decode(String token) {
        ByteArrayOutputStream out = new ByteArrayOutputStream(token.length());
        for (int i = 0; i < token.length(); i++) {
            char c = token.charAt(i);
            int b = c < CHAR_TO_BYTE.length ? CHAR_TO_BYTE[c] : -1;
            if (b >= 0) {
                out.write(b);
            } else {
                int cp = token.codePointAt(i);
                out.writeBytes(new String(Character.toChars(cp)).getBytes(StandardCharsets.UTF_8));
                if (Character.charCount(cp) == 2) i++;
            }
        }
        return out.toByteArray();
    }
}
