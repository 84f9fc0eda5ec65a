using static TorchSharp.torch;

namespace Sadg.Graph.Ops;

/// <summary>
/// BatchNormalization in inference mode: (x − mean) / sqrt(var + epsilon) · scale + B, with the per-channel
/// values broadcast over every dim after the channel dim (any rank >= 2). Training mode (opset 14+
/// training_mode = 1), spatial = 0 (opsets 7–8) and the saved-statistics outputs of older opsets are refused.
/// The running_mean/running_var outputs of older opsets, when named, are the inputs unchanged (no update in inference).
/// </summary>
[OnnxOperator("BatchNormalization")]
sealed class BatchNormalizationOp : OnnxOp
{
    readonly double epsilon;
    readonly int outputs;

    public BatchNormalizationOp(OpContext context) : base(context)
    {
        epsilon = context.Float("epsilon", 1e-5f);
        if (context.Opset < 9 && context.Int("spatial", 1) != 1)
            throw context.Unsupported("BatchNormalization with spatial = 0");
        if (context.Int("training_mode", 0) != 0)
            throw context.Unsupported("BatchNormalization in training mode (training_mode = 1)");
        var named = context.Node.Output;
        outputs = named.Count;
        for (int i = 1; i < named.Count; i++)
        {
            if (named[i].Length == 0) continue;
            if (context.Opset >= 14)
                throw context.Unsupported("BatchNormalization running statistics outputs (training mode)");
            if (i >= 3)
                throw context.Unsupported("BatchNormalization saved mean/variance outputs (training mode)");
        }
    }

    static Tensor Channel(Tensor t, Tensor x) => t.reshape([-1, .. Enumerable.Repeat(1L, (int)x.dim() - 2)]);

    public override Tensor?[] Run(IReadOnlyList<Tensor?> inputs)
    {
        var x = Required(inputs, 0);
        var scale = OpHelpers.OnDeviceOf(Required(inputs, 1), x);
        var bias = OpHelpers.OnDeviceOf(Required(inputs, 2), x);
        var mean = OpHelpers.OnDeviceOf(Required(inputs, 3), x);
        var variance = OpHelpers.OnDeviceOf(Required(inputs, 4), x);
        if (x.dim() < 2) throw Context.Error(SadgErrorCode.InvalidNode, $"the input has rank {x.dim()}; at least 2 is needed");

        Tensor Typed(Tensor t) => t.dtype == x.dtype ? t : t.to_type(x.dtype);
        // libtorch's fused inference kernel: (x − mean) / sqrt(var + ε) · scale + bias in one pass over x.
        var y = x.dim() == 2 || x.shape[0] == 0
            ? ((x - Channel(Typed(mean), x)) * (Channel(Typed(scale), x) * Channel(Typed(variance), x).Add(epsilon).rsqrt())).Add(Channel(Typed(bias), x))
            : nn.functional.batch_norm(x, Typed(mean), Typed(variance), Typed(scale), Typed(bias), training: false, eps: epsilon);

        var result = new Tensor?[outputs];
        result[0] = y;
        if (outputs > 1 && Context.Node.Output[1].Length > 0) result[1] = mean;
        if (outputs > 2 && Context.Node.Output[2].Length > 0) result[2] = variance;
        return result;
    }
}

/// <summary>InstanceNormalization: per sample and channel, (x − mean) / sqrt(biased var + epsilon) · scale + B over the spatial dims.</summary>
[OnnxOperator("InstanceNormalization")]
sealed class InstanceNormalizationOp(OpContext context) : OnnxOp(context)
{
    readonly double epsilon = context.Float("epsilon", 1e-5f);

    public override Tensor?[] Run(IReadOnlyList<Tensor?> inputs)
    {
        var x = Required(inputs, 0);
        var scale = OpHelpers.OnDeviceOf(Required(inputs, 1), x);
        var bias = OpHelpers.OnDeviceOf(Required(inputs, 2), x);
        if (x.dim() < 3) throw Context.Error(SadgErrorCode.InvalidNode, $"the input has rank {x.dim()}; at least 3 is needed");
        var dims = Enumerable.Range(2, (int)x.dim() - 2).Select(i => (long)i).ToArray();
        long[] shape = [-1, .. Enumerable.Repeat(1L, dims.Length)];
        var centered = x - x.mean(dims, keepdim: true);
        var variance = (centered * centered).mean(dims, keepdim: true);
        return [(centered * variance.Add(epsilon).rsqrt() * scale.reshape(shape)).Add(bias.reshape(shape))];
    }
}

/// <summary>
/// LRN across channels: x / (bias + alpha / size · Σ x²)^beta, the sum over channels
/// [c − floor((size − 1) / 2), c + ceil((size − 1) / 2)] (torch's local_response_norm centres even windows differently).
/// </summary>
[OnnxOperator("LRN")]
sealed class LrnOp : OnnxOp
{
    readonly long size;
    readonly double alpha;
    readonly double beta;
    readonly double bias;

    public LrnOp(OpContext context) : base(context)
    {
        size = context.Int("size", 0);
        if (size < 1) throw context.Error(SadgErrorCode.InvalidNode, "size must be a positive integer");
        alpha = context.Float("alpha", 1e-4f);
        beta = context.Float("beta", 0.75f);
        bias = context.Float("bias", 1f);
    }

    public override Tensor?[] Run(IReadOnlyList<Tensor?> inputs)
    {
        var x = Required(inputs, 0);
        if (x.dim() < 3) throw Context.Error(SadgErrorCode.InvalidNode, $"the input has rank {x.dim()}; at least 3 is needed");
        long n = x.shape[0], c = x.shape[1];
        var squares = (x * x).reshape(n, 1, c, -1);
        long before = (size - 1) / 2, after = size - 1 - before;
        squares = nn.functional.pad(squares, [0, 0, before, after]);
        var mean = nn.functional.avg_pool2d(squares, [size, 1], [1, 1], [0, 0]).reshape(x.shape);
        return [x / mean.Mul(alpha).Add(bias).Pow(beta)];
    }
}

/// <summary>
/// LayerNormalization (opset 17): Y = (X − mean) / sqrt(var + epsilon) · Scale + B over the dimensions from
/// <c>axis</c> (default −1) to the last; the optional Mean and InvStdDev outputs have those dimensions kept as 1.
/// Computed in float32 (stash_type 1) and returned in X's type.
/// </summary>
[OnnxOperator("LayerNormalization")]
sealed class LayerNormalizationOp : OnnxOp
{
    readonly long axis;
    readonly double epsilon;

    public LayerNormalizationOp(OpContext context) : base(context)
    {
        axis = context.Int("axis", -1);
        epsilon = context.Float("epsilon", 1e-5f);
        if (context.Int("stash_type", 1) != 1) throw context.Unsupported("LayerNormalization with stash_type other than 1 (float32)");
    }

    public override Tensor?[] Run(IReadOnlyList<Tensor?> inputs)
    {
        var x = Required(inputs, 0);
        long rank = x.dim();
        long first = axis < 0 ? axis + rank : axis;
        if (first < 0 || first >= rank) throw Context.Error(SadgErrorCode.InvalidNode, $"axis {axis} is outside an input of rank {rank}");
        var dims = Enumerable.Range((int)first, (int)(rank - first)).Select(d => (long)d).ToArray();
        var xf = x.dtype == ScalarType.Float32 ? x : x.to_type(ScalarType.Float32);
        var mean = xf.mean(dims, keepdim: true);
        var centered = xf - mean;
        var invStd = centered.Square().mean(dims, keepdim: true).Add(epsilon).rsqrt();
        var y = centered * invStd * OpHelpers.OnDeviceOf(Required(inputs, 1), x).to_type(ScalarType.Float32);
        if (inputs.Count > 2 && inputs[2] is { } bias) y = y.Add(OpHelpers.OnDeviceOf(bias, x).to_type(ScalarType.Float32));
        var outputs = new Tensor?[Context.Node.Output.Count];
        outputs[0] = y.dtype == x.dtype ? y : y.to_type(x.dtype);
        if (outputs.Length > 1) outputs[1] = mean;
        if (outputs.Length > 2) outputs[2] = invStd;
        return outputs;
    }
}

/// <summary>
/// GroupNormalization: per sample, the channels in <c>num_groups</c> groups, each normalized over its channels and
/// the spatial dims, (x − mean) / sqrt(biased var + epsilon), then scaled and shifted: per group (opset 18 to 20,
/// scale and bias of length num_groups) or per channel (from opset 21, length C). Computed in float32.
/// </summary>
[OnnxOperator("GroupNormalization")]
sealed class GroupNormalizationOp : OnnxOp
{
    readonly long groups;
    readonly double epsilon;
    readonly bool perGroup;

    public GroupNormalizationOp(OpContext context) : base(context)
    {
        groups = context.Int("num_groups", 0);
        if (groups < 1) throw context.Error(SadgErrorCode.InvalidNode, "num_groups must be a positive integer");
        epsilon = context.Float("epsilon", 1e-5f);
        perGroup = context.Opset < 21;
        if (context.Int("stash_type", 1) != 1) throw context.Unsupported("GroupNormalization with stash_type other than 1 (float32)");
    }

    public override Tensor?[] Run(IReadOnlyList<Tensor?> inputs)
    {
        var x = Required(inputs, 0);
        if (x.dim() < 3) throw Context.Error(SadgErrorCode.InvalidNode, $"the input has rank {x.dim()}; at least 3 is needed");
        long n = x.shape[0], c = x.shape[1];
        if (c % groups != 0) throw Context.Error(SadgErrorCode.InvalidNode, $"{c} channels do not divide into {groups} groups");
        var xf = x.dtype == ScalarType.Float32 ? x : x.to_type(ScalarType.Float32);
        var grouped = xf.reshape(n, groups, -1);
        var centered = grouped - grouped.mean([2], keepdim: true);
        var normalized = (centered * centered.Square().mean([2], keepdim: true).Add(epsilon).rsqrt()).reshape(x.shape);
        var scale = OpHelpers.OnDeviceOf(Required(inputs, 1), x).to_type(ScalarType.Float32);
        var bias = OpHelpers.OnDeviceOf(Required(inputs, 2), x).to_type(ScalarType.Float32);
        if (perGroup)
        {
            scale = scale.repeat_interleave(c / groups);
            bias = bias.repeat_interleave(c / groups);
        }
        long[] shape = [c, .. Enumerable.Repeat(1L, (int)x.dim() - 2)];
        var y = (normalized * scale.reshape(shape)).Add(bias.reshape(shape));
        return [y.dtype == x.dtype ? y : y.to_type(x.dtype)];
    }
}

/// <summary>
/// MeanVarianceNormalization over <c>axes</c> (default 0, 2, 3): (x − mean) / (sqrt(mean(x²) − mean²) + 1e-9), as
/// ONNX's function body defines it.
/// </summary>
[OnnxOperator("MeanVarianceNormalization")]
sealed class MeanVarianceNormalizationOp(OpContext context) : OnnxOp(context)
{
    readonly long[] axes = context.Ints("axes") ?? [0, 2, 3];

    public override Tensor?[] Run(IReadOnlyList<Tensor?> inputs)
    {
        var x = Required(inputs, 0);
        var dims = ShapeOpSupport.NormalizeAxes(Context, axes, x.dim());
        var mean = x.mean(dims, keepdim: true);
        var std = x.Square().mean(dims, keepdim: true).sub(mean.Square()).ClampMin(0).sqrt();
        return [(x - mean) / std.Add(1e-9)];
    }
}

/// <summary>LpNormalization: x / ‖x‖_p along <c>axis</c> (default −1), p 1 or 2; a zero vector stays zero.</summary>
[OnnxOperator("LpNormalization")]
sealed class LpNormalizationOp : OnnxOp
{
    readonly long axis;
    readonly long p;

    public LpNormalizationOp(OpContext context) : base(context)
    {
        axis = context.Int("axis", -1);
        p = context.Int("p", 2);
        if (p is not (1 or 2)) throw context.Error(SadgErrorCode.InvalidNode, $"p is {p}; LpNormalization takes 1 or 2");
    }

    public override Tensor?[] Run(IReadOnlyList<Tensor?> inputs)
    {
        var x = Required(inputs, 0);
        long a = ShapeOpSupport.NormalizeAxis(Context, axis, x.dim());
        var norm = p == 1 ? x.abs().sum(a, keepdim: true) : x.Square().sum(a, keepdim: true).sqrt();
        return [where(norm.Eq(0), x, x / norm)];
    }
}
