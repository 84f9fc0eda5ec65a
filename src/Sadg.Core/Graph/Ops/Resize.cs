using static TorchSharp.torch;

namespace Sadg.Graph.Ops;

/// <summary>
/// Resize (opsets 10, 11, 13, 18, 19) in nearest, linear or cubic mode (linear and cubic separable: each resized axis
/// interpolated in turn), with every coordinate_transformation_mode except tf_crop_and_resize and every nearest_mode;
/// scales or sizes, axes and keep_aspect_ratio_policy (18); cubic_coeff_a and exclude_outside. Opset 10 maps
/// coordinates asymmetrically and, in nearest mode, rounds like ONNX Runtime (floor when enlarging, ceil when
/// shrinking). Antialiased shrinking is refused. The result gathers (and weighs) input elements by index, so it is
/// differentiable w.r.t. the input.
/// </summary>
[OnnxOperator("Resize")]
sealed class ResizeOp : OnnxOp
{
    readonly string mode;
    readonly bool antialias;
    readonly float cubicA;
    readonly bool excludeOutside;
    readonly string transform;
    readonly string nearestMode;
    readonly string policy;
    readonly long[]? axes;

    public ResizeOp(OpContext context) : base(context)
    {
        mode = context.String("mode", "nearest");
        if (mode is not ("nearest" or "linear" or "cubic")) throw context.Error(SadgErrorCode.InvalidNode, $"unknown Resize mode '{mode}'");
        antialias = context.Int("antialias", 0) != 0;
        cubicA = context.Float("cubic_coeff_a", -0.75f);
        excludeOutside = context.Int("exclude_outside", 0) != 0;
        if (context.Opset < 11)
        {
            transform = "asymmetric";
            nearestMode = "simple";
        }
        else
        {
            transform = context.String("coordinate_transformation_mode", "half_pixel");
            nearestMode = context.String("nearest_mode", "round_prefer_floor");
        }
        if (transform == "tf_crop_and_resize") throw context.Unsupported("Resize coordinate_transformation_mode 'tf_crop_and_resize'");
        if (transform is not ("half_pixel" or "half_pixel_symmetric" or "pytorch_half_pixel" or "align_corners" or "asymmetric" or "tf_half_pixel_for_nn"))
            throw context.Error(SadgErrorCode.InvalidNode, $"unknown coordinate_transformation_mode '{transform}'");
        if (nearestMode is not ("simple" or "round_prefer_floor" or "round_prefer_ceil" or "floor" or "ceil"))
            throw context.Error(SadgErrorCode.InvalidNode, $"unknown nearest_mode '{nearestMode}'");
        policy = context.String("keep_aspect_ratio_policy", "stretch");
        if (policy is not ("stretch" or "not_larger" or "not_smaller"))
            throw context.Error(SadgErrorCode.InvalidNode, $"unknown keep_aspect_ratio_policy '{policy}'");
        axes = context.Opset >= 18 ? context.Ints("axes") : null;
    }

    public override Tensor?[] Run(IReadOnlyList<Tensor?> inputs)
    {
        var x = Required(inputs, 0);
        Tensor? scalesInput = Context.Opset < 11 ? Optional(inputs, 1) : Optional(inputs, 2);
        Tensor? sizesInput = Context.Opset < 11 ? null : Optional(inputs, 3);
        float[]? scales = scalesInput is { } s && s.numel() > 0 ? OpHelpers.ToFloats(s) : null;
        long[]? sizes = sizesInput is { } z && z.numel() > 0 ? OpHelpers.ToLongs(z) : null;
        if (scales is not null && sizes is not null) throw Context.Error(SadgErrorCode.InvalidNode, "both scales and sizes are given");
        if (scales is null && sizes is null) throw Context.Error(SadgErrorCode.InvalidNode, "neither scales nor sizes is given");

        long rank = x.dim();
        long[] resized = axes is null ? Enumerable.Range(0, (int)rank).Select(i => (long)i).ToArray() : ShapeOpSupport.NormalizeAxes(Context, axes, rank);
        int count = (scales?.Length ?? sizes!.Length);
        if (count != resized.Length)
            throw Context.Error(SadgErrorCode.InvalidNode, $"{(scales is null ? "sizes" : "scales")} has {count} values for {resized.Length} axes");

        var scale = Enumerable.Repeat(1.0, (int)rank).ToArray();
        var outLen = x.shape.ToArray();
        if (scales is not null)
        {
            for (int i = 0; i < resized.Length; i++)
            {
                long a = resized[i];
                if (scales[i] <= 0) throw Context.Error(SadgErrorCode.InvalidNode, $"scale {scales[i]} is not positive");
                scale[a] = scales[i];
                outLen[a] = (long)Math.Floor(scales[i] * (double)x.shape[a]);
            }
        }
        else if (policy == "stretch")
        {
            for (int i = 0; i < resized.Length; i++)
            {
                long a = resized[i];
                outLen[a] = sizes![i];
                scale[a] = (float)sizes[i] / (float)x.shape[a];
            }
        }
        else
        {
            var ratios = resized.Select((a, i) => (float)sizes![i] / (float)x.shape[a]).ToArray();
            double common = policy == "not_larger" ? ratios.Min() : ratios.Max();
            foreach (long a in resized)
            {
                scale[a] = common;
                outLen[a] = (long)Math.Floor(common * x.shape[a] + 0.5);
            }
        }

        var result = x;
        for (int a = 0; a < rank; a++)
        {
            if (mode == "nearest")
            {
                result = ShapeOpSupport.Select(result, a, NearestResize.Indices(x.shape[a], outLen[a], scale[a], transform, nearestMode));
                continue;
            }
            if (antialias && outLen[a] < x.shape[a]) throw Context.Unsupported($"antialiased {mode} shrinking");
            result = mode == "linear"
                ? LinearResize.Along(result, a, outLen[a], scale[a], transform)
                : CubicResize.Along(result, a, outLen[a], scale[a], transform, cubicA, excludeOutside);
        }
        return [result];
    }
}

/// <summary>
/// Upsample in nearest mode (ONNX Runtime's rounding: asymmetric, floor) or linear ("linear" or "bilinear": n-linear,
/// asymmetric); scales attribute (opset 7) or input (opset 9).
/// </summary>
[OnnxOperator("Upsample")]
sealed class UpsampleOp : OnnxOp
{
    readonly float[]? scalesAttribute;
    readonly bool linear;

    public UpsampleOp(OpContext context) : base(context)
    {
        string mode = context.String("mode", "nearest");
        if (mode is not ("nearest" or "linear" or "bilinear")) throw context.Unsupported($"Upsample mode '{mode}' (nearest and linear are implemented)");
        linear = mode != "nearest";
        if (context.Opset < 9)
            scalesAttribute = context.Floats("scales") ?? throw context.Error(SadgErrorCode.InvalidNode, "scales attribute is missing");
    }

    public override Tensor?[] Run(IReadOnlyList<Tensor?> inputs)
    {
        var x = Required(inputs, 0);
        float[] scales = scalesAttribute ?? OpHelpers.ToFloats(Required(inputs, 1));
        if (scales.Length != x.dim()) throw Context.Error(SadgErrorCode.InvalidNode, $"scales has {scales.Length} values for rank {x.dim()}");
        var result = x;
        for (int a = 0; a < scales.Length; a++)
        {
            if (scales[a] <= 0) throw Context.Error(SadgErrorCode.InvalidNode, $"scale {scales[a]} is not positive");
            long outLen = (long)Math.Floor(scales[a] * (double)x.shape[a]);
            result = linear
                ? LinearResize.Along(result, a, outLen, scales[a], "asymmetric")
                : ShapeOpSupport.Select(result, a, NearestResize.Indices(x.shape[a], outLen, scales[a], "asymmetric", "simple"));
        }
        return [result];
    }
}

static class NearestResize
{
    /// <summary>
    /// For each output position along one axis, the input position nearest mode picks. Computed in single
    /// precision like ONNX Runtime, so positions that land exactly on .5 round the same way.
    /// </summary>
    public static long[] Indices(long inLen, long outLen, double scaleValue, string transform, string nearestMode)
    {
        float scale = (float)scaleValue;
        var indices = new long[outLen];
        for (long i = 0; i < outLen; i++)
        {
            float original = Original(i, inLen, outLen, scale, transform);
            float floor = MathF.Floor(original);
            bool half = original - floor == 0.5f;
            long index = nearestMode switch
            {
                "simple" => scale < 1 ? (long)MathF.Ceiling(original) : (long)original,
                "floor" => (long)floor,
                "ceil" => (long)MathF.Ceiling(original),
                "round_prefer_ceil" => half ? (long)floor + 1 : (long)MathF.Round(original),
                _ => half ? (long)floor : (long)MathF.Round(original),
            };
            indices[i] = Math.Clamp(index, 0, Math.Max(inLen - 1, 0));
        }
        return indices;
    }

    /// <summary>The input coordinate of output position <paramref name="x"/> (ONNX Runtime's get_original_coordinate).</summary>
    public static float Original(float x, long inLen, long outLen, float scale, string transform) => transform switch
    {
        "half_pixel" => (x + 0.5f) / scale - 0.5f,
        "half_pixel_symmetric" => HalfPixelSymmetric(x, inLen, outLen, scale),
        "pytorch_half_pixel" => outLen > 1 ? (x + 0.5f) / scale - 0.5f : 0f,
        "align_corners" => outLen == 1 ? 0f : x * (inLen - 1) / (outLen - 1),
        "tf_half_pixel_for_nn" => (x + 0.5f) / scale,
        _ => x / scale,
    };

    static float HalfPixelSymmetric(float x, long inLen, long outLen, float scale)
    {
        float outputWidth = scale * inLen;
        float adjustment = outLen / outputWidth;
        float center = inLen / 2f;
        float offset = center * (1 - adjustment);
        return offset + (x + 0.5f) / scale - 0.5f;
    }
}

static class LinearResize
{
    /// <summary>
    /// <paramref name="x"/> resized to <paramref name="outLen"/> along <paramref name="axis"/> by linear interpolation,
    /// as ONNX Runtime computes it: the input coordinate clamped to [0, n − 1], the two neighbours weighted by its
    /// distance to them (in single precision). An axis the mapping leaves as it is is returned unchanged.
    /// </summary>
    public static Tensor Along(Tensor x, long axis, long outLen, double scaleValue, string transform)
    {
        long inLen = x.shape[axis];
        float scale = (float)scaleValue;
        var lower = new long[outLen];
        var upper = new long[outLen];
        var weight = new float[outLen];
        bool identity = outLen == inLen;
        for (long i = 0; i < outLen; i++)
        {
            float original = Math.Clamp(NearestResize.Original(i, inLen, outLen, scale, transform), 0f, Math.Max(inLen - 1, 0));
            long low = Math.Min((long)original, Math.Max(inLen - 1, 0));
            lower[i] = low;
            upper[i] = Math.Min(low + 1, Math.Max(inLen - 1, 0));
            weight[i] = original - low;
            identity &= low == i && weight[i] == 0f;
        }
        if (identity) return x;
        return Taps.Weighted(x, axis, [lower, upper], [weight.Select(w => 1 - w).ToArray(), weight]);
    }
}

static class Taps
{
    /// <summary>
    /// Σₖ x[…, indices[k][i], …] · weights[k][i] along <paramref name="axis"/> (output position i): the separable
    /// interpolations' sum over their taps, gathered by index so that it is differentiable w.r.t. <paramref name="x"/>.
    /// </summary>
    public static Tensor Weighted(Tensor x, long axis, long[][] indices, float[][] weights)
    {
        long[] shape = [.. Enumerable.Repeat(1L, (int)x.dim())];
        shape[axis] = indices[0].Length;
        Tensor? result = null;
        for (int k = 0; k < indices.Length; k++)
        {
            var w = tensor(weights[k], dtype: x.dtype, device: x.device).reshape(shape);
            var term = x.index_select(axis, tensor(indices[k], device: x.device)) * w;
            result = result is null ? term : result.Add(term);
        }
        return result!;
    }
}

static class CubicResize
{
    /// <summary>
    /// <paramref name="x"/> resized to <paramref name="outLen"/> along <paramref name="axis"/> by cubic convolution
    /// (Keys' kernel with coefficient <paramref name="a"/>) over the four input positions around the (unclamped) input
    /// coordinate, those beyond the edges read at the edge, or, with <paramref name="excludeOutside"/>, left out and the
    /// other weights renormalized, as ONNX Runtime computes it.
    /// </summary>
    public static Tensor Along(Tensor x, long axis, long outLen, double scaleValue, string transform, float a, bool excludeOutside)
    {
        long inLen = x.shape[axis];
        float scale = (float)scaleValue;
        var indices = new long[4][];
        var weights = new float[4][];
        for (int k = 0; k < 4; k++)
        {
            indices[k] = new long[outLen];
            weights[k] = new float[outLen];
        }
        for (long i = 0; i < outLen; i++)
        {
            float original = NearestResize.Original(i, inLen, outLen, scale, transform);
            float floor = MathF.Floor(original);
            float s = original - floor;
            float[] c = Coefficients(s, a);
            float total = 0;
            for (int k = 0; k < 4; k++)
            {
                long at = (long)floor - 1 + k;
                bool outside = at < 0 || at >= inLen;
                if (excludeOutside && outside) c[k] = 0;
                total += c[k];
                indices[k][i] = Math.Clamp(at, 0, Math.Max(inLen - 1, 0));
            }
            for (int k = 0; k < 4; k++) weights[k][i] = excludeOutside && total != 0 ? c[k] / total : c[k];
        }
        return Taps.Weighted(x, axis, indices, weights);
    }

    /// <summary>Keys' cubic convolution weights of the taps at floor − 1, floor, floor + 1, floor + 2 for fraction s.</summary>
    static float[] Coefficients(float s, float a)
    {
        float s1 = s + 1, t = 1 - s, t1 = 2 - s;
        return
        [
            ((a * s1 - 5 * a) * s1 + 8 * a) * s1 - 4 * a,
            ((a + 2) * s - (a + 3)) * s * s + 1,
            ((a + 2) * t - (a + 3)) * t * t + 1,
            ((a * t1 - 5 * a) * t1 + 8 * a) * t1 - 4 * a,
        ];
    }
}

/// <summary>
/// GridSample (opset 16: bilinear and nearest on 4-D inputs; from opset 20 "linear" for bilinear, and 5-D inputs),
/// padding zeros, border or reflection, align_corners: torch's grid_sample, which ONNX's definition follows. Cubic
/// sampling is refused (TorchSharp's grid_sample has no bicubic mode).
/// </summary>
[OnnxOperator("GridSample")]
sealed class GridSampleOp : OnnxOp
{
    readonly GridSampleMode mode;
    readonly GridSamplePaddingMode padding;
    readonly bool alignCorners;

    public GridSampleOp(OpContext context) : base(context)
    {
        mode = context.String("mode", context.Opset < 20 ? "bilinear" : "linear") switch
        {
            "bilinear" or "linear" => GridSampleMode.Bilinear,
            "nearest" => GridSampleMode.Nearest,
            "bicubic" or "cubic" => throw context.Unsupported("cubic GridSample"),
            var other => throw context.Error(SadgErrorCode.InvalidNode, $"unknown GridSample mode '{other}'"),
        };
        padding = context.String("padding_mode", "zeros") switch
        {
            "zeros" => GridSamplePaddingMode.Zeros,
            "border" => GridSamplePaddingMode.Border,
            "reflection" => GridSamplePaddingMode.Reflection,
            var other => throw context.Error(SadgErrorCode.InvalidNode, $"unknown GridSample padding_mode '{other}'"),
        };
        alignCorners = context.Int("align_corners", 0) != 0;
    }

    public override Tensor?[] Run(IReadOnlyList<Tensor?> inputs)
    {
        var x = Required(inputs, 0);
        var grid = OpHelpers.OnDeviceOf(Required(inputs, 1), x);
        if (x.dim() is not (4 or 5) || grid.dim() != x.dim())
            throw Context.Unsupported($"GridSample of a rank-{x.dim()} input (4-D and 5-D are implemented)");
        return [nn.functional.grid_sample(x, grid.to_type(x.dtype), mode, padding, alignCorners)];
    }
}
