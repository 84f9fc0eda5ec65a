using static TorchSharp.torch;

namespace Sadg.Graph.Ops;

/// <summary>
/// Softmax, LogSoftmax and Hardmax (1 at the first maximum, else 0). Before opset 13 the input is coerced to 2-D at <c>axis</c> (default 1) and normalized
/// over all trailing dimensions together; from opset 13 on, along the single dimension <c>axis</c> (default −1).
/// </summary>
[OnnxOperator("Softmax")]
[OnnxOperator("LogSoftmax")]
[OnnxOperator("Hardmax")]
sealed class SoftmaxOp : OnnxOp
{
    readonly string op;
    readonly bool flattenTrailing;
    readonly long axis;

    public SoftmaxOp(OpContext context) : base(context)
    {
        op = context.Node.OpType;
        flattenTrailing = context.Opset < 13;
        axis = context.Int("axis", flattenTrailing ? 1 : -1);
    }

    public override Tensor?[] Run(IReadOnlyList<Tensor?> inputs)
    {
        var x = Required(inputs, 0);
        long rank = x.dim();
        if (rank == 0) throw Context.Error(SadgErrorCode.InvalidNode, "the input must have at least one dimension");
        long a = OpHelpers.NormalizeAxis(axis, rank);
        if (a < 0 || a >= rank)
            throw Context.Error(SadgErrorCode.InvalidNode, $"axis {axis} is out of range for a rank-{rank} input");
        if (!flattenTrailing || a == rank - 1) return [Apply(x, a)];
        // [d0 … d(a−1), d(a)·…·d(r−1)], normalized over the last dimension, then back to the input's shape.
        var flat = x.flatten(a);
        return [Apply(flat, a).reshape(x.shape)];
    }

    Tensor Apply(Tensor x, long dim) => op switch
    {
        "LogSoftmax" => x.log_softmax(dim),
        "Softmax" => x.softmax(dim),
        _ => Hardmax(x, dim),
    };

    static Tensor Hardmax(Tensor x, long dim)
    {
        var first = x.argmax(dim, keepdim: true); // the first maximum, as ONNX's Hardmax takes
        return zeros_like(x).scatter(dim, first, ones_like(first, x.dtype));
    }
}
