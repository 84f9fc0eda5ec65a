using static TorchSharp.torch;

namespace Sadg.Graph.Ops;

/// <summary>Gemm: alpha · A' · B' + beta · C, with transA/transB and C (optional from opset 11) broadcast to the result.</summary>
[OnnxOperator("Gemm")]
sealed class GemmOp : OnnxOp
{
    readonly bool transA;
    readonly bool transB;
    readonly float alpha;
    readonly float beta;

    public GemmOp(OpContext context) : base(context)
    {
        transA = context.Int("transA", 0) != 0;
        transB = context.Int("transB", 0) != 0;
        alpha = context.Float("alpha", 1f);
        beta = context.Float("beta", 1f);
        if (context.Has("broadcast") && context.Opset < 7) throw context.Unsupported("Opset < 7 Gemm broadcast attribute");
    }

    public override Tensor?[] Run(IReadOnlyList<Tensor?> inputs)
    {
        var a = Required(inputs, 0);
        var b = OpHelpers.OnDeviceOf(Required(inputs, 1), a);
        var c = Optional(inputs, 2) is { } bias ? OpHelpers.OnDeviceOf(bias, a) : null;
        if (a.dim() != 2 || b.dim() != 2)
            throw Context.Error(SadgErrorCode.InvalidNode, $"A and B must be matrices (ranks {a.dim()} and {b.dim()})");
        if (transA) a = a.t();
        if (transB) b = b.t();
        if (c is not null && c.dim() > 2)
            throw Context.Error(SadgErrorCode.InvalidNode, $"C has rank {c.dim()}; at most 2 is allowed");

        if (c is not null && a.is_floating_point() && beta != 0)
            return [addmm(c, a, b, beta, alpha)];

        var y = a.matmul(b);
        if (alpha != 1f) y = a.is_floating_point() ? y.Mul(alpha) : y.to_type(ScalarType.Float64).Mul(alpha).to_type(y.dtype);
        if (c is not null && beta != 0f)
            y = y.Add(beta == 1f ? c : a.is_floating_point() ? c.Mul(beta) : c.to_type(ScalarType.Float64).Mul(beta).to_type(c.dtype));
        return [y];
    }
}

/// <summary>MatMul with numpy semantics: 1-D operands promoted and squeezed, batch dims broadcast.</summary>
[OnnxOperator("MatMul")]
sealed class MatMulOp(OpContext context) : OnnxOp(context)
{
    public override Tensor?[] Run(IReadOnlyList<Tensor?> inputs)
    {
        var a = Required(inputs, 0);
        var b = OpHelpers.OnDeviceOf(Required(inputs, 1), a);
        return [a.matmul(b)];
    }
}

/// <summary>Einsum: the equation (spaces ignored) as numpy and torch read it, inputs broadcast by ellipsis.</summary>
[OnnxOperator("Einsum")]
sealed class EinsumOp(OpContext context) : OnnxOp(context)
{
    readonly string equation = context.String("equation", "").Replace(" ", "", StringComparison.Ordinal);

    public override Tensor?[] Run(IReadOnlyList<Tensor?> inputs)
    {
        var present = inputs.Where(t => t is not null).Select(t => t!).ToList();
        var device = OpHelpers.CommonDevice(present);
        return [einsum(equation, present.Select(t => OpHelpers.OnDevice(t, device)).ToArray())];
    }
}
