// `train --workers N`: starts Open MPI's mpirun for one node with the same command (minus --workers) and waits for it.
package dev.llamafit.cli;

import java.io.File;
import java.lang.management.ManagementFactory;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;

import dev.llamafit.io.InputException;

/**
 * The ranks run what the user ran: through the {@code ./llamafit} launcher when this process was started by it (it exports
 * its own path as {@link #LAUNCHER_ENV}), else the same java binary, JVM options, class path and main class. mpirun gets
 * {@code --oversubscribe} when N exceeds this machine's cores, and {@code --allow-run-as-root} when run as root (as in a
 * container). Each rank's kernel pool gets cores / N threads unless {@code -Dllamafit.threads} was given. Standard
 * input, output and error are inherited, and the exit code is mpirun's.
 */
final class Workers {
    /** Set by the ./llamafit launcher to its own path. */
    static final String LAUNCHER_ENV = "LLAMAFIT_LAUNCHER";

    private Workers() {}

    /**
     * What to do with --workers: 0 = run here (no --workers, or under mpirun with as many ranks), else start mpirun
     * with that many ranks. Under mpirun with another world size it is bad input.
     */
    static int toLaunch(Integer workers, String worldSize) {
        if (workers == null) return 0;
        if (workers < 1) throw new InputException("--workers must be >= 1, got " + workers);
        if (worldSize != null) {
            if (String.valueOf(workers).equals(worldSize.strip())) return 0;
            throw new InputException("--workers " + workers + " starts mpirun itself, but this process already runs under mpirun with "
                    + worldSize + " ranks: drop --workers, or run without mpirun");
        }
        return workers == 1 ? 0 : workers;
    }

    /** {@code args} without --workers N / --workers=N. */
    static List<String> withoutWorkers(List<String> args) {
        List<String> out = new ArrayList<>();
        for (int i = 0; i < args.size(); i++) {
            String a = args.get(i);
            if (a.equals("--workers")) i++;
            else if (!a.startsWith("--workers=")) out.add(a);
        }
        return out;
    }

    /** The mpirun command line for {@code n} ranks of this program with {@code args}. */
    static List<String> command(Path mpirun, int n, List<String> args, String launcher, int cores, boolean root) {
        return command(mpirun, n, args, launcher, cores, root, List.of());
    }

    /** The same, each rank's JVM also given {@code jvmOptions} (e.g. -Dllamafit.zero3.prefetch=false, for `bench train --workers`). */
    static List<String> command(Path mpirun, int n, List<String> args, String launcher, int cores, boolean root, List<String> jvmOptions) {
        List<String> cmd = new ArrayList<>(List.of(mpirun.toString()));
        if (n > cores) cmd.add("--oversubscribe");
        if (root) cmd.add("--allow-run-as-root");
        cmd.addAll(List.of("-np", String.valueOf(n)));
        boolean threadsSet = System.getProperty("llamafit.threads") != null;
        int threads = Math.max(1, cores / n);
        if (launcher != null) {
            String opts = (System.getenv().getOrDefault("LLAMAFIT_JAVA_OPTS", "") + (threadsSet ? "" : " -Dllamafit.threads=" + threads)
                    + " " + String.join(" ", jvmOptions)).strip();
            if (!threadsSet || !jvmOptions.isEmpty()) cmd.addAll(List.of("-x", "LLAMAFIT_JAVA_OPTS=" + opts));
            cmd.add(launcher);
        } else {
            cmd.add(Path.of(System.getProperty("java.home"), "bin", "java").toString());
            cmd.addAll(ManagementFactory.getRuntimeMXBean().getInputArguments());
            if (!threadsSet) cmd.add("-Dllamafit.threads=" + threads);
            cmd.addAll(jvmOptions);
            cmd.addAll(List.of("-cp", System.getProperty("java.class.path"), Main.class.getName()));
        }
        cmd.addAll(withoutWorkers(args));
        return cmd;
    }

    /** This machine's mpirun command for {@code n} ranks running {@code args} (minus --workers), with {@code jvmOptions} for each rank. */
    static List<String> command(int n, List<String> args, List<String> jvmOptions) {
        Path mpirun = null;
        for (String dir : System.getenv().getOrDefault("PATH", "").split(File.pathSeparator))
            if (!dir.isEmpty() && Files.isExecutable(Path.of(dir, "mpirun"))) { mpirun = Path.of(dir, "mpirun"); break; }
        if (mpirun == null)
            throw new InputException("--workers " + n + " starts Open MPI's mpirun, which is not on the PATH: install it (apt-get install -y "
                    + "openmpi-bin libopenmpi-dev) or run with --workers 1");
        String launcher = System.getenv(LAUNCHER_ENV);
        if (launcher != null && !Files.isExecutable(Path.of(launcher))) launcher = null;
        return command(mpirun, n, args, launcher, Runtime.getRuntime().availableProcessors(),
                "root".equals(System.getProperty("user.name")), jvmOptions);
    }

    /** Starts mpirun with {@code n} ranks running {@code args} (the whole command line, minus --workers) and waits; its exit code. */
    static int launch(int n, List<String> args) throws Exception {
        List<String> cmd = command(n, args, List.of());
        ProcessBuilder pb = new ProcessBuilder(cmd).inheritIO();
        pb.environment().remove("OMPI_COMM_WORLD_SIZE");
        Process p = pb.start();
        // Ctrl-C reaches mpirun through the terminal's process group; a JVM stopped otherwise takes the job with it.
        Thread hook = new Thread(() -> { if (p.isAlive()) p.destroy(); });
        Runtime.getRuntime().addShutdownHook(hook);
        try {
            return p.waitFor();
        } finally {
            Runtime.getRuntime().removeShutdownHook(hook);
        }
    }
}
