namespace Sadg.Onnx;

/// <summary>The operators Sadg quantizes when their weight (second input) is a constant float tensor.</summary>
public static class QuantizableOps
{
    /// <summary>Conv, ConvTranspose, Gemm, MatMul.</summary>
    public static readonly IReadOnlySet<string> OpTypes = new HashSet<string>(StringComparer.Ordinal) { "Conv", "ConvTranspose", "Gemm", "MatMul" };

    /// <summary>The set as messages name it: "Conv, ConvTranspose, Gemm or MatMul".</summary>
    public static string Names { get; } =
        string.Join(", ", OpTypes.Order(StringComparer.Ordinal).SkipLast(1)) + " or " + OpTypes.Order(StringComparer.Ordinal).Last();

    /// <summary>SADG1401's message for a model with no quantizable layer.</summary>
    public static string NothingToQuantize { get; } = $"The model has no {Names} with constant weights, so there is nothing to quantize.";
}
