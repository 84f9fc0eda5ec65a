using Onnx;
using Sadg.Graph;
using Sadg.Onnx;
using static TorchSharp.torch;

namespace Sadg.Quantization;

/// <summary>
/// The TorchSharp simulation of the model <see cref="QdqWriter"/> writes: a <see cref="GraphModule"/> on the
/// BN-folded model whose hooks replace each quantized weight by <see cref="WeightQuantization.Dequantize"/> and
/// each quantized activation by <see cref="ActivationQuantization.Apply"/>, and whose corrected biases
/// (<see cref="QuantizationSpec.Biases"/>) replace the folded ones.
/// </summary>
internal static class FakeQuantSimulation
{
    /// <summary>
    /// Builds the simulation. Lifetimes: the hooks are never removed and belong to the returned module; the
    /// dequantized weights are computed once, registered as buffers of the module (they appear in its state_dict) and disposed with it. The spec's
    /// tensors are not referenced after this returns.
    /// <para>A hook on a value affects every reader, while the writer rewires only quantized readers. Where the
    /// two would differ — a float weight also read by a node that is not quantized (or quantized differently), an
    /// activation that is also a graph output or read by an excluded operator — the module runs on a copy of the model in which the quantized
    /// readers read a private copy of the weight, or an Identity of the activation, exactly as in the written
    /// model. Otherwise it runs on <paramref name="foldedModel"/> itself.</para>
    /// </summary>
    public static GraphModule Create(OnnxModel foldedModel, QuantizationSpec spec, Device? device = null)
    {
        ArgumentNullException.ThrowIfNull(foldedModel);
        ArgumentNullException.ThrowIfNull(spec);
        SpecCheck.Check(foldedModel, spec);

        var (model, weightNames, activationNames) = Separate(foldedModel, spec);
        var module = new GraphModule(model, device);
        try
        {
            for (int i = 0; i < spec.Weights.Count; i++)
            {
                var w = spec.Weights[i];
                var original = module.Weights[weightNames[i]];
                Tensor dequantized;
                using (NewDisposeScope())
                {
                    dequantized = w.Dequantize().detach().to(original.dtype).to(module.Device).DetachFromDisposeScope();
                }
                module.register_buffer($"sadg_dequantized_weight_{i}", dequantized);
                // The module may have been moved to another device since (buffers are not moved with it).
                module.AddHook(weightNames[i], t => t.device == dequantized.device ? dequantized : dequantized.to(t.device));
            }
            foreach (var b in spec.Biases) module.SetWeight(b.Bias, b.Value);
            for (int i = 0; i < spec.Activations.Count; i++)
                module.AddHook(activationNames[i], spec.Activations[i].Apply, keepsValue: false);
        }
        catch
        {
            module.Dispose();
            throw;
        }
        return module;
    }

    static (OnnxModel Model, string[] Weights, string[] Activations) Separate(OnnxModel folded, QuantizationSpec spec)
    {
        var graph = folded.Graph;
        string[] weights = spec.Weights.Select(w => w.Weight).ToArray();
        string[] activations = spec.Activations.Select(a => a.Value).ToArray();
        var nodes = graph.Node.ToList();

        bool WeightShared(WeightQuantization w) =>
            nodes.Any(n => n.Name != w.Node && n.Input.Contains(w.Weight)) || graph.Output.Any(o => o.Name == w.Weight);
        var outputs = graph.Output.Select(o => o.Name).ToHashSet(StringComparer.Ordinal);
        bool Separated(ActivationQuantization a) => outputs.Contains(a.Value) || a.FloatReaders.Count > 0;
        if (!spec.Weights.Any(WeightShared) && !spec.Activations.Any(Separated))
            return (folded, weights, activations);

        var proto = folded.Proto.Clone();
        graph = proto.Graph;
        var names = new NameSet(graph);
        for (int i = 0; i < spec.Weights.Count; i++)
        {
            var w = spec.Weights[i];
            if (!WeightShared(w)) continue;
            var copy = graph.Initializer.First(t => t.Name == w.Weight).Clone();
            copy.Name = names.Unique($"{w.Weight}_{w.Node}_simulated");
            graph.Initializer.Add(copy);
            var node = graph.Node.First(n => n.Name == w.Node);
            for (int k = 0; k < node.Input.Count; k++)
                if (node.Input[k] == w.Weight) node.Input[k] = copy.Name;
            weights[i] = copy.Name;
        }
        for (int i = 0; i < activations.Length; i++)
        {
            string v = activations[i];
            if (!Separated(spec.Activations[i])) continue;
            string read = names.Unique($"{v}_simulated");
            foreach (var n in graph.Node.Where(n => !spec.Activations[i].FloatReaders.Contains(n.Name)))
                for (int k = 0; k < n.Input.Count; k++)
                    if (n.Input[k] == v) n.Input[k] = read;
            var identity = new NodeProto { Name = names.Unique($"{v}_Identity"), OpType = "Identity" };
            identity.Input.Add(v);
            identity.Output.Add(read);
            graph.Node.Add(identity);
            activations[i] = read;
        }
        return (OnnxModel.FromProto(proto, folded.Path), weights, activations);
    }
}
