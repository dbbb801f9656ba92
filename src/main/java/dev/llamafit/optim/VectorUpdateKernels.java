// The optimizer updates on jdk.incubator.vector: the same operations as UpdateKernels.Scalar, lane-wise.
package dev.llamafit.optim;

import java.lang.foreign.MemorySegment;
import java.nio.ByteOrder;

import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.VectorSpecies;

/**
 * SIMD twin of {@link UpdateKernels.Scalar}. Each loop is one monolithic body (DESIGN §4: helpers taking vectors
 * as arguments defeat the JIT) and ends with the scalar reference for the tail, so results are identical.
 */
final class VectorUpdateKernels implements UpdateKernels {
    private static final VectorSpecies<Float> S = FloatVector.SPECIES_PREFERRED;
    private static final int L = S.length();
    private static final ByteOrder LE = ByteOrder.LITTLE_ENDIAN;
    private static final UpdateKernels.Scalar TAIL = new UpdateKernels.Scalar();

    @Override
    public void adamw(MemorySegment p, MemorySegment g, MemorySegment m, MemorySegment v, long from, long to, AdamCoefficients c) {
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

    @Override
    public void sgd(MemorySegment p, MemorySegment g, MemorySegment buf, long from, long to, SgdCoefficients c) {
        float wd = c.weightDecay(), mom = c.momentum(), omd = c.oneMinusDampening(), negLr = c.negLr();
        boolean nesterov = c.nesterov(), first = c.firstStep();
        FloatVector wdV = FloatVector.broadcast(S, wd), momV = FloatVector.broadcast(S, mom);
        FloatVector omdV = FloatVector.broadcast(S, omd), negLrV = FloatVector.broadcast(S, negLr);
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
}
