// VectorKernels' optimizer family: the scalar specification's operations, lane-wise, in monolithic loops.
package dev.llamafit.kernels;

import static dev.llamafit.tensor.Tensor.F32_LE;

import java.lang.foreign.MemorySegment;
import java.nio.ByteOrder;

import dev.llamafit.kernels.UpdateKernels.AdamCoefficients;
import dev.llamafit.kernels.UpdateKernels.SgdCoefficients;
import jdk.incubator.vector.DoubleVector;
import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.IntVector;
import jdk.incubator.vector.ShortVector;
import jdk.incubator.vector.VectorOperators;
import jdk.incubator.vector.VectorShape;
import jdk.incubator.vector.VectorSpecies;

/**
 * The SIMD twin of ScalarKernels' adamw, sgd and sumOfSquares. Each loop is one body (DESIGN §4: helpers taking
 * vectors as arguments defeat the JIT) and ends with the scalar specification for the tail, so the bits match.
 */
final class VectorUpdates {
    private static final VectorSpecies<Float> S = FloatVector.SPECIES_PREFERRED;
    private static final int L = S.length();
    /** Four floats widened to four doubles: one lane per accumulator of the specified sum of squares. */
    private static final VectorSpecies<Float> S4 = FloatVector.SPECIES_128;
    private static final VectorSpecies<Double> D4 = DoubleVector.SPECIES_256;
    /** Ints and shorts with as many lanes as S, for the BF16 widenings and roundings. */
    private static final VectorSpecies<Integer> SI = VectorSpecies.of(int.class, VectorShape.forBitSize(L * 32));
    private static final VectorSpecies<Short> SS = VectorSpecies.of(short.class, VectorShape.forBitSize(L * 16));
    private static final ByteOrder LE = ByteOrder.LITTLE_ENDIAN;
    private static final ScalarKernels TAIL = new ScalarKernels();

    private VectorUpdates() {}

    static void adamw(MemorySegment p, MemorySegment g, MemorySegment m, MemorySegment v, long from, long to, AdamCoefficients c) {
        float decay = c.decay(), b1 = c.beta1(), omb1 = c.oneMinusBeta1(), b2 = c.beta2(), omb2 = c.oneMinusBeta2();
        float negStep = c.negStepSize(), bc2Sqrt = c.bc2Sqrt(), eps = c.eps();
        FloatVector omb1V = FloatVector.broadcast(S, omb1);
        long i = from;
        for (; i + L <= to; i += L) {
            long o = i * 4;
            FloatVector gv = FloatVector.fromMemorySegment(S, g, o, LE);
            FloatVector pv = FloatVector.fromMemorySegment(S, p, o, LE).mul(decay);
            FloatVector mv = gv.fma(omb1V, FloatVector.fromMemorySegment(S, m, o, LE).mul(b1));
            FloatVector vv = FloatVector.fromMemorySegment(S, v, o, LE).mul(b2).add(gv.mul(omb2).mul(gv));
            FloatVector denom = vv.sqrt().div(bc2Sqrt).add(eps);
            mv.intoMemorySegment(m, o, LE);
            vv.intoMemorySegment(v, o, LE);
            pv.add(mv.mul(negStep).div(denom)).intoMemorySegment(p, o, LE);
        }
        TAIL.adamw(p, g, m, v, i, to, c);
    }

    /**
     * {@link #adamw} on BF16 p, g, m, v: each lane widened (a short shifted into an int's top half), the same fp32
     * operations, then m and v rounded to nearest even as {@link ScalarKernels#floatToBf16} and p stochastically as
     * {@link UpdateKernels#stochasticBf16} with {@link UpdateKernels#roundingBits} (NaN lanes truncated and made quiet).
     */
    static void adamwBf16(MemorySegment p, MemorySegment g, MemorySegment m, MemorySegment v, long from, long to, AdamCoefficients c,
                          int seed) {
        IntVector lane = IntVector.zero(SI).addIndex(1);
        float decay = c.decay(), b1 = c.beta1(), omb1 = c.oneMinusBeta1(), b2 = c.beta2(), omb2 = c.oneMinusBeta2();
        float negStep = c.negStepSize(), bc2Sqrt = c.bc2Sqrt(), eps = c.eps();
        FloatVector omb1V = FloatVector.broadcast(S, omb1);
        long i = from;
        for (; i + L <= to; i += L) {
            long o = i * 2;
            FloatVector gv = ((IntVector) ShortVector.fromMemorySegment(SS, g, o, LE).convertShape(VectorOperators.S2I, SI, 0))
                    .lanewise(VectorOperators.LSHL, 16).reinterpretAsFloats();
            FloatVector p0 = ((IntVector) ShortVector.fromMemorySegment(SS, p, o, LE).convertShape(VectorOperators.S2I, SI, 0))
                    .lanewise(VectorOperators.LSHL, 16).reinterpretAsFloats();
            FloatVector m0 = ((IntVector) ShortVector.fromMemorySegment(SS, m, o, LE).convertShape(VectorOperators.S2I, SI, 0))
                    .lanewise(VectorOperators.LSHL, 16).reinterpretAsFloats();
            FloatVector v0 = ((IntVector) ShortVector.fromMemorySegment(SS, v, o, LE).convertShape(VectorOperators.S2I, SI, 0))
                    .lanewise(VectorOperators.LSHL, 16).reinterpretAsFloats();
            FloatVector pv = p0.mul(decay);
            FloatVector mv = gv.fma(omb1V, m0.mul(b1));
            FloatVector vv = v0.mul(b2).add(gv.mul(omb2).mul(gv));
            FloatVector denom = vv.sqrt().div(bc2Sqrt).add(eps);
            FloatVector pn = pv.add(mv.mul(negStep).div(denom));
            IntVector mb = (IntVector) mv.reinterpretAsInts(), vb = (IntVector) vv.reinterpretAsInts(), pb = (IntVector) pn.reinterpretAsInts();
            IntVector mr = mb.add(0x7FFF).add(mb.lanewise(VectorOperators.LSHR, 16).and(1)).lanewise(VectorOperators.LSHR, 16)
                    .blend(mb.lanewise(VectorOperators.LSHR, 16).or(0x0040), mv.test(VectorOperators.IS_NAN).cast(SI));
            IntVector vr = vb.add(0x7FFF).add(vb.lanewise(VectorOperators.LSHR, 16).and(1)).lanewise(VectorOperators.LSHR, 16)
                    .blend(vb.lanewise(VectorOperators.LSHR, 16).or(0x0040), vv.test(VectorOperators.IS_NAN).cast(SI));
            // roundingBits(seed, i + lane) for every lane: (int) (i + lane) is (int) i + lane in int arithmetic
            IntVector h = lane.add((int) i).mul(0x9E3779B9).add(seed);
            h = h.lanewise(VectorOperators.XOR, h.lanewise(VectorOperators.LSHR, 16)).mul(0x85EBCA6B);
            h = h.lanewise(VectorOperators.XOR, h.lanewise(VectorOperators.LSHR, 13)).mul(0xC2B2AE35);
            h = h.lanewise(VectorOperators.XOR, h.lanewise(VectorOperators.LSHR, 16)).and(0xFFFF);
            IntVector pr = pb.add(h).lanewise(VectorOperators.LSHR, 16)
                    .blend(pb.lanewise(VectorOperators.LSHR, 16).or(0x0040), pn.test(VectorOperators.IS_NAN).cast(SI));
            ((ShortVector) mr.convertShape(VectorOperators.I2S, SS, 0)).intoMemorySegment(m, o, LE);
            ((ShortVector) vr.convertShape(VectorOperators.I2S, SS, 0)).intoMemorySegment(v, o, LE);
            ((ShortVector) pr.convertShape(VectorOperators.I2S, SS, 0)).intoMemorySegment(p, o, LE);
        }
        TAIL.adamwBf16(p, g, m, v, i, to, c, seed);
    }

    /** dst ← bf16(dst + src), lane-wise: widen, one fp32 add, round to nearest even (NaN lanes truncated and made quiet). */
    static void addRoundBf16(MemorySegment dst, long dstOff, MemorySegment src, long srcOff, long n) {
        long i = 0;
        for (; i + L <= n; i += L) {
            FloatVector d = ((IntVector) ShortVector.fromMemorySegment(SS, dst, (dstOff + i) * 2, LE).convertShape(VectorOperators.S2I, SI, 0))
                    .lanewise(VectorOperators.LSHL, 16).reinterpretAsFloats();
            FloatVector sum = d.add(FloatVector.fromMemorySegment(S, src, (srcOff + i) * 4, LE));
            IntVector bits = (IntVector) sum.reinterpretAsInts();
            IntVector r = bits.add(0x7FFF).add(bits.lanewise(VectorOperators.LSHR, 16).and(1)).lanewise(VectorOperators.LSHR, 16)
                    .blend(bits.lanewise(VectorOperators.LSHR, 16).or(0x0040), sum.test(VectorOperators.IS_NAN).cast(SI));
            ((ShortVector) r.convertShape(VectorOperators.I2S, SS, 0)).intoMemorySegment(dst, (dstOff + i) * 2, LE);
        }
        if (i < n) TAIL.addRoundBf16(dst, dstOff + i, src, srcOff + i, n - i);
    }

    static void sgd(MemorySegment p, MemorySegment g, MemorySegment buf, long from, long to, SgdCoefficients c) {
        boolean nesterov = c.nesterov(), first = c.firstStep();
        FloatVector wdV = FloatVector.broadcast(S, c.weightDecay()), momV = FloatVector.broadcast(S, c.momentum());
        FloatVector omdV = FloatVector.broadcast(S, c.oneMinusDampening()), negLrV = FloatVector.broadcast(S, c.negLr());
        long i = from;
        for (; i + L <= to; i += L) {
            long o = i * 4;
            FloatVector pv = FloatVector.fromMemorySegment(S, p, o, LE);
            FloatVector d = pv.fma(wdV, FloatVector.fromMemorySegment(S, g, o, LE));
            if (buf != null) {
                FloatVector b = first ? d : d.fma(omdV, FloatVector.fromMemorySegment(S, buf, o, LE).mul(momV));
                b.intoMemorySegment(buf, o, LE);
                d = nesterov ? b.fma(momV, d) : b;
            }
            d.fma(negLrV, pv).intoMemorySegment(p, o, LE);
        }
        TAIL.sgd(p, g, buf, i, to, c);
    }

    /**
     * Lane j of the accumulator is the specification's a_j: a float squared in double is exact (48 significant
     * bits), so each lane rounds once per add, exactly as the scalar a_j += x·x does.
     */
    static double sumOfSquares(MemorySegment x, long from, long to) {
        DoubleVector acc = DoubleVector.zero(D4);
        long i = from;
        for (; i + 4 <= to; i += 4) {
            DoubleVector d = (DoubleVector) FloatVector.fromMemorySegment(S4, x, i * 4, LE).convertShape(VectorOperators.F2D, D4, 0);
            acc = acc.add(d.mul(d));
        }
        double a0 = acc.lane(0), a1 = acc.lane(1), a2 = acc.lane(2), a3 = acc.lane(3);
        for (; i < to; i++) {
            double v = x.getAtIndex(F32_LE, i);
            a0 += v * v;
        }
        return (a0 + a1) + (a2 + a3);
    }
}
