// ZeRO's flat buffers for the trainable tensors (values, gradients, per ShardLayout unit) and the step hooks that reduce and gather them.
package dev.llamafit.train;

import java.lang.foreign.MemorySegment;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.locks.LockSupport;

import dev.llamafit.dist.Collectives;
import dev.llamafit.kernels.Kernels;
import dev.llamafit.memory.Category;
import dev.llamafit.memory.MemoryLedger;
import dev.llamafit.model.ShardLayout;
import dev.llamafit.model.Sharding;
import dev.llamafit.model.StepHooks;
import dev.llamafit.tensor.DType;
import dev.llamafit.tensor.Shape;
import dev.llamafit.tensor.Tensor;

/**
 * The trainable fp32 tensors of a run as one flat buffer per {@link ShardLayout} unit (llm.c's parameter tensors), with
 * per-tensor views that the {@link dev.llamafit.model.TrainingStep} computes with; what each stage holds is
 * {@link Sharding}'s list, allocated here in exactly those sizes. As {@link StepHooks} it does the work of stages 2 and 3
 * inside the step:
 * <ul>
 *   <li>stage 2-3: every block's gradients are views of one bucket, zeroed before the block's backward and
 *       reduce-scattered right after it into this rank's shard accumulator (+=, so micro-batches accumulate); the units
 *       outside the blocks keep whole gradients, reduce-scattered after the embedding's backward;</li>
 *   <li>stage 3: block l's weights are views of gathered buffer l mod 2. Before a block's forward, recompute or backward
 *       its unit is all-gathered there unless the buffer still holds it, and the next block's gather is started
 *       (MPI_Iallgather) into the other buffer, driven by a progress thread (MPI_Test) while this block computes. The
 *       units outside the blocks are gathered at the start of a forward. An update of the shards invalidates them all.</li>
 * </ul>
 * Rank-order sums make a reduce-scatter exactly the slice of stage 0's all-reduce, so stage 2 differs from stage 0 only
 * in the order of the micro-batches' additions and of the norm's sum of squares.
 *
 * <p>Sharded masters ({@link Sharding#shardsMasters()}: stages 1-2, full fine-tuning under mixed precision): the values
 * are this rank's padded shard of every unit's fp32 masters, plus whole fp32 copies of the tensors the forward reads in
 * fp32 ({@link Sharding#readInFp32}), which are all the step is given as weights. After each update every unit is
 * all-gathered in chunks through the staging buffer and each chunk goes where the forward reads it: rounded into the
 * step's 16-bit working copies (the same kernel call as {@code syncWorkingCopies}, element-wise, so bit for bit), copied
 * into the fp32 copies. No whole fp32 matrix exists on any rank.
 */
final class ZeroState implements StepHooks, AutoCloseable {
    final Sharding sharding;
    final ShardLayout layout;
    private final Collectives collectives;
    private final DataParallel dp;
    private final Kernels kernels;
    private final int stage;
    private final boolean shardedMasters;
    private Map<String, Tensor> workingCopies; // sharded masters: the step's 16-bit copies, filled by publish()
    private Kernels roundKernels;               // ... with the step's own rounding
    private final List<Tensor> allocated = new ArrayList<>();
    final Tensor[] values;      // stage < 3: the whole unit; stage 3 and sharded masters: this rank's padded shard
    private final Tensor[] gathered;  // stage 3: the whole unit outside the blocks (padded), null for blocks
    private final Tensor[] blockBufs; // stage 3: gathered blocks, layer l in l mod 2
    final Tensor[] grads;       // stage < 2: the whole unit; stages 2-3: units outside the blocks only
    private final Tensor bucket;      // stages 2-3: one block's gradients
    final Tensor[] gradShards;  // stages 2-3: this rank's padded shard of each unit's gradient sum
    final Tensor staging;       // stages 1-3 (workspace): a shard, the all-gather's input and the reduce-scatter's output
    private final Map<String, Tensor> valueViews = new LinkedHashMap<>(), gradViews = new LinkedHashMap<>();
    private final int[] unitOfLayer;
    // stage 3: which unit each gathered buffer holds (-1: none, or stale), and the prefetch in flight
    private final int[] holds;
    private final int[] blockHolds = {-1, -1};
    private volatile Collectives.Pending inFlight;
    private int inFlightLayer = -1;
    private final boolean prefetch;
    private final Thread progress;
    private volatile boolean closed;

    ZeroState(Sharding sharding, ShardLayout layout, Collectives collectives, DataParallel dp, Kernels kernels, Category trainable,
              MemoryLedger ledger) {
        if (layout.ranks() != sharding.ranks()) throw new IllegalArgumentException("layout over " + layout.ranks() + " ranks");
        this.sharding = sharding;
        this.layout = layout;
        this.collectives = collectives;
        this.dp = dp;
        this.kernels = kernels;
        this.stage = sharding.effectiveStage();
        this.shardedMasters = sharding.shardsMasters();
        int n = layout.units().size(), ranks = sharding.ranks();
        values = new Tensor[n];
        gathered = new Tensor[n];
        grads = new Tensor[n];
        gradShards = new Tensor[n];
        holds = new int[n];
        java.util.Arrays.fill(holds, -1);
        int maxLayer = -1;
        for (ShardLayout.Unit u : layout.units()) maxLayer = Math.max(maxLayer, u.layer());
        unitOfLayer = new int[maxLayer + 1];
        java.util.Arrays.fill(unitOfLayer, -1);
        Tensor[] blocks = new Tensor[Math.min(2, layout.blocks())];
        Tensor bkt = null, stg = null;
        try {
            if (stage >= 3)
                for (int b = 0; b < blocks.length; b++)
                    blocks[b] = alloc(ledger, trainable, "zero.gathered_block." + b, layout.largestGatheredBlock());
            if (stage >= 2) bkt = alloc(ledger, Category.GRADIENTS, "zero.grad_bucket", layout.largestBlock());
            if (stage >= 1) stg = alloc(ledger, Category.WORKSPACE, "zero.staging", sharding.workspaceElements(layout));
            for (int i = 0; i < n; i++) {
                ShardLayout.Unit u = layout.units().get(i);
                if (u.layer() >= 0) unitOfLayer[u.layer()] = i;
                if (shardedMasters) {
                    values[i] = alloc(ledger, trainable, "zero.master_shard." + u.name(), u.shard(ranks));
                    for (dev.llamafit.tensor.TensorSpec s : u.specs())
                        if (Sharding.readInFp32(s))
                            valueViews.put(s.name(), new Tensor(s.name(), DType.F32, s.shape(),
                                    alloc(ledger, trainable, "zero.fp32." + s.name(), s.elements()).segment()));
                } else if (stage < 3) {
                    values[i] = alloc(ledger, trainable, "zero.values." + u.name(), u.elements());
                    valueViews.putAll(u.views(values[i].segment()));
                } else {
                    values[i] = alloc(ledger, trainable, "zero.value_shard." + u.name(), u.shard(ranks));
                    if (u.layer() < 0) gathered[i] = alloc(ledger, trainable, "zero.gathered." + u.name(), u.gathered(ranks));
                    valueViews.putAll(u.views((u.layer() < 0 ? gathered[i] : blocks[u.layer() % 2]).segment()));
                }
                if (stage < 2 || u.layer() < 0) {
                    grads[i] = alloc(ledger, Category.GRADIENTS, "zero.grads." + u.name(), u.elements());
                    gradViews.putAll(u.views(grads[i].segment()));
                } else gradViews.putAll(u.views(bkt.segment()));
                if (stage >= 2) gradShards[i] = alloc(ledger, Category.GRADIENTS, "zero.grad_shard." + u.name(), u.shard(ranks));
            }
        } catch (RuntimeException e) {
            allocated.forEach(Tensor::close);
            throw e;
        }
        this.blockBufs = blocks;
        this.bucket = bkt;
        this.staging = stg;
        this.prefetch = stage >= 3 && dp.prefetch;
        this.progress = prefetch ? Thread.ofPlatform().daemon().name("zero3-progress").start(this::driveProgress) : null;
    }

    private Tensor alloc(MemoryLedger ledger, Category c, String name, long elements) {
        Tensor t = Tensor.allocate(ledger, c, name, DType.F32, Shape.of(elements));
        allocated.add(t);
        return t;
    }

    /** The trainable tensors' views by name, what the step computes with (stage 3: views of the gathered buffers). */
    Map<String, Tensor> valueViews() { return valueViews; }

    /** The gradients' views by name (stages 2-3: the blocks' all views of one bucket). */
    Map<String, Tensor> gradientViews() { return gradViews; }

    int stage() { return stage; }

    /** Whether this rank holds only its shard of the values (stage 3, or sharded masters): whole ones are gathered ({@link #gatherWhole}). */
    boolean valuesSharded() { return stage >= 3 || shardedMasters; }

    /** Sharded masters: each rank keeps its shard of the fp32 masters; the step is given only those read in fp32. */
    boolean shardsMasters() { return shardedMasters; }

    /**
     * Sharded masters: the step's 16-bit working copies by name, which every update (and this call) fills from the
     * gathered masters, rounding with {@code kernels} (the step's). Collective.
     */
    void useWorkingCopies(Map<String, Tensor> copies, Kernels kernels) {
        if (!shardedMasters) throw new IllegalStateException("the masters are not sharded");
        this.workingCopies = Map.copyOf(copies);
        this.roundKernels = kernels;
        publish();
    }

    // ---- values ----

    /**
     * Sets the values unit by unit: {@code fill} writes each unit's tensors whole into the views it is given (stages 0-2:
     * the values themselves; stage 3: a gathered buffer, whose part this rank owns then goes to its shard). For loading
     * weights and adapters, and LoRA's initialisation, with no whole copy of the model at once.
     */
    void fillUnits(java.util.function.BiConsumer<ShardLayout.Unit, Map<String, Tensor>> fill) {
        if (shardedMasters) throw new IllegalStateException("sharded masters are filled by load() only");
        int rank = sharding.rank(), ranks = sharding.ranks();
        invalidate();
        for (int i = 0; i < values.length; i++) {
            ShardLayout.Unit u = layout.units().get(i);
            if (stage < 3) {
                fill.accept(u, u.views(values[i].segment()));
                continue;
            }
            Tensor scratch = u.layer() < 0 ? gathered[i] : blockBufs[u.layer() % 2];
            fill.accept(u, u.views(scratch.segment()));
            values[i].segment().fill((byte) 0);
            MemorySegment.copy(scratch.segment(), u.from(rank, ranks) * Float.BYTES, values[i].segment(), 0, u.owned(rank, ranks) * Float.BYTES);
        }
        invalidate();
    }

    /** {@link #fillUnits} from whole tensors by name (any float dtype). */
    void load(Map<String, Tensor> whole) {
        if (shardedMasters) {
            // This rank's pieces into its shards (padding zero), the tensors read in fp32 whole; publish() makes the rest.
            int rank = sharding.rank(), ranks = sharding.ranks();
            for (int i = 0; i < values.length; i++) {
                values[i].segment().fill((byte) 0);
                for (ShardLayout.Piece p : layout.units().get(i).pieces(rank, ranks))
                    copy(whole.get(p.spec().name()), p.from(), values[i], p.shardOffset(), p.length());
            }
            for (Tensor dst : valueViews.values()) copy(whole.get(dst.name()), 0, dst, 0, dst.elements());
            return;
        }
        fillUnits((u, views) -> {
            for (Tensor dst : views.values()) copy(whole.get(dst.name()), 0, dst, 0, dst.elements());
        });
    }

    private static void copy(Tensor src, long from, Tensor dst, long at, long n) {
        if (src == null) throw new IllegalArgumentException("no values for " + dst.name());
        if (src.dtype() == DType.F32) MemorySegment.copy(src.segment(), from * Float.BYTES, dst.segment(), at * Float.BYTES, n * Float.BYTES);
        else for (long j = 0; j < n; j++) dst.setFloat(at + j, src.getFloat(from + j));
    }

    /**
     * Stages 1-2, after the optimizer stepped this rank's pieces of the whole values: every unit all-gathered from the
     * ranks' shards (through the staging shard: MPI's all-gather may not read and write one buffer). Stage 3: the
     * gathered buffers are stale.
     */
    void afterUpdate() {
        if (shardedMasters) {
            publish();
            return;
        }
        if (stage >= 3) {
            invalidate();
            return;
        }
        int rank = sharding.rank(), ranks = sharding.ranks();
        long t0 = System.nanoTime();
        for (int i = 0; i < values.length; i++) {
            ShardLayout.Unit u = layout.units().get(i);
            MemorySegment s = staging.segment();
            long owned = u.owned(rank, ranks);
            if (owned < u.shard(ranks)) s.fill((byte) 0); // padding past the unit's end
            MemorySegment.copy(values[i].segment(), u.from(rank, ranks) * Float.BYTES, s, 0, owned * Float.BYTES);
            collectives.allGather(s, u.elements(), values[i].segment());
        }
        dp.countCollective(System.nanoTime() - t0);
    }

    /**
     * Sharded masters: every unit all-gathered in chunks of {@link Sharding#gatherChunk} elements per rank into the
     * staging buffer, each chunk's elements rounded into their working copies and copied into their fp32 copies.
     */
    private void publish() {
        if (workingCopies == null) throw new IllegalStateException("no working copies to fill (useWorkingCopies)");
        int ranks = sharding.ranks();
        long chunk = sharding.gatherChunk(layout);
        MemorySegment out = staging.segment();
        for (int i = 0; i < values.length; i++) {
            ShardLayout.Unit u = layout.units().get(i);
            long s = u.shard(ranks);
            for (long k = 0; k < s; k += chunk) {
                long n = Math.min(chunk, s - k), t0 = System.nanoTime();
                // Each rank's elements [k, k + n) of its shard: rank r's land at out[r·n ...], unit elements r·s + k on.
                collectives.allGather(values[i].segment().asSlice(k * Float.BYTES, n * Float.BYTES), n * ranks, out);
                dp.countCollective(System.nanoTime() - t0);
                for (int r = 0; r < ranks; r++) deliver(u, r * s + k, out, r * n, n);
            }
        }
    }

    /** Unit {@code u}'s flat elements [from, from + n) (past its end: padding, dropped), held in {@code buf} at {@code at}. */
    private void deliver(ShardLayout.Unit u, long from, MemorySegment buf, long at, long n) {
        long to = Math.min(from + n, u.elements());
        for (int j = 0; j < u.specs().size(); j++) {
            dev.llamafit.tensor.TensorSpec spec = u.specs().get(j);
            long off = u.offsets()[j], a = Math.max(from, off), b = Math.min(to, off + spec.elements());
            if (a >= b) continue;
            long src = at + (a - from), dst = a - off, m = b - a;
            Tensor copy = workingCopies.get(spec.name());
            if (copy != null) {
                if (copy.dtype() == DType.BF16) roundKernels.f32ToBf16(buf, src, copy.segment(), dst, m);
                else roundKernels.f32ToF16(buf, src, copy.segment(), dst, m);
            }
            Tensor fp32 = valueViews.get(spec.name());
            if (fp32 != null) MemorySegment.copy(buf, src * Float.BYTES, fp32.segment(), dst * Float.BYTES, m * Float.BYTES);
        }
    }

    /** Forgets what the gathered buffers hold (their units changed), after any gather still in flight ends. */
    void invalidate() {
        awaitInFlight();
        java.util.Arrays.fill(holds, -1);
        blockHolds[0] = blockHolds[1] = -1;
    }

    // ---- gradients ----

    /** Zeroes every gradient this rank holds, for a new optimizer step. */
    void zeroGradients() {
        for (Tensor t : grads) if (t != null) t.segment().fill((byte) 0);
        for (Tensor t : gradShards) if (t != null) t.segment().fill((byte) 0);
    }

    /** Stages 0-1: every unit's gradient becomes the rank-order sum over the ranks (one all-reduce per unit). */
    void allReduceGradients() {
        long t0 = System.nanoTime();
        for (Tensor g : grads) collectives.allReduceSum(g.segment(), g.elements());
        dp.countCollective(System.nanoTime() - t0);
    }

    /** The gradient tensors clipping and the optimizer read: stages 0-1 the whole units, stages 2-3 this rank's shards. */
    List<Tensor> gradientBuffers() { return List.of(stage >= 2 ? gradShards : grads); }

    /** Reduce-scatter of unit i's gradient in {@code from} into this rank's accumulator. */
    private void reduceInto(int i, MemorySegment from) {
        ShardLayout.Unit u = layout.units().get(i);
        long shard = u.shard(sharding.ranks()), t0 = System.nanoTime();
        collectives.reduceScatterSum(from, u.elements(), staging.segment());
        dp.countCollective(System.nanoTime() - t0);
        kernels.add(gradShards[i].segment(), 0, staging.segment(), 0, shard);
    }

    // ---- hooks ----

    @Override
    public void beforeForward(boolean backward) {
        if (stage >= 3) {
            prefetch(0);
            for (int i = 0; i < values.length; i++)
                if (gathered[i] != null && holds[i] != i) {
                    gatherNow(i, gathered[i]);
                    holds[i] = i;
                }
        }
        if (backward && stage >= 2) for (Tensor g : grads) if (g != null) g.segment().fill((byte) 0);
    }

    @Override
    public void beforeBlockForward(int layer, boolean recompute) {
        if (stage < 3) return;
        ensure(layer);
        prefetch(recompute ? layer - 1 : layer + 1);
    }

    @Override
    public void beforeBlockBackward(int layer) {
        if (stage >= 3) {
            ensure(layer);
            prefetch(layer - 1);
        }
        if (stage >= 2) bucket.segment().asSlice(0, layout.units().get(unitOfLayer[layer]).elements() * Float.BYTES).fill((byte) 0);
    }

    @Override
    public void afterBlockBackward(int layer) {
        if (stage >= 2) reduceInto(unitOfLayer[layer], bucket.segment());
    }

    @Override
    public void afterBackward() {
        if (stage < 2) return;
        for (int i = 0; i < grads.length; i++) if (grads[i] != null) reduceInto(i, grads[i].segment());
    }

    /** Block {@code layer}'s unit in its buffer, waiting for its prefetch or gathering it now. */
    private void ensure(int layer) {
        int b = layer % 2;
        if (inFlight != null && inFlightLayer % 2 == b) {
            int l = inFlightLayer;
            awaitInFlight();
            blockHolds[b] = l;
        }
        if (blockHolds[b] == layer) return;
        gatherNow(unitOfLayer[layer], blockBufs[b]);
        blockHolds[b] = layer;
    }

    /** Starts gathering block {@code layer} into its buffer, unless off, out of range, there already or one is in flight. */
    private void prefetch(int layer) {
        if (!prefetch || layer < 0 || layer >= unitOfLayer.length || unitOfLayer[layer] < 0) return;
        int b = layer % 2;
        if (blockHolds[b] == layer || inFlight != null) return;
        blockHolds[b] = -1;
        int i = unitOfLayer[layer];
        long t0 = System.nanoTime();
        inFlightLayer = layer;
        inFlight = collectives.allGatherAsync(values[i].segment(), layout.units().get(i).shard(sharding.ranks()), blockBufs[b].segment());
        dp.countCollective(System.nanoTime() - t0);
        LockSupport.unpark(progress);
    }

    private void awaitInFlight() {
        Collectives.Pending p = inFlight;
        if (p == null) return;
        long t0 = System.nanoTime();
        p.await();
        dp.countCollective(System.nanoTime() - t0);
        inFlight = null;
        inFlightLayer = -1;
    }

    private void gatherNow(int unit, Tensor into) {
        long t0 = System.nanoTime();
        collectives.allGatherAsync(values[unit].segment(), layout.units().get(unit).shard(sharding.ranks()), into.segment()).await();
        dp.countCollective(System.nanoTime() - t0);
    }

    /** The progress thread: MPI_Test on the gather in flight, every 50 µs, while this block computes. */
    private void driveProgress() {
        while (!closed) {
            Collectives.Pending p = inFlight;
            if (p == null || p.test()) LockSupport.parkNanos(this, 1_000_000);
            else LockSupport.parkNanos(this, 50_000);
        }
    }

    // ---- whole tensors, for checkpoints and final/ ----

    /**
     * Stage 3 and sharded masters: every trainable tensor whole, gathered unit by unit into buffers filed under workspace (a checkpoint's
     * temporaries), views by name in layout order. Collective. Stages 0-2 return the value views themselves.
     */
    Gathered gatherWhole(MemoryLedger ledger) {
        if (!valuesSharded()) return new Gathered(List.of(), valueViews);
        invalidate();
        List<Tensor> bufs = new ArrayList<>();
        Map<String, Tensor> views = new LinkedHashMap<>();
        try {
            for (int i = 0; i < values.length; i++) {
                ShardLayout.Unit u = layout.units().get(i);
                Tensor t = Tensor.allocate(ledger, Category.WORKSPACE, "zero.whole." + u.name(), DType.F32, Shape.of(u.gathered(sharding.ranks())));
                bufs.add(t);
                gatherNow(i, t);
                views.putAll(u.views(t.segment()));
            }
        } catch (RuntimeException e) {
            bufs.forEach(Tensor::close);
            throw e;
        }
        return new Gathered(bufs, views);
    }

    /** Whole tensors by name; closing frees what was gathered for them. */
    record Gathered(List<Tensor> buffers, Map<String, Tensor> tensors) implements AutoCloseable {
        @Override public void close() { buffers.forEach(Tensor::close); }
    }

    @Override
    public void close() {
        closed = true;
        if (progress != null) {
            LockSupport.unpark(progress);
            try {
                progress.join(1000);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
            }
        }
        allocated.forEach(Tensor::close);
    }
}
