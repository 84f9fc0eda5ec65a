using Onnx;
using Sadg.Graph;
using Sadg.Onnx;
using Sadg.Reconstruction;
using static TorchSharp.torch;

namespace Sadg.Quantization;

/// <summary>The bit widths one quantized operator ended with.</summary>
public sealed record LayerBits(string Node, string OpType, int WeightBits, int? InputBits);

/// <summary>A quantized model: the QDQ ONNX model, its integer spec, and what was done to get there.</summary>
public sealed record QuantizationOutcome(ModelProto QdqModel, QuantizationSpec Spec, OnnxModel FoldedModel, int FoldedBatchNorms,
    IReadOnlyList<LayerBits> Layers, IReadOnlyList<BlockOutcome> Blocks);

/// <summary>
/// FP32 model + calibration images (synthetic or real) → quantized QDQ model: fold BatchNorm, quantize with the
/// bit policy, calibrate and reconstruct block by block, write the QDQ model.
/// </summary>
public static class ModelQuantizer
{
    /// <summary>Checks that calibration images fit the model's image input: [N, C, H, W], float, N ≥ 1.</summary>
    public static void CheckCalibrationData(OnnxModel model, Tensor images)
    {
        var input = model.GetImageInput();
        bool ok = images.dim() == 4 && images.shape[0] >= 1 && images.shape[1] == input.Channels
            && images.shape[2] == input.Height && images.shape[3] == input.Width && images.is_floating_point();
        if (!ok)
            throw new SadgException(SadgErrorCode.CalibrationDataInvalid,
                $"Calibration data has shape [{string.Join(", ", images.shape)}] ({images.dtype}), but the model's input '{input.Name}' " +
                $"takes float images [N, {input.Channels}, {input.Height}, {input.Width}]. Give images of that size.", model.Path);
    }

    /// <summary>
    /// Folds BatchNorm and builds the quantized graph Q calibrated (and, if the options ask, reconstructed) on
    /// <paramref name="images"/>. The caller owns the returned graph (it is also SADAG's warm-up model Q₀).
    /// </summary>
    public static (QuantizedGraph Quantized, FoldResult Fold) Calibrate(OnnxModel model, Tensor images, QuantizationOptions options,
        Device? device = null, IProgress<ReconstructionProgress>? progress = null, CancellationToken cancellationToken = default)
    {
        options.Validate();
        CheckCalibrationData(model, images);
        var fold = BatchNormFolding.FoldWithReport(model);
        var quantized = new QuantizedGraph(fold.Model, options, device);
        try
        {
            using var fp = new GraphModule(fold.Model, device);
            using var scope = NewDisposeScope();
            quantized.Blocks = BlockReconstruction.Run(quantized, fp, images.to(quantized.Graph.Device), progress, cancellationToken);
            return (quantized, fold);
        }
        catch
        {
            quantized.Dispose();
            throw;
        }
    }

    /// <summary>The whole step: calibrate/reconstruct, then write the QDQ model.</summary>
    public static QuantizationOutcome Quantize(OnnxModel model, Tensor images, QuantizationOptions options, Device? device = null,
        IProgress<ReconstructionProgress>? progress = null, CancellationToken cancellationToken = default,
        QdqWriter.ActivationStorage storage = QdqWriter.ActivationStorage.Compatible)
    {
        var (quantized, fold) = Calibrate(model, images, options, device, progress, cancellationToken);
        using (quantized)
            return Write(quantized, fold, storage);
    }

    /// <summary>Exports a calibrated quantized graph as a QDQ model.</summary>
    public static QuantizationOutcome Write(QuantizedGraph quantized, FoldResult fold,
        QdqWriter.ActivationStorage storage = QdqWriter.ActivationStorage.Compatible)
    {
        var spec = quantized.Export();
        var options = quantized.Options;
        spec.Metadata["sadg.weight_bits"] = options.WeightBits.ToString(System.Globalization.CultureInfo.InvariantCulture);
        spec.Metadata["sadg.activation_bits"] = options.ActivationBits?.ToString(System.Globalization.CultureInfo.InvariantCulture) ?? "none";
        spec.Metadata["sadg.reconstruction_iterations"] = options.Iterations.ToString(System.Globalization.CultureInfo.InvariantCulture);
        var qdq = QdqWriter.Write(fold.Model, spec, storage);
        var activationBits = spec.Activations.ToDictionary(a => a.Value, a => a.Bits);
        var layers = quantized.QuantizedNodes.Select(n => new LayerBits(n.Name, n.OpType, quantized.WeightQuantizers[n.Inputs[1]].Bits,
            activationBits.TryGetValue(n.Inputs[0], out int b) ? b : null)).ToList();
        return new QuantizationOutcome(qdq, spec, fold.Model, fold.Folded, layers, quantized.Blocks);
    }
}
