using Onnx;

namespace Sadg.Onnx;

/// <summary>
/// The form of a graph the quantizer relies on, whatever the exporter wrote: the quantization spec names each layer
/// by its node and its weight by an initializer, and the report, <c>--exclude</c> and <c>--layer-bits</c> name
/// layers by node. So a tensor held by a Constant node becomes an initializer, an Identity of an initializer (as
/// PyTorch writes shared weights) is read through, every node has a name of its own (unnamed nodes
/// <c>OpType_index</c>, a repeated name made unique), and a weight read by several layers is copied for each, so every
/// layer is quantized with scales of its own (a weight computed from constants is made an initializer afterwards, by
/// <see cref="Sadg.Graph.ComputedWeights"/>, which needs the executor). ImageScaler (an experimental operator of
/// opsets 1 to 9 that older converters put in front of a network, y = scale · x + bias[c]) becomes a Mul and an Add by
/// constants, which the executor runs, the input prior reads as the input's normalization, and opset 21 has. The same
/// values; <c>sadg inspect</c> lists the same names.
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
        var names = new NameSet(graph);
        foreach (var scaler in graph.Node.Where(IsImageScaler).ToList())
            ReplaceImageScaler(graph, scaler, names);
        var initializers = graph.Initializer.Select(t => t.Name).ToHashSet(StringComparer.Ordinal);
        foreach (var identity in graph.Node.Where(n => IsIdentityOf(n, initializers, outputs)).ToList())
        {
            GraphEdits.ReplaceReads(graph.Node, identity.Output[0], identity.Input[0]);
            graph.Node.Remove(identity);
        }
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

    /// <summary>The weight initializer a quantizable operator reads as its second input; null when it has none.</summary>
    static string? WeightOf(NodeProto n, HashSet<string> initializers) =>
        QuantizableOps.OpTypes.Contains(n.OpType) && n.IsDefaultDomain() && n.Input.Count >= 2 && initializers.Contains(n.Input[1]) ? n.Input[1] : null;

    static bool IsCanonical(GraphProto graph)
    {
        var initializers = graph.Initializer.Select(t => t.Name).ToHashSet(StringComparer.Ordinal);
        var outputs = Outputs(graph);
        var names = new HashSet<string>(StringComparer.Ordinal);
        var weights = new HashSet<string>(StringComparer.Ordinal);
        return graph.Node.All(n => !string.IsNullOrEmpty(n.Name) && names.Add(n.Name) && !IsTensorConstant(n) && !IsIdentityOf(n, initializers, outputs)
            && !IsImageScaler(n) && (WeightOf(n, initializers) is not { } w || weights.Add(w)));
    }

    static bool IsImageScaler(NodeProto n) => n.OpType == "ImageScaler" && n.IsDefaultDomain() && n.Input.Count == 1 && n.Output.Count == 1;

    /// <summary>
    /// ImageScaler(x) = scale · x + bias[c] as Mul(x, scale) then Add(·, bias of shape [C, 1, 1]); the Mul keeps the
    /// node's name (a nameless node's parts are named by NameNodes), the Add is named after it.
    /// </summary>
    static void ReplaceImageScaler(GraphProto graph, NodeProto scaler, NameSet names)
    {
        float scale = scaler.Attribute.FirstOrDefault(a => a.Name == "scale")?.F ?? 1f;
        var bias = scaler.Attribute.FirstOrDefault(a => a.Name == "bias")?.Floats.ToArray() ?? [];
        string stem = string.IsNullOrEmpty(scaler.Name) ? scaler.Output[0] : scaler.Name;
        var scaleTensor = new TensorProto { Name = names.Unique($"{stem}_scale"), DataType = (int)TensorProto.Types.DataType.Float };
        scaleTensor.FloatData.Add(scale);
        graph.Initializer.Add(scaleTensor);
        var mul = new NodeProto { Name = scaler.Name, OpType = "Mul", DocString = scaler.DocString };
        mul.Input.AddRange([scaler.Input[0], scaleTensor.Name]);
        mul.Output.Add(bias.Length == 0 ? scaler.Output[0] : names.Unique($"{stem}_scaled"));
        int at = graph.Node.IndexOf(scaler);
        graph.Node[at] = mul;
        if (bias.Length == 0) return;
        var biasTensor = new TensorProto { Name = names.Unique($"{stem}_bias"), DataType = (int)TensorProto.Types.DataType.Float };
        biasTensor.Dims.AddRange([bias.Length, 1, 1]);
        biasTensor.FloatData.AddRange(bias);
        graph.Initializer.Add(biasTensor);
        var add = new NodeProto { Name = string.IsNullOrEmpty(scaler.Name) ? "" : names.Unique($"{scaler.Name}_bias"), OpType = "Add" };
        add.Input.AddRange([mul.Output[0], biasTensor.Name]);
        add.Output.Add(scaler.Output[0]);
        graph.Node.Insert(at + 1, add);
    }

    /// <summary>A top-level Constant node whose value is a tensor (not value_float, value_ints …).</summary>
    static bool IsTensorConstant(NodeProto n) =>
        n.OpType == "Constant" && n.IsDefaultDomain() && n.Output.Count == 1 && n.Attribute.Count == 1 && n.Attribute[0].Name == "value" && n.Attribute[0].T is not null;

    /// <summary>An Identity of an initializer that is read through (one that gives a graph output stays).</summary>
    static bool IsIdentityOf(NodeProto n, HashSet<string> initializers, HashSet<string> outputs) =>
        n.OpType == "Identity" && n.IsDefaultDomain() && n.Input.Count == 1 && initializers.Contains(n.Input[0]) && !outputs.Contains(n.Output[0]);

    internal static HashSet<string> Outputs(GraphProto graph) => graph.Output.Select(o => o.Name).ToHashSet(StringComparer.Ordinal);
}
