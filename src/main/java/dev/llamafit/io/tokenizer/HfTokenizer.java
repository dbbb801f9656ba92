// Hugging Face tokenizer.json (BPE model) in plain Java: added tokens, normalizer, pre-tokenizer, BPE, decoder.
package dev.llamafit.io.tokenizer;

import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.llamafit.io.InputException;
import dev.llamafit.io.JsonFields;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Comparator;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.OptionalInt;
import java.util.PriorityQueue;
import java.util.concurrent.ConcurrentHashMap;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * A {@code tokenizer.json} of model type BPE, as huggingface/tokenizers runs it: (1) added tokens are found
 * verbatim in the input and emitted as their ids, never merged; (2) each text segment between them is
 * normalised and (3) pre-tokenised into words; (4) each word is split into characters (unknown ones into
 * {@code <0xNN>} byte tokens with byte_fallback, else unk, fused when fuse_unk) and merged pairwise, the
 * lowest merge rank first (ties: leftmost); (5) decoding runs the decoder chain ({@link HfDecoder}).
 * BOS comes from the TemplateProcessing post-processor when it starts with a special token.
 *
 * <p>Simplifications: added tokens are matched on the raw input even when marked "normalized", and
 * "single_word" is ignored; the post-processor is only read for BOS; BPE dropout is ignored (inference).
 */
public final class HfTokenizer extends ByteDecoding {
    private static final int CACHE_MAX_WORD_CHARS = 64, CACHE_MAX_ENTRIES = 100_000;

    private final Map<String, Integer> vocab;        // model.vocab plus added tokens
    private final String[] pieces;                    // [V]; "" for ids nothing names
    private final boolean[] special;                  // [V]
    private final MergeTable merges;
    private final int[] byteIds = new int[256];       // <0xNN> -> id, -1 if absent
    private final int unkId;
    private final boolean byteFallback, fuseUnk, ignoreMerges;
    private final HfComponents.Normalizer normalizer; // null: none
    private final HfComponents.PreTokenizer preTokenizer; // null: the segment is one word
    private final HfDecoder decoder;
    private final AddedTokens rawAdded;               // tokens matched in the raw input; null: none
    private final AddedTokens normalizedAdded;        // "normalized": true tokens, matched after normalising
    private final int bosId;
    private final byte[][] tokenBytes;                // [V] decoded bytes when not the first token
    private final ConcurrentHashMap<String, int[]> cache = new ConcurrentHashMap<>();

    private HfTokenizer(Path file, JsonNode root) {
        JsonNode model = JsonFields.optionalObject(root, "model", file, "");
        if (model == null) throw InputException.at(file, "model", "missing \"model\" (a Hugging Face tokenizer.json has one)");
        String type = JsonFields.optionalString(model, "type", model.has("merges") ? "BPE" : "", file, "model");
        if (!type.equals("BPE")) throw HfComponents.unsupported(file, "model.type", "model", type.isEmpty() ? "(none)" : type);
        for (String field : new String[] {"continuing_subword_prefix", "end_of_word_suffix"}) {
            if (!JsonFields.optionalString(model, field, "", file, "model").isEmpty()) {
                throw InputException.at(file, "model." + field, "BPE option " + field + " is not supported");
            }
        }
        byteFallback = JsonFields.optionalBoolean(model, "byte_fallback", false, file, "model");
        fuseUnk = JsonFields.optionalBoolean(model, "fuse_unk", false, file, "model");
        ignoreMerges = JsonFields.optionalBoolean(model, "ignore_merges", false, file, "model");

        vocab = new HashMap<>();
        int maxId = -1;
        JsonNode vocabNode = model.path("vocab");
        if (!vocabNode.isObject()) throw InputException.at(file, "model.vocab", "expected an object of token -> id");
        for (var it = vocabNode.properties().iterator(); it.hasNext(); ) {
            var e = it.next();
            int id = checkedId(file, e.getValue(), "model.vocab[\"" + e.getKey() + "\"]");
            vocab.put(e.getKey(), id);
            maxId = Math.max(maxId, id);
        }
        JsonNode added = JsonFields.optionalArray(root, "added_tokens", file, "");
        List<Integer> specialIds = new ArrayList<>();
        List<JsonNode> addedList = new ArrayList<>();
        for (int i = 0; i < added.size(); i++) {
            JsonNode t = added.get(i);
            String where = "added_tokens[" + i + "]";
            if (!t.isObject()) throw InputException.at(file, "field '" + where + "' must be an object, got " + t);
            int id = checkedId(file, t.path("id"), where + ".id");
            String content = HfComponents.text(file, t, "content", where);
            for (String flag : new String[] {"special", "normalized", "lstrip", "rstrip", "single_word"})
                JsonFields.optionalBoolean(t, flag, false, file, where);
            vocab.put(content, id);
            if (t.path("special").asBoolean(false)) specialIds.add(id);
            addedList.add(t);
            maxId = Math.max(maxId, id);
        }
        pieces = new String[maxId + 1];
        Arrays.fill(pieces, "");
        vocab.forEach((piece, id) -> pieces[id] = piece);
        special = new boolean[maxId + 1];
        for (int id : specialIds) special[id] = true;
        Arrays.fill(byteIds, -1);
        for (int b = 0; b < 256; b++) byteIds[b] = vocab.getOrDefault(String.format("<0x%02X>", b), -1);

        String unk = JsonFields.optionalString(model, "unk_token", null, file, "model");
        if (unk != null) {
            Integer id = vocab.get(unk);
            if (id == null) throw InputException.at(file, "model.unk_token", "unk_token \"" + unk + "\" is not in the vocabulary");
            unkId = id;
        } else {
            unkId = -1;
        }
        merges = readMerges(file, model.path("merges"));
        normalizer = nullOr(root.path("normalizer")) == null ? null : HfComponents.normalizer(file, root.get("normalizer"), "normalizer");
        preTokenizer = nullOr(root.path("pre_tokenizer")) == null ? null : HfComponents.preTokenizer(file, root.get("pre_tokenizer"), "pre_tokenizer");
        decoder = HfDecoder.parse(file, root.get("decoder"));
        // tokenizers' AddedVocabulary: tokens with "normalized": false are found in the raw text; the others
        // are normalised themselves (a Prepend normaliser turns "<s>" into "▁<s>") and found in normalised text.
        List<JsonNode> raw = new ArrayList<>(), normalized = new ArrayList<>();
        for (JsonNode t : addedList) (normalizer != null && t.path("normalized").asBoolean(!t.path("special").asBoolean(false)) ? normalized : raw).add(t);
        rawAdded = AddedTokens.of(raw, null);
        normalizedAdded = AddedTokens.of(normalized, normalizer);
        bosId = templateBos(file, root.path("post_processor"), "post_processor");
        tokenBytes = new byte[pieces.length][];
        for (int id = 0; id < pieces.length; id++) tokenBytes[id] = decoder.bytes(pieces[id], false);
    }

    /** Reads and validates {@code tokenizer.json}. */
    public static HfTokenizer load(Path file) {
        JsonNode root;
        try {
            root = new ObjectMapper().readTree(file.toFile());
        } catch (JsonProcessingException e) {
            var loc = e.getLocation();
            throw InputException.at(file, loc == null ? null : "line " + loc.getLineNr() + ", column " + loc.getColumnNr(),
                    "malformed JSON: " + e.getOriginalMessage());
        } catch (IOException e) {
            if (!Files.exists(file)) throw InputException.at(file, "tokenizer file not found");
            throw InputException.at(file, "cannot read: " + e.getMessage());
        }
        if (root == null || !root.isObject()) throw InputException.at(file, "expected a JSON object (a Hugging Face tokenizer.json)");
        return new HfTokenizer(file, root);
    }

    private static JsonNode nullOr(JsonNode node) {
        return node == null || node.isNull() || node.isMissingNode() ? null : node;
    }

    private static int checkedId(Path file, JsonNode node, String where) {
        if (node.isMissingNode()) throw InputException.at(file, "field '" + where + "' is missing (a token id)");
        return JsonFields.intIn(node, 0, (1 << 24) - 1, file, where);
    }

    /** Merges are "left right" strings (older files) or [left, right] pairs; the rank is the index. */
    private MergeTable readMerges(Path file, JsonNode list) {
        if (!list.isArray()) throw InputException.at(file, "field 'model.merges' must be an array, got " + list);
        MergeTable table = new MergeTable(list.size());
        for (int rank = 0; rank < list.size(); rank++) {
            JsonNode m = list.get(rank);
            String left, right;
            if (m.isTextual()) {
                String s = m.asText();
                int space = s.indexOf(' ', 1);
                if (space < 0) throw InputException.at(file, "model.merges[" + rank + "]", "expected \"left right\", got \"" + s + "\"");
                left = s.substring(0, space);
                right = s.substring(space + 1);
            } else if (m.isArray() && m.size() == 2 && m.get(0).isTextual() && m.get(1).isTextual()) {
                left = m.get(0).asText();
                right = m.get(1).asText();
            } else {
                throw InputException.at(file, "model.merges[" + rank + "]", "expected \"left right\" or [left, right], got " + m);
            }
            Integer l = vocab.get(left), r = vocab.get(right), merged = vocab.get(left + right);
            if (l == null || r == null || merged == null) {
                throw InputException.at(file, "model.merges[" + rank + "]", "merge \"" + left + "\" + \"" + right
                        + "\" uses a token that is not in the vocabulary");
            }
            table.put(l, r, rank, merged);
        }
        return table;
    }

    /**
     * Added tokens as one regex: one alternative per token, longest first so that the leftmost match is also
     * the longest (as tokenizers' leftmost-longest Aho-Corasick); group i+1 captures token i's text, without
     * the whitespace that lstrip/rstrip let it swallow.
     */
    private record AddedTokens(Pattern pattern, int[] groupIds) {
        static AddedTokens of(List<JsonNode> tokens, HfComponents.Normalizer normalizer) {
            record Entry(String text, JsonNode token) {}
            List<Entry> entries = new ArrayList<>();
            for (JsonNode t : tokens) {
                String text = t.path("content").asText();
                if (normalizer != null) text = normalizer.apply(text);
                if (!text.isEmpty()) entries.add(new Entry(text, t));
            }
            if (entries.isEmpty()) return null;
            entries.sort(Comparator.comparingInt((Entry e) -> e.text().length()).reversed());
            StringBuilder regex = new StringBuilder();
            int[] ids = new int[entries.size()];
            for (int i = 0; i < entries.size(); i++) {
                JsonNode t = entries.get(i).token();
                if (i > 0) regex.append('|');
                if (t.path("lstrip").asBoolean(false)) regex.append("\\s*");
                regex.append('(').append(Pattern.quote(entries.get(i).text())).append(')');
                if (t.path("rstrip").asBoolean(false)) regex.append("\\s*");
                ids[i] = t.path("id").asInt();
            }
            return new AddedTokens(Pattern.compile(regex.toString(), Pattern.UNICODE_CHARACTER_CLASS), ids);
        }

        /** Calls {@code text} for each stretch between tokens (with whether it starts the input) and adds token ids. */
        void split(String input, boolean atStart, IntList out, TextConsumer text) {
            Matcher m = pattern.matcher(input);
            int last = 0;
            while (m.find()) {
                if (m.start() > last) text.accept(input.substring(last, m.start()), atStart && last == 0, out);
                int group = 1;
                while (m.group(group) == null) group++;
                out.add(groupIds[group - 1]);
                last = m.end();
            }
            if (last < input.length()) text.accept(input.substring(last), atStart && last == 0, out);
        }
    }

    private interface TextConsumer {
        void accept(String text, boolean atStart, IntList out);
    }

    /** The BOS of a TemplateProcessing post-processor (maybe inside a Sequence) whose "single" starts with one. */
    private int templateBos(Path file, JsonNode pp, String where) {
        if (pp == null || pp.isNull() || pp.isMissingNode()) return -1;
        if (!pp.isObject()) throw InputException.at(file, "field '" + where + "' must be an object, got " + pp);
        String type = JsonFields.optionalString(pp, "type", "", file, where);
        if (type.equals("Sequence")) {
            JsonNode list = JsonFields.optionalArray(pp, "processors", file, where);
            for (int i = 0; i < list.size(); i++) {
                int id = templateBos(file, list.get(i), where + ".processors[" + i + "]");
                if (id >= 0) return id;
            }
            return -1;
        }
        if (!type.equals("TemplateProcessing")) return -1;
        JsonNode first = pp.path("single").path(0).path("SpecialToken");
        if (first.isMissingNode()) return -1;
        String name = JsonFields.optionalString(first, "id", "", file, where + ".single[0].SpecialToken");
        JsonNode ids = pp.path("special_tokens").path(name).path("ids");
        if (ids.isArray() && ids.size() == 1)
            return checkedId(file, ids.get(0), where + ".special_tokens[\"" + name + "\"].ids[0]");
        return vocab.getOrDefault(name, -1);
    }

    // ---- encoding ---------------------------------------------------------------------------------------

    @Override
    public int[] encode(String text, boolean addBos) {
        IntList out = new IntList(text.length() / 3 + 2);
        if (addBos && bosId >= 0) out.add(bosId);
        if (rawAdded == null) encodeSegment(text, true, out);
        else rawAdded.split(text, true, out, this::encodeSegment);
        return out.toArray();
    }

    private void encodeSegment(String segment, boolean atStart, IntList out) {
        String normalized = normalizer == null ? segment : normalizer.apply(segment);
        if (normalizedAdded == null) preTokenize(normalized, atStart, out);
        else normalizedAdded.split(normalized, atStart, out, this::preTokenize);
    }

    private void preTokenize(String normalized, boolean atStart, IntList out) {
        if (normalized.isEmpty()) return;
        if (preTokenizer == null) {
            out.addAll(word(normalized));
            return;
        }
        List<HfComponents.Piece> words = new ArrayList<>();
        preTokenizer.split(new HfComponents.Piece(normalized, atStart), words);
        for (HfComponents.Piece w : words) if (!w.text().isEmpty()) out.addAll(word(w.text()));
    }

    private int[] word(String word) {
        if (word.length() > CACHE_MAX_WORD_CHARS) return bpe(word);
        int[] ids = cache.get(word);
        if (ids == null) {
            ids = bpe(word);
            if (cache.size() >= CACHE_MAX_ENTRIES) cache.clear();
            cache.put(word, ids);
        }
        return ids;
    }

    /** BPE on one word: characters (or byte/unk fallbacks), then merges by lowest rank, leftmost first. */
    int[] bpe(String word) {
        if (ignoreMerges) {
            Integer whole = vocab.get(word);
            if (whole != null) return new int[] {whole};
        }
        IntList symbols = new IntList(word.length());
        boolean lastUnknown = false;
        for (int i = 0; i < word.length(); ) {
            int cp = word.codePointAt(i);
            int n = Character.charCount(cp);
            Integer id = vocab.get(word.substring(i, i + n));
            i += n;
            if (id != null) {
                symbols.add(id);
                lastUnknown = false;
                continue;
            }
            if (byteFallback) {
                byte[] bytes = new String(Character.toChars(cp)).getBytes(java.nio.charset.StandardCharsets.UTF_8);
                boolean all = true;
                for (byte b : bytes) all &= byteIds[b & 0xFF] >= 0;
                if (all) {
                    for (byte b : bytes) symbols.add(byteIds[b & 0xFF]);
                    lastUnknown = false;
                    continue;
                }
            }
            if (unkId >= 0 && !(fuseUnk && lastUnknown)) symbols.add(unkId);
            lastUnknown = unkId >= 0;
        }
        int[] ids = symbols.toArray();
        int count = ids.length;
        if (count < 2) return ids;
        int[] prev = new int[count], next = new int[count];
        for (int i = 0; i < count; i++) {
            prev[i] = i - 1;
            next[i] = i + 1 < count ? i + 1 : -1;
        }
        // Entries are rank << 32 | position, so the smallest is the lowest rank, then the leftmost.
        PriorityQueue<Long> agenda = new PriorityQueue<>(count);
        for (int i = 0; i + 1 < count; i++) push(ids, i, i + 1, agenda);
        boolean[] dead = new boolean[count];
        while (!agenda.isEmpty()) {
            long entry = agenda.poll();
            int rank = (int) (entry >>> 32), l = (int) entry;
            int r = next[l];
            if (dead[l] || r < 0) continue;
            int slot = merges.find(ids[l], ids[r]);
            if (slot < 0 || merges.rank(slot) != rank) continue; // stale: a neighbour changed since the push
            ids[l] = merges.mergedId(slot);
            dead[r] = true;
            next[l] = next[r];
            if (next[r] >= 0) prev[next[r]] = l;
            if (prev[l] >= 0) push(ids, prev[l], l, agenda);
            if (next[l] >= 0) push(ids, l, next[l], agenda);
        }
        IntList out = new IntList(count);
        for (int i = 0; i >= 0; i = next[i]) out.add(ids[i]);
        return out.toArray();
    }

    private void push(int[] ids, int l, int r, PriorityQueue<Long> agenda) {
        int slot = merges.find(ids[l], ids[r]);
        if (slot >= 0) agenda.add((long) merges.rank(slot) << 32 | l);
    }

    // ---- decoding and lookup ----------------------------------------------------------------------------

    @Override
    byte[] tokenBytes(int id, boolean first) {
        return first ? decoder.bytes(pieces[id], true) : tokenBytes[id];
    }

    @Override
    public boolean isSpecial(int id) {
        checkId(id);
        return special[id];
    }

    @Override
    public String piece(int id) {
        checkId(id);
        return pieces[id];
    }

    @Override
    public int vocabSize() {
        return pieces.length;
    }

    @Override
    public int bosId() {
        return bosId;
    }

    /** tokenizer.json alone does not name an EOS; {@link Tokenizers#load} takes it from the config files. */
    @Override
    public int eosId() {
        return -1;
    }

    /** The unknown-token id, or -1 if the model has none. */
    public int unkId() {
        return unkId;
    }

    @Override
    public OptionalInt tokenId(String piece) {
        Integer id = vocab.get(piece);
        return id == null ? OptionalInt.empty() : OptionalInt.of(id);
    }
}
