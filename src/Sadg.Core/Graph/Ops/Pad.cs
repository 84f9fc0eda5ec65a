using TorchSharp;
using static TorchSharp.torch;

namespace Sadg.Graph.Ops;

/// <summary>
/// Pad: modes constant, reflect, edge and wrap (opset 19). Before opset 11 pads and value are attributes; from 11
/// pads and constant_value are inputs, and from 18 an optional axes input says which axes the pads cover.
/// Negative pads crop. Reflect, edge and wrap gather indices, so every mode is differentiable w.r.t. the data.
/// </summary>
[OnnxOperator("Pad")]
sealed class PadOp : OnnxOp
{
    readonly string mode;
    readonly long[]? padsAttribute;
    readonly float valueAttribute;

    public PadOp(OpContext context) : base(context)
    {
        mode = context.String("mode", "constant");
        if (mode is not ("constant" or "reflect" or "edge" or "wrap"))
            throw context.Error(SadgErrorCode.InvalidNode, $"unknown mode '{mode}'");
        if (mode == "wrap" && context.Opset < 19)
            throw context.Error(SadgErrorCode.InvalidNode, "mode 'wrap' needs opset 19");
        if (context.Opset < 11)
        {
            padsAttribute = context.Ints("pads") ?? throw context.Error(SadgErrorCode.InvalidNode, "pads attribute is missing");
            valueAttribute = context.Float("value", 0);
        }
    }

    public override Tensor?[] Run(IReadOnlyList<Tensor?> inputs)
    {
        var x = Required(inputs, 0);
        long rank = x.dim();
        long[] pads;
        double value;
        long[] axes;
        if (padsAttribute is not null)
        {
            pads = padsAttribute;
            value = valueAttribute;
            axes = Enumerable.Range(0, (int)rank).Select(i => (long)i).ToArray();
        }
        else
        {
            pads = OpHelpers.ToLongs(Required(inputs, 1));
            value = Optional(inputs, 2) is { } v ? ShapeOpSupport.Scalar(v) : 0;
            axes = Context.Opset >= 18 && Optional(inputs, 3) is { } a
                ? ShapeOpSupport.NormalizeAxes(Context, OpHelpers.ToLongs(a), rank)
                : Enumerable.Range(0, (int)rank).Select(i => (long)i).ToArray();
        }
        if (pads.Length != 2 * axes.Length)
            throw Context.Error(SadgErrorCode.InvalidNode, $"pads has {pads.Length} values for {axes.Length} axes");

        var begin = new long[rank];
        var end = new long[rank];
        for (int i = 0; i < axes.Length; i++)
        {
            begin[axes[i]] = pads[i];
            end[axes[i]] = pads[i + axes.Length];
        }

        // Negative pads crop first.
        var result = x;
        for (int d = 0; d < rank; d++)
        {
            long size = result.shape[d];
            long cropBegin = Math.Max(-begin[d], 0), cropEnd = Math.Max(-end[d], 0);
            if (cropBegin + cropEnd > size)
                throw Context.Error(SadgErrorCode.InvalidNode, $"negative pads remove more than the {size} elements of axis {d}");
            if (cropBegin + cropEnd > 0) result = result.narrow(d, cropBegin, size - cropBegin - cropEnd);
        }

        if (!begin.Any(p => p > 0) && !end.Any(p => p > 0)) return [result];
        if (mode == "constant")
        {
            // torch's pad lists (begin, end) pairs from the last dimension backwards.
            var torchPads = new long[2 * rank];
            for (int d = 0; d < rank; d++)
            {
                torchPads[2 * (rank - 1 - d)] = Math.Max(begin[d], 0);
                torchPads[2 * (rank - 1 - d) + 1] = Math.Max(end[d], 0);
            }
            return [nn.functional.pad(result, torchPads, PaddingModes.Constant, value)];
        }

        for (int d = 0; d < rank; d++)
        {
            long before = Math.Max(begin[d], 0), after = Math.Max(end[d], 0);
            if (before == 0 && after == 0) continue;
            long n = result.shape[d];
            if (n == 0) throw Context.Error(SadgErrorCode.InvalidNode, $"cannot {mode}-pad the empty axis {d}");
            if (mode == "reflect" && (before >= n || after >= n) && n > 1)
                throw Context.Error(SadgErrorCode.InvalidNode, $"reflect pads ({before}, {after}) must be smaller than the size {n} of axis {d}");
            var indices = new long[before + n + after];
            for (long j = 0; j < indices.Length; j++)
            {
                long k = j - before;
                indices[j] = mode switch
                {
                    "edge" => Math.Clamp(k, 0, n - 1),
                    "wrap" => ((k % n) + n) % n,
                    _ => Reflect(k, n),
                };
            }
            result = ShapeOpSupport.Select(result, d, indices);
        }
        return [result];
    }

    static long Reflect(long k, long n)
    {
        if (n == 1) return 0;
        long period = 2 * (n - 1);
        long m = ((k % period) + period) % period;
        return m < n ? m : period - m;
    }
}
