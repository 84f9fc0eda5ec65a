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

/// <summary>
/// GatherND with batch_dims b: indices [B…, M…, k] pick data[B…, i₀, …, i₍ₖ₋₁₎, …] (negative indices counted from the
/// end); the output is [B…, M…] + data.shape[b + k:].
/// </summary>
[OnnxOperator("GatherND")]
sealed class GatherNDOp(OpContext context) : OnnxOp(context)
{
    readonly int batchDims = (int)context.Int("batch_dims", 0);

    public override Tensor?[] Run(IReadOnlyList<Tensor?> inputs)
    {
        var data = Required(inputs, 0);
        var indices = Required(inputs, 1);
        int k = (int)indices.shape[^1];
        if (batchDims + k > data.dim() || batchDims >= indices.dim())
            throw Context.Error(SadgErrorCode.InvalidNode, $"indices of depth {k} with batch_dims {batchDims} do not fit data of rank {data.dim()}");
        var batch = data.shape.Take(batchDims).ToArray();
        long b = batch.Aggregate(1L, (x, y) => x * y);
        var indexed = data.shape.Skip(batchDims).Take(k).ToArray();
        var rest = data.shape.Skip(batchDims + k).ToArray();
        var lookups = indices.shape.Skip(batchDims).SkipLast(1).ToArray();
        var linear = NdIndex.Linear(Context, indices.reshape(b, -1, k), indexed, data);
        var flat = data.reshape([b, indexed.Aggregate(1L, (x, y) => x * y), .. rest]);
        var rows = TorchScalars.Arange(b, ScalarType.Int64, data.device).unsqueeze(1);
        return [flat[rows, linear].reshape([.. batch, .. lookups, .. rest])];
    }
}

/// <summary>
/// ScatterND: a copy of data with data[i₀, …, i₍ₖ₋₁₎] set from updates for each index tuple of indices [M…, k]
/// (reduction none or add; with none, duplicate tuples are undefined in ONNX).
/// </summary>
[OnnxOperator("ScatterND")]
sealed class ScatterNDOp(OpContext context) : OnnxOp(context)
{
    readonly string reduction = ScatterSupport.Reduction(context);

    public override Tensor?[] Run(IReadOnlyList<Tensor?> inputs)
    {
        var data = Required(inputs, 0);
        var indices = Required(inputs, 1);
        var updates = OpHelpers.OnDeviceOf(Required(inputs, 2), data);
        int k = (int)indices.shape[^1];
        if (k > data.dim()) throw Context.Error(SadgErrorCode.InvalidNode, $"index tuples of length {k} do not fit data of rank {data.dim()}");
        var indexed = data.shape.Take(k).ToArray();
        long rest = data.shape.Skip(k).Aggregate(1L, (x, y) => x * y);
        var linear = NdIndex.Linear(Context, indices.reshape(-1, k), indexed, data);
        var flat = data.reshape(indexed.Aggregate(1L, (x, y) => x * y), rest);
        var index = linear.unsqueeze(1).expand(linear.shape[0], rest);
        return [ScatterSupport.Scatter(flat, 0, index, updates.reshape(linear.shape[0], rest), reduction).reshape(data.shape)];
    }
}

/// <summary>
/// ScatterElements (and Scatter, its name before opset 11): a copy of data with data[…, indices[…], …] along
/// <c>axis</c> set from updates (reduction none or add; negative indices counted from the end).
/// </summary>
[OnnxOperator("ScatterElements")]
[OnnxOperator("Scatter")]
sealed class ScatterElementsOp(OpContext context) : OnnxOp(context)
{
    readonly long axis = context.Int("axis", 0);
    readonly string reduction = ScatterSupport.Reduction(context);

    public override Tensor?[] Run(IReadOnlyList<Tensor?> inputs)
    {
        var data = Required(inputs, 0);
        long a = ShapeOpSupport.NormalizeAxis(Context, axis, data.dim());
        var indices = IndexSupport.Normalize(Context, Required(inputs, 1), data.shape[a], data);
        return [ScatterSupport.Scatter(data, a, indices, OpHelpers.OnDeviceOf(Required(inputs, 2), data), reduction)];
    }
}

static class ScatterSupport
{
    /// <summary>The reduction attribute: none or add (mul, max and min are refused: TorchSharp has no scatter_reduce).</summary>
    public static string Reduction(OpContext context)
    {
        string reduction = context.String("reduction", "none");
        return reduction switch
        {
            "none" or "add" => reduction,
            "mul" or "max" or "min" => throw context.Unsupported($"reduction '{reduction}'"),
            _ => throw context.Error(SadgErrorCode.InvalidNode, $"unknown reduction '{reduction}'"),
        };
    }

    /// <summary>torch's scatter, or scatter_add for reduction add (the existing values take part, as ONNX defines it).</summary>
    public static Tensor Scatter(Tensor data, long dim, Tensor index, Tensor src, string reduction) =>
        reduction == "add" ? data.scatter_add(dim, index, src) : data.scatter(dim, index, src);
}

static class NdIndex
{
    /// <summary>
    /// The row-major linear position of each index tuple ([…, k], negative entries counted from the end) in dims
    /// <paramref name="sizes"/>: […], int64, on <paramref name="like"/>'s device.
    /// </summary>
    public static Tensor Linear(OpContext context, Tensor tuples, long[] sizes, Tensor like)
    {
        var linear = zeros(tuples.shape.SkipLast(1).ToArray(), ScalarType.Int64, like.device);
        for (int j = 0; j < sizes.Length; j++)
        {
            var column = IndexSupport.Normalize(context, tuples.select(-1, j), sizes[j], like);
            linear = linear.Mul(sizes[j]).Add(column);
        }
        return linear;
    }
}

/// <summary>NonZero: the indices of the non-zero elements, [rank, count] int64, in row-major order.</summary>
[OnnxOperator("NonZero")]
sealed class NonZeroOp(OpContext context) : OnnxOp(context)
{
    public override Tensor?[] Run(IReadOnlyList<Tensor?> inputs)
    {
        var x = Required(inputs, 0);
        return [x.nonzero().t().contiguous()];
    }
}

/// <summary>
/// OneHot(indices, depth, values = [off, on]) along <c>axis</c> (default −1): indices in [−depth, depth − 1], negative
/// ones counted from the end; others give a row of off values. The output has values' type.
/// </summary>
[OnnxOperator("OneHot")]
sealed class OneHotOp(OpContext context) : OnnxOp(context)
{
    readonly long axis = context.Int("axis", -1);

    public override Tensor?[] Run(IReadOnlyList<Tensor?> inputs)
    {
        var indices = Required(inputs, 0);
        long depth = (long)Math.Floor(OpHelpers.ToFloats(Required(inputs, 1))[0]);
        var values = Required(inputs, 2);
        long a = ShapeOpSupport.NormalizeAxis(Context, axis, indices.dim() + 1);
        var idx = indices.to_type(ScalarType.Int64);
        idx = where(idx.Lt(0), idx.Add(depth), idx).unsqueeze(a);
        long[] classShape = [.. Enumerable.Repeat(1L, (int)indices.dim() + 1)];
        classShape[a] = depth;
        var hot = TorchScalars.Arange(depth, ScalarType.Int64, idx.device).reshape(classShape).eq(idx);
        var v = OpHelpers.OnDeviceOf(values, hot);
        return [where(hot, v[1], v[0])];
    }
}
