using Onnx;

namespace Sadg.Onnx;

/// <summary>Small edits of an ONNX graph that several rewrites make.</summary>
internal static class GraphEdits
{
    /// <summary>Whether <paramref name="node"/> is in ONNX's default operator domain ("" or "ai.onnx").</summary>
    public static bool IsDefaultDomain(this NodeProto node) => node.Domain is "" or "ai.onnx";

    /// <summary>Whether <paramref name="node"/> is a default-domain Cast to float32.</summary>
    public static bool IsCastToFloat(this NodeProto node) =>
        node.OpType == "Cast" && node.IsDefaultDomain() && node.Attribute.FirstOrDefault(a => a.Name == "to")?.I == (long)TensorProto.Types.DataType.Float;

    /// <summary>The node that writes each value of <paramref name="graph"/> (its top level; subgraphs are not searched).</summary>
    public static Dictionary<string, NodeProto> Producers(GraphProto graph)
    {
        var producers = new Dictionary<string, NodeProto>(StringComparer.Ordinal);
        foreach (var n in graph.Node)
            foreach (var o in n.Output.Where(o => o.Length > 0)) producers[o] = n;
        return producers;
    }

    /// <summary>Makes every input of <paramref name="nodes"/> that reads <paramref name="from"/> read <paramref name="to"/>.</summary>
    public static void ReplaceReads(IEnumerable<NodeProto> nodes, string from, string to)
    {
        foreach (var node in nodes)
            for (int i = 0; i < node.Input.Count; i++)
                if (node.Input[i] == from) node.Input[i] = to;
    }
}
