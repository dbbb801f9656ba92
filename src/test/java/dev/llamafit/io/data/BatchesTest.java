// Batches: padding, determinism from the seed, exact resume via position/seek, wrap-around, eval split sizes.
package dev.llamafit.io.data;

import static org.junit.jupiter.api.Assertions.*;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashSet;
import java.util.List;
import java.util.Set;

import org.junit.jupiter.api.Test;

class BatchesTest {
    /** Example i has length 1 + i % 5, ids all equal to i, labels i as well except the first (masked). */
    static List<Example> examples(int n) {
        List<Example> out = new ArrayList<>();
        for (int i = 0; i < n; i++) {
            int len = 1 + i % 5;
            int[] in = new int[len];
            Arrays.fill(in, i + 1);
            int[] lab = in.clone();
            lab[0] = Example.IGNORE;
            out.add(new Example(in, lab));
        }
        return out;
    }

    static List<Batches.Batch> take(Batches b, int n) {
        List<Batches.Batch> out = new ArrayList<>();
        for (int i = 0; i < n; i++) out.add(b.next());
        return out;
    }

    static void assertSame(Batches.Batch a, Batches.Batch b) {
        assertTrue(Arrays.deepEquals(a.inputIds(), b.inputIds()));
        assertTrue(Arrays.deepEquals(a.labels(), b.labels()));
        assertEquals(a.tokens(), b.tokens());
        assertEquals(a.position(), b.position());
    }

    @Test
    void paddingAndTokenCount() {
        Batches b = new Batches(examples(3), 3, 6, 0, 1, false);
        Batches.Batch x = b.next();
        assertArrayEquals(new int[] {1, 0, 0, 0, 0, 0}, x.inputIds()[0]);
        assertArrayEquals(new int[] {2, 2, 0, 0, 0, 0}, x.inputIds()[1]);
        assertArrayEquals(new int[] {-100, 3, 3, -100, -100, -100}, x.labels()[2]);
        assertEquals(0 + 1 + 2, x.tokens());
    }

    @Test
    void sameSeedSameBatchesAndEachEpochIsAPermutation() {
        List<Example> ex = examples(10);
        List<Batches.Batch> a = take(new Batches(ex, 4, 5, 0, 42, true), 9);
        List<Batches.Batch> b = take(new Batches(ex, 4, 5, 0, 42, true), 9);
        for (int i = 0; i < a.size(); i++) assertSame(a.get(i), b.get(i));
        List<Batches.Batch> c = take(new Batches(ex, 4, 5, 0, 43, true), 3);
        assertFalse(Arrays.deepEquals(a.getFirst().inputIds(), c.getFirst().inputIds()) && Arrays.deepEquals(a.get(1).inputIds(), c.get(1).inputIds()));

        // Epoch 0 = batches 0..2 (ceil(10/4)); the 12 rows hold all 10 examples, the last 2 wrapped from the epoch's start.
        Set<Integer> seen = new HashSet<>();
        List<Integer> rows = new ArrayList<>();
        for (int k = 0; k < 3; k++) for (int[] row : a.get(k).inputIds()) rows.add(row[0]);
        seen.addAll(rows);
        assertEquals(10, seen.size());
        assertEquals(rows.subList(0, 2), rows.subList(10, 12), "the partial last batch wraps to the epoch's first examples");
        assertEquals(new Batches.Position(1, 0), a.get(3).position());
        assertNotEquals(rows.subList(0, 4), Arrays.stream(a.get(3).inputIds()).map(r -> r[0]).toList(), "a new epoch reshuffles");
    }

    @Test
    void seekResumesExactly() {
        List<Example> ex = examples(11);
        Batches run = new Batches(ex, 3, 5, 7, 9, true);
        List<Batches.Batch> all = take(run, 14);

        Batches first = new Batches(ex, 3, 5, 7, 9, true);
        take(first, 6);
        Batches.Position saved = first.position();
        assertEquals(new Batches.Position(1, 2), saved, "4 batches per epoch");
        Batches resumed = new Batches(ex, 3, 5, 7, 9, true);
        resumed.seek(saved);
        for (int i = 6; i < 14; i++) assertSame(all.get(i), resumed.next());
        assertThrows(IllegalArgumentException.class, () -> resumed.seek(new Batches.Position(0, 4)));
    }

    @Test
    void noShuffleIsFileOrderAndFewerExamplesThanBatchWrap() {
        Batches b = new Batches(examples(2), 5, 5, 0, 0, false);
        assertEquals(1, b.batchesPerEpoch());
        assertEquals(List.of(1, 2, 1, 2, 1), Arrays.stream(b.next().inputIds()).map(r -> r[0]).toList());
        assertThrows(IllegalArgumentException.class, () -> new Batches(examples(6), 2, 4, 0, 0, false), "example longer than T");
    }

    @Test
    void evalSplitSizes() {
        List<Example> ex = examples(100);
        Batches.Split s = Batches.split(ex, 0.05, 1);
        assertEquals(5, s.eval().size());
        assertEquals(95, s.train().size());
        Set<Example> all = new HashSet<>(s.train());
        all.addAll(s.eval());
        assertEquals(100, all.size(), "disjoint and complete");
        assertEquals(s, Batches.split(ex, 0.05, 1), "seeded");
        assertEquals(1, Batches.split(examples(2), 0.05, 1).eval().size(), "at least one when fraction > 0");
        assertEquals(1, Batches.split(examples(2), 0.9, 1).train().size(), "at least one left to train");
        assertEquals(0, Batches.split(examples(1), 0.5, 1).eval().size());
        assertEquals(0, Batches.split(ex, 0, 1).eval().size());
        assertThrows(IllegalArgumentException.class, () -> Batches.split(ex, 1.0, 1));
    }
}
