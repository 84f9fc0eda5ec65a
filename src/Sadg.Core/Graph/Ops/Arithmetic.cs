using static TorchSharp.torch;

namespace Sadg.Graph.Ops;

/// <summary>Add, Sub, Mul, Div with numpy-style broadcasting (opset 7+).</summary>
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
        var a = Required(inputs, 0);
        var b = OpHelpers.OnDeviceOf(Required(inputs, 1), a);
        if (a.device != b.device) a = OpHelpers.OnDeviceOf(a, b);
        return op switch
        {
            "Add" => [a + b],
            "Sub" => [a - b],
            "Mul" => [a * b],
            _ => [a.is_floating_point() ? a / b : a.div(b, RoundingMode.trunc)],
        };
    }
}
