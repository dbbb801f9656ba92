// Chooses the kernel backend once per process: -Dllamafit.kernels=scalar|vector, else the fastest usable.
package dev.llamafit.kernels;

/**
 * The process-wide {@link Kernels}. Default: {@link VectorKernels} when jdk.incubator.vector is present
 * (the JVM was started with {@code --add-modules jdk.incubator.vector}) and its preferred float species
 * has at least 8 lanes; otherwise {@link ScalarKernels}, with one line on System.err saying why.
 */
public final class KernelBackends {
    /** The system property that overrides the choice. */
    public static final String PROPERTY = "llamafit.kernels";
    private static final int MIN_LANES = 8;

    private KernelBackends() {}

    private static final class Holder {
        static final Kernels INSTANCE = choose();
    }

    /** The backend chosen for this process (decided on first call). */
    public static Kernels get() { return Holder.INSTANCE; }

    private static Kernels choose() {
        String wanted = System.getProperty(PROPERTY, "").trim();
        switch (wanted) {
            case "scalar" -> { return new ScalarKernels(); }
            case "vector" -> {
                String why = vectorUnavailableReason();
                if (why != null) throw new IllegalStateException("-D" + PROPERTY + "=vector was requested but " + why);
                return newVector();
            }
            case "" -> {
                String why = vectorUnavailableReason();
                if (why == null) return newVector();
                System.err.println("llamafit: using scalar kernels because " + why);
                return new ScalarKernels();
            }
            default -> throw new IllegalArgumentException("-D" + PROPERTY + "=" + wanted + " is not a kernel backend (expected scalar or vector)");
        }
    }

    /** Null when VectorKernels can be used, else the reason in words. */
    static String vectorUnavailableReason() {
        if (ModuleLayer.boot().findModule("jdk.incubator.vector").isEmpty()) {
            return "the jdk.incubator.vector module is not loaded (start the JVM with --add-modules jdk.incubator.vector)";
        }
        try {
            int lanes = VectorKernels.lanes();
            if (lanes < MIN_LANES) return "the preferred float vector has only " + lanes + " lanes (need at least " + MIN_LANES + ")";
            return null;
        } catch (LinkageError e) {
            return "the Vector API failed to initialise: " + e;
        }
    }

    /** Kept in its own method so VectorKernels (and the incubator classes) load only after the module check passed. */
    private static Kernels newVector() { return new VectorKernels(); }
}
