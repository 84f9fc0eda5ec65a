using Onnx;

namespace Sadg.Onnx;

/// <summary>
/// The form of a graph the quantizer relies on, whatever the exporter wrote: the quantization spec names each layer
/// by its node and its weight by an initializer, and the report, <c>--exclude</c> and <c>--layer-bits</c> name
/// layers by node. So a tensor held by a Constant node becomes an initializer, an Identity of an initializer (as
/// PyTorch writes shared weights) is read through, every node has a name of its own (unnamed nodes
/// <c>OpType_index</c>, a repeated name made unique), and a weight read by several layers is copied for each, so every
/// layer is quantized with scales of its own. The same values; <c>sadg inspect</c> lists the same names.
/// </summary>
public static class GraphCanonicalization
{
    /// <summary><paramref name="model"/> itself when it is already in that form, else a copy that is.</summary>
    public static OnnxModel Canonical(OnnxModel model)
    {
        if (IsCanonical(model.Graph)) return model;
        var proto = model.Proto.Clone();
        var graph = proto.Graph;
        var outputs = Outputs(graph);

        foreach (var node in graph.Node.Where(IsTensorConstant).ToList())
        {
            var value = node.Attribute.First(a => a.Name == "value").T.Clone();
            value.Name = node.Output[0];
            graph.Initializer.Add(value);
            graph.Node.Remove(node);
        }
        var initializers = graph.Initializer.Select(t => t.Name).ToHashSet(StringComparer.Ordinal);
        foreach (var identity in graph.Node.Where(n => IsIdentityOf(n, initializers, outputs)).ToList())
        {
            GraphEdits.ReplaceReads(graph.Node, identity.Output[0], identity.Input[0]);
            graph.Node.Remove(identity);
        }
        var names = new NameSet(graph);
        OpsetUpgrader.NameNodes(graph, names);
        // A weight read by several layers: each layer after the first gets a copy of its own, quantized with its own scales.
        var claimed = new HashSet<string>(StringComparer.Ordinal);
        foreach (var layer in graph.Node.Where(n => WeightOf(n, initializers) is not null).ToList())
        {
            string weight = layer.Input[1];
            if (claimed.Add(weight)) continue;
            var copy = graph.Initializer.First(t => t.Name == weight).Clone();
            copy.Name = names.Unique($"{weight}_{layer.Name}");
            graph.Initializer.Add(copy);
            layer.Input[1] = copy.Name;
        }
        return OnnxModel.FromProto(proto, model.Path);
    }

    /// <summary>The weight initializer a Conv, Gemm or MatMul reads as its second input; null when it has none.</summary>
    static string? WeightOf(NodeProto n, HashSet<string> initializers) =>
        n.OpType is "Conv" or "Gemm" or "MatMul" && n.IsDefaultDomain() && n.Input.Count >= 2 && initializers.Contains(n.Input[1]) ? n.Input[1] : null;

    static bool IsCanonical(GraphProto graph)
    {
        var initializers = graph.Initializer.Select(t => t.Name).ToHashSet(StringComparer.Ordinal);
        var outputs = Outputs(graph);
        var names = new HashSet<string>(StringComparer.Ordinal);
        var weights = new HashSet<string>(StringComparer.Ordinal);
        return graph.Node.All(n => !string.IsNullOrEmpty(n.Name) && names.Add(n.Name) && !IsTensorConstant(n) && !IsIdentityOf(n, initializers, outputs)
            && (WeightOf(n, initializers) is not { } w || weights.Add(w)));
    }

    /// <summary>A top-level Constant node whose value is a tensor (not value_float, value_ints …).</summary>
    static bool IsTensorConstant(NodeProto n) =>
        n.OpType == "Constant" && n.IsDefaultDomain() && n.Output.Count == 1 && n.Attribute.Count == 1 && n.Attribute[0].Name == "value" && n.Attribute[0].T is not null;

    /// <summary>An Identity of an initializer that is read through (one that gives a graph output stays).</summary>
    static bool IsIdentityOf(NodeProto n, HashSet<string> initializers, HashSet<string> outputs) =>
        n.OpType == "Identity" && n.IsDefaultDomain() && n.Input.Count == 1 && initializers.Contains(n.Input[0]) && !outputs.Contains(n.Output[0]);

    static HashSet<string> Outputs(GraphProto graph) => graph.Output.Select(o => o.Name).ToHashSet(StringComparer.Ordinal);
}
