using static TorchSharp.torch;

namespace Sadg.Graph.Ops;

/// <summary>Shared pieces of the shape, indexing, reduction, padding and resize operators.</summary>
static class ShapeOpSupport
{
    /// <summary>A 1-D int64 tensor on the CPU (shapes, axes, indices).</summary>
    public static Tensor Longs(long[] values) => tensor(values, dtype: ScalarType.Int64, device: CPU);

    /// <summary>Axes normalized against <paramref name="rank"/> and checked to lie inside it.</summary>
    public static long[] NormalizeAxes(OpContext context, IEnumerable<long> axes, long rank)
    {
        var result = new List<long>();
        foreach (long a in axes)
        {
            long n = OpHelpers.NormalizeAxis(a, rank);
            if (n < 0 || n >= rank)
                throw context.Error(SadgErrorCode.InvalidNode, $"axis {a} is out of range for rank {rank}");
            if (result.Contains(n))
                throw context.Error(SadgErrorCode.InvalidNode, $"axis {a} is given twice");
            result.Add(n);
        }
        return result.ToArray();
    }

    public static long NormalizeAxis(OpContext context, long axis, long rank)
    {
        long n = OpHelpers.NormalizeAxis(axis, rank);
        if (n < 0 || n >= rank)
            throw context.Error(SadgErrorCode.InvalidNode, $"axis {axis} is out of range for rank {rank}");
        return n;
    }

    /// <summary>Selects <paramref name="indices"/> along <paramref name="axis"/> (differentiable w.r.t. <paramref name="x"/>).</summary>
    public static Tensor Select(Tensor x, long axis, long[] indices)
    {
        bool identity = indices.Length == x.shape[axis];
        for (int i = 0; identity && i < indices.Length; i++) identity = indices[i] == i;
        if (identity) return x;
        using var index = Longs(indices);
        return x.index_select(axis, OpHelpers.OnDeviceOf(index, x));
    }

    /// <summary>A scalar input read as a double (Range bounds, pad values).</summary>
    public static double Scalar(Tensor t)
    {
        using var cpu = t.detach().cpu().to_type(ScalarType.Float64).reshape(-1);
        return cpu.numel() == 0 ? 0 : cpu[0].item<double>();
    }

    public static long Product(IEnumerable<long> dims) => dims.Aggregate(1L, (a, b) => a * b);

    public static string Dims(IEnumerable<long> dims) => $"[{string.Join(", ", dims)}]";
}
