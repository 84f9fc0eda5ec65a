using Onnx;
using Sadg.Onnx;

namespace Sadg.Graph;

/// <summary>
/// Weights computed from constants alone, as exports without constant folding write them (a Transpose of a
/// TensorFlow-layout tensor, a reshape, a weight standardization): each is computed once with the executor and becomes
/// an initializer of the same name, so its layer is quantized instead of silently staying float. The result is in
/// <see cref="GraphCanonicalization"/>'s form.
/// </summary>
public static class ComputedWeights
{
    /// <summary>
    /// The model every run and <c>sadg inspect</c> work on: <see cref="InputShapes.ForPipeline"/>'s, its computed
    /// weights folded (<see cref="Fold"/>).
    /// </summary>
    public static OnnxModel ForPipeline(OnnxModel model, IReadOnlyList<int>? chw) => Fold(InputShapes.ForPipeline(model, chw));

    /// <summary><paramref name="model"/> itself when no quantizable layer reads a computed weight, else a canonical copy whose do not.</summary>
    public static OnnxModel Fold(OnnxModel model)
    {
        var initializers = model.Graph.Initializer.Select(t => t.Name).ToHashSet(StringComparer.Ordinal);
        var weights = Computed(model.Graph, initializers, GraphCanonicalization.Outputs(model.Graph)).ToList();
        if (weights.Count == 0) return model;
        var proto = model.Proto.Clone();
        var names = new NameSet(proto.Graph);
        foreach (string weight in weights) FoldWeight(proto, weight, names, model.Path);
        return GraphCanonicalization.Canonical(OnnxModel.FromProto(proto, model.Path));
    }

    /// <summary>
    /// The second inputs of quantizable operators that nodes the executor runs compute from initializers alone (no
    /// graph input, no Shape of anything else), each once; a weight that is a graph output is left as it is, and so is
    /// one behind an operator the executor does not run (a DequantizeLinear of an already quantized model is refused
    /// as such later, not folded here).
    /// </summary>
    static IEnumerable<string> Computed(GraphProto graph, HashSet<string> initializers, HashSet<string> outputs)
    {
        var producers = GraphEdits.Producers(graph);
        var known = new Dictionary<string, bool>(StringComparer.Ordinal);
        bool FromConstants(string value)
        {
            if (value.Length == 0 || initializers.Contains(value)) return true;
            if (known.TryGetValue(value, out bool k)) return k;
            known[value] = false; // a cycle is not constant
            bool result = producers.TryGetValue(value, out var p) && Ops.OperatorRegistry.IsSupported(p.Domain, p.OpType)
                && p.Attribute.All(a => a.G is null && a.Graphs.Count == 0) && p.Input.All(FromConstants);
            known[value] = result;
            return result;
        }
        var seen = new HashSet<string>(StringComparer.Ordinal);
        foreach (var n in graph.Node)
            if (QuantizableOps.OpTypes.Contains(n.OpType) && n.IsDefaultDomain() && n.Input.Count >= 2
                && !initializers.Contains(n.Input[1]) && !outputs.Contains(n.Input[1]) && producers.ContainsKey(n.Input[1])
                && FromConstants(n.Input[1]) && seen.Add(n.Input[1]))
                yield return n.Input[1];
    }

    /// <summary>
    /// Computes <paramref name="weight"/> with the executor from the nodes it depends on, makes it an initializer of
    /// the same name and removes the nodes no other value reads. A result that is not float is left computed.
    /// </summary>
    static void FoldWeight(ModelProto proto, string weight, NameSet names, string? path)
    {
        var graph = proto.Graph;
        var producers = GraphEdits.Producers(graph);
        var needed = new HashSet<NodeProto>(ReferenceEqualityComparer.Instance); // by reference: a node changes below
        var stack = new Stack<string>([weight]);
        while (stack.Count > 0)
            if (producers.TryGetValue(stack.Pop(), out var p) && needed.Add(p))
                foreach (var i in p.Input.Where(i => i.Length > 0)) stack.Push(i);

        var sub = new ModelProto { IrVersion = proto.IrVersion, Graph = new GraphProto { Name = "weight" } };
        sub.OpsetImport.AddRange(proto.OpsetImport);
        sub.Graph.Node.AddRange(graph.Node.Where(needed.Contains));
        var reads = needed.SelectMany(n => n.Input).ToHashSet(StringComparer.Ordinal);
        sub.Graph.Initializer.AddRange(graph.Initializer.Where(t => reads.Contains(t.Name)));
        sub.Graph.Output.Add(new ValueInfoProto { Name = weight });
        using var scope = TorchSharp.torch.NewDisposeScope();
        using var module = new GraphModule(OnnxModel.FromProto(sub, path));
        var value = module.Run(new Dictionary<string, TorchSharp.torch.Tensor>(), [weight])[weight];
        if (value.dtype != TorchSharp.torch.ScalarType.Float32) return;
        graph.Initializer.Add(OnnxTensors.FromTorch(weight, value.detach().cpu().contiguous()));
        // The producer no longer defines the weight (another of its outputs may still be read, e.g. a Split's).
        var producer = producers[weight];
        producer.Output[producer.Output.IndexOf(weight)] = names.Unique($"{weight}_computed");
        // Nodes whose every output no one reads any more (the weight's own chain) go too.
        var outputs = GraphCanonicalization.Outputs(graph);
        bool removed = true;
        while (removed)
        {
            var read = graph.Node.SelectMany(n => n.Input).ToHashSet(StringComparer.Ordinal);
            var dead = graph.Node.Where(n => needed.Contains(n) && n.Output.All(o => o.Length == 0 || !read.Contains(o) && !outputs.Contains(o))).ToList();
            foreach (var n in dead) graph.Node.Remove(n);
            removed = dead.Count > 0;
        }
        var stillRead = graph.Node.SelectMany(n => n.Input).Concat(outputs).ToHashSet(StringComparer.Ordinal);
        foreach (var t in graph.Initializer.Where(t => reads.Contains(t.Name) && !stillRead.Contains(t.Name)).ToList())
        {
            graph.Initializer.Remove(t);
            // Weights listed as graph inputs too (keep_initializers_as_inputs) leave the inputs with them.
            if (graph.Input.FirstOrDefault(i => i.Name == t.Name) is { } listed) graph.Input.Remove(listed);
        }
    }
}
