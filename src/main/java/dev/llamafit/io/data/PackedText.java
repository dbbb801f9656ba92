// The examples of packed text as a view over one token stream: each example is made when asked for, not stored.
package dev.llamafit.io.data;

import java.util.AbstractList;
import java.util.RandomAccess;

/**
 * Chunks of T+1 ids with stride T over a {@link TokenStream} (see {@link TextPacker}): example k has inputs
 * {@code stream[kT, kT+T)} and labels {@code stream[kT+1, kT+T+1)}, and a shorter tail example follows the tail
 * rule. Holding the stream once (2 bytes an id) instead of every example's two int arrays (8 bytes an id, plus
 * headers) is what keeps a large corpus near its own size in memory. Immutable.
 */
final class PackedText extends AbstractList<Example> implements RandomAccess {
    private final TokenStream stream;
    private final int seqLen;
    private final int full;  // examples of exactly T positions
    private final int tail;  // positions of the tail example, 0 when there is none

    PackedText(TokenStream stream, int seqLen) {
        if (seqLen < 1) throw new IllegalArgumentException("seqLen must be >= 1, got " + seqLen);
        this.stream = stream;
        this.seqLen = seqLen;
        long targets = Math.max(0, stream.size() - 1);
        long fullCount = targets / seqLen;
        if (fullCount > Integer.MAX_VALUE - 1) throw new IllegalArgumentException("too many examples: " + fullCount);
        full = (int) fullCount;
        int rest = (int) (targets - fullCount * seqLen);
        // The tail is kept when it has at least T/4 targets, or when it is the only example.
        tail = rest > 0 && (rest >= Math.max(1, seqLen / 4) || full == 0) ? rest : 0;
    }

    @Override
    public int size() {
        return full + (tail > 0 ? 1 : 0);
    }

    @Override
    public Example get(int k) {
        if (k < 0 || k >= size()) throw new IndexOutOfBoundsException("example " + k + " of " + size());
        long start = (long) k * seqLen;
        int n = k < full ? seqLen : tail;
        return new Example(stream.slice(start, n), stream.slice(start + 1, n));
    }

    /** T: the longest example. */
    int seqLen() {
        return seqLen;
    }

    /** Positions over all examples; every one takes loss in packed text. */
    long tokens() {
        return (long) full * seqLen + tail;
    }

    /** Bytes of the token stream behind the view. */
    long bytes() {
        return stream.bytes();
    }
}
