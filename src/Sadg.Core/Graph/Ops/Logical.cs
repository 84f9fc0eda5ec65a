using static TorchSharp.torch;

namespace Sadg.Graph.Ops;

/// <summary>Comparisons with numpy-style broadcasting; the result is bool.</summary>
[OnnxOperator("Equal")]
[OnnxOperator("Less")]
[OnnxOperator("Greater")]
[OnnxOperator("LessOrEqual")]
[OnnxOperator("GreaterOrEqual")]
sealed class ComparisonOp(OpContext context) : OnnxOp(context)
{
    readonly string op = context.Node.OpType;

    public override Tensor?[] Run(IReadOnlyList<Tensor?> inputs)
    {
        var (a, b) = OpHelpers.Align(Required(inputs, 0), Required(inputs, 1));
        return op switch
        {
            "Equal" => [a.eq(b)],
            "Less" => [a.lt(b)],
            "Greater" => [a.gt(b)],
            "LessOrEqual" => [a.le(b)],
            _ => [a.ge(b)],
        };
    }
}

/// <summary>And, Or, Xor on bool tensors with numpy-style broadcasting.</summary>
[OnnxOperator("And")]
[OnnxOperator("Or")]
[OnnxOperator("Xor")]
sealed class BinaryLogicalOp(OpContext context) : OnnxOp(context)
{
    readonly string op = context.Node.OpType;

    public override Tensor?[] Run(IReadOnlyList<Tensor?> inputs)
    {
        var (a, b) = OpHelpers.Align(Required(inputs, 0), Required(inputs, 1));
        return op switch
        {
            "And" => [a.logical_and(b)],
            "Or" => [a.logical_or(b)],
            _ => [a.logical_xor(b)],
        };
    }
}

[OnnxOperator("Not")]
sealed class NotOp(OpContext context) : OnnxOp(context)
{
    public override Tensor?[] Run(IReadOnlyList<Tensor?> inputs) => [Required(inputs, 0).logical_not()];
}

/// <summary>Where(condition, X, Y) with numpy-style broadcasting of all three.</summary>
[OnnxOperator("Where")]
sealed class WhereOp(OpContext context) : OnnxOp(context)
{
    public override Tensor?[] Run(IReadOnlyList<Tensor?> inputs)
    {
        var condition = Required(inputs, 0);
        var x = Required(inputs, 1);
        var y = Required(inputs, 2);
        var device = OpHelpers.CommonDevice([x, y, condition]);
        condition = OpHelpers.OnDevice(condition, device);
        if (condition.dtype != ScalarType.Bool) condition = condition.Ne(0);
        return [where(condition, OpHelpers.OnDevice(x, device), OpHelpers.OnDevice(y, device))];
    }
}
