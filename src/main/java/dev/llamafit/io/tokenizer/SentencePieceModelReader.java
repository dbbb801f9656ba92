// Parses a SentencePiece tokenizer.model (a serialized sentencepiece.ModelProto) without a protobuf library.
package dev.llamafit.io.tokenizer;

import dev.llamafit.io.InputException;

import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;

/**
 * Field numbers from sentencepiece's {@code src/sentencepiece_model.proto} (proto2):
 * <pre>
 * ModelProto      1 pieces (repeated SentencePiece), 2 trainer_spec, 3 normalizer_spec
 * SentencePiece   1 piece (string), 2 score (float), 3 type (enum, default NORMAL)
 * TrainerSpec     3 model_type (1 UNIGRAM, 2 BPE, 3 WORD, 4 CHAR; default UNIGRAM), 35 byte_fallback,
 *                 40 unk_id (default 0), 41 bos_id (1), 42 eos_id (2), 43 pad_id (-1)
 * NormalizerSpec  1 name, 3 add_dummy_prefix (default true), 4 remove_extra_whitespaces (true),
 *                 5 escape_whitespaces (true)
 * </pre>
 * Absent fields take the proto2 defaults above. Unknown fields are skipped.
 */
final class SentencePieceModelReader {
    private static final int BPE = 2;

    private SentencePieceModelReader() {}

    static SentencePieceTokenizer read(Path file, byte[] data) {
        ProtoReader model = new ProtoReader(file, data);
        List<String> pieces = new ArrayList<>();
        List<Float> scores = new ArrayList<>();
        List<Byte> types = new ArrayList<>();
        int modelType = 1;
        boolean byteFallback = false;
        int unkId = 0, bosId = 1, eosId = 2;
        boolean addDummyPrefix = true, removeExtraWhitespaces = true, escapeWhitespaces = true;
        String normalizerName = "";
        int trainerOffset = -1;
        while (model.next()) {
            int at = model.offset();
            switch (model.field()) {
                case 1 -> {
                    ProtoReader p = model.message();
                    String piece = null;
                    float score = 0f;
                    int type = SentencePieceTokenizer.NORMAL;
                    while (p.next()) {
                        switch (p.field()) {
                            case 1 -> piece = p.string();
                            case 2 -> score = p.float32();
                            case 3 -> type = p.int32();
                            default -> p.skip();
                        }
                    }
                    if (piece == null) throw model.error(at, "piece " + pieces.size() + " has no text (field 1)");
                    if (type < 1 || type > 6) throw model.error(at, "piece " + pieces.size() + " has unknown type " + type);
                    pieces.add(piece);
                    scores.add(score);
                    types.add((byte) type);
                }
                case 2 -> {
                    trainerOffset = at;
                    ProtoReader t = model.message();
                    while (t.next()) {
                        switch (t.field()) {
                            case 3 -> modelType = t.int32();
                            case 35 -> byteFallback = t.bool();
                            case 40 -> unkId = t.int32();
                            case 41 -> bosId = t.int32();
                            case 42 -> eosId = t.int32();
                            default -> t.skip();
                        }
                    }
                }
                case 3 -> {
                    ProtoReader n = model.message();
                    while (n.next()) {
                        switch (n.field()) {
                            case 1 -> normalizerName = n.string();
                            case 3 -> addDummyPrefix = n.bool();
                            case 4 -> removeExtraWhitespaces = n.bool();
                            case 5 -> escapeWhitespaces = n.bool();
                            default -> n.skip();
                        }
                    }
                }
                default -> model.skip();
            }
        }
        if (pieces.isEmpty()) throw InputException.at(file, "byte 0", "no pieces: not a SentencePiece model");
        if (modelType != BPE) {
            String name = switch (modelType) {
                case 1 -> "UNIGRAM";
                case 3 -> "WORD";
                case 4 -> "CHAR";
                default -> "type " + modelType;
            };
            throw InputException.at(file, trainerOffset < 0 ? null : "byte " + trainerOffset,
                    "SentencePiece model_type " + name + " is not supported: only BPE (Llama/Mistral style) models are");
        }
        int n = pieces.size();
        for (int[] check : new int[][] {{unkId, 40}, {bosId, 41}, {eosId, 42}}) {
            if (check[0] >= n) {
                throw InputException.at(file, "trainer_spec field " + check[1],
                        "special id " + check[0] + " is outside the vocabulary of " + n + " pieces");
            }
        }
        String[] pieceArray = pieces.toArray(String[]::new);
        float[] scoreArray = new float[n];
        byte[] typeArray = new byte[n];
        for (int i = 0; i < n; i++) {
            scoreArray[i] = scores.get(i);
            typeArray[i] = types.get(i);
        }
        boolean nfkc = normalizerName.startsWith("nmt_nfkc") || normalizerName.startsWith("nfkc");
        var options = new SentencePieceTokenizer.Options(addDummyPrefix, removeExtraWhitespaces, escapeWhitespaces,
                nfkc, byteFallback, unkId, bosId, eosId);
        return new SentencePieceTokenizer(pieceArray, scoreArray, typeArray, options);
    }
}
