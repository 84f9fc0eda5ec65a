using TorchSharp;
using static TorchSharp.torch;

namespace Sadg.Graph.Ops;

/// <summary>Concat (axis, negative allowed). Inputs on different devices meet on the first non-CPU one.</summary>
[OnnxOperator("Concat")]
sealed class ConcatOp(OpContext context) : OnnxOp(context)
{
    readonly long axis = context.Has("axis") ? context.Int("axis", 0)
        : context.Opset < 4 ? 1 : throw context.Error(SadgErrorCode.InvalidNode, "axis attribute is missing");

    public override Tensor?[] Run(IReadOnlyList<Tensor?> inputs)
    {
        var present = inputs.Where(t => t is not null).Select(t => t!).ToList();
        if (present.Count == 0) throw Context.Error(SadgErrorCode.InvalidNode, "no inputs");
        var like = present.FirstOrDefault(t => t.device.type != DeviceType.CPU) ?? present[0];
        long rank = present[0].dim();
        long a = ShapeOpSupport.NormalizeAxis(Context, axis, rank);
        var moved = present.Select(t => OpHelpers.OnDeviceOf(t, like)).ToList();
        return [present.Count == 1 ? moved[0] : cat(moved, a)];
    }
}

/// <summary>
/// Split: split attribute before opset 13, optional split input from 13, num_outputs attribute from 18
/// (the last part may be smaller); otherwise equal parts, one per output.
/// </summary>
[OnnxOperator("Split")]
sealed class SplitOp : OnnxOp
{
    readonly long axis;
    readonly long[]? splitAttribute;
    readonly long numOutputs;

    public SplitOp(OpContext context) : base(context)
    {
        axis = context.Int("axis", 0);
        splitAttribute = context.Opset < 13 ? context.Ints("split") : null;
        numOutputs = context.Node.Output.Count;
        if (context.Has("num_outputs"))
        {
            numOutputs = context.Int("num_outputs", 0);
            if (numOutputs != context.Node.Output.Count)
                throw context.Error(SadgErrorCode.InvalidNode, $"num_outputs is {numOutputs} but the node has {context.Node.Output.Count} outputs");
        }
    }

    public override Tensor?[] Run(IReadOnlyList<Tensor?> inputs)
    {
        var x = Required(inputs, 0);
        long a = ShapeOpSupport.NormalizeAxis(Context, axis, x.dim());
        long dim = x.shape[a];
        long[]? sizes = splitAttribute ?? (Context.Opset >= 13 && Optional(inputs, 1) is { } s && s.numel() > 0 ? OpHelpers.ToLongs(s) : null);
        if (sizes is null)
        {
            long n = numOutputs;
            if (Context.Has("num_outputs"))
            {
                long chunk = (dim + n - 1) / n;
                sizes = Enumerable.Range(0, (int)n).Select(i => Math.Clamp(dim - i * chunk, 0, chunk)).ToArray();
            }
            else
            {
                if (dim % n != 0) throw Context.Error(SadgErrorCode.InvalidNode, $"axis of size {dim} does not split into {n} equal parts");
                sizes = Enumerable.Repeat(dim / n, (int)n).ToArray();
            }
        }
        if (sizes.Length != Context.Node.Output.Count || sizes.Sum() != dim || sizes.Any(v => v < 0))
            throw Context.Error(SadgErrorCode.InvalidNode, $"split {ShapeOpSupport.Dims(sizes)} does not fit axis of size {dim} into {Context.Node.Output.Count} outputs");
        var result = new Tensor?[sizes.Length];
        long offset = 0;
        for (int i = 0; i < sizes.Length; i++)
        {
            result[i] = x.narrow(a, offset, sizes[i]);
            offset += sizes[i];
        }
        return result;
    }
}
