// `llamafit bench collectives`: under mpirun, llamafit's all-reduce, reduce-scatter and all-gather against Open MPI's own calls.
package dev.llamafit.cli;

import static java.lang.foreign.ValueLayout.JAVA_FLOAT;

import java.io.PrintWriter;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.concurrent.Callable;

import dev.llamafit.dist.Collectives;
import dev.llamafit.dist.OpenMpi;
import dev.llamafit.io.InputException;
import dev.llamafit.io.Json;
import picocli.CommandLine.Command;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Option;
import picocli.CommandLine.Spec;

/**
 * Each size in MiB of fp32 values, each operation twice per run, ours then Open MPI's, after a barrier: the best of
 * {@code --runs} after two warm-ups, timed on rank 0 (a collective ends on every rank at about the same time). Ours is
 * {@link OpenMpi}'s rank-order sum (MPI_Alltoall, a Java sum, MPI_Allgather, through 16 MiB staging rounds) for the two
 * reductions, and for the all-gather a thin wrapper over MPI_Allgather (the sizes here are multiples of the ranks, so no staging); Open MPI's is the
 * plain call on the same buffers (MPI_Allreduce in place, MPI_Reduce_scatter_block, MPI_Allgather). Bandwidth is the
 * buffer's bytes over the time.
 */
@Command(name = "collectives", mixinStandardHelpOptions = true,
        description = "Under mpirun (mpirun -np 2 ./llamafit bench collectives): all-reduce, reduce-scatter and all-gather of"
                + " llamafit's Collectives against Open MPI's own calls, time and bandwidth per size; rank 0 prints.")
final class BenchCollectivesCommand implements Callable<Integer> {
    @Spec CommandSpec spec;

    @Option(names = "--sizes", split = ",", defaultValue = "1,4,16,64,256", description = "Buffer sizes in MiB (default: ${DEFAULT-VALUE}).")
    List<Integer> sizes;

    @Option(names = "--runs", defaultValue = "5", description = "Timed runs per size and operation, after a warm-up; the best counts (default: ${DEFAULT-VALUE}).")
    int runs;

    @Option(names = "--json", description = "Print one JSON object.")
    boolean json;

    record Row(int mib, String op, double ours, double mpi) {}

    @Override
    public Integer call() throws Exception {
        if (runs < 1) throw new InputException("--runs must be >= 1, got " + runs);
        for (int s : sizes) if (s < 1 || s > 4096) throw new InputException("--sizes are MiB from 1 to 4096, got " + s);
        if (System.getenv("OMPI_COMM_WORLD_SIZE") == null)
            throw new InputException("bench collectives compares collectives between ranks: start it with mpirun, e.g."
                    + " mpirun -np 2 ./llamafit bench collectives (add --oversubscribe when there are fewer cores than ranks)");
        try (Collectives c = Collectives.open()) {
            OpenMpi mpi = (OpenMpi) c;
            List<Row> rows = c.abortOnFailure(() -> measure(mpi));
            if (c.rank() == 0) print(mpi, rows);
        }
        return Main.OK;
    }

    private List<Row> measure(OpenMpi c) {
        List<Row> rows = new ArrayList<>();
        int n = c.size();
        for (int mib : sizes) {
            int count = (int) (((long) mib << 20) / Float.BYTES / n * n); // a multiple of the ranks, for MPI's block calls
            try (Arena a = Arena.ofConfined()) {
                MemorySegment data = a.allocate((long) count * Float.BYTES, 64), out = a.allocate((long) count * Float.BYTES, 64),
                        shard = a.allocate((long) count / n * Float.BYTES, 64);
                for (long i = 0; i < count; i++) data.setAtIndex(JAVA_FLOAT, i, (float) ((i % 7) - 3) * 0x1p-20f);
                double[][] best = new double[3][2];
                for (double[] b : best) java.util.Arrays.fill(b, Double.MAX_VALUE);
                for (int r = -2; r < runs; r++) {
                    double[][] t = {
                            {time(c, () -> c.allReduceSum(data, count)), time(c, () -> c.mpiAllreduce(data, count))},
                            {time(c, () -> c.reduceScatterSum(data, count, shard)), time(c, () -> c.mpiReduceScatterBlock(data, count, shard))},
                            {time(c, () -> c.allGather(shard, count, out)), time(c, () -> c.mpiAllgather(shard, count, out))}};
                    if (r < 0) continue; // two warm-ups (the first size's also compile the Java sum)
                    for (int op = 0; op < 3; op++) for (int k = 0; k < 2; k++) best[op][k] = Math.min(best[op][k], t[op][k]);
                }
                String[] ops = {"all-reduce", "reduce-scatter", "all-gather"};
                for (int op = 0; op < 3; op++) rows.add(new Row(mib, ops[op], best[op][0], best[op][1]));
            }
        }
        return rows;
    }

    private static double time(Collectives c, Runnable call) {
        c.barrier();
        long t0 = System.nanoTime();
        call.run();
        return (System.nanoTime() - t0) / 1e9;
    }

    private void print(OpenMpi c, List<Row> rows) {
        PrintWriter out = spec.commandLine().getOut();
        if (json) {
            Map<String, Object> o = new LinkedHashMap<>();
            o.put("bench", "collectives");
            o.put("transport", c.describe());
            o.put("ranks", c.size());
            List<Map<String, Object>> rs = new ArrayList<>();
            for (Row r : rows)
                rs.add(Map.of("mib", r.mib(), "op", r.op(), "ours_seconds", r.ours(), "mpi_seconds", r.mpi()));
            o.put("results", rs);
            out.println(Json.write(o));
            return;
        }
        out.printf(Locale.ROOT, "collectives, %s, fp32, best of %d; ours = rank-order sums (Alltoall + Java sum + Allgather) and a thin MPI_Allgather wrapper, Open MPI = its own call%n",
                c.describe(), runs);
        out.printf(Locale.ROOT, "  %6s  %-15s %10s %10s   %10s %10s   %s%n", "MiB", "operation", "ours", "Open MPI", "ours", "Open MPI", "ours/Open MPI time");
        for (Row r : rows) {
            double bytes = (double) r.mib() * (1 << 20);
            out.printf(Locale.ROOT, "  %6d  %-15s %8.2fms %8.2fms   %6.2fGB/s %6.2fGB/s   %.2f×%n", r.mib(), r.op(), 1e3 * r.ours(), 1e3 * r.mpi(),
                    bytes / r.ours() / 1e9, bytes / r.mpi() / 1e9, r.ours() / r.mpi());
        }
    }
}
