// A minimal, bounds-checked protobuf wire-format reader (varints, fixed32, length-delimited fields).
package dev.llamafit.io.tokenizer;

import dev.llamafit.io.InputException;

import java.nio.charset.StandardCharsets;
import java.nio.file.Path;

/**
 * Reads the protobuf wire format (protobuf.dev/programming-guides/encoding): a message is a sequence of
 * (tag varint = field_number << 3 | wire_type, value). Wire types: 0 varint, 1 fixed64, 2 length-delimited,
 * 5 fixed32. Only what {@code sentencepiece_model.proto} needs; every read is checked against the message
 * end so a truncated or garbage file gives an {@link InputException} with the byte offset.
 */
final class ProtoReader {
    static final int VARINT = 0, FIXED64 = 1, LEN = 2, FIXED32 = 5;

    private final Path file;
    private final byte[] data;
    private int pos;
    private final int end;
    private int tag;

    ProtoReader(Path file, byte[] data) {
        this(file, data, 0, data.length);
    }

    private ProtoReader(Path file, byte[] data, int start, int end) {
        this.file = file;
        this.data = data;
        this.pos = start;
        this.end = end;
    }

    /** Advances to the next field; false at the end of this message. */
    boolean next() {
        if (pos >= end) return false;
        int at = pos;
        long t = varint();
        int wireType = (int) (t & 7);
        long field = t >>> 3;
        if (field == 0 || field > 536_870_911L) throw error(at, "invalid field number " + field);
        if (wireType != VARINT && wireType != FIXED64 && wireType != LEN && wireType != FIXED32) {
            throw error(at, "unsupported wire type " + wireType + " (field " + field + ")");
        }
        tag = (int) t;
        return true;
    }

    int field() {
        return tag >>> 3;
    }

    int wireType() {
        return tag & 7;
    }

    int offset() {
        return pos;
    }

    long varint() {
        int at = pos;
        long result = 0;
        for (int shift = 0; shift < 64; shift += 7) {
            if (pos >= end) throw error(at, "truncated varint");
            int b = data[pos++] & 0xFF;
            result |= (long) (b & 0x7F) << shift;
            if ((b & 0x80) == 0) return result;
        }
        throw error(at, "varint longer than 10 bytes");
    }

    /** A varint field holding an int32 (negative values are sign-extended to 10 bytes on the wire). */
    int int32() {
        expect(VARINT);
        return (int) varint();
    }

    boolean bool() {
        expect(VARINT);
        return varint() != 0;
    }

    float float32() {
        expect(FIXED32);
        if (end - pos < 4) throw error(pos, "truncated fixed32");
        int bits = (data[pos] & 0xFF) | (data[pos + 1] & 0xFF) << 8 | (data[pos + 2] & 0xFF) << 16
                | (data[pos + 3] & 0xFF) << 24;
        pos += 4;
        return Float.intBitsToFloat(bits);
    }

    String string() {
        int start = lengthDelimited();
        return new String(data, start, pos - start, StandardCharsets.UTF_8);
    }

    /** A reader over the embedded message of the current length-delimited field. */
    ProtoReader message() {
        int start = lengthDelimited();
        return new ProtoReader(file, data, start, pos);
    }

    void skip() {
        switch (wireType()) {
            case VARINT -> varint();
            case FIXED64 -> advance(8);
            case FIXED32 -> advance(4);
            case LEN -> lengthDelimited();
            default -> throw error(pos, "unsupported wire type " + wireType());
        }
    }

    private int lengthDelimited() {
        expect(LEN);
        int at = pos;
        long length = varint();
        if (length < 0 || length > end - pos) {
            throw error(at, "length " + length + " runs past the end of the message (" + (end - pos) + " bytes left)");
        }
        int start = pos;
        pos += (int) length;
        return start;
    }

    private void advance(int n) {
        if (end - pos < n) throw error(pos, "truncated field");
        pos += n;
    }

    private void expect(int wireType) {
        if (wireType() != wireType) {
            throw error(pos, "field " + field() + " has wire type " + wireType() + ", expected " + wireType);
        }
    }

    InputException error(int offset, String message) {
        return InputException.at(file, "byte " + offset,
                message + " (not a valid SentencePiece model: expected a serialized sentencepiece.ModelProto)");
    }
}
