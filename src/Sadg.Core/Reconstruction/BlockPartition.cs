using Sadg.Onnx;
using Sadg.Graph;

namespace Sadg.Reconstruction;

/// <summary>
/// A segment of the graph that is reconstructed as a unit: the nodes in execution order
/// [<see cref="StartNode"/>, <see cref="EndNode"/>), reading the single tensor <see cref="Input"/> and producing
/// the single tensor <see cref="Output"/>. For a ResNet, a residual block.
/// </summary>
public sealed record Block(int Index, int StartNode, int EndNode, string Input, string Output, IReadOnlyList<GraphNode> QuantizedNodes)
{
    public override string ToString() =>
        $"block {Index}: nodes [{StartNode}, {EndNode}) {Input} -> {Output}, quantized: {string.Join(", ", QuantizedNodes.Select(n => n.Name))}";
}

/// <summary>
/// Cuts a graph at its single-tensor cut points — tensors that every path from the input to the output crosses —
/// and groups the segments into blocks that each hold at least one quantized operator.
/// </summary>
public static class BlockPartition
{
    /// <summary>
    /// The cut points in execution order, each with the index of the first node after it: the graph input
    /// (before node 0), every internal cut tensor, and the output.
    /// </summary>
    public static IReadOnlyList<(string Value, int NextNode)> CutPoints(GraphModule graph)
    {
        if (graph.InputNames.Count != 1 || graph.OutputNames.Count < 1)
            throw new SadgException(SadgErrorCode.NoImageInput,
                "Block reconstruction needs a graph with a single input.", graph.Model.Path);
        var nodes = graph.Nodes;
        string output = graph.OutputNames[0];

        // The last node that reads each data-path value (the output counts as read at the end).
        var lastUse = new Dictionary<string, int>(StringComparer.Ordinal);
        foreach (var node in nodes.Where(n => n.Kind == NodeKind.Dynamic))
            foreach (var input in node.Inputs.Where(i => i.Length > 0 && IsDataValue(graph, i)))
                lastUse[input] = node.Index;
        lastUse[output] = int.MaxValue;

        var cuts = new List<(string, int)> { (graph.InputNames[0], 0) };
        var live = new HashSet<string>(StringComparer.Ordinal) { graph.InputNames[0] };
        foreach (var node in nodes)
        {
            if (node.Kind == NodeKind.Dynamic)
            {
                live.RemoveWhere(v => lastUse.GetValueOrDefault(v, -1) <= node.Index);
                foreach (var o in node.Outputs.Where(o => o.Length > 0 && lastUse.GetValueOrDefault(o, -1) > node.Index))
                    live.Add(o);
            }
            if (live.Count == 1 && node.Kind == NodeKind.Dynamic && node.Outputs.Contains(live.First()))
                cuts.Add((live.First(), node.Index + 1));
        }
        if (cuts[^1].Item1 != output)
            throw new SadgException(SadgErrorCode.InvalidGraph,
                $"The graph's output '{output}' is not the last cut point; Sadg reconstructs single-output graphs.", graph.Model.Path);
        return cuts;
    }

    static bool IsDataValue(GraphModule graph, string value) =>
        !graph.IsConstant(value) && graph.Producer(value) is not { Kind: not NodeKind.Dynamic };

    /// <summary>
    /// A depthwise convolution: a Conv with one input channel per group and more than one group (weight [C, 1, kh, kw]).
    /// </summary>
    public static bool IsDepthwise(GraphModule graph, GraphNode node) =>
        node.OpType == "Conv" && node.Inputs.Count >= 2 && graph.Weights.TryGetValue(node.Inputs[1], out var w)
        && w.dim() >= 3 && w.shape[1] == 1 && node.Proto.Attribute.FirstOrDefault(a => a.Name == "group") is { I: > 1 };

    /// <summary>
    /// Blocks in execution order. A segment between two cut points that holds no quantized operator joins the
    /// next block (the last such segment joins the previous one), so every block has work to reconstruct. So does a
    /// segment whose quantized operators are all depthwise convolutions (unless <paramref name="depthwiseAlone"/>):
    /// a 3×3 depthwise kernel has 9 weights per channel and mixes no channels, so its rounding is learned against the
    /// output of the pointwise layer that mixes them — a MobileNet's depthwise + pointwise pair, or an inverted
    /// residual's depthwise + projection, is one block, as in BRECQ's and Genie's MobileNet blocks.
    /// </summary>
    public static IReadOnlyList<Block> Partition(GraphModule graph, Func<GraphNode, bool> isQuantized, bool depthwiseAlone = false)
    {
        var cuts = CutPoints(graph);
        var blocks = new List<Block>();
        int start = 0;
        string input = cuts[0].Value;
        for (int c = 1; c < cuts.Count; c++)
        {
            int end = cuts[c].NextNode;
            var quantized = graph.Nodes.Skip(start).Take(end - start).Where(n => n.Kind == NodeKind.Dynamic && isQuantized(n)).ToList();
            if (quantized.Count == 0) continue;
            if (!depthwiseAlone && c < cuts.Count - 1 && quantized.All(n => IsDepthwise(graph, n))) continue;
            blocks.Add(new Block(blocks.Count, start, end, input, cuts[c].Value, quantized));
            start = end;
            input = cuts[c].Value;
        }
        if (blocks.Count == 0)
            throw new SadgException(SadgErrorCode.NothingToQuantize,
                QuantizableOps.NothingToQuantize, graph.Model.Path);
        if (start < graph.Nodes.Count)
        {
            var last = blocks[^1];
            blocks[^1] = last with { EndNode = graph.Nodes.Count, Output = cuts[^1].Value };
        }
        return blocks;
    }
}
