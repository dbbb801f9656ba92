// At the start of a multi-rank job: every rank must run the same model, data and options; the first disagreement names rank and field.
package dev.llamafit.train;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.lang.reflect.RecordComponent;
import java.nio.charset.StandardCharsets;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

import dev.llamafit.dist.Collectives;
import dev.llamafit.io.InputException;

/**
 * Ranks started with different flags (an MPMD command line, a hostfile whose nodes hold other files) would train
 * different things while summing each other's gradients. Each rank hashes every field (the run identity's content
 * fingerprints of model and data, then every train option) to 8 bytes, the hashes are all-gathered (a fixed size, so
 * no rank can block the others with a longer message), and every rank compares them with rank 0's. On a disagreement
 * every rank stops with the same bad input (exit 2) naming the first differing rank and field, and its own value.
 */
final class StartupCheck {
    private StartupCheck() {}

    /**
     * The fields compared, in order: the identity's compared fields (its paths left out: the same content may lie at
     * another path on another node), then the options as --flags, then the ZeRO stage.
     */
    static Map<String, String> fields(RunIdentity identity, TrainOptions o, int zero) {
        Map<String, String> f = new LinkedHashMap<>();
        for (Map.Entry<String, String> e : identity.fields().entrySet())
            if (!e.getKey().endsWith(RunIdentity.PATH_SUFFIX)) f.put(e.getKey(), e.getValue());
        for (RecordComponent c : TrainOptions.class.getRecordComponents()) {
            if (c.getName().equals("model") || c.getName().equals("data")) continue; // compared by content above
            try {
                f.put(flag(c.getName()), String.valueOf(c.getAccessor().invoke(o)));
            } catch (ReflectiveOperationException e) {
                throw new IllegalStateException(e);
            }
        }
        f.put("--zero", Integer.toString(zero));
        return f;
    }

    /** "batchSize" -> "--batch-size". */
    static String flag(String component) {
        StringBuilder sb = new StringBuilder("--");
        for (char ch : component.toCharArray()) {
            if (Character.isUpperCase(ch)) sb.append('-').append(Character.toLowerCase(ch));
            else sb.append(ch);
        }
        return sb.toString();
    }

    /** Collective: throws the same {@link InputException} on every rank if any rank's fields differ from rank 0's. */
    static void verify(Collectives c, Map<String, String> fields) {
        if (c.size() == 1) return;
        List<String> names = List.copyOf(fields.keySet());
        int n = names.size() + 1; // the first hash is of the field names themselves
        long[] mine = new long[n];
        mine[0] = hash(String.join("\n", names));
        for (int i = 0; i < names.size(); i++) mine[i + 1] = hash(fields.get(names.get(i)));
        long[] all = new long[n * c.size()];
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment send = arena.allocate(ValueLayout.JAVA_LONG, n), recv = arena.allocate(ValueLayout.JAVA_LONG, (long) n * c.size());
            for (int i = 0; i < n; i++) send.setAtIndex(ValueLayout.JAVA_LONG, i, mine[i]);
            c.allGather(send, 2L * n * c.size(), recv); // a long is two fp32 slots; the all-gather moves bytes
            for (int i = 0; i < all.length; i++) all[i] = recv.getAtIndex(ValueLayout.JAVA_LONG, i);
        }
        for (int r = 1; r < c.size(); r++)
            for (int i = 0; i < n; i++) {
                if (all[r * n + i] == all[i]) continue;
                String field = i == 0 ? "the set of options (another llamafit version?)" : names.get(i - 1);
                String mineShown = i == 0 || c.rank() != 0 && c.rank() != r ? "" : "; rank " + c.rank() + " has " + shown(fields.get(names.get(i - 1)));
                throw new InputException("rank " + r + " was started with another " + field + " than rank 0" + mineShown
                        + ": every rank of a data-parallel job must be given the same model, data and options");
            }
    }

    private static String shown(String value) {
        return value.length() <= 80 ? value : value.substring(0, 77) + "...";
    }

    private static long hash(String s) {
        try {
            byte[] d = MessageDigest.getInstance("SHA-256").digest(s.getBytes(StandardCharsets.UTF_8));
            long h = 0;
            for (int i = 0; i < 8; i++) h = h << 8 | (d[i] & 0xff);
            return h;
        } catch (NoSuchAlgorithmException e) {
            throw new IllegalStateException(e);
        }
    }
}
