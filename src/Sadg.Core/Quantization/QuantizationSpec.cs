using static TorchSharp.torch;

namespace Sadg.Quantization;

/// <summary>
/// The final integer form of one quantized operator's weight: per output channel (axis 0), asymmetric,
/// w ≈ Scale[c] · (Integers − ZeroPoint[c]), integers in [0, 2^Bits − 1]. This is exactly what ONNX's
/// DequantizeLinear(axis = 0) computes from a UINT4/UINT8 initializer.
/// </summary>
/// <param name="Node">Name of the Conv/Gemm/MatMul node (in the BN-folded model).</param>
/// <param name="Weight">Name of the weight initializer the node reads.</param>
/// <param name="Integers">Int64 tensor with the weight's shape.</param>
/// <param name="Scale">Float32 [Cout].</param>
/// <param name="ZeroPoint">Int64 [Cout], in [0, 2^Bits − 1].</param>
/// <param name="Bits">2–8.</param>
/// <param name="Axis">The output-channel axis of the weight as stored: 0 for Conv and Gemm with transB = 1; 1 for MatMul and Gemm with transB = 0.</param>
public sealed record WeightQuantization(string Node, string Weight, Tensor Integers, Tensor Scale, Tensor ZeroPoint, int Bits, int Axis = 0)
{
    /// <summary>Scale · (Integers − ZeroPoint), broadcast along <see cref="Axis"/>: the weight the quantized model computes with.</summary>
    public Tensor Dequantize()
    {
        long[] shape = Enumerable.Repeat(1L, (int)Integers.dim()).ToArray();
        shape[Axis] = Scale.shape[0];
        return (Integers - ZeroPoint.reshape(shape)).to_type(ScalarType.Float32) * Scale.reshape(shape);
    }
}

/// <summary>
/// The final form of one activation quantizer: per tensor, signed INT{Bits} with zero point 0 (<see cref="Signed"/>,
/// the symmetric grid), or unsigned UINT{Bits} with zero point <see cref="ZeroPoint"/> (0 after ReLU):
/// x_q = Scale · clamp(round(x / Scale), lo, hi), rounding half to even, as ONNX QuantizeLinear does.
/// </summary>
/// <param name="Value">Name of the quantized tensor (every node that reads it sees the quantized value, but <see cref="FloatReaders"/>).</param>
public sealed record ActivationQuantization(string Value, float Scale, int Bits, bool Signed)
{
    /// <summary>Nodes (by name) that read the float value: operators left in float (<c>--exclude</c>). Empty by default.</summary>
    public IReadOnlyList<string> FloatReaders { get; init; } = [];

    /// <summary>z of the unsigned grid [−z, 2^b − 1 − z] (stored as UINT with this zero point); 0 when <see cref="Signed"/>.</summary>
    public long ZeroPoint { get; init; }

    public long Min => Grid(Bits, Signed, ZeroPoint).Min;

    public long Max => Grid(Bits, Signed, ZeroPoint).Max;

    /// <summary>The fake-quantized value (no gradient tricks: for evaluation).</summary>
    public Tensor Apply(Tensor x) => Apply(x, Scale, Min, Max);

    /// <summary>
    /// The integer range [lo, hi] of a b-bit grid: [−2^(b−1), 2^(b−1) − 1] when <paramref name="signed"/>, else
    /// [−z, 2^b − 1 − z] for the zero point z (0 after ReLU). The quantizer and its exported form both ask here.
    /// </summary>
    public static (long Min, long Max) Grid(int bits, bool signed, long zeroPoint) =>
        signed ? (-(1L << (bits - 1)), (1L << (bits - 1)) - 1) : (-zeroPoint, (1L << bits) - 1 - zeroPoint);

    /// <summary>s · clamp(round(x / s), lo, hi), rounding half to even, as ONNX QuantizeLinear/DequantizeLinear do.</summary>
    public static Tensor Apply(Tensor x, float scale, long min, long max) => x.Div(scale).round().Clamp(min, max).Mul(scale);
}

/// <summary>
/// A float bias that the quantized model reads instead of the folded model's: the bias correction after the
/// reconstruction of a block with a depthwise convolution (docs/method.md).
/// </summary>
/// <param name="Node">Name of the Conv/Gemm node that alone reads the bias (in the BN-folded model).</param>
/// <param name="Bias">Name of the bias initializer.</param>
/// <param name="Value">Float32, the initializer's shape.</param>
public sealed record BiasOverride(string Node, string Bias, Tensor Value);

/// <summary>Everything the QDQ writer needs besides the BN-folded model. Disposing it frees the weights' and biases' tensors.</summary>
public sealed class QuantizationSpec : IDisposable
{
    public List<WeightQuantization> Weights { get; } = [];

    public List<ActivationQuantization> Activations { get; } = [];

    public List<BiasOverride> Biases { get; } = [];

    /// <summary>Written into the model's metadata_props (tool version, bits, method, seed, options hash, …).</summary>
    public Dictionary<string, string> Metadata { get; } = new(StringComparer.Ordinal);

    public void Dispose()
    {
        foreach (var w in Weights)
        {
            w.Integers.Dispose();
            w.Scale.Dispose();
            w.ZeroPoint.Dispose();
        }
        foreach (var b in Biases) b.Value.Dispose();
    }
}
