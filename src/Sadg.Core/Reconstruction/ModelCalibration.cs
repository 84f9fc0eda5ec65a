using Sadg.Graph;
using Sadg.Onnx;
using Sadg.Quantization;
using static TorchSharp.torch;

namespace Sadg.Reconstruction;

/// <summary>
/// A BN-folded model's quantized graph, calibrated (and reconstructed, if the options asked) on a set of images,
/// with how each block's reconstruction ended. Owns the graph.
/// </summary>
public sealed class CalibratedModel(QuantizedGraph quantized, FoldResult fold, IReadOnlyList<BlockOutcome> blocks) : IDisposable
{
    /// <summary>Q: the folded graph with its quantizers (also SADAG's warm-up model Q₀).</summary>
    public QuantizedGraph Quantized { get; } = quantized;

    /// <summary>The BN-folded model Q was built from.</summary>
    public FoldResult Fold { get; } = fold;

    /// <summary>How each block's reconstruction ended (empty without reconstruction).</summary>
    public IReadOnlyList<BlockOutcome> Blocks { get; } = blocks;

    public void Dispose() => Quantized.Dispose();
}

/// <summary>FP32 model + calibration images (synthetic or real) → BatchNorm folded, quantized with the bit policy, calibrated and reconstructed block by block.</summary>
public static class ModelCalibration
{
    /// <summary>Checks that calibration images fit the model's image input: [N, C, H, W], float, N ≥ 1.</summary>
    public static void CheckCalibrationData(OnnxModel model, Tensor images)
    {
        var input = model.GetChannelsFirstImageInput();
        bool ok = images.dim() == 4 && images.shape[0] >= 1 && images.shape[1] == input.Channels
            && images.shape[2] == input.Height && images.shape[3] == input.Width && images.is_floating_point();
        if (!ok)
            throw new SadgException(SadgErrorCode.CalibrationDataInvalid,
                $"Calibration data has shape [{string.Join(", ", images.shape)}] ({images.dtype}), but the model's input '{input.Name}' " +
                $"takes float images [N, {input.Channels}, {input.Height}, {input.Width}]. Give images of that size.", model.Path);
    }

    /// <summary>
    /// Folds BatchNorm and builds the quantized graph Q calibrated (and, if the options ask, reconstructed and its scales
    /// tuned on the output: <see cref="OutputTuning"/>) on <paramref name="images"/>. The caller owns the result.
    /// </summary>
    public static CalibratedModel Calibrate(OnnxModel model, Tensor images, QuantizationOptions options,
        Device? device = null, IProgress<ReconstructionProgress>? progress = null, CancellationToken cancellationToken = default,
        IProgress<TuningProgress>? tuningProgress = null)
    {
        options.Validate();
        // The pipeline hands over a canonical model; a caller of this entry point may not. A weight read by two
        // quantized layers is one quantizer in Q but is written for its first reader only, so each gets its own copy.
        model = GraphCanonicalization.Canonical(model);
        CheckCalibrationData(model, images);
        var fold = BatchNormFolding.FoldWithReport(model);
        var quantized = new QuantizedGraph(fold.Model, options, device);
        try
        {
            using var fp = new GraphModule(fold.Model, device);
            using var scope = NewDisposeScope();
            var onDevice = images.to(quantized.Graph.Device);
            var blocks = BlockReconstruction.Run(quantized, fp, onDevice, progress, cancellationToken);
            OutputTuning.Run(quantized, fp, onDevice, options.OutputTuningSteps, tuningProgress, cancellationToken);
            return new CalibratedModel(quantized, fold, blocks);
        }
        catch
        {
            quantized.Dispose();
            throw;
        }
    }
}
