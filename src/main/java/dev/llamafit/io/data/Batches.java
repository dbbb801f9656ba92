// Seeded, resumable micro-batches of examples, padded to T; (epoch, batch) fully determines the next batch.
package dev.llamafit.io.data;

import java.util.Arrays;
import java.util.Iterator;
import java.util.List;
import java.util.SplittableRandom;

/**
 * An endless iterator over micro-batches. Epoch e visits the examples in a permutation drawn from
 * {@code (seed, e)} alone (or in file order without shuffle), so {@link #position()} saved with a checkpoint
 * and {@link #seek} after a restart give exactly the batches an uninterrupted run would have seen.
 *
 * <p>An epoch has ceil(N / B) batches. The last one, when N is not a multiple of B, is filled by wrapping to the
 * start of the same epoch's order (those few examples are seen twice in the epoch) rather than dropped, so no
 * example is skipped and every batch has B rows even when N &lt; B; the shape is always [B][T].
 */
public final class Batches implements Iterator<Batches.Batch> {

    /** Where the iterator stands: the next batch is batch {@code batch} of epoch {@code epoch}. */
    public record Position(long epoch, long batch) {
        public Position {
            if (epoch < 0 || batch < 0) throw new IllegalArgumentException("position must be non-negative: " + epoch + ", " + batch);
        }
    }

    /**
     * One micro-batch.
     *
     * @param inputIds [B][T] ids, padded with padId
     * @param labels   [B][T] targets, padded with {@link Example#IGNORE}
     * @param tokens   positions that take loss (labels other than IGNORE)
     * @param position where this batch was drawn
     */
    public record Batch(int[][] inputIds, int[][] labels, long tokens, Position position) {}

    /** Train and eval examples. */
    public record Split(List<Example> train, List<Example> eval) {}

    private final List<Example> examples;
    private final int batchSize;  // B
    private final int seqLen;     // T
    private final int padId;
    private final long seed;
    private final boolean shuffle;
    private long epoch;
    private long batch;
    private int[] order;          // [N] the current epoch's permutation
    private long orderEpoch = -1;

    public Batches(List<Example> examples, int batchSize, int seqLen, int padId, long seed, boolean shuffle) {
        if (examples == null || examples.isEmpty()) throw new IllegalArgumentException("no examples to batch");
        if (batchSize < 1) throw new IllegalArgumentException("batchSize must be >= 1, got " + batchSize);
        if (seqLen < 1) throw new IllegalArgumentException("seqLen must be >= 1, got " + seqLen);
        if (padId < 0) throw new IllegalArgumentException("padId must be a token id >= 0, got " + padId);
        // Views over packed text know their longest example; asking each one would build every example once.
        int longest = ExampleViews.longest(examples);
        for (int i = 0; longest < 0 && i < examples.size(); i++) {
            if (examples.get(i).length() > seqLen)
                throw new IllegalArgumentException("example " + i + " has " + examples.get(i).length() + " positions, above seqLen " + seqLen);
        }
        if (longest > seqLen) throw new IllegalArgumentException("examples have up to " + longest + " positions, above seqLen " + seqLen);
        this.examples = ExampleViews.copyOf(examples);
        this.batchSize = batchSize;
        this.seqLen = seqLen;
        this.padId = padId;
        this.seed = seed;
        this.shuffle = shuffle;
    }

    /** ceil(N / B). */
    public long batchesPerEpoch() {
        return (examples.size() + (long) batchSize - 1) / batchSize;
    }

    public Position position() {
        return new Position(epoch, batch);
    }

    /** Continues from {@code p}, as saved by {@link #position()}. */
    public void seek(Position p) {
        if (p.batch() >= batchesPerEpoch())
            throw new IllegalArgumentException("batch " + p.batch() + " is past the " + batchesPerEpoch() + " batches of an epoch");
        epoch = p.epoch();
        batch = p.batch();
    }

    /** Always true: the trainer decides how many steps to take. */
    @Override
    public boolean hasNext() {
        return true;
    }

    @Override
    public Batch next() {
        int[] perm = order(epoch);
        int n = examples.size();
        int[][] in = new int[batchSize][seqLen];
        int[][] lab = new int[batchSize][seqLen];
        long tokens = 0;
        for (int row = 0; row < batchSize; row++) {
            Example e = examples.get(perm[(int) ((batch * batchSize + row) % n)]);
            System.arraycopy(e.inputIds(), 0, in[row], 0, e.length());
            Arrays.fill(in[row], e.length(), seqLen, padId);
            System.arraycopy(e.labels(), 0, lab[row], 0, e.length());
            Arrays.fill(lab[row], e.length(), seqLen, Example.IGNORE);
            tokens += e.trainedTokens();
        }
        Batch b = new Batch(in, lab, tokens, position());
        if (++batch == batchesPerEpoch()) {
            batch = 0;
            epoch++;
        }
        return b;
    }

    private int[] order(long e) {
        if (orderEpoch != e) {
            order = permutation(examples.size(), shuffle ? mix(seed, e) : 0, shuffle);
            orderEpoch = e;
        }
        return order;
    }

    /** Fisher-Yates over 0..n-1 from a generator seeded by {@code key}; identity when not shuffling. */
    static int[] permutation(int n, long key, boolean shuffle) {
        int[] p = new int[n];
        for (int i = 0; i < n; i++) p[i] = i;
        if (!shuffle) return p;
        SplittableRandom r = new SplittableRandom(key);
        for (int i = n - 1; i > 0; i--) {
            int j = r.nextInt(i + 1);
            int t = p[i];
            p[i] = p[j];
            p[j] = t;
        }
        return p;
    }

    /** A seed for (seed, epoch) whose streams are unrelated across epochs (SplittableRandom's mix constants). */
    private static long mix(long seed, long epoch) {
        long z = seed + (epoch + 1) * 0x9E3779B97F4A7C15L;
        z = (z ^ (z >>> 30)) * 0xBF58476D1CE4E5B9L;
        z = (z ^ (z >>> 27)) * 0x94D049BB133111EBL;
        return z ^ (z >>> 31);
    }

    /**
     * Holds out round(fraction · N) examples for evaluation, chosen by a seeded permutation; at least one when
     * fraction &gt; 0 and N ≥ 2, and always at least one left for training. Both parts keep file order.
     */
    public static Split split(List<Example> examples, double evalFraction, long seed) {
        if (!(evalFraction >= 0 && evalFraction < 1)) throw new IllegalArgumentException("eval fraction must be in [0, 1), got " + evalFraction);
        int n = examples.size();
        int nEval = (int) Math.round(evalFraction * n);
        if (evalFraction > 0 && n >= 2) nEval = Math.max(1, nEval);
        nEval = Math.min(nEval, Math.max(0, n - 1));
        boolean[] isEval = new boolean[n];
        int[] p = permutation(n, mix(seed, -1), true);
        for (int i = 0; i < nEval; i++) isEval[p[i]] = true;
        int[] train = new int[n - nEval], eval = new int[nEval];
        for (int i = 0, t = 0, e = 0; i < n; i++) {
            if (isEval[i]) eval[e++] = i;
            else train[t++] = i;
        }
        // Views over packed text stay views: the split does not materialise every example.
        return new Split(ExampleViews.pick(examples, train), ExampleViews.pick(examples, eval));
    }
}
