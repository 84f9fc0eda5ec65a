using Sadg.Graph;
using TorchSharp;
using static TorchSharp.torch;

namespace Sadg.Generation;

/// <summary>
/// Genie's swing convolution: while generating, every strided Conv of the FP graph sees its input shifted by a
/// random offset in [−1, 1] pixels along each spatial axis (reflect-pad by 1, crop back at the offset), which
/// removes checkerboard artifacts from the synthetic images. Only the Conv's own input is shifted (an input
/// hook), so a shortcut reading the same tensor is unaffected. Offsets come from a seeded generator. Dispose to
/// remove the hooks.
/// </summary>
public sealed class SwingConvolution : IDisposable
{
    readonly List<IDisposable> hooks = [];
    readonly Random random;

    public SwingConvolution(GraphModule model, long seed)
    {
        random = new Random(unchecked((int)(seed ^ (seed >> 32)) ^ 0x5317));
        foreach (var node in model.Nodes.Where(IsStridedConv))
            hooks.Add(model.AddInputHook(node, 0, Shift));
        Convolutions = hooks.Count;
    }

    /// <summary>The number of strided convolutions that swing.</summary>
    public int Convolutions { get; }

    static bool IsStridedConv(GraphNode node) =>
        node.OpType == "Conv" && node.Kind == NodeKind.Dynamic &&
        node.Proto.Attribute.FirstOrDefault(a => a.Name == "strides") is { } strides && strides.Ints.Any(s => s > 1);

    Tensor Shift(Tensor x)
    {
        if (x.dim() != 4 || x.shape[2] < 2 || x.shape[3] < 2) return x;
        int dy = random.Next(3), dx = random.Next(3);
        if (dy == 1 && dx == 1) return x;
        long h = x.shape[2], w = x.shape[3];
        var padded = nn.functional.pad(x, [1, 1, 1, 1], PaddingModes.Reflect);
        return padded[.., .., TensorIndex.Slice(dy, dy + h), TensorIndex.Slice(dx, dx + w)];
    }

    public void Dispose()
    {
        foreach (var h in hooks) h.Dispose();
        hooks.Clear();
    }
}
