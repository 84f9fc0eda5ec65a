using Sadg.Graph;
using Sadg.Onnx;
using static TorchSharp.torch;

namespace Sadg.Quantization;

/// <summary>
/// The quantized copy Q of a BN-folded model: a <see cref="GraphModule"/> whose quantized operators read their
/// weights through a <see cref="WeightQuantizer"/> and whose quantized activations pass through an
/// <see cref="ActivationQuantizer"/> (a tensor is quantized once; every node that reads it sees the quantized
/// value). Quantizers start in round-to-nearest mode; an activation quantizer passes values through until it is
/// calibrated.
/// </summary>
public sealed class QuantizedGraph : IDisposable
{
    readonly List<IDisposable> hooks = [];
    readonly Dictionary<string, WeightQuantizer> weightQuantizers = new(StringComparer.Ordinal);
    readonly Dictionary<string, ActivationQuantizer> activationQuantizers = new(StringComparer.Ordinal);
    readonly Dictionary<string, GraphNode> weightOwners = new(StringComparer.Ordinal);

    public QuantizedGraph(OnnxModel foldedModel, QuantizationOptions options, Device? device = null)
    {
        options.Validate();
        Options = options;
        Graph = new GraphModule(foldedModel, device);
        QuantizedNodes = Graph.Nodes.Where(Graph.IsQuantizable).ToList();
        if (QuantizedNodes.Count == 0)
            throw new SadgException(SadgErrorCode.NothingToQuantize,
                "The model has no Conv, Gemm or MatMul with constant weights, so there is nothing to quantize.", foldedModel.Path);

        var policy = options.Policy;
        var activationBits = new Dictionary<string, int>(StringComparer.Ordinal);
        for (int k = 0; k < QuantizedNodes.Count; k++)
        {
            var node = QuantizedNodes[k];
            bool last = k == QuantizedNodes.Count - 1;
            int wBits = k == 0 ? policy.FirstWeightBits : last ? policy.LastBits : options.WeightBits;
            string weight = node.Inputs[1];
            if (!weightQuantizers.ContainsKey(weight))
            {
                var quantizer = new WeightQuantizer(Graph.Weights[weight], wBits, WeightAxis(node));
                quantizer.Mode = WeightRoundingMode.Nearest;
                quantizer.FixedFloor = !options.Ablation.HasFlag(MethodAblation.FloorFollowsScale);
                weightQuantizers[weight] = quantizer;
                weightOwners[weight] = node;
                hooks.Add(Graph.AddHook(weight, quantizer.forward));
            }

            if (options.ActivationBits is not { } aBits || (k == 0 && !policy.QuantizeFirstInput)) continue;
            int bits = last ? policy.LastBits : k == 1 ? policy.SecondInputBits : aBits;
            string input = node.Inputs[0];
            activationBits[input] = Math.Max(bits, activationBits.GetValueOrDefault(input));
        }
        foreach (var (value, bits) in activationBits)
        {
            var quantizer = new ActivationQuantizer(bits) { DropProbability = options.DropProbability };
            activationQuantizers[value] = quantizer;
            hooks.Add(Graph.AddHook(value, x => quantizer.Calibrated ? quantizer.forward(x) : x));
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

    /// <summary>The output-channel axis of a node's weight: 0 for Conv and Gemm with transB = 1, else 1.</summary>
    public static int WeightAxis(GraphNode node) => node.OpType switch
    {
        "Conv" => 0,
        "Gemm" => node.Proto.Attribute.FirstOrDefault(a => a.Name == "transB")?.I == 1 ? 0 : 1,
        _ => 1,
    };

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
            spec.Activations.Add(quantizer.Export(value));
        return spec;
    }

    public void Dispose()
    {
        foreach (var h in hooks) h.Dispose();
        foreach (var q in weightQuantizers.Values) q.Dispose();
        foreach (var q in activationQuantizers.Values) q.Dispose();
        Graph.Dispose();
    }
}
