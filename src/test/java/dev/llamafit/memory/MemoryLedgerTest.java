package dev.llamafit.memory;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;

import org.junit.jupiter.api.Test;

class MemoryLedgerTest {
    @Test
    void tracksCurrentAndPeakPerCategoryAndTotal() {
        MemoryLedger ledger = new MemoryLedger();
        try (var a = ledger.allocate(Category.WEIGHTS, "w", 1000)) {
            assertEquals(0, a.segment().address() % MemoryLedger.ALIGNMENT, "64-byte aligned");
            try (var b = ledger.allocate(Category.ACTIVATIONS, "x", 500)) {
                assertEquals(1500, ledger.totalCurrentBytes());
            }
            try (var c = ledger.allocate(Category.ACTIVATIONS, "y", 200)) {
                assertEquals(1200, ledger.totalCurrentBytes());
            }
        }
        assertEquals(0, ledger.totalCurrentBytes());
        assertEquals(1500, ledger.totalPeakBytes());
        assertEquals(500, ledger.peakBytes(Category.ACTIVATIONS));
        assertEquals(1000, ledger.peakBytes(Category.WEIGHTS));
        assertEquals(0, ledger.currentBytes(Category.WEIGHTS));
    }

    @Test
    void parsesAndFormatsSizes() {
        assertEquals(24L << 30, ByteSize.parse("24GiB"));
        assertEquals(80_000_000_000L, ByteSize.parse("80GB"));
        assertEquals(512L << 20, ByteSize.parse("512 MiB"));
        assertEquals("1.50 KiB", ByteSize.format(1536));
        assertThrows(IllegalArgumentException.class, () -> ByteSize.parse("lots"));
    }
}
