using Onnx;

namespace Sadg.Onnx;

/// <summary>Small edits of an ONNX graph that several rewrites make.</summary>
internal static class GraphEdits
{
    /// <summary>Makes every input of <paramref name="nodes"/> that reads <paramref name="from"/> read <paramref name="to"/>.</summary>
    public static void ReplaceReads(IEnumerable<NodeProto> nodes, string from, string to)
    {
        foreach (var node in nodes)
            for (int i = 0; i < node.Input.Count; i++)
                if (node.Input[i] == from) node.Input[i] = to;
    }
}
