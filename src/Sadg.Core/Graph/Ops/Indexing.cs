using TorchSharp;
using static TorchSharp.torch;

namespace Sadg.Graph.Ops;

/// <summary>Gather (any axis, negative indices): data.shape[:axis] + indices.shape + data.shape[axis+1:].</summary>
[OnnxOperator("Gather")]
sealed class GatherOp(OpContext context) : OnnxOp(context)
{
    readonly long axis = context.Int("axis", 0);

    public override Tensor?[] Run(IReadOnlyList<Tensor?> inputs)
    {
        var data = Required(inputs, 0);
        var indices = Required(inputs, 1);
        long a = ShapeOpSupport.NormalizeAxis(Context, axis, data.dim());
        long size = data.shape[a];
        var flat = IndexSupport.Normalize(Context, indices, size, data).reshape(-1);
        var shape = data.shape.Take((int)a).Concat(indices.shape).Concat(data.shape.Skip((int)a + 1)).ToArray();
        return [data.index_select(a, flat).reshape(shape)];
    }
}

/// <summary>GatherElements (opset 11): torch.gather with negative indices.</summary>
[OnnxOperator("GatherElements")]
sealed class GatherElementsOp(OpContext context) : OnnxOp(context)
{
    readonly long axis = context.Int("axis", 0);

    public override Tensor?[] Run(IReadOnlyList<Tensor?> inputs)
    {
        var data = Required(inputs, 0);
        long a = ShapeOpSupport.NormalizeAxis(Context, axis, data.dim());
        var indices = IndexSupport.Normalize(Context, Required(inputs, 1), data.shape[a], data);
        return [data.gather(a, indices)];
    }
}

static class IndexSupport
{
    /// <summary>Int64 indices on <paramref name="like"/>'s device, negative ones counted from the end, range-checked.</summary>
    public static Tensor Normalize(OpContext context, Tensor indices, long size, Tensor like)
    {
        var idx = indices.to_type(ScalarType.Int64);
        if (idx.device.type != DeviceType.CPU)
        {
            // Checking the range would cost a device sync every step; count negative indices from the end only.
            return OpHelpers.OnDeviceOf(where(idx.Lt(0), idx.Add(size), idx), like);
        }
        if (idx.numel() > 0)
        {
            long min = idx.min().item<long>(), max = idx.max().item<long>();
            if (min < -size || max >= size)
                throw context.Error(SadgErrorCode.InvalidNode, $"index out of range [{-size}, {size - 1}] (got {min}..{max})");
            if (min < 0) idx = where(idx.Lt(0), idx.Add(size), idx);
        }
        return OpHelpers.OnDeviceOf(idx, like);
    }
}

/// <summary>
/// Slice: starts/ends/axes attributes before opset 10; starts, ends, axes, steps inputs from 10. Negative
/// steps and out-of-range bounds (INT64_MAX/MIN) are clamped as ONNX specifies.
/// </summary>
[OnnxOperator("Slice")]
sealed class SliceOp : OnnxOp
{
    readonly long[]? startsAttribute, endsAttribute, axesAttribute;

    public SliceOp(OpContext context) : base(context)
    {
        if (context.Opset < 10)
        {
            startsAttribute = context.Ints("starts") ?? throw context.Error(SadgErrorCode.InvalidNode, "starts attribute is missing");
            endsAttribute = context.Ints("ends") ?? throw context.Error(SadgErrorCode.InvalidNode, "ends attribute is missing");
            axesAttribute = context.Ints("axes");
        }
    }

    public override Tensor?[] Run(IReadOnlyList<Tensor?> inputs)
    {
        var x = Required(inputs, 0);
        long[] starts, ends;
        long[]? axes, steps = null;
        if (startsAttribute is not null)
        {
            starts = startsAttribute;
            ends = endsAttribute!;
            axes = axesAttribute;
        }
        else
        {
            starts = OpHelpers.ToLongs(Required(inputs, 1));
            ends = OpHelpers.ToLongs(Required(inputs, 2));
            axes = Optional(inputs, 3) is { } a ? OpHelpers.ToLongs(a) : null;
            steps = Optional(inputs, 4) is { } s ? OpHelpers.ToLongs(s) : null;
        }
        long rank = x.dim();
        axes ??= Enumerable.Range(0, starts.Length).Select(i => (long)i).ToArray();
        if (ends.Length != starts.Length || axes.Length != starts.Length || (steps is not null && steps.Length != starts.Length))
            throw Context.Error(SadgErrorCode.InvalidNode, "starts, ends, axes and steps must have the same length");
        var normalized = ShapeOpSupport.NormalizeAxes(Context, axes, rank);

        var result = x;
        for (int i = 0; i < normalized.Length; i++)
        {
            long axis = normalized[i], dim = x.shape[axis];
            long step = steps?[i] ?? 1;
            if (step == 0) throw Context.Error(SadgErrorCode.InvalidNode, "a step is 0");
            long start = starts[i], end = ends[i];
            if (start < 0) start += dim;
            if (end < 0) end += dim;
            long count;
            if (step > 0)
            {
                start = Math.Clamp(start, 0, dim);
                end = Math.Clamp(end, 0, dim);
                count = end > start ? (end - start + step - 1) / step : 0;
            }
            else
            {
                start = Math.Clamp(start, 0, dim - 1);
                end = Math.Clamp(end, -1, dim - 1);
                count = start > end ? (start - end + (-step) - 1) / (-step) : 0;
            }
            if (step == 1 && count > 0)
            {
                if (count != dim) result = result.narrow(axis, start, count);
                continue;
            }
            var indices = new long[count];
            for (long k = 0; k < count; k++) indices[k] = start + k * step;
            result = ShapeOpSupport.Select(result, axis, indices);
        }
        return [result];
    }
}
