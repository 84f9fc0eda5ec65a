using Sadg.Graph;
using Sadg.Onnx;
using static TorchSharp.torch;

namespace Sadg.Quantization;

/// <summary>
/// The error one quantized operator adds when it alone is quantized: its weights rounded to nearest at
/// <see cref="WeightBits"/> and its input at <see cref="InputBits"/> (null: float), everything else float, measured
/// as the SQNR of the model's first output against the FP model's, in dB (higher: less sensitive; infinity: no error).
/// </summary>
public sealed record LayerSensitivity(string Node, string OpType, int WeightBits, int? InputBits, double SqnrDb);

/// <summary>
/// Measures <see cref="LayerSensitivity"/> for every operator <see cref="QuantizedGraph.Plan"/> quantizes: one
/// forward pass per operator over at most <see cref="MaxImages"/> images. Weights use the same round-to-nearest
/// quantizer (and clip search) as Q before reconstruction; an input's scale is calibrated on the FP values it sees.
/// SQNR = 10·log10(Σ y² / Σ (y − ŷ)²) over every image and output element.
/// </summary>
public static class SensitivityAnalysis
{
    /// <summary>The most images a measurement uses (the first ones).</summary>
    public const int MaxImages = 64;

    const int Chunk = 16;

    /// <summary>The sensitivity of each quantized operator of <paramref name="foldedModel"/>, in execution order.</summary>
    /// <param name="foldedModel">The BN-folded model (as <see cref="QuantizedGraph"/> takes it).</param>
    /// <param name="images">Images [N, C, H, W] as the model is fed; the first <see cref="MaxImages"/> are used.</param>
    /// <param name="known">Layers already measured on the same images (e.g. by the size-budget search): a layer whose
    /// node and bits match one of them is taken as it is, not measured again.</param>
    /// <param name="progress">Called after each layer with the layers done and their number.</param>
    public static IReadOnlyList<LayerSensitivity> Measure(OnnxModel foldedModel, Tensor images, QuantizationOptions options,
        Device? device = null, CancellationToken cancellationToken = default, IEnumerable<LayerSensitivity>? known = null,
        Action<int, int>? progress = null)
    {
        var reuse = (known ?? []).ToDictionary(l => l.Node, StringComparer.Ordinal);
        options.Validate();
        using var noGrad = no_grad();
        using var graph = new GraphModule(foldedModel, device);
        using var scope = NewDisposeScope();
        var x = images.narrow(0, 0, Math.Min(MaxImages, images.shape[0])).to(graph.Device);
        var reference = Forward(graph, x).to_type(ScalarType.Float64);
        double signal = reference.Square().sum().item<double>();
        var result = new List<LayerSensitivity>();
        var plan = QuantizedGraph.Plan(graph, options).ToList();
        foreach (var (node, weightBits, inputBits) in plan)
        {
            cancellationToken.ThrowIfCancellationRequested();
            progress?.Invoke(result.Count, plan.Count);
            if (reuse.TryGetValue(node.Name, out var same) && same.WeightBits == weightBits && same.InputBits == inputBits && same.OpType == node.OpType)
            {
                result.Add(same);
                continue;
            }
            using var layerScope = NewDisposeScope();
            string weight = node.Inputs[1];
            using var weightQuantizer = options.NewWeightQuantizer(graph.Weights[weight], weightBits, QuantizedGraph.WeightAxis(node));
            using var activationQuantizer = inputBits is { } bits ? options.NewActivationQuantizer(bits) : null;
            if (activationQuantizer is not null)
            {
                activationQuantizer.Training = false;
                var samples = x.narrow(0, 0, Math.Min(options.ActivationCalibrationSamples, x.shape[0]));
                activationQuantizer.Calibrate(graph.Run(new Dictionary<string, Tensor> { [graph.InputNames[0]] = samples }, [node.Inputs[0]])[node.Inputs[0]]);
            }
            Tensor output;
            using (graph.AddHook(weight, weightQuantizer.forward))
            using (activationQuantizer is null ? null : graph.AddInputHook(node, 0, activationQuantizer.forward))
                output = Forward(graph, x).to_type(ScalarType.Float64);
            double noise = (output - reference).Square().sum().item<double>();
            double sqnr = noise == 0 ? double.PositiveInfinity : 10 * Math.Log10(signal / noise);
            result.Add(new LayerSensitivity(node.Name, node.OpType, weightBits, inputBits, sqnr));
        }
        progress?.Invoke(result.Count, plan.Count);
        return result;
    }

    static Tensor Forward(GraphModule graph, Tensor x)
    {
        var parts = new List<Tensor>();
        for (long start = 0; start < x.shape[0]; start += Chunk)
            parts.Add(graph.forward(x.narrow(0, start, Math.Min(Chunk, x.shape[0] - start))));
        return cat(parts, 0);
    }
}
