using System.Globalization;
using Onnx;
using Sadg.Onnx;
using Sadg.Quantization;
using Sadg.Reconstruction;
using static TorchSharp.torch;

namespace Sadg.Export;

/// <summary>The bit widths one quantized operator ended with.</summary>
public sealed record LayerBits(string Node, string OpType, int WeightBits, int? InputBits);

/// <summary>A quantized model: the QDQ ONNX model, its integer spec, and what was done to get there.</summary>
public sealed record QuantizationOutcome(ModelProto QdqModel, QuantizationSpec Spec, OnnxModel FoldedModel, int FoldedBatchNorms,
    IReadOnlyList<LayerBits> Layers, IReadOnlyList<BlockOutcome> Blocks)
{
    /// <summary>The quantizable operators left in float (<see cref="LayerChoices.Exclude"/>), in execution order.</summary>
    public IReadOnlyList<string> FloatLayers { get; init; } = [];
}

/// <summary>A calibrated model → the QDQ model (<see cref="Write"/>); or the whole step from images (<see cref="Quantize"/>).</summary>
public static class ModelQuantizer
{
    /// <summary>Calibrates and reconstructs (<see cref="ModelCalibration.Calibrate"/>), then writes the QDQ model.</summary>
    public static QuantizationOutcome Quantize(OnnxModel model, Tensor images, QuantizationOptions options, Device? device = null,
        IProgress<ReconstructionProgress>? progress = null, CancellationToken cancellationToken = default,
        QdqWriter.ActivationStorage storage = QdqWriter.ActivationStorage.Compatible)
    {
        using var calibrated = ModelCalibration.Calibrate(model, images, options, device, progress, cancellationToken);
        return Write(calibrated, storage);
    }

    /// <summary>Exports a calibrated quantized graph as a QDQ model.</summary>
    public static QuantizationOutcome Write(CalibratedModel calibrated, QdqWriter.ActivationStorage storage = QdqWriter.ActivationStorage.Compatible)
    {
        var quantized = calibrated.Quantized;
        var spec = quantized.Export();
        var options = quantized.Options;
        spec.Metadata[SadgMetadata.WeightBits] = options.WeightBits.ToString(CultureInfo.InvariantCulture);
        spec.Metadata[SadgMetadata.ActivationBits] = options.ActivationBits?.ToString(CultureInfo.InvariantCulture) ?? "none";
        spec.Metadata[SadgMetadata.ReconstructionIterations] = options.Iterations.ToString(CultureInfo.InvariantCulture);
        var qdq = QdqWriter.Write(calibrated.Fold.Model, spec, storage);
        var activationBits = spec.Activations.ToDictionary(a => a.Value, a => a.Bits);
        var layers = quantized.QuantizedNodes.Select(n => new LayerBits(n.Name, n.OpType, quantized.WeightQuantizers[n.Inputs[1]].Bits,
            activationBits.TryGetValue(n.Inputs[0], out int b) ? b : null)).ToList();
        var graph = quantized.Graph;
        var floatLayers = graph.Nodes.Where(n => graph.IsQuantizable(n) && !quantized.QuantizedNodes.Contains(n)).Select(n => n.Name).ToList();
        return new QuantizationOutcome(qdq, spec, calibrated.Fold.Model, calibrated.Fold.Folded, layers, calibrated.Blocks) { FloatLayers = floatLayers };
    }
}
