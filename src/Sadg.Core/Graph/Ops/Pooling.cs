using static TorchSharp.torch;

namespace Sadg.Graph.Ops;

/// <summary>
/// The window geometry of MaxPool/AveragePool for one input shape, with ONNX's output-size rules: floor or ceil
/// mode, and in ceil mode a window that would start in the end padding is dropped.
/// <see cref="EndPad"/> is the end padding that makes a floor-mode pool with no implicit padding produce exactly
/// <see cref="Output"/> windows (extra room for ceil mode, or a negative value that crops unused trailing input).
/// </summary>
readonly record struct PoolGeometry(long[] Input, long[] Kernel, long[] Strides, long[] Dilations, long[] Begin, long[] End, long[] EndPad, long[] Output)
{
    public static PoolGeometry Of(OpContext context, SpatialAttributes spatial, Tensor x, bool ceil)
    {
        int rank = (int)x.dim() - 2;
        if (rank is < 1 or > 3) throw context.Unsupported($"{rank}-D pooling");
        var input = SpatialAttributes.SpatialShape(x);
        var k = spatial.Kernel(rank);
        var s = spatial.Strides(rank);
        var d = spatial.Dilations(rank);
        var (begin, end) = spatial.Pads(input, k, s, d);
        var output = new long[rank];
        var endPad = new long[rank];
        for (int i = 0; i < rank; i++)
        {
            long effective = (k[i] - 1) * d[i] + 1;
            long span = input[i] + begin[i] + end[i] - effective;
            if (span < 0)
                throw context.Error(SadgErrorCode.InvalidNode, $"the window ({effective}) is larger than the padded input ({input[i] + begin[i] + end[i]})");
            long o = ceil ? (span + s[i] - 1) / s[i] + 1 : span / s[i] + 1;
            if (ceil && (o - 1) * s[i] >= input[i] + begin[i]) o--;
            output[i] = o;
            endPad[i] = (o - 1) * s[i] + effective - input[i] - begin[i];
        }
        return new PoolGeometry(input, k, s, d, begin, end, endPad, output);
    }

    public int Rank => Input.Length;
}

/// <summary>MaxPool (opset 1–12 forms from 7 on): 1/2/3-D, pads, dilations, ceil_mode, auto_pad, optional Indices output.</summary>
[OnnxOperator("MaxPool")]
sealed class MaxPoolOp : OnnxOp
{
    readonly SpatialAttributes spatial;
    readonly bool ceil;
    readonly long storageOrder;
    readonly bool wantsIndices;

    public MaxPoolOp(OpContext context) : base(context)
    {
        spatial = new SpatialAttributes(context, kernelRequired: true);
        ceil = context.Int("ceil_mode", 0) != 0;
        storageOrder = context.Int("storage_order", 0);
        if (storageOrder is not (0 or 1)) throw context.Error(SadgErrorCode.InvalidNode, $"storage_order {storageOrder}");
        wantsIndices = context.Node.Output.Count > 1 && context.Node.Output[1].Length > 0;
    }

    public override Tensor?[] Run(IReadOnlyList<Tensor?> inputs)
    {
        var x = Required(inputs, 0);
        var g = PoolGeometry.Of(Context, spatial, x, ceil);
        var dtype = x.dtype;
        if (!x.is_floating_point())
        {
            if (dtype is ScalarType.Int64 or ScalarType.Bool)
                throw Context.Unsupported($"MaxPool on {dtype} data");
            x = x.to_type(ScalarType.Float64); // exact for every integer type up to 32 bits
        }

        // Let torch pad implicitly (with -inf) where it can; otherwise pad explicitly.
        long[] torchPadding = new long[g.Rank];
        long[] padded = g.Input;
        long[] offset = new long[g.Rank];
        bool noPad = g.Begin.All(v => v == 0) && g.EndPad.All(v => v <= 0);
        bool symmetric = Enumerable.Range(0, g.Rank).All(i =>
            g.EndPad[i] == g.Begin[i] && 2 * g.Begin[i] <= (g.Kernel[i] - 1) * g.Dilations[i] + 1);
        if (!noPad && symmetric)
        {
            torchPadding = g.Begin;
        }
        else if (!noPad)
        {
            x = nn.functional.pad(x, SpatialAttributes.TorchPad(g.Begin, g.EndPad), value: double.NegativeInfinity);
            padded = SpatialAttributes.SpatialShape(x);
            offset = g.Begin;
        }

        Tensor y;
        Tensor? indices = null;
        var (k, s, d) = (g.Kernel, g.Strides, g.Dilations);
        if (wantsIndices)
        {
            (y, indices) = g.Rank switch
            {
                1 => nn.functional.max_pool1d_with_indices(x, k[0], s[0], torchPadding[0], d[0]),
                2 => nn.functional.max_pool2d_with_indices(x, k, s, torchPadding, d),
                _ => nn.functional.max_pool3d_with_indices(x, k, s, torchPadding, d),
            };
            indices = OnnxIndices(indices, x.shape[0], x.shape[1], padded, offset, g.Input);
        }
        else
        {
            y = g.Rank switch
            {
                1 => nn.functional.max_pool1d(x, k[0], s[0], torchPadding[0], d[0]),
                2 => nn.functional.max_pool2d(x, k, s, torchPadding, d),
                _ => nn.functional.max_pool3d(x, k, s, torchPadding, d),
            };
        }
        if (!y.shape.Skip(2).SequenceEqual(g.Output))
            throw Context.Error(SadgErrorCode.InvalidNode, $"internal: pooled shape [{string.Join(", ", y.shape)}] differs from [{string.Join(", ", g.Output)}]");
        if (y.dtype != dtype) y = y.to_type(dtype);
        return wantsIndices ? [y, indices] : [y];
    }

    /// <summary>
    /// Torch's per-plane indices into the (possibly padded) input, as ONNX's indices into the whole unpadded
    /// input tensor, row-major (storage_order 0) or column-major within a plane (storage_order 1).
    /// </summary>
    Tensor OnnxIndices(Tensor torchIndices, long n, long c, long[] padded, long[] offset, long[] input)
    {
        int rank = input.Length;
        var flat = zeros_like(torchIndices);
        var rest = torchIndices;
        long planeSize = input.Aggregate(1L, (a, b) => a * b);
        for (int i = rank - 1; i >= 0; i--)
        {
            var coordinate = rest.Remainder(padded[i]).Sub(offset[i]);
            rest = rest.Div(padded[i], RoundingMode.floor);
            long stride = 1;
            if (storageOrder == 0) for (int j = i + 1; j < rank; j++) stride *= input[j];
            else for (int j = 0; j < i; j++) stride *= input[j];
            flat = flat.Add(coordinate.Mul(stride));
        }
        var planes = TorchScalars.Arange(n * c, dtype: ScalarType.Int64, device: torchIndices.device)
            .reshape([n, c, .. Enumerable.Repeat(1L, rank)]).Mul(planeSize);
        return flat.Add(planes);
    }
}

/// <summary>
/// AveragePool: 1/2/3-D, pads (asymmetric too), ceil_mode, auto_pad, count_include_pad, dilations. Computed as a
/// sum over each window of the explicitly padded input divided by a count of the positions ONNX counts: the
/// input, plus the pads when count_include_pad is 1 (never the extra room ceil mode adds).
/// </summary>
[OnnxOperator("AveragePool")]
sealed class AveragePoolOp : OnnxOp
{
    readonly SpatialAttributes spatial;
    readonly bool ceil;
    readonly bool countIncludePad;

    public AveragePoolOp(OpContext context) : base(context)
    {
        spatial = new SpatialAttributes(context, kernelRequired: true);
        ceil = context.Int("ceil_mode", 0) != 0;
        countIncludePad = context.Int("count_include_pad", 0) != 0;
    }

    public override Tensor?[] Run(IReadOnlyList<Tensor?> inputs)
    {
        var x = Required(inputs, 0);
        if (!x.is_floating_point()) throw Context.Unsupported($"AveragePool on {x.dtype} data");
        var g = PoolGeometry.Of(Context, spatial, x, ceil);
        int rank = g.Rank;

        bool noPad = g.Begin.All(v => v == 0) && g.EndPad.All(v => v <= 0);
        if (noPad && !spatial.HasDilations)
            return [Pool(x, g, average: true)];

        var padded = nn.functional.pad(x, SpatialAttributes.TorchPad(g.Begin, g.EndPad));

        // Which padded positions count: per dim, a 1-D mask; their outer product is the N-D mask.
        Tensor? mask = null;
        using (no_grad())
        {
            for (int i = 0; i < rank; i++)
            {
                long length = g.Input[i] + g.Begin[i] + g.EndPad[i];
                var m = zeros(length, dtype: x.dtype, device: x.device);
                long from = countIncludePad ? 0 : g.Begin[i];
                long to = countIncludePad ? Math.Min(length, g.Begin[i] + g.Input[i] + g.End[i]) : Math.Min(length, g.Begin[i] + g.Input[i]);
                if (to > from) m[TensorIndex.Slice(from, to)] = ones(to - from, dtype: x.dtype, device: x.device);
                var shape = Enumerable.Repeat(1L, rank + 2).ToArray();
                shape[i + 2] = length;
                m = m.reshape(shape);
                mask = mask is null ? m : mask * m;
            }
        }
        var count = Pool(mask!, g, average: false).round();
        return [Pool(padded, g, average: false) / count];
    }

    /// <summary>Window sums (or means) with no implicit padding, in floor mode.</summary>
    static Tensor Pool(Tensor x, PoolGeometry g, bool average)
    {
        var (k, s, d) = (g.Kernel, g.Strides, g.Dilations);
        long size = k.Aggregate(1L, (a, b) => a * b);
        if (d.Any(v => v != 1))
        {
            // Dilated windows: a depthwise convolution with a kernel of ones.
            long channels = x.shape[1];
            var w = ones([channels, 1, .. k], dtype: x.dtype, device: x.device);
            var zero = new long[g.Rank];
            var sum = g.Rank switch
            {
                1 => nn.functional.conv1d(x, w, null, s[0], 0, d[0], channels),
                2 => nn.functional.conv2d(x, w, null, s, zero, d, channels),
                _ => nn.functional.conv3d(x, w, null, s, zero, d, channels),
            };
            return average ? sum.Div(size) : sum;
        }
        var mean = g.Rank switch
        {
            1 => nn.functional.avg_pool1d(x, k[0], s[0], 0),
            2 => nn.functional.avg_pool2d(x, k, s, new long[2]),
            _ => nn.functional.avg_pool3d(x, k, s, new long[3]),
        };
        return average ? mean : mean.Mul(size);
    }
}

/// <summary>
/// GlobalAveragePool, GlobalMaxPool and GlobalLpPool ((Σ|x|^p)^(1/p), p default 2) over every dim after the channel
/// dim (any rank >= 3).
/// </summary>
[OnnxOperator("GlobalAveragePool")]
[OnnxOperator("GlobalMaxPool")]
[OnnxOperator("GlobalLpPool")]
sealed class GlobalPoolOp(OpContext context) : OnnxOp(context)
{
    readonly string op = context.Node.OpType;
    readonly long p = context.Int("p", 2);

    public override Tensor?[] Run(IReadOnlyList<Tensor?> inputs)
    {
        var x = Required(inputs, 0);
        if (x.dim() < 3) throw Context.Error(SadgErrorCode.InvalidNode, $"the input has rank {x.dim()}; at least 3 is needed");
        if (!x.is_floating_point()) throw Context.Unsupported($"{Context.Node.OpType} on {x.dtype} data");
        var dims = Enumerable.Range(2, (int)x.dim() - 2).Select(i => (long)i).ToArray();
        return op switch
        {
            "GlobalMaxPool" => [x.amax(dims, keepdim: true)],
            "GlobalAveragePool" => [x.mean(dims, keepdim: true)],
            _ => [p == 2 ? x.Square().sum(dims, keepdim: true).sqrt() : x.abs().Pow(p).sum(dims, keepdim: true).Pow(1.0 / p)],
        };
    }
}
