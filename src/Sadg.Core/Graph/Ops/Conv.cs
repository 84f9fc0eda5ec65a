using static TorchSharp.torch;

namespace Sadg.Graph.Ops;

/// <summary>
/// Conv (opset 1+ forms from 7 on): 1-D, 2-D and 3-D, groups, dilations, strides, explicit pads (asymmetric ones
/// are applied as an explicit zero pad) and auto_pad; kernel_shape may be absent (taken from the weight); bias optional.
/// </summary>
[OnnxOperator("Conv")]
sealed class ConvOp : OnnxOp
{
    readonly SpatialAttributes spatial;
    readonly long group;

    public ConvOp(OpContext context) : base(context)
    {
        spatial = new SpatialAttributes(context, kernelRequired: false);
        group = context.Int("group", 1);
        if (group < 1) throw context.Error(SadgErrorCode.InvalidNode, "group must be positive");
    }

    public override Tensor?[] Run(IReadOnlyList<Tensor?> inputs)
    {
        var x = Required(inputs, 0);
        var w = OpHelpers.OnDeviceOf(Required(inputs, 1), x);
        var b = Optional(inputs, 2) is { } bias ? OpHelpers.OnDeviceOf(bias, x) : null;
        if (!x.is_floating_point()) throw Context.Unsupported($"Conv on {x.dtype} data");
        int rank = (int)x.dim() - 2;
        if (rank is < 1 or > 3) throw Context.Unsupported($"a {rank}-D convolution");
        if (w.dim() != x.dim())
            throw Context.Error(SadgErrorCode.InvalidNode, $"weight rank {w.dim()} does not match input rank {x.dim()}");

        var k = spatial.Kernel(rank, w.shape.Skip(2).ToArray());
        if (!k.SequenceEqual(w.shape.Skip(2)))
            throw Context.Error(SadgErrorCode.InvalidNode, $"kernel_shape [{string.Join(", ", k)}] does not match the weight");
        var s = spatial.Strides(rank);
        var d = spatial.Dilations(rank);
        var (begin, end) = spatial.Pads(SpatialAttributes.SpatialShape(x), k, s, d);

        long[] padding = begin;
        if (!begin.SequenceEqual(end))
        {
            x = nn.functional.pad(x, SpatialAttributes.TorchPad(begin, end));
            padding = new long[rank];
        }

        return rank switch
        {
            1 => [nn.functional.conv1d(x, w, b, s[0], padding[0], d[0], group)],
            2 => [nn.functional.conv2d(x, w, b, s, padding, d, group)],
            _ => [nn.functional.conv3d(x, w, b, s, padding, d, group)],
        };
    }
}

/// <summary>
/// ConvTranspose: 1-D, 2-D and 3-D, groups, dilations, strides, pads, output_padding, output_shape and auto_pad.
/// Computed as the full transposed convolution, then cropped (or zero-extended) to the ONNX output window.
/// </summary>
[OnnxOperator("ConvTranspose")]
sealed class ConvTransposeOp : OnnxOp
{
    readonly SpatialAttributes spatial;
    readonly long group;
    readonly long[]? outputPadding;
    readonly long[]? outputShape;

    public ConvTransposeOp(OpContext context) : base(context)
    {
        spatial = new SpatialAttributes(context, kernelRequired: false);
        group = context.Int("group", 1);
        if (group < 1) throw context.Error(SadgErrorCode.InvalidNode, "group must be positive");
        outputPadding = context.Ints("output_padding");
        outputShape = context.Ints("output_shape");
    }

    public override Tensor?[] Run(IReadOnlyList<Tensor?> inputs)
    {
        var x = Required(inputs, 0);
        var w = OpHelpers.OnDeviceOf(Required(inputs, 1), x);
        var b = Optional(inputs, 2) is { } bias ? OpHelpers.OnDeviceOf(bias, x) : null;
        if (!x.is_floating_point()) throw Context.Unsupported($"ConvTranspose on {x.dtype} data");
        int rank = (int)x.dim() - 2;
        if (rank is < 1 or > 3) throw Context.Unsupported($"a {rank}-D transposed convolution");
        if (w.dim() != x.dim())
            throw Context.Error(SadgErrorCode.InvalidNode, $"weight rank {w.dim()} does not match input rank {x.dim()}");

        var k = spatial.Kernel(rank, w.shape.Skip(2).ToArray());
        var s = spatial.Strides(rank);
        var d = spatial.Dilations(rank);
        var outPad = outputPadding ?? new long[rank];
        if (outPad.Length != rank) throw Context.Error(SadgErrorCode.InvalidNode, "output_padding does not match the input rank");
        var input = SpatialAttributes.SpatialShape(x);

        var begin = new long[rank];
        var end = new long[rank];
        var full = new long[rank];
        for (int i = 0; i < rank; i++) full[i] = s[i] * (input[i] - 1) + (k[i] - 1) * d[i] + 1;

        if (outputShape is not null || spatial.AutoPad is "SAME_UPPER" or "SAME_LOWER")
        {
            long[] target;
            if (outputShape is not null)
            {
                target = outputShape.Length == rank ? outputShape
                    : outputShape.Length == rank + 2 ? outputShape.Skip(2).ToArray()
                    : throw Context.Error(SadgErrorCode.InvalidNode, "output_shape does not match the input rank");
            }
            else
            {
                target = input.Select((n, i) => n * s[i]).ToArray();
            }
            for (int i = 0; i < rank; i++)
            {
                long total = full[i] + outPad[i] - target[i];
                long small = (long)Math.Floor(total / 2.0); // floor, as ONNX's reference does for negative totals
                // ONNX: SAME_UPPER puts the larger half at the end; SAME_LOWER and output_shape alone at the start.
                (begin[i], end[i]) = spatial.AutoPad == "SAME_UPPER" ? (small, total - small) : (total - small, small);
            }
        }
        else
        {
            (begin, end) = spatial.Pads(input, k, s, d);
        }

        var y = rank switch
        {
            1 => nn.functional.conv_transpose1d(x, w, null, s[0], 0, 0, d[0], group),
            2 => nn.functional.conv_transpose2d(x, w, null, s, new long[2], new long[2], d, group),
            _ => nn.functional.conv_transpose3d(x, w, null, s, new long[3], new long[3], d, group),
        };

        // Crop `begin` at the start and `end - output_padding` at the end (negative amounts extend with zeros).
        var cropEnd = end.Select((e, i) => e - outPad[i]).ToArray();
        if (begin.Any(v => v != 0) || cropEnd.Any(v => v != 0))
            y = nn.functional.pad(y, SpatialAttributes.TorchPad(begin.Select(v => -v).ToArray(), cropEnd.Select(v => -v).ToArray()));
        if (b is not null) y = y.Add(b.reshape([-1, .. Enumerable.Repeat(1L, rank)]));
        return [y];
    }
}
