using static TorchSharp.torch;

namespace Sadg.Graph.Ops;

/// <summary>
/// Add, Sub, Mul, Div with numpy-style broadcasting (opset 7+). Integer Div truncates toward zero, as ONNX
/// Runtime's C++ division does; unsigned and narrow integer types wrap as their ONNX counterparts do.
/// </summary>
[OnnxOperator("Add")]
[OnnxOperator("Sub")]
[OnnxOperator("Mul")]
[OnnxOperator("Div")]
sealed class BinaryArithmeticOp : OnnxOp
{
    readonly string op;

    public BinaryArithmeticOp(OpContext context) : base(context)
    {
        op = context.Node.OpType;
        if (context.Has("broadcast") && context.Opset < 7)
            throw context.Unsupported("Opset < 7 explicit broadcast");
    }

    public override Tensor?[] Run(IReadOnlyList<Tensor?> inputs)
    {
        var (a, b) = OpHelpers.Align(Required(inputs, 0), Required(inputs, 1));
        return op switch
        {
            "Add" => [a.Add(b)],
            "Sub" => [a - b],
            "Mul" => [a * b],
            _ => [a.is_floating_point() ? a / b : a.div(b, RoundingMode.trunc)],
        };
    }
}

/// <summary>
/// Pow with broadcasting. From opset 12 the exponent may have another type than the base; the result keeps the
/// base's type either way (an integer base with a float exponent is computed in floating point, then truncated).
/// </summary>
[OnnxOperator("Pow")]
sealed class PowOp(OpContext context) : OnnxOp(context)
{
    public override Tensor?[] Run(IReadOnlyList<Tensor?> inputs)
    {
        var (x, y) = OpHelpers.Align(Required(inputs, 0), Required(inputs, 1));
        if (x.is_floating_point() && y.dtype != x.dtype && y.is_floating_point()) y = y.to_type(x.dtype);
        if (!x.is_floating_point() && y.is_floating_point())
            return [x.to_type(ScalarType.Float64).pow(y.to_type(ScalarType.Float64)).to_type(x.dtype)];
        var result = x.pow(y);
        return [result.dtype == x.dtype ? result : result.to_type(x.dtype)];
    }
}

/// <summary>Min, Max, Sum, Mean over one or more inputs with numpy-style broadcasting (Min/Max on integers too).</summary>
[OnnxOperator("Min")]
[OnnxOperator("Max")]
[OnnxOperator("Sum")]
[OnnxOperator("Mean")]
sealed class VariadicOp(OpContext context) : OnnxOp(context)
{
    readonly string op = context.Node.OpType;

    public override Tensor?[] Run(IReadOnlyList<Tensor?> inputs)
    {
        var present = inputs.Where(t => t is not null).Select(t => t!).ToList();
        if (present.Count == 0) throw Context.Error(SadgErrorCode.InvalidNode, "at least one input is required");
        var device = OpHelpers.CommonDevice(present);
        var result = OpHelpers.OnDevice(present[0], device);
        if (present.Count == 1) return [result.alias()];
        for (int i = 1; i < present.Count; i++)
        {
            var next = OpHelpers.OnDevice(present[i], device);
            result = op switch
            {
                "Min" => minimum(result, next),
                "Max" => maximum(result, next),
                _ => result.Add(next),
            };
        }
        return [op == "Mean" ? result.Div(present.Count) : result];
    }
}

/// <summary>
/// Mod with broadcasting: fmod = 1 takes the dividend's sign (C's fmod, required for floats), fmod = 0 the divisor's
/// (integers only, as Python's %).
/// </summary>
[OnnxOperator("Mod")]
sealed class ModOp(OpContext context) : OnnxOp(context)
{
    readonly bool fmod = context.Int("fmod", 0) != 0;

    public override Tensor?[] Run(IReadOnlyList<Tensor?> inputs)
    {
        var (a, b) = OpHelpers.Align(Required(inputs, 0), Required(inputs, 1));
        if (!fmod && a.is_floating_point())
            throw Context.Error(SadgErrorCode.InvalidNode, "fmod must be 1 for floating-point inputs");
        return [fmod ? a.fmod(b) : a.remainder(b)];
    }
}
