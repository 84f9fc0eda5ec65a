using static TorchSharp.torch;

namespace Sadg.Quantization;

/// <summary>
/// QDrop's elementwise draws (DESIGN §3): which elements keep their float value. A mask is a float tensor of 0 and 1
/// (1: keep the float value) so that the mix is one <c>lerp</c>, exact at weights 0 and 1.
/// </summary>
public static class QDrop
{
    /// <summary>
    /// A mask of <paramref name="shape"/> whose elements are 1 with probability <paramref name="p"/>, independently.
    /// At p = ½ (QDrop's setting) each element is one bit of a uniform random 32-bit integer, a fair coin: one integer
    /// is drawn per 32 elements, which on the CPU is about ten times faster than a uniform float per element (libtorch's
    /// CPU generator is sequential; docs/benchmarks/steps.md). Other p compare a uniform float per element with p.
    /// </summary>
    public static Tensor KeepFloatMask(long[] shape, double p, Generator? generator, Device device)
    {
        if (p is < 0 or > 1 || double.IsNaN(p)) throw new ArgumentOutOfRangeException(nameof(p), p, "The drop probability must lie in [0, 1].");
        if (p != 0.5)
            return rand(shape, generator: generator, device: device).Lt(p).to_type(ScalarType.Float32);
        using var scope = NewDisposeScope();
        long count = shape.Aggregate(1L, (a, d) => a * d);
        var words = randint(int.MinValue, 1L << 31, [(count + 31) / 32, 1], dtype: ScalarType.Int32, generator: generator, device: device);
        var bits = words.bitwise_right_shift(TorchScalars.Arange(32, ScalarType.Int32, device)).bitwise_and(1L);
        return bits.to_type(ScalarType.Float32).flatten().narrow(0, 0, count).reshape(shape).MoveToOuterDisposeScope();
    }

    /// <summary>Each element <paramref name="float"/>'s where <paramref name="keepFloat"/> is 1, else <paramref name="quantized"/>'s.</summary>
    public static Tensor Mix(Tensor quantized, Tensor @float, Tensor keepFloat) => quantized.lerp(@float, keepFloat);
}
