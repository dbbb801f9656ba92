// Vector helpers whose results do not depend on whether the JIT has compiled the code yet.
package dev.llamafit.kernels;

import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.IntVector;
import jdk.incubator.vector.VectorOperators;
import jdk.incubator.vector.VectorSpecies;

/**
 * Why this exists: the Vector API leaves the order of a floating-point {@code reduceLanes(ADD)} unspecified, and
 * {@code lanewise(EXP)} is a different approximation when C2 intrinsifies it (a vector math library) than in
 * the Java fallback that runs before compilation. Results then depend on JIT timing, so a training run
 * resumed in a fresh JVM would not repeat an uninterrupted one bit for bit. These replacements use only
 * lane-wise IEEE operations (add, mul, fma, compare, integer shifts), which are exact in both modes.
 */
final class VectorMath {
    private static final VectorSpecies<Float> S = FloatVector.SPECIES_PREFERRED;
    private static final int L = S.length();
    private static final float ROUND = 0x1.8p23f; // adding and subtracting it rounds to the nearest integer
    private static final float LOG2E = 1.44269504088896341f;
    private static final float LN2_HI = 0.693359375f;
    private static final float LN2_LO = -2.12194440e-4f;
    private static final float EXP_HI = 88.3762626647949f;
    private static final float EXP_LO = -87.3365478515625f;

    private VectorMath() {}

    /** Sum of the lanes, left to right. */
    static float sum(FloatVector v) {
        float[] a = new float[L];
        v.intoArray(a, 0);
        float s = 0f;
        for (int i = 0; i < L; i++) s += a[i];
        return s;
    }

    /**
     * e^x to about 1 ulp (Cephes expf: x = n·ln2 + r, |r| ≤ ln2/2, a degree-6 polynomial for e^r, then 2^n by
     * exponent bits). Below −87.34 the result is 0 (so −∞ gives 0, as softmax masks need), above 88.38 it is +∞,
     * NaN stays NaN.
     */
    static FloatVector exp(FloatVector x) {
        FloatVector c = x.max(EXP_LO).min(EXP_HI);
        FloatVector n = c.mul(LOG2E).add(ROUND).sub(ROUND);
        FloatVector r = n.mul(-LN2_HI).add(c);
        r = n.mul(-LN2_LO).add(r);
        FloatVector z = r.mul(r);
        FloatVector p = r.mul(1.9875691500e-4f).add(1.3981999507e-3f);
        p = p.mul(r).add(8.3334519073e-3f);
        p = p.mul(r).add(4.1665795894e-2f);
        p = p.mul(r).add(1.6666665459e-1f);
        p = p.mul(r).add(5.0000001201e-1f);
        p = p.mul(z).add(r).add(1f);
        IntVector bits = ((IntVector) n.convert(VectorOperators.F2I, 0)).add(127).lanewise(VectorOperators.LSHL, 23);
        FloatVector scaled = p.mul(bits.reinterpretAsFloats());
        scaled = scaled.blend(0f, x.lt(EXP_LO));
        scaled = scaled.blend(Float.POSITIVE_INFINITY, x.compare(VectorOperators.GT, EXP_HI));
        return scaled.blend(x, x.test(VectorOperators.IS_NAN));
    }
}
