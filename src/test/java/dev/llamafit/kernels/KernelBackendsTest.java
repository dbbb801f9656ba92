// The backend choice and the benchmark helpers: what the test JVM gets, and that the probes return sane numbers.
package dev.llamafit.kernels;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

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
}
