using Onnx;
using Sadg.Graph.Ops;
using static TorchSharp.torch;

namespace Sadg.Graph;

/// <summary>How the executor treats a node.</summary>
public enum NodeKind
{
    /// <summary>Computed once when the graph is built (all inputs constant): costs nothing per step.</summary>
    Folded,

    /// <summary>
    /// Depends only on the shapes of run-time tensors (PyTorch's Shape→Gather→Unsqueeze→Concat→Reshape chains):
    /// computed once per distinct set of input shapes and cached.
    /// </summary>
    ShapeOnly,

    /// <summary>Runs on every forward pass.</summary>
    Dynamic,
}

/// <summary>A node of the executor's topologically ordered graph.</summary>
public sealed class GraphNode
{
    const int MaxCachedShapes = 16;
    readonly Dictionary<string, Tensor?[]> shapeCache = new(StringComparer.Ordinal);

    internal GraphNode(int index, NodeProto proto, OnnxOp op)
    {
        Index = index;
        Proto = proto;
        Op = op;
        Inputs = proto.Input.ToArray();
        Outputs = proto.Output.ToArray();
    }

    /// <summary>Position in execution (topological) order.</summary>
    public int Index { get; }

    public NodeProto Proto { get; }

    public string OpType => Proto.OpType;

    /// <summary>The node's name, or "OpType#index" when the exporter left it empty.</summary>
    public string Name => string.IsNullOrEmpty(Proto.Name) ? $"{Proto.OpType}#{Index}" : Proto.Name;

    public OnnxOp Op { get; }

    /// <summary>Input value names; "" marks an absent optional input.</summary>
    public IReadOnlyList<string> Inputs { get; }

    public IReadOnlyList<string> Outputs { get; }

    public NodeKind Kind { get; internal set; }

    /// <summary>For <see cref="NodeKind.ShapeOnly"/> nodes: the run-time values whose shapes determine the outputs.</summary>
    internal string[] ShapeRoots { get; set; } = [];

    internal bool TryGetCached(string key, out Tensor?[] outputs) => shapeCache.TryGetValue(key, out outputs!);

    /// <summary>Keeps new handles on the outputs (outside any dispose scope), so the caller's scope can free its own.</summary>
    internal void Cache(string key, Tensor?[] outputs)
    {
        if (shapeCache.Count >= MaxCachedShapes) ClearCache();
        var kept = new Tensor?[outputs.Length];
        for (int i = 0; i < outputs.Length; i++)
            kept[i] = outputs[i]?.detach().DetachFromDisposeScope();
        shapeCache[key] = kept;
    }

    internal void ClearCache()
    {
        foreach (var outputs in shapeCache.Values)
            foreach (var t in outputs) t?.Dispose();
        shapeCache.Clear();
    }

    public override string ToString() => $"{Name} ({OpType})";
}
