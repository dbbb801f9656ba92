// Schedules against transformers' get_*_schedule_with_warmup formulas, values worked out by hand.
package dev.llamafit.optim;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import org.junit.jupiter.api.Test;

class LrScheduleTest {
    static final double PEAK = 1e-3;

    static void near(double want, double got) { assertEquals(want, got, 1e-15); }

    @Test
    void constantWithWarmup() {
        LrSchedule s = LrSchedule.parse("constant", PEAK, 4, 100);
        near(0, s.lr(0));            // 0 / 4
        near(2.5e-4, s.lr(1));       // 1 / 4
        near(7.5e-4, s.lr(3));
        near(PEAK, s.lr(4));
        near(PEAK, s.lr(1_000_000));
        near(PEAK, LrSchedule.parse("constant", PEAK, 0, 0).lr(0)); // no warmup: get_constant_schedule
    }

    @Test
    void linearWithWarmup() {
        LrSchedule s = LrSchedule.parse("linear", PEAK, 2, 10);
        near(0, s.lr(0));
        near(5e-4, s.lr(1));         // 1 / 2
        near(PEAK, s.lr(2));         // (10 − 2) / 8
        near(5e-4, s.lr(6));         // (10 − 6) / 8
        near(1.25e-4, s.lr(9));      // 1 / 8
        near(0, s.lr(10));
        near(0, s.lr(12));           // max(0, negative)
        near(PEAK, LrSchedule.parse("linear", PEAK, 0, 10).lr(0));
        near(9e-4, LrSchedule.parse("linear", PEAK, 0, 10).lr(1));
    }

    @Test
    void cosineWithWarmup() {
        LrSchedule s = LrSchedule.parse("cosine", PEAK, 2, 10);
        near(0, s.lr(0));
        near(5e-4, s.lr(1));
        near(PEAK, s.lr(2));                                   // progress 0: 0.5·(1 + cos 0)
        near(PEAK * 0.5 * (1 + Math.sqrt(0.5)), s.lr(4));      // progress 1/4: 0.5·(1 + cos π/4) = 0.853553…
        near(8.535533905932737e-4, s.lr(4));
        near(5e-4, s.lr(6));                                   // progress 1/2: cos π/2 = 0
        near(PEAK * 0.5 * (1 - Math.sqrt(0.5)), s.lr(8));      // progress 3/4
        near(0, s.lr(10));                                     // cos π = −1
        // transformers does not hold the rate at 0 past the end: cos(π·9/8) = −0.92388 gives 0.0380602.
        near(PEAK * 0.5 * (1 + Math.cos(Math.PI * 1.125)), s.lr(11));
        assertTrue(s.lr(11) > 3.8e-5 && s.lr(11) < 3.81e-5);
        // The fixture's schedule: peak 1e-2, 3 warmup steps, 10 total; step 5: progress 2/7.
        near(1e-2 * 0.5 * (1 + Math.cos(Math.PI * 2.0 / 7)), LrSchedule.parse("cosine", 1e-2, 3, 10).lr(5));
        near(0.008117449009293669, LrSchedule.parse("cosine", 1e-2, 3, 10).lr(5));
    }

    @Test
    void parseNamesAndErrors() {
        assertInstanceOf(LrSchedule.Cosine.class, LrSchedule.parse(" Cosine ", PEAK, 0, 5));
        var e = assertThrows(IllegalArgumentException.class, () -> LrSchedule.parse("exponential", PEAK, 0, 5));
        assertTrue(e.getMessage().contains("exponential") && e.getMessage().contains("constant, linear, cosine"), e.getMessage());
        e = assertThrows(IllegalArgumentException.class, () -> LrSchedule.parse("linear", PEAK, 20, 10));
        assertTrue(e.getMessage().contains("warmup steps (20) exceed total steps (10)"), e.getMessage());
        assertThrows(IllegalArgumentException.class, () -> LrSchedule.parse("cosine", -1, 0, 10));
        assertThrows(IllegalArgumentException.class, () -> LrSchedule.parse("constant", Double.NaN, 0, 10));
        assertThrows(IllegalArgumentException.class, () -> LrSchedule.parse("constant", PEAK, 0, 10).lr(-1));
    }
}
