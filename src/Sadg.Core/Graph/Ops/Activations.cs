using static TorchSharp.torch;

namespace Sadg.Graph.Ops;

[OnnxOperator("Relu")]
sealed class ReluOp(OpContext context) : OnnxOp(context)
{
    public override Tensor?[] Run(IReadOnlyList<Tensor?> inputs) => [nn.functional.relu(Required(inputs, 0))];
}

/// <summary>LeakyRelu: x for x ≥ 0, alpha·x otherwise (alpha defaults to 0.01).</summary>
[OnnxOperator("LeakyRelu")]
sealed class LeakyReluOp(OpContext context) : OnnxOp(context)
{
    readonly double alpha = context.Float("alpha", 0.01f);

    public override Tensor?[] Run(IReadOnlyList<Tensor?> inputs) => [Required(inputs, 0).LeakyRelu(alpha)];
}

/// <summary>
/// PRelu: x for x ≥ 0, slope·x otherwise. The slope broadcasts to x as numpy does (so [C,1,1] is per channel for
/// NCHW); a 1-D slope of C values that does not broadcast that way but matches dimension 1 of x is taken per
/// channel, as older exporters meant it.
/// </summary>
[OnnxOperator("PRelu")]
sealed class PReluOp(OpContext context) : OnnxOp(context)
{
    public override Tensor?[] Run(IReadOnlyList<Tensor?> inputs)
    {
        var x = Required(inputs, 0);
        var slope = OpHelpers.OnDeviceOf(Required(inputs, 1), x);
        if (!BroadcastsTo(slope.shape, x.shape))
        {
            if (slope.dim() == 1 && x.dim() >= 2 && slope.shape[0] == x.shape[1])
                slope = slope.reshape([slope.shape[0], .. Enumerable.Repeat(1L, (int)x.dim() - 2)]);
            else
                throw Context.Error(SadgErrorCode.InvalidNode,
                    $"slope of shape [{string.Join(", ", slope.shape)}] does not broadcast to input [{string.Join(", ", x.shape)}]");
        }
        return [where(x.Lt(0), x * slope, x)];
    }

    static bool BroadcastsTo(long[] from, long[] to)
    {
        if (from.Length > to.Length) return false;
        for (int i = 1; i <= from.Length; i++)
        {
            long f = from[^i], t = to[^i];
            if (f != 1 && f != t) return false;
        }
        return true;
    }
}

/// <summary>
/// Clip: bounds from the min/max attributes before opset 11, from the optional inputs 1 and 2 from opset 11 on;
/// an absent bound leaves that side unbounded. Works for integer tensors too.
/// </summary>
[OnnxOperator("Clip")]
sealed class ClipOp : OnnxOp
{
    readonly double? minAttribute;
    readonly double? maxAttribute;

    public ClipOp(OpContext context) : base(context)
    {
        if (context.Opset < 11)
        {
            minAttribute = context.Has("min") ? context.Float("min", 0) : null;
            maxAttribute = context.Has("max") ? context.Float("max", 0) : null;
        }
    }

    public override Tensor?[] Run(IReadOnlyList<Tensor?> inputs)
    {
        var x = Required(inputs, 0);
        if (Context.Opset < 11)
        {
            if (minAttribute is { } lo && maxAttribute is { } hi) return [x.Clamp(lo, hi)];
            if (minAttribute is { } lo2) return [x.ClampMin(lo2)];
            if (maxAttribute is { } hi2) return [x.ClampMax(hi2)];
            return [x.alias()];
        }
        var min = Optional(inputs, 1) is { } a ? Bound(a, x, "min") : null;
        var max = Optional(inputs, 2) is { } b ? Bound(b, x, "max") : null;
        if (min is null && max is null) return [x.alias()];
        return [x.clamp(min, max)];
    }

    Tensor Bound(Tensor bound, Tensor x, string name)
    {
        if (bound.numel() != 1)
            throw Context.Error(SadgErrorCode.InvalidNode, $"'{name}' must be a scalar, got shape [{string.Join(", ", bound.shape)}]");
        bound = OpHelpers.OnDeviceOf(bound, x).reshape([]);
        return bound.dtype == x.dtype ? bound : bound.to_type(x.dtype);
    }
}

[OnnxOperator("Sigmoid")]
sealed class SigmoidOp(OpContext context) : OnnxOp(context)
{
    public override Tensor?[] Run(IReadOnlyList<Tensor?> inputs) => [Required(inputs, 0).sigmoid()];
}

/// <summary>HardSigmoid: max(0, min(1, alpha·x + beta)), alpha = 0.2 and beta = 0.5 by default.</summary>
[OnnxOperator("HardSigmoid")]
sealed class HardSigmoidOp(OpContext context) : OnnxOp(context)
{
    readonly double alpha = context.Float("alpha", 0.2f);
    readonly double beta = context.Float("beta", 0.5f);

    public override Tensor?[] Run(IReadOnlyList<Tensor?> inputs) => [Required(inputs, 0).Mul(alpha).Add(beta).Clamp(0.0, 1.0)];
}

/// <summary>HardSwish (opset 14): x · max(0, min(1, x/6 + 1/2)).</summary>
[OnnxOperator("HardSwish")]
sealed class HardSwishOp(OpContext context) : OnnxOp(context)
{
    public override Tensor?[] Run(IReadOnlyList<Tensor?> inputs) => [nn.functional.hardswish(Required(inputs, 0))];
}

[OnnxOperator("Tanh")]
sealed class TanhOp(OpContext context) : OnnxOp(context)
{
    public override Tensor?[] Run(IReadOnlyList<Tensor?> inputs) => [Required(inputs, 0).tanh()];
}

/// <summary>Elu: x for x &gt; 0, alpha·(exp(x) − 1) otherwise (alpha defaults to 1).</summary>
[OnnxOperator("Elu")]
sealed class EluOp(OpContext context) : OnnxOp(context)
{
    readonly double alpha = context.Float("alpha", 1f);

    public override Tensor?[] Run(IReadOnlyList<Tensor?> inputs) => [Required(inputs, 0).Elu(alpha)];
}

/// <summary>Selu: gamma · (x for x &gt; 0, alpha·(exp(x) − 1) otherwise), with the self-normalizing defaults.</summary>
[OnnxOperator("Selu")]
sealed class SeluOp(OpContext context) : OnnxOp(context)
{
    readonly double alpha = context.Float("alpha", 1.67326319217681884765625f);
    readonly double gamma = context.Float("gamma", 1.05070102214813232421875f);

    public override Tensor?[] Run(IReadOnlyList<Tensor?> inputs) => [Required(inputs, 0).Elu(alpha).Mul(gamma)];
}

/// <summary>Softplus: log(exp(x) + 1).</summary>
[OnnxOperator("Softplus")]
sealed class SoftplusOp(OpContext context) : OnnxOp(context)
{
    public override Tensor?[] Run(IReadOnlyList<Tensor?> inputs) => [Required(inputs, 0).Softplus()];
}

/// <summary>Softsign: x / (1 + |x|).</summary>
[OnnxOperator("Softsign")]
sealed class SoftsignOp(OpContext context) : OnnxOp(context)
{
    public override Tensor?[] Run(IReadOnlyList<Tensor?> inputs)
    {
        var x = Required(inputs, 0);
        return [x / x.abs().Add(1)];
    }
}

/// <summary>Gelu (opset 20): exact (erf) or, with approximate = "tanh", the tanh approximation.</summary>
[OnnxOperator("Gelu")]
sealed class GeluOp : OnnxOp
{
    readonly bool tanhApproximation;

    public GeluOp(OpContext context) : base(context)
    {
        string approximate = context.String("approximate", "none");
        tanhApproximation = approximate switch
        {
            "none" => false,
            "tanh" => true,
            _ => throw context.Unsupported($"Gelu approximate = '{approximate}'"),
        };
    }

    public override Tensor?[] Run(IReadOnlyList<Tensor?> inputs)
    {
        var x = Required(inputs, 0);
        if (!tanhApproximation) return [nn.functional.gelu(x)];
        // 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³)))
        var inner = x.Add(x.Pow(3).Mul(0.044715)).Mul(Math.Sqrt(2 / Math.PI));
        return [x.Mul(0.5) * inner.tanh().Add(1)];
    }
}

/// <summary>Mish (opset 18): x · tanh(softplus(x)).</summary>
[OnnxOperator("Mish")]
sealed class MishOp(OpContext context) : OnnxOp(context)
{
    public override Tensor?[] Run(IReadOnlyList<Tensor?> inputs)
    {
        var x = Required(inputs, 0);
        return [x * x.Softplus().tanh()];
    }
}

/// <summary>Celu: max(0, x) + min(0, alpha·(exp(x / alpha) − 1)) (alpha defaults to 1).</summary>
[OnnxOperator("Celu")]
sealed class CeluOp(OpContext context) : OnnxOp(context)
{
    readonly double alpha = context.Float("alpha", 1f);

    public override Tensor?[] Run(IReadOnlyList<Tensor?> inputs)
    {
        var x = Required(inputs, 0);
        return [x.ClampMin(0).Add(x.Div(alpha).exp().Sub(1).Mul(alpha).ClampMax(0))];
    }
}

/// <summary>ThresholdedRelu: x where x &gt; alpha, 0 elsewhere (alpha defaults to 1).</summary>
[OnnxOperator("ThresholdedRelu")]
sealed class ThresholdedReluOp(OpContext context) : OnnxOp(context)
{
    readonly double alpha = context.Float("alpha", 1f);

    public override Tensor?[] Run(IReadOnlyList<Tensor?> inputs)
    {
        var x = Required(inputs, 0);
        return [where(x.Gt(alpha), x, zeros_like(x))];
    }
}

/// <summary>Shrink: x + bias where x &lt; −lambd, x − bias where x &gt; lambd, 0 between (bias 0, lambd 0.5 by default).</summary>
[OnnxOperator("Shrink")]
sealed class ShrinkOp(OpContext context) : OnnxOp(context)
{
    readonly double bias = context.Float("bias", 0f);
    readonly double lambd = context.Float("lambd", 0.5f);

    public override Tensor?[] Run(IReadOnlyList<Tensor?> inputs)
    {
        var x = Required(inputs, 0);
        var zero = zeros_like(x);
        return [where(x.Lt(-lambd), x.Add(bias).to_type(x.dtype), where(x.Gt(lambd), x.Sub(bias).to_type(x.dtype), zero))];
    }
}
