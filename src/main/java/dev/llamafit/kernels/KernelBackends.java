// Chooses the kernel backend once per process from a list of providers: -Dllamafit.kernels=NAME, else the best usable.
package dev.llamafit.kernels;

import java.util.ArrayList;
import java.util.List;
import java.util.Objects;
import java.util.function.Consumer;
import java.util.function.Supplier;

/**
 * The process-wide {@link Kernels}, picked on first use from {@link #PROVIDERS}, best first: oneDNN
 * ({@link OneDnnKernels}: the Vector API kernels plus native bf16 GEMMs for mixed precision) when libdnnl.so.2 loads,
 * else the Vector API ({@link VectorKernels}) when jdk.incubator.vector is loaded and its preferred float species has
 * at least 8 lanes, else the scalar specification. fp32 results are the same bits on onednn and vector (onednn runs
 * fp32 on the Vector path). The optimizer's kernels are part of the same backend.
 *
 * <p>{@code -Dllamafit.kernels=NAME} asks for one provider and fails if it is unusable; without it each
 * provider skipped on the way to the chosen one is logged with its reason on System.err.
 */
public final class KernelBackends {
    /** The system property that overrides the choice. */
    public static final String PROPERTY = "llamafit.kernels";
    private static final int MIN_LANES = 8;

    /**
     * One backend: its name (the property's value), why it cannot run here (null when it can; asked before
     * {@code create}, so a provider's classes load only once it is usable), and its constructor.
     */
    public record Provider(String name, Supplier<String> unavailableReason, Supplier<Kernels> create) {
        public Provider {
            Objects.requireNonNull(name, "name");
            Objects.requireNonNull(unavailableReason, "unavailableReason");
            Objects.requireNonNull(create, "create");
            if (name.isBlank()) throw new IllegalArgumentException("a kernel provider needs a name");
        }
    }

    /** The backends this build knows, best first. The scalar specification runs everywhere, so it comes last. */
    public static final List<Provider> PROVIDERS = List.of(
            new Provider("onednn", OneDnnKernels::unavailableReason, OneDnnKernels::create),
            new Provider("vector", KernelBackends::vectorUnavailableReason, KernelBackends::newVector),
            new Provider("scalar", () -> null, ScalarKernels::new));

    private KernelBackends() {}

    private static final class Holder {
        static final Kernels INSTANCE = choose(System.getProperty(PROPERTY, ""), PROVIDERS, System.err::println);
    }

    /** The backend chosen for this process (decided on first call). */
    public static Kernels get() { return Holder.INSTANCE; }

    /**
     * The choice, apart from the process state so it can be tested: {@code wanted} names a provider (blank: the
     * first usable one, each skipped one reported to {@code log}).
     *
     * @throws IllegalArgumentException if {@code wanted} names no provider
     * @throws IllegalStateException    if the wanted provider, or every provider, is unusable
     */
    static Kernels choose(String wanted, List<Provider> providers, Consumer<String> log) {
        String name = wanted.trim();
        if (!name.isEmpty()) {
            for (Provider p : providers) {
                if (!p.name().equals(name)) continue;
                String why = p.unavailableReason().get();
                if (why != null) throw new IllegalStateException("-D" + PROPERTY + "=" + name + " was requested but " + why);
                return p.create().get();
            }
            List<String> names = providers.stream().map(Provider::name).toList();
            throw new IllegalArgumentException("-D" + PROPERTY + "=" + name + " is not a kernel backend (expected one of " + names + ")");
        }
        List<String> skipped = new ArrayList<>();
        for (Provider p : providers) {
            String why = p.unavailableReason().get();
            if (why == null) {
                for (String s : skipped) log.accept("llamafit: using " + p.name() + " kernels, not " + s);
                return p.create().get();
            }
            skipped.add(p.name() + ", because " + why);
        }
        throw new IllegalStateException("no kernel backend is usable: " + String.join("; ", skipped));
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
