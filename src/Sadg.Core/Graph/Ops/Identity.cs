using static TorchSharp.torch;

namespace Sadg.Graph.Ops;

/// <summary>Identity: the input, unchanged (tensors only).</summary>
[OnnxOperator("Identity")]
sealed class IdentityOp(OpContext context) : OnnxOp(context)
{
    public override Tensor?[] Run(IReadOnlyList<Tensor?> inputs) => [Required(inputs, 0).alias()];
}

/// <summary>
/// Dropout at inference: the output is the input and the optional mask is all true (the input's type before
/// opset 10, bool from 10). The ratio (attribute before opset 12, input from 12) has no effect; a true
/// training_mode input (opset 12+) with a non-zero ratio is refused: random dropout is not inference.
/// </summary>
[OnnxOperator("Dropout")]
sealed class DropoutOp : OnnxOp
{
    public DropoutOp(OpContext context) : base(context)
    {
        if (context.Opset < 7 && context.Int("is_test", 0) == 0)
            throw context.Unsupported("Dropout in training mode (is_test = 0)");
    }

    public override Tensor?[] Run(IReadOnlyList<Tensor?> inputs)
    {
        var x = Required(inputs, 0);
        if (Context.Opset >= 12 && Optional(inputs, 2) is { } training)
        {
            if (training.numel() != 1)
                throw Context.Error(SadgErrorCode.InvalidNode, "training_mode must be a scalar");
            // Training with ratio 0 drops nothing, so it is the identity too.
            if (training.detach().cpu().to_type(ScalarType.Bool).reshape([]).item<bool>() && RatioIn(inputs) != 0)
                throw Context.Unsupported("Dropout with training_mode = true and a non-zero ratio");
        }
        bool wantsMask = Context.Node.Output.Count > 1 && Context.Node.Output[1].Length > 0;
        if (!wantsMask) return [x.alias()];
        var mask = Context.Opset < 10 ? ones_like(x) : ones(x.shape, ScalarType.Bool, x.device);
        return [x.alias(), mask];
    }

    static float RatioIn(IReadOnlyList<Tensor?> inputs) => Optional(inputs, 1) is { } ratio
        ? OpHelpers.ToFloats(ratio) is [var r] ? r : float.NaN
        : 0.5f;
}
