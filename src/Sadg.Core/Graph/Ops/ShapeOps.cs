using static TorchSharp.torch;

namespace Sadg.Graph.Ops;

/// <summary>Shape (opset 15: start/end): the input's dimensions as a 1-D int64 tensor on the CPU.</summary>
[OnnxOperator("Shape")]
sealed class ShapeOp(OpContext context) : OnnxOp(context)
{
    readonly long start = context.Int("start", 0);
    readonly long? end = context.Has("end") ? context.Int("end", 0) : null;

    public override Tensor?[] Run(IReadOnlyList<Tensor?> inputs)
    {
        long[] shape = Required(inputs, 0).shape;
        long rank = shape.Length;
        long s = Math.Clamp(start < 0 ? start + rank : start, 0, rank);
        long e = Math.Clamp(end is { } v ? (v < 0 ? v + rank : v) : rank, 0, rank);
        return [ShapeOpSupport.Longs(shape.Skip((int)s).Take((int)Math.Max(e - s, 0)).ToArray())];
    }
}

/// <summary>Size: the element count as a scalar int64 tensor.</summary>
[OnnxOperator("Size")]
sealed class SizeOp(OpContext context) : OnnxOp(context)
{
    public override Tensor?[] Run(IReadOnlyList<Tensor?> inputs) => [tensor(Required(inputs, 0).numel())];
}

/// <summary>
/// Reshape (shape input; 0 copies the input dim unless allowzero = 1, -1 is inferred). When the model declares
/// a batch of 1 and the constant target starts with 1, that 1 is read as the batch when the input's batch differs.
/// </summary>
[OnnxOperator("Reshape")]
sealed class ReshapeOp : OnnxOp
{
    readonly bool allowZero;

    public ReshapeOp(OpContext context) : base(context)
    {
        if (context.Opset < 5) throw context.Unsupported("Reshape before opset 5 (shape attribute)");
        allowZero = context.Int("allowzero", 0) != 0;
    }

    public override Tensor?[] Run(IReadOnlyList<Tensor?> inputs)
    {
        var x = Required(inputs, 0);
        long[] target = OpHelpers.ToLongs(Required(inputs, 1));
        long[]? shape = Resolve(x.shape, x.numel(), target);
        if (Context.DeclaredBatchIsOne && target.Length >= 1 && target[0] == 1 && x.dim() >= 1 && x.shape[0] != 1)
        {
            // A converter that fixed the batch at 1 wrote it into the target shape: read it as the input's batch.
            bool infers = target.Skip(1).Contains(-1);
            if (shape is null || infers)
            {
                var batched = (long[])target.Clone();
                batched[0] = x.shape[0];
                shape = Resolve(x.shape, x.numel(), batched) ?? shape;
            }
        }
        if (shape is null)
            throw Context.Error(SadgErrorCode.InvalidNode,
                $"cannot reshape {ShapeOpSupport.Dims(x.shape)} ({x.numel()} elements) to {ShapeOpSupport.Dims(target)}");
        return [x.reshape(shape)];
    }

    long[]? Resolve(long[] input, long count, long[] target)
    {
        var shape = new long[target.Length];
        int infer = -1;
        for (int i = 0; i < target.Length; i++)
        {
            long t = target[i];
            if (t == 0 && !allowZero)
            {
                if (i >= input.Length) return null;
                shape[i] = input[i];
            }
            else if (t == -1)
            {
                if (infer >= 0) throw Context.Error(SadgErrorCode.InvalidNode, "the target shape has more than one -1");
                infer = i;
                shape[i] = 1;
            }
            else if (t < -1) throw Context.Error(SadgErrorCode.InvalidNode, $"invalid target dimension {t}");
            else shape[i] = t;
        }
        long known = ShapeOpSupport.Product(shape);
        if (infer >= 0)
        {
            if (known == 0 || count % known != 0) return null;
            shape[infer] = count / known;
        }
        else if (known != count) return null;
        return shape;
    }
}

/// <summary>Flatten (axis, negative allowed): [prod(dims before axis), prod(dims from axis)].</summary>
[OnnxOperator("Flatten")]
sealed class FlattenOp(OpContext context) : OnnxOp(context)
{
    readonly long axis = context.Int("axis", 1);

    public override Tensor?[] Run(IReadOnlyList<Tensor?> inputs)
    {
        var x = Required(inputs, 0);
        long rank = x.dim();
        long a = axis < 0 ? axis + rank : axis;
        if (a < 0 || a > rank) throw Context.Error(SadgErrorCode.InvalidNode, $"axis {axis} is out of range for rank {rank}");
        long outer = ShapeOpSupport.Product(x.shape.Take((int)a));
        long inner = ShapeOpSupport.Product(x.shape.Skip((int)a));
        return [x.reshape(outer, inner)];
    }
}

/// <summary>Unsqueeze: axes attribute before opset 13, axes input from 13; negative axes count in the output rank.</summary>
[OnnxOperator("Unsqueeze")]
sealed class UnsqueezeOp(OpContext context) : OnnxOp(context)
{
    readonly long[]? axesAttribute = context.Opset < 13 ? context.Ints("axes") ?? [] : null;

    public override Tensor?[] Run(IReadOnlyList<Tensor?> inputs)
    {
        var x = Required(inputs, 0);
        long[] axes = axesAttribute ?? OpHelpers.ToLongs(Required(inputs, 1));
        long outRank = x.dim() + axes.Length;
        var normalized = ShapeOpSupport.NormalizeAxes(Context, axes, outRank);
        var shape = new long[outRank];
        int next = 0;
        for (long i = 0; i < outRank; i++)
            shape[i] = normalized.Contains(i) ? 1 : x.shape[next++];
        return [x.reshape(shape)];
    }
}

/// <summary>Squeeze: axes attribute before opset 13, optional axes input from 13; no axes removes every dim of size 1.</summary>
[OnnxOperator("Squeeze")]
sealed class SqueezeOp(OpContext context) : OnnxOp(context)
{
    readonly long[]? axesAttribute = context.Opset < 13 ? context.Ints("axes") : null;

    public override Tensor?[] Run(IReadOnlyList<Tensor?> inputs)
    {
        var x = Required(inputs, 0);
        long[]? axes = Context.Opset < 13 ? axesAttribute : Optional(inputs, 1) is { } t ? OpHelpers.ToLongs(t) : null;
        if (axes is { Length: 0 }) axes = null; // an empty axes tensor squeezes every dim of size 1, as ONNX Runtime does
        long rank = x.dim();
        var squeezed = axes is null
            ? Enumerable.Range(0, (int)rank).Where(i => x.shape[i] == 1).Select(i => (long)i).ToArray()
            : ShapeOpSupport.NormalizeAxes(Context, axes, rank);
        foreach (long a in squeezed)
            if (x.shape[a] != 1)
                throw Context.Error(SadgErrorCode.InvalidNode, $"cannot squeeze axis {a} of size {x.shape[a]}");
        var shape = Enumerable.Range(0, (int)rank).Where(i => !squeezed.Contains(i)).Select(i => x.shape[i]).ToArray();
        return [x.reshape(shape)];
    }
}

/// <summary>Transpose (perm; default reverses the dimensions).</summary>
[OnnxOperator("Transpose")]
sealed class TransposeOp(OpContext context) : OnnxOp(context)
{
    readonly long[]? perm = context.Ints("perm");

    public override Tensor?[] Run(IReadOnlyList<Tensor?> inputs)
    {
        var x = Required(inputs, 0);
        long rank = x.dim();
        long[] p = perm ?? Enumerable.Range(0, (int)rank).Select(i => rank - 1 - i).ToArray();
        if (p.Length != rank || p.Order().Select((v, i) => v != i).Any(b => b))
            throw Context.Error(SadgErrorCode.InvalidNode, $"perm {ShapeOpSupport.Dims(p)} is not a permutation of rank {rank}");
        return [x.permute(p)];
    }
}

/// <summary>Expand (opset 8): numpy-style broadcast of the input to the shape input.</summary>
[OnnxOperator("Expand")]
sealed class ExpandOp(OpContext context) : OnnxOp(context)
{
    public override Tensor?[] Run(IReadOnlyList<Tensor?> inputs)
    {
        var x = Required(inputs, 0);
        long[] target = OpHelpers.ToLongs(Required(inputs, 1));
        int rank = Math.Max(target.Length, (int)x.dim());
        var shape = new long[rank];
        for (int i = 0; i < rank; i++)
        {
            int xi = i - (rank - (int)x.dim()), ti = i - (rank - target.Length);
            long a = xi >= 0 ? x.shape[xi] : 1, b = ti >= 0 ? target[ti] : 1;
            if (a != b && a != 1 && b != 1)
                throw Context.Error(SadgErrorCode.InvalidNode, $"cannot broadcast {ShapeOpSupport.Dims(x.shape)} to {ShapeOpSupport.Dims(target)}");
            shape[i] = a == 1 ? b : a;
        }
        return [x.expand(shape).contiguous()];
    }
}

/// <summary>Tile (opset 6+): repeats input.</summary>
[OnnxOperator("Tile")]
sealed class TileOp(OpContext context) : OnnxOp(context)
{
    public override Tensor?[] Run(IReadOnlyList<Tensor?> inputs)
    {
        var x = Required(inputs, 0);
        long[] repeats = OpHelpers.ToLongs(Required(inputs, 1));
        if (repeats.Length != x.dim() || repeats.Any(r => r < 0))
            throw Context.Error(SadgErrorCode.InvalidNode, $"repeats {ShapeOpSupport.Dims(repeats)} do not fit rank {x.dim()}");
        return [x.repeat(repeats)];
    }
}

/// <summary>
/// DepthToSpace: [N, C, H, W] → [N, C / b², H·b, W·b], the channels read in DCR order (depth, column, row; the
/// default) or CRD order (column, row, depth; <c>mode = "CRD"</c>, as PixelShuffle exports).
/// </summary>
[OnnxOperator("DepthToSpace")]
sealed class DepthToSpaceOp : OnnxOp
{
    readonly long block;
    readonly bool crd;

    public DepthToSpaceOp(OpContext context) : base(context)
    {
        block = context.Int("blocksize", 0);
        if (block < 1) throw context.Error(SadgErrorCode.InvalidNode, "blocksize must be a whole number ≥ 1");
        string mode = context.String("mode", "DCR");
        if (mode is not ("DCR" or "CRD")) throw context.Unsupported($"DepthToSpace mode '{mode}'");
        crd = mode == "CRD";
    }

    public override Tensor?[] Run(IReadOnlyList<Tensor?> inputs)
    {
        var x = Required(inputs, 0);
        if (x.dim() != 4 || x.shape[1] % (block * block) != 0)
            throw Context.Error(SadgErrorCode.InvalidNode, $"input [{string.Join(", ", x.shape)}] is not [N, C, H, W] with C divisible by {block * block}");
        long n = x.shape[0], c = x.shape[1] / (block * block), h = x.shape[2], w = x.shape[3];
        var y = crd
            ? x.reshape(n, c, block, block, h, w).permute(0, 1, 4, 2, 5, 3)
            : x.reshape(n, block, block, c, h, w).permute(0, 3, 4, 1, 5, 2);
        return [y.reshape(n, c, h * block, w * block)];
    }
}

/// <summary>SpaceToDepth: [N, C, H, W] → [N, C·b², H / b, W / b], the inverse of DepthToSpace in DCR order.</summary>
[OnnxOperator("SpaceToDepth")]
sealed class SpaceToDepthOp : OnnxOp
{
    readonly long block;

    public SpaceToDepthOp(OpContext context) : base(context)
    {
        block = context.Int("blocksize", 0);
        if (block < 1) throw context.Error(SadgErrorCode.InvalidNode, "blocksize must be a whole number ≥ 1");
    }

    public override Tensor?[] Run(IReadOnlyList<Tensor?> inputs)
    {
        var x = Required(inputs, 0);
        if (x.dim() != 4 || x.shape[2] % block != 0 || x.shape[3] % block != 0)
            throw Context.Error(SadgErrorCode.InvalidNode, $"input [{string.Join(", ", x.shape)}] is not [N, C, H, W] with H and W divisible by {block}");
        long n = x.shape[0], c = x.shape[1], h = x.shape[2] / block, w = x.shape[3] / block;
        return [x.reshape(n, c, h, block, w, block).permute(0, 3, 5, 1, 2, 4).reshape(n, c * block * block, h, w)];
    }
}

/// <summary>Trilu: the upper (upper = 1, the default) or lower triangle of the last two dims, from diagonal k (input, default 0).</summary>
[OnnxOperator("Trilu")]
sealed class TriluOp(OpContext context) : OnnxOp(context)
{
    readonly bool upper = context.Int("upper", 1) != 0;

    public override Tensor?[] Run(IReadOnlyList<Tensor?> inputs)
    {
        var x = Required(inputs, 0);
        long k = Optional(inputs, 1) is { } d ? OpHelpers.ToLongs(d)[0] : 0;
        if (x.dim() < 2) throw Context.Error(SadgErrorCode.InvalidNode, $"the input has rank {x.dim()}; at least 2 is needed");
        return [upper ? x.triu(k) : x.tril(k)];
    }
}
