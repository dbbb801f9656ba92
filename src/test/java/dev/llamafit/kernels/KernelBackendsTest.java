// The backend choice and the benchmark helpers: what the test JVM gets, and that the probes return sane numbers.
package dev.llamafit.kernels;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertSame;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.ArrayList;
import java.util.List;

import dev.llamafit.memory.Category;
import dev.llamafit.memory.MemoryLedger;
import org.junit.jupiter.api.Test;

class KernelBackendsTest {

    @Test
    void testJvmGetsVectorKernelsUnlessOverridden() {
        // Surefire starts the JVM with --add-modules jdk.incubator.vector, and these machines have AVX-512.
        assertNull(KernelBackends.vectorUnavailableReason());
        String forced = System.getProperty(KernelBackends.PROPERTY, "");
        Kernels k = KernelBackends.get();
        if (forced.equals("scalar")) assertInstanceOf(ScalarKernels.class, k);
        else assertInstanceOf(VectorKernels.class, k);
        assertTrue(VectorKernels.lanes() >= 8);
    }

    @Test
    void gemmBenchmarkReportsPositiveThroughputAndFreesItsBuffers() {
        MemoryLedger ledger = new MemoryLedger();
        GemmBenchmark.Result r = new GemmBenchmark(new VectorKernels(), ledger).run(64, 48, 32, true, 1, 2);
        assertTrue(r.gflops() > 0 && r.bestSeconds() > 0, r.toString());
        assertEquals(0, ledger.currentBytes(Category.WORKSPACE));
        assertEquals(4L * (64 * 32 + 48 * 32 + 64 * 48), ledger.peakBytes(Category.WORKSPACE));
        assertTrue(r.toJson().contains("\"gflops\":"));
    }

    @Test
    void bandwidthProbeReadsThroughTheLedger() {
        MemoryLedger ledger = new MemoryLedger();
        BandwidthProbe.Result r = BandwidthProbe.measure(ledger, 4L << 20, 2);
        assertTrue(r.gbPerSecond() > 0, r.toString());
        assertEquals(4L << 20, r.bytes());
        assertEquals(0, ledger.currentBytes(Category.WORKSPACE));
        assertEquals(4L << 20, ledger.peakBytes(Category.WORKSPACE));
    }

    /** A provider that counts its constructions, so a test can see that an unusable one is never built. */
    static final class Fake {
        int created;
        final Kernels kernels = new ScalarKernels();

        KernelBackends.Provider provider(String name, String reason) {
            return new KernelBackends.Provider(name, () -> reason, () -> { created++; return kernels; });
        }
    }

    @Test
    void defaultChoiceIsTheFirstUsableProviderAndLogsWhyTheOthersWereSkipped() {
        Fake nat = new Fake(), vec = new Fake(), sca = new Fake();
        List<String> log = new ArrayList<>();
        var providers = List.of(nat.provider("native", "libdnnl.so was not found"), vec.provider("vector", null), sca.provider("scalar", null));
        assertSame(vec.kernels, KernelBackends.choose("", providers, log::add));
        assertEquals(List.of(0, 1, 0), List.of(nat.created, vec.created, sca.created));
        assertEquals(List.of("llamafit: using vector kernels, not native, because libdnnl.so was not found"), log);

        log.clear();
        assertSame(vec.kernels, KernelBackends.choose("  ", List.of(vec.provider("vector", null), sca.provider("scalar", null)), log::add));
        assertEquals(List.of(), log, "nothing skipped, nothing logged");
    }

    @Test
    void explicitChoiceIsHonouredOrFailsWithTheReason() {
        Fake vec = new Fake(), sca = new Fake();
        List<String> log = new ArrayList<>();
        var providers = List.of(vec.provider("vector", "the module is not loaded"), sca.provider("scalar", null));
        assertSame(sca.kernels, KernelBackends.choose("scalar", providers, log::add));
        IllegalStateException unusable = assertThrows(IllegalStateException.class, () -> KernelBackends.choose("vector", providers, log::add));
        assertTrue(unusable.getMessage().contains("-Dllamafit.kernels=vector") && unusable.getMessage().contains("the module is not loaded"),
                unusable.getMessage());
        IllegalArgumentException unknown = assertThrows(IllegalArgumentException.class, () -> KernelBackends.choose("gpu", providers, log::add));
        assertTrue(unknown.getMessage().contains("[vector, scalar]"), unknown.getMessage());
        assertEquals(0, vec.created);
        assertEquals(List.of(), log);
        // Without a usable provider there is nothing to fall back to.
        IllegalStateException none = assertThrows(IllegalStateException.class,
                () -> KernelBackends.choose("", List.of(vec.provider("vector", "no SIMD")), log::add));
        assertTrue(none.getMessage().contains("vector, because no SIMD"), none.getMessage());
    }

    @Test
    void theRealProvidersAreOneDnnThenVectorThenTheScalarSpecification() {
        assertEquals(List.of("onednn", "vector", "scalar"), KernelBackends.PROVIDERS.stream().map(KernelBackends.Provider::name).toList());
        assertInstanceOf(ScalarKernels.class, KernelBackends.choose("scalar", KernelBackends.PROVIDERS, s -> {}));
        assertInstanceOf(VectorKernels.class, KernelBackends.choose("vector", KernelBackends.PROVIDERS, s -> {}));
        // The default is onednn where it loads (a VectorKernels subclass), else vector with the reason logged.
        List<String> log = new java.util.ArrayList<>();
        Kernels chosen = KernelBackends.choose("", KernelBackends.PROVIDERS, log::add);
        assertInstanceOf(VectorKernels.class, chosen);
        if (OneDnnKernels.unavailableReason() == null) {
            assertInstanceOf(OneDnnKernels.class, chosen);
            assertEquals(List.of(), log);
        } else {
            assertTrue(log.getFirst().contains("onednn"), log.toString());
        }
    }
}
