using static TorchSharp.torch;

namespace Sadg.Graph.Ops;

/// <summary>
/// ReduceMean, ReduceSum, ReduceMax, ReduceMin, ReduceProd, ReduceL1, ReduceL2, ReduceSumSquare, ReduceLogSum,
/// ReduceLogSumExp: axes attribute before opset 18 (ReduceSum: before 13), optional axes input after; keepdims;
/// noop_with_empty_axes (no axes then returns the input unchanged instead of reducing everything).
/// </summary>
[OnnxOperator("ReduceMean")]
[OnnxOperator("ReduceSum")]
[OnnxOperator("ReduceMax")]
[OnnxOperator("ReduceMin")]
[OnnxOperator("ReduceProd")]
[OnnxOperator("ReduceL1")]
[OnnxOperator("ReduceL2")]
[OnnxOperator("ReduceSumSquare")]
[OnnxOperator("ReduceLogSum")]
[OnnxOperator("ReduceLogSumExp")]
sealed class ReduceOp : OnnxOp
{
    readonly string op;
    readonly bool keepDims;
    readonly bool noopWithEmptyAxes;
    readonly bool axesFromInput;
    readonly long[]? axesAttribute;

    public ReduceOp(OpContext context) : base(context)
    {
        op = context.Node.OpType;
        keepDims = context.Int("keepdims", 1) != 0;
        noopWithEmptyAxes = context.Int("noop_with_empty_axes", 0) != 0;
        axesFromInput = context.Opset >= (op == "ReduceSum" ? 13 : 18);
        axesAttribute = axesFromInput ? null : context.Ints("axes");
    }

    public override Tensor?[] Run(IReadOnlyList<Tensor?> inputs)
    {
        var x = Required(inputs, 0);
        long[] axes = axesFromInput
            ? Optional(inputs, 1) is { } a ? OpHelpers.ToLongs(a) : []
            : axesAttribute ?? [];
        if (axes.Length == 0)
        {
            if (noopWithEmptyAxes) return [x];
            axes = Enumerable.Range(0, (int)x.dim()).Select(i => (long)i).ToArray();
        }
        var dims = ShapeOpSupport.NormalizeAxes(Context, axes, x.dim());
        if (x.dim() == 0) return [Apply(x, dims)];
        var result = Apply(x, dims);
        return [result.dtype == x.dtype ? result : result.to_type(x.dtype)];
    }

    Tensor Apply(Tensor x, long[] dims)
    {
        if (dims.Length == 0) return op switch
        {
            "ReduceL1" => x.abs(),
            "ReduceL2" => x.abs(),
            "ReduceSumSquare" => x * x,
            "ReduceLogSum" => x.log(),
            _ => x,
        };
        switch (op)
        {
            case "ReduceMean": return x.mean(dims, keepDims);
            case "ReduceSum": return x.sum(dims, keepDims);
            case "ReduceMax": return x.amax(dims, keepDims);
            case "ReduceMin": return x.amin(dims, keepDims);
            case "ReduceL1": return x.abs().sum(dims, keepDims);
            case "ReduceL2": return (x * x).sum(dims, keepDims).sqrt();
            case "ReduceSumSquare": return (x * x).sum(dims, keepDims);
            case "ReduceLogSum": return x.sum(dims, keepDims).log();
            case "ReduceLogSumExp":
            {
                var max = x.amax(dims, true).detach();
                max = where(max.isinf(), zeros_like(max), max);
                var r = (x - max).exp().sum(dims, true).log().Add(max);
                return keepDims ? r : Squeeze(r, dims);
            }
            case "ReduceProd":
            {
                var r = x;
                foreach (long d in dims.OrderDescending()) r = r.prod(d, keepDims);
                return r;
            }
            default: throw Context.Error(SadgErrorCode.UnsupportedOperator, $"unknown reduction {op}");
        }
    }

    static Tensor Squeeze(Tensor t, long[] dims)
    {
        var shape = Enumerable.Range(0, (int)t.dim()).Where(i => !dims.Contains(i)).Select(i => t.shape[i]).ToArray();
        return t.reshape(shape);
    }
}

/// <summary>ArgMax / ArgMin (axis, keepdims, select_last_index from opset 12): int64 indices.</summary>
[OnnxOperator("ArgMax")]
[OnnxOperator("ArgMin")]
sealed class ArgReduceOp(OpContext context) : OnnxOp(context)
{
    readonly bool max = context.Node.OpType == "ArgMax";
    readonly long axis = context.Int("axis", 0);
    readonly bool keepDims = context.Int("keepdims", 1) != 0;
    readonly bool last = context.Int("select_last_index", 0) != 0;

    public override Tensor?[] Run(IReadOnlyList<Tensor?> inputs)
    {
        var x = Required(inputs, 0);
        long a = ShapeOpSupport.NormalizeAxis(Context, axis, x.dim());
        var source = last ? x.flip(a) : x;
        var index = max ? source.argmax(a, keepDims) : source.argmin(a, keepDims);
        if (last) index = index.RSub(x.shape[a] - 1);
        return [index];
    }
}

/// <summary>
/// TopK: the k largest (or, with largest = 0, smallest) values along <c>axis</c> (default −1) and their int64 indices;
/// k an attribute before opset 10, an input after. Equal values keep their order (the lower index first), as ONNX
/// specifies; with sorted = 0 the order is free and is the sorted one here.
/// </summary>
[OnnxOperator("TopK")]
sealed class TopKOp(OpContext context) : OnnxOp(context)
{
    readonly long axis = context.Int("axis", -1);
    readonly bool largest = context.Int("largest", 1) != 0;
    readonly long? kAttribute = context.Opset < 10 ? context.Int("k", -1) : null;

    public override Tensor?[] Run(IReadOnlyList<Tensor?> inputs)
    {
        var x = Required(inputs, 0);
        long a = ShapeOpSupport.NormalizeAxis(Context, axis, x.dim());
        long k = kAttribute ?? OpHelpers.ToLongs(Required(inputs, 1))[0];
        if (k < 0 || k > x.shape[a])
            throw Context.Error(SadgErrorCode.InvalidNode, $"k = {k} is outside [0, {x.shape[a]}] on axis {a}");
        var (values, indices) = x.sort(a, descending: largest, stable: true);
        return [values.narrow(a, 0, k), indices.narrow(a, 0, k)];
    }
}

/// <summary>CumSum along the axis input, optionally exclusive (starting from 0) and/or reverse (from the end).</summary>
[OnnxOperator("CumSum")]
sealed class CumSumOp(OpContext context) : OnnxOp(context)
{
    readonly bool exclusive = context.Int("exclusive", 0) != 0;
    readonly bool reverse = context.Int("reverse", 0) != 0;

    public override Tensor?[] Run(IReadOnlyList<Tensor?> inputs)
    {
        var x = Required(inputs, 0);
        long a = ShapeOpSupport.NormalizeAxis(Context, OpHelpers.ToLongs(Required(inputs, 1))[0], x.dim());
        var source = reverse ? x.flip(a) : x;
        var sum = source.cumsum(a);
        if (exclusive)
        {
            long n = x.shape[a];
            var first = zeros_like(source.narrow(a, 0, Math.Min(1, n)));
            sum = cat([first, sum.narrow(a, 0, Math.Max(0, n - 1))], a);
        }
        return [reverse ? sum.flip(a) : sum];
    }
}
