using System.Reflection;
using TorchSharp;
using static TorchSharp.torch;

namespace Sadg;

/// <summary>
/// Tensor arithmetic with numbers that keeps every TorchSharp <see cref="Scalar"/> alive until its native call has
/// returned. In TorchSharp 0.107 a number passed where a <see cref="Scalar"/> is taken (<c>t * 0.5</c>,
/// <c>t.clamp(0, 15)</c>) and the default <c>alpha = 1</c> of <c>add</c> (<c>a + b</c> of two tensors) become
/// <see cref="Scalar"/> objects that nothing references during the native call, so a garbage collection started by
/// another thread can run their finalizers and free the native value mid-call (README, Known issues). Here each
/// number becomes a <see cref="Scalar"/> held in a <c>using</c> variable for the call, and the constants TorchSharp
/// passes implicitly (1 and 2) are static, so they are never finalized. BannedSymbols.txt makes the compiler reject the
/// implicit forms in Sadg's code.
/// </summary>
/// <remarks>
/// Overloads take <see cref="long"/> or <see cref="double"/>: an integer literal stays an integer
/// <see cref="Scalar"/> (an integer tensor keeps its type), a floating-point one a floating-point
/// <see cref="Scalar"/>, as the implicit conversions did.
/// </remarks>
public static class TorchScalars
{
    // Static: referenced for the life of the process, so never finalized, and read-only, so shared by all threads.
    static readonly Scalar One = 1.ToScalar();
    static readonly Scalar Two = 2.ToScalar();

    /// <summary>Runs <paramref name="op"/> with <paramref name="value"/> as a <see cref="Scalar"/> held until it returns.</summary>
    static Tensor Held(double value, Func<Scalar, Tensor> op)
    {
        using var s = value.ToScalar();
        return op(s);
    }

    /// <summary>Runs <paramref name="op"/> with <paramref name="value"/> as an integer <see cref="Scalar"/> held until it returns.</summary>
    static Tensor Held(long value, Func<Scalar, Tensor> op)
    {
        using var s = value.ToScalar();
        return op(s);
    }

    /// <summary>this + other (TorchSharp's <c>a + b</c>, with an alpha of 1 that stays alive).</summary>
    public static Tensor Add(this Tensor t, Tensor other) => t.add(other, One);

    /// <summary>this += other in place.</summary>
    public static Tensor Add_(this Tensor t, Tensor other) => t.add_(other, One);

    /// <summary>this + alpha · other.</summary>
    public static Tensor Add(this Tensor t, Tensor other, double alpha) =>
        Held(alpha, a => t.add(other, a));

    /// <summary>this + value.</summary>
    public static Tensor Add(this Tensor t, double value) =>
        Held(value, s => t.add(s, One));

    /// <summary>this + value.</summary>
    public static Tensor Add(this Tensor t, long value) =>
        Held(value, s => t.add(s, One));

    /// <summary>this += value in place.</summary>
    public static Tensor Add_(this Tensor t, double value) =>
        Held(value, s => t.add_(s, One));

    /// <summary>this − value.</summary>
    public static Tensor Sub(this Tensor t, double value) =>
        Held(value, s => t.sub(s));

    /// <summary>this − value.</summary>
    public static Tensor Sub(this Tensor t, long value) =>
        Held(value, s => t.sub(s));

    /// <summary>value − this (TorchSharp's <c>value - t</c>: −t + value).</summary>
    public static Tensor RSub(this Tensor t, double value)
    {
        using var s = value.ToScalar();
        using var negative = t.negative();
        return negative.add(s, One);
    }

    /// <summary>value − this (TorchSharp's <c>value - t</c>: −t + value).</summary>
    public static Tensor RSub(this Tensor t, long value)
    {
        using var s = value.ToScalar();
        using var negative = t.negative();
        return negative.add(s, One);
    }

    /// <summary>this · value.</summary>
    public static Tensor Mul(this Tensor t, double value) =>
        Held(value, s => t.mul(s));

    /// <summary>this · value.</summary>
    public static Tensor Mul(this Tensor t, long value) =>
        Held(value, s => t.mul(s));

    /// <summary>this ·= value in place.</summary>
    public static Tensor Mul_(this Tensor t, double value) =>
        Held(value, s => t.mul_(s));

    /// <summary>this / value.</summary>
    public static Tensor Div(this Tensor t, double value) =>
        Held(value, s => t.div(s));

    /// <summary>this / value (true division, as TorchSharp's <c>t / n</c>).</summary>
    public static Tensor Div(this Tensor t, long value) =>
        Held(value, s => t.div(s));

    /// <summary>value / this (TorchSharp's <c>value / t</c>: value · (1 / t)).</summary>
    public static Tensor RDiv(this Tensor t, double value)
    {
        using var s = value.ToScalar();
        using var reciprocal = t.reciprocal();
        return reciprocal.mul(s);
    }

    /// <summary>this raised to the power of exponent.</summary>
    public static Tensor Pow(this Tensor t, double exponent) =>
        Held(exponent, s => t.pow(s));

    /// <summary>this raised to the power of an integer exponent.</summary>
    public static Tensor Pow(this Tensor t, long exponent) =>
        Held(exponent, s => t.pow(s));

    /// <summary>this² (TorchSharp's <c>square()</c>: pow(2), with a 2 that stays alive).</summary>
    public static Tensor Square(this Tensor t) => t.pow(Two);

    /// <summary>this clamped to [min, max].</summary>
    public static Tensor Clamp(this Tensor t, double min, double max)
    {
        using var lo = min.ToScalar();
        using var hi = max.ToScalar();
        return t.clamp(lo, hi);
    }

    /// <summary>this clamped to [min, max].</summary>
    public static Tensor Clamp(this Tensor t, long min, long max)
    {
        using var lo = min.ToScalar();
        using var hi = max.ToScalar();
        return t.clamp(lo, hi);
    }

    /// <summary>this clamped to [min, max] in place.</summary>
    public static Tensor Clamp_(this Tensor t, double min, double max)
    {
        using var lo = min.ToScalar();
        using var hi = max.ToScalar();
        return t.clamp_(lo, hi);
    }

    /// <summary>max(this, min).</summary>
    public static Tensor ClampMin(this Tensor t, double min) =>
        Held(min, lo => t.clamp_min(lo));

    /// <summary>min(this, max).</summary>
    public static Tensor ClampMax(this Tensor t, double max) =>
        Held(max, hi => t.clamp_max(hi));

    /// <summary>A tensor of the given shape filled with value.</summary>
    public static Tensor Full(long[] shape, double value, ScalarType? dtype = null, Device? device = null) =>
        Held(value, s => full(shape, s, dtype, device));

    /// <summary>A tensor of the given shape filled with value.</summary>
    public static Tensor Full(long[] shape, long value, ScalarType? dtype = null, Device? device = null) =>
        Held(value, s => full(shape, s, dtype, device));

    /// <summary>A tensor of the given shape filled with value.</summary>
    public static Tensor Full(long[] shape, bool value, ScalarType? dtype = null, Device? device = null)
    {
        using var s = value.ToScalar();
        return full(shape, s, dtype, device);
    }

    /// <summary>this with value where mask is true.</summary>
    public static Tensor MaskedFill(this Tensor t, Tensor mask, double value) =>
        Held(value, s => t.masked_fill(mask, s));

    /// <summary>this == value, elementwise.</summary>
    public static Tensor Eq(this Tensor t, double value) =>
        Held(value, s => t.eq(s));

    /// <summary>this ≠ value, elementwise.</summary>
    public static Tensor Ne(this Tensor t, double value) =>
        Held(value, s => t.ne(s));

    /// <summary>this &gt; value, elementwise.</summary>
    public static Tensor Gt(this Tensor t, double value) =>
        Held(value, s => t.gt(s));

    /// <summary>this &lt; value, elementwise.</summary>
    public static Tensor Lt(this Tensor t, double value) =>
        Held(value, s => t.lt(s));

    /// <summary>this ≥ value, elementwise.</summary>
    public static Tensor Ge(this Tensor t, double value) =>
        Held(value, s => t.ge(s));

    /// <summary>this ≤ value, elementwise.</summary>
    public static Tensor Le(this Tensor t, double value) =>
        Held(value, s => t.le(s));

    /// <summary>this /= value in place.</summary>
    public static Tensor Div_(this Tensor t, double value) =>
        Held(value, s => t.div_(s));

    /// <summary>this / value with the given rounding.</summary>
    public static Tensor Div(this Tensor t, long value, RoundingMode rounding) =>
        Held(value, s => t.div(s, rounding));

    /// <summary>this mod value (the sign of the divisor, as Python's %).</summary>
    public static Tensor Remainder(this Tensor t, long value) =>
        Held(value, s => t.remainder(s));

    /// <summary>this = max(this, min) in place.</summary>
    public static Tensor ClampMin_(this Tensor t, double min) =>
        Held(min, lo => t.clamp_min_(lo));

    /// <summary>this filled with value in place.</summary>
    public static Tensor Fill_(this Tensor t, double value) =>
        Held(value, s => t.fill_(s));

    /// <summary>0, 1, …, stop − 1 (TorchSharp's <c>arange(stop)</c>).</summary>
    public static Tensor Arange(long stop, ScalarType? dtype = null, Device? device = null)
    {
        using var start = 0L.ToScalar();
        using var end = stop.ToScalar();
        return arange(start, end, One, dtype, device);
    }

    /// <summary>leaky_relu(this, slope).</summary>
    public static Tensor LeakyRelu(this Tensor t, double negativeSlope) =>
        Held(negativeSlope, s => t.leaky_relu(s));

    /// <summary>elu(this, alpha) (TorchSharp's <c>elu(alpha)</c>: scale and input scale 1).</summary>
    public static Tensor Elu(this Tensor t, double alpha)
    {
        using var a = alpha.ToScalar();
        using var one = 1.0.ToScalar();
        return t.elu(a, one, one);
    }

    // TorchSharp 0.107 has no public softplus that takes Scalars: its softplus(double, double) converts them
    // implicitly and calls this private method, which Sadg calls with Scalars it holds (same native call and result).
    static readonly Func<Tensor, Scalar, Scalar, Tensor> SoftplusWithScalars =
        typeof(Tensor).GetMethod("softplus1", BindingFlags.NonPublic | BindingFlags.Instance, [typeof(Scalar), typeof(Scalar)])
            ?.CreateDelegate<Func<Tensor, Scalar, Scalar, Tensor>>()
        ?? throw new MissingMethodException("TorchSharp.torch+Tensor", "softplus1(Scalar, Scalar)");

    /// <summary>softplus(this) = log(1 + exp(β·x)) / β, linear above the threshold (TorchSharp's <c>softplus()</c>).</summary>
    public static Tensor Softplus(this Tensor t, double beta = 1, double threshold = 20)
    {
        using var b = beta.ToScalar();
        using var th = threshold.ToScalar();
        return SoftplusWithScalars(t, b, th);
    }
}
