using Sadg.Graph;
using Sadg.Onnx;
using static TorchSharp.torch;

namespace Sadg.Quantization;

/// <summary>One quantized operator and its bit widths (<see cref="QuantizedGraph.Plan"/>); <see cref="InputBits"/> null: float input.</summary>
public sealed record PlannedLayer(GraphNode Node, int WeightBits, int? InputBits);

/// <summary>
/// The quantized copy Q of a BN-folded model: a <see cref="GraphModule"/> whose quantized operators read their
/// weights through a <see cref="WeightQuantizer"/> and whose quantized activations pass through an
/// <see cref="ActivationQuantizer"/> (a tensor is quantized once; every node that reads it sees the quantized
/// value, except an excluded operator (<see cref="LayerChoices.Exclude"/>), which reads the float value). Quantizers
/// start in round-to-nearest mode; an activation quantizer passes values through until it is
/// calibrated.
/// </summary>
public sealed class QuantizedGraph : IDisposable
{
    readonly List<IDisposable> hooks = [];
    readonly Dictionary<string, WeightQuantizer> weightQuantizers = new(StringComparer.Ordinal);
    readonly Dictionary<string, ActivationQuantizer> activationQuantizers = new(StringComparer.Ordinal);
    readonly Dictionary<string, GraphNode> weightOwners = new(StringComparer.Ordinal);
    readonly Dictionary<string, IReadOnlyList<string>> floatActivationReaders = new(StringComparer.Ordinal);
    // Corrected biases by name, with the node that reads each (BlockReconstruction.CorrectBiases).
    readonly Dictionary<string, GraphNode> correctedBiases = new(StringComparer.Ordinal);

    public QuantizedGraph(OnnxModel foldedModel, QuantizationOptions options, Device? device = null)
    {
        options.Validate();
        Options = options;
        Graph = new GraphModule(foldedModel, device);
        var plan = Plan(Graph, options);
        QuantizedNodes = plan.Select(p => p.Node).ToList();
        if (QuantizedNodes.Count == 0)
            throw new SadgException(SadgErrorCode.NothingToQuantize,
                Graph.Nodes.Any(Graph.IsQuantizable)
                    ? $"Every {QuantizableOps.Names} with constant weights is excluded, so there is nothing to quantize."
                    : QuantizableOps.NothingToQuantize, foldedModel.Path);

        var activationBits = new Dictionary<string, int>(StringComparer.Ordinal);
        foreach (var (node, wBits, inputBits) in plan)
        {
            string weight = node.Inputs[1];
            if (!weightQuantizers.ContainsKey(weight))
            {
                var quantizer = options.NewWeightQuantizer(Graph.Weights[weight], wBits, WeightAxis(node));
                weightQuantizers[weight] = quantizer;
                weightOwners[weight] = node;
                var readers = Graph.Consumers(weight);
                if (!readers.Any(n => Graph.IsQuantizable(n) && options.Layers.IsExcluded(n)))
                    hooks.Add(Graph.AddHook(weight, quantizer.forward));
                else
                    // An excluded operator that shares the weight reads it in float, as the written model has it.
                    foreach (var reader in readers.Where(n => !(Graph.IsQuantizable(n) && options.Layers.IsExcluded(n))))
                        for (int i = 0; i < reader.Inputs.Count; i++)
                            if (reader.Inputs[i] == weight) hooks.Add(Graph.AddInputHook(reader, i, quantizer.forward));
            }
            if (inputBits is not { } bits) continue;
            string input = node.Inputs[0];
            activationBits[input] = Math.Max(bits, activationBits.GetValueOrDefault(input));
        }
        foreach (var (value, bits) in activationBits)
        {
            var quantizer = options.NewActivationQuantizer(bits);
            activationQuantizers[value] = quantizer;
            Tensor Quantize(Tensor x) => quantizer.Calibrated ? quantizer.forward(x) : x;
            var readers = Graph.Consumers(value);
            var floatReaders = readers.Where(n => Graph.IsQuantizable(n) && options.Layers.IsExcluded(n)).ToList();
            if (floatReaders.Count == 0)
            {
                hooks.Add(Graph.AddHook(value, Quantize, keepsValue: false));
                continue;
            }
            // An excluded operator reads the float value; every other reader reads the quantized one.
            floatActivationReaders[value] = floatReaders.Select(n => n.Name).ToList();
            foreach (var reader in readers.Except(floatReaders))
                for (int i = 0; i < reader.Inputs.Count; i++)
                    if (reader.Inputs[i] == value) hooks.Add(Graph.AddInputHook(reader, i, Quantize));
        }
    }

    public QuantizationOptions Options { get; }

    /// <summary>Q: the BN-folded graph with quantizer hooks.</summary>
    public GraphModule Graph { get; }

    /// <summary>The quantized operators in execution order.</summary>
    public IReadOnlyList<GraphNode> QuantizedNodes { get; }

    /// <summary>Weight quantizers by weight name.</summary>
    public IReadOnlyDictionary<string, WeightQuantizer> WeightQuantizers => weightQuantizers;

    /// <summary>Activation quantizers by the name of the value they quantize.</summary>
    public IReadOnlyDictionary<string, ActivationQuantizer> ActivationQuantizers => activationQuantizers;

    /// <summary>
    /// The quantized operators of <paramref name="graph"/> in execution order, with their weight bits and input bits
    /// (null: float input). Positions follow the model's quantizable operators (<see cref="GraphModule.IsQuantizable"/>)
    /// whether or not some are excluded: the first of them keeps <see cref="BitPolicy.FirstWeightBits"/> and a float
    /// input (unless <see cref="BitPolicy.QuantizeFirstInput"/>), the second's input has
    /// <see cref="BitPolicy.SecondInputBits"/>, the last has <see cref="BitPolicy.LastBits"/> (input:
    /// <see cref="BitPolicy.LastInputBits"/> when set), the others the options' bits. Excluded operators
    /// (<see cref="LayerChoices.Exclude"/>) are left out; <see cref="LayerChoices.WeightBits"/> replaces an operator's
    /// weight bits, its input keeps the bits of its position.
    /// </summary>
    public static IReadOnlyList<PlannedLayer> Plan(GraphModule graph, QuantizationOptions options)
    {
        var policy = options.Policy;
        var all = graph.Nodes.Where(graph.IsQuantizable).ToList();
        var plan = new List<PlannedLayer>();
        for (int k = 0; k < all.Count; k++)
        {
            var node = all[k];
            if (options.Layers.IsExcluded(node)) continue;
            bool last = k == all.Count - 1;
            int weightBits = options.Layers.WeightBits.TryGetValue(node.Name, out int own) ? own
                : k == 0 ? policy.FirstWeightBits : last ? policy.LastBits : options.WeightBits;
            int? inputBits = options.ActivationBits is not { } a || (k == 0 && !policy.QuantizeFirstInput) ? null
                : last ? policy.LastInputBits ?? policy.LastBits : k == 1 ? policy.SecondInputBits : a;
            plan.Add(new PlannedLayer(node, weightBits, inputBits));
        }
        return plan;
    }

    /// <summary>
    /// The output-channel axis of a node's weight, along which it is quantized per channel: 0 for Conv and Gemm with
    /// transB = 1, else 1 (ConvTranspose's [Cin, Cout / group, k…]: a group's output channel j shares the scale of
    /// the other groups' channel j).
    /// </summary>
    public static int WeightAxis(global::Onnx.NodeProto node) => node.OpType switch
    {
        "Conv" => 0,
        "Gemm" => node.Attribute.FirstOrDefault(a => a.Name == "transB")?.I == 1 ? 0 : 1,
        _ => 1,
    };

    /// <inheritdoc cref="WeightAxis(global::Onnx.NodeProto)"/>
    public static int WeightAxis(GraphNode node) => WeightAxis(node.Proto);

    /// <summary>
    /// The float bias of a quantized operator that a correction may change: its third input, a float constant of one
    /// value per output channel that no other node reads (so the written model can carry the new value for this
    /// operator alone). Null when it has none.
    /// </summary>
    public Tensor? CorrectableBias(GraphNode node)
    {
        if (node.Inputs.Count < 3 || node.Inputs[2] is not { Length: > 0 } name || !Graph.Weights.ContainsKey(name)
            || Graph.GetConstant(name) is not { } bias || bias.dim() != 1 || Graph.Consumers(name).Count != 1 || Graph.OutputNames.Contains(name))
            return null;
        return bias;
    }

    /// <summary>Adds <paramref name="shift"/> (one value per output channel) to the bias <see cref="CorrectableBias"/> gives; the export carries the new value.</summary>
    public void CorrectBias(GraphNode node, Tensor shift)
    {
        var bias = CorrectableBias(node) ?? throw new ArgumentException($"Node '{node.Name}' has no bias that can be corrected.", nameof(node));
        using var noGrad = no_grad();
        bias.Add_(shift.to_type(bias.dtype));
        correctedBiases[node.Inputs[2]] = node;
    }

    /// <summary>Turns QDrop on (reconstruction) or off (evaluation) for every activation quantizer.</summary>
    public void SetTraining(bool training)
    {
        foreach (var q in activationQuantizers.Values) q.Training = training;
    }

    /// <summary>The integer form of every quantizer, for the QDQ writer; weights in their final (hard) rounding.</summary>
    public QuantizationSpec Export()
    {
        var spec = new QuantizationSpec();
        foreach (var (weight, quantizer) in weightQuantizers)
            spec.Weights.Add(quantizer.Export(weightOwners[weight].Name, weight));
        foreach (var (value, quantizer) in activationQuantizers.Where(a => a.Value.Calibrated))
            spec.Activations.Add(quantizer.Export(value) with { FloatReaders = floatActivationReaders.GetValueOrDefault(value) ?? [] });
        foreach (var (bias, node) in correctedBiases)
        {
            using var scope = NewDisposeScope();
            spec.Biases.Add(new BiasOverride(node.Name, bias, Graph.GetConstant(bias)!.detach().cpu().to_type(ScalarType.Float32).clone().MoveToOuterDisposeScope()));
        }
        return spec;
    }

    /// <summary>
    /// Stops every quantizer's learned values (scales, rounding variables) from requiring gradients, for a model that
    /// is only run from now on, such as SADAG's Q₀ while the images are refined through it. Its runs then build no
    /// graph for those values, and each activation quantizer keeps a one-byte mask for the backward pass instead of
    /// also the per-element gradient of its scale: at 224² that halves what a pass through Q₀ holds
    /// (docs/benchmarks/mobilenet-224-quick.md).
    /// </summary>
    public void Freeze()
    {
        foreach (var q in weightQuantizers.Values)
        {
            q.Scale.requires_grad_(false);
            q.RoundingVariable.requires_grad_(false);
        }
        foreach (var q in activationQuantizers.Values) q.Scale.requires_grad_(false);
    }

    public void Dispose()
    {
        foreach (var h in hooks) h.Dispose();
        foreach (var q in weightQuantizers.Values) q.Dispose();
        foreach (var q in activationQuantizers.Values) q.Dispose();
        Graph.Dispose();
    }
}
