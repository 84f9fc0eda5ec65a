using static TorchSharp.torch;

namespace Sadg.Graph.Ops;

/// <summary>
/// The spatial attributes Conv, ConvTranspose and the pooling operators share (kernel_shape, strides, dilations,
/// pads, auto_pad), read once per node and resolved per input shape.
/// </summary>
sealed class SpatialAttributes
{
    readonly OpContext context;
    readonly long[]? kernel;
    readonly long[]? strides;
    readonly long[]? dilations;
    readonly long[]? pads;

    public SpatialAttributes(OpContext context, bool kernelRequired)
    {
        this.context = context;
        kernel = context.Ints("kernel_shape");
        strides = context.Ints("strides");
        dilations = context.Ints("dilations");
        pads = context.Ints("pads");
        AutoPad = context.String("auto_pad", "NOTSET");
        if (AutoPad is not ("NOTSET" or "VALID" or "SAME_UPPER" or "SAME_LOWER"))
            throw context.Error(SadgErrorCode.InvalidNode, $"unknown auto_pad '{AutoPad}'");
        if (kernelRequired && kernel is null)
            throw context.Error(SadgErrorCode.InvalidNode, "the kernel_shape attribute is required");
        if (kernel is not null && kernel.Length is 0 or > 3)
            throw context.Unsupported($"a {kernel.Length}-D kernel");
        if (strides is not null && strides.Any(s => s < 1))
            throw context.Error(SadgErrorCode.InvalidNode, "strides must be positive");
        if (dilations is not null && dilations.Any(d => d < 1))
            throw context.Error(SadgErrorCode.InvalidNode, "dilations must be positive");
    }

    public string AutoPad { get; }

    public bool HasDilations => dilations is not null && dilations.Any(d => d != 1);

    /// <summary>The kernel shape: the attribute, else the given one (a weight's spatial dims).</summary>
    public long[] Kernel(int rank, long[]? fromWeight = null)
    {
        var k = kernel ?? fromWeight ?? throw context.Error(SadgErrorCode.InvalidNode, "the kernel shape is unknown");
        if (k.Length != rank)
            throw context.Error(SadgErrorCode.InvalidNode, $"kernel_shape has {k.Length} dims, the input has {rank} spatial dims");
        return k;
    }

    public long[] Strides(int rank) => Sized(strides, rank, "strides");

    public long[] Dilations(int rank) => Sized(dilations, rank, "dilations");

    long[] Sized(long[]? values, int rank, string name)
    {
        if (values is null) return Enumerable.Repeat(1L, rank).ToArray();
        if (values.Length != rank)
            throw context.Error(SadgErrorCode.InvalidNode, $"{name} has {values.Length} entries, the input has {rank} spatial dims");
        return values;
    }

    /// <summary>
    /// Padding at the start and end of each spatial dim for a convolution or pooling over <paramref name="input"/>
    /// spatial sizes: explicit pads, none (VALID), or computed so the output is ceil(input / stride) (SAME_*).
    /// </summary>
    public (long[] Begin, long[] End) Pads(long[] input, long[] k, long[] s, long[] d)
    {
        int rank = input.Length;
        var begin = new long[rank];
        var end = new long[rank];
        switch (AutoPad)
        {
            case "VALID":
                break;
            case "SAME_UPPER" or "SAME_LOWER":
                for (int i = 0; i < rank; i++)
                {
                    long output = (input[i] + s[i] - 1) / s[i];
                    long total = Math.Max(0, (output - 1) * s[i] + (k[i] - 1) * d[i] + 1 - input[i]);
                    long small = total / 2;
                    (begin[i], end[i]) = AutoPad == "SAME_UPPER" ? (small, total - small) : (total - small, small);
                }
                break;
            default:
                if (pads is not null)
                {
                    if (pads.Length != 2 * rank)
                        throw context.Error(SadgErrorCode.InvalidNode, $"pads has {pads.Length} entries, expected {2 * rank}");
                    if (pads.Any(p => p < 0)) throw context.Unsupported("negative pads");
                    Array.Copy(pads, 0, begin, 0, rank);
                    Array.Copy(pads, rank, end, 0, rank);
                }
                break;
        }
        return (begin, end);
    }

    /// <summary>Torch's pad list (last dim first, begin then end) for the spatial dims.</summary>
    public static long[] TorchPad(long[] begin, long[] end)
    {
        var result = new long[2 * begin.Length];
        for (int i = 0; i < begin.Length; i++)
        {
            result[2 * i] = begin[begin.Length - 1 - i];
            result[2 * i + 1] = end[begin.Length - 1 - i];
        }
        return result;
    }

    public static long[] SpatialShape(Tensor x) => x.shape.Skip(2).ToArray();
}
