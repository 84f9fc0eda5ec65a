using Sadg.Generation;
using Sadg.Graph;
using Sadg.Onnx;
using Sadg.Reconstruction;
using static TorchSharp.torch;

namespace Sadg.Pipeline;

/// <summary>What a model's first output holds; it decides how the ONNX Runtime check compares the quantized model.</summary>
public enum OutputKind
{
    /// <summary>Class scores from a classifier head (Gemm/MatMul, or a 1×1 Conv over a 1×1 map): top-1 agreement.</summary>
    ClassScores,

    /// <summary>Anything else (pooled features, feature maps, boxes, masks): cosine similarity and SQNR of the outputs.</summary>
    Features,
}

/// <summary>
/// The checks <see cref="QuantizationPipeline"/> makes before any long work, so that a model or an option that
/// cannot work fails in seconds with a coded error rather than after generation: options (bits, profile, sample
/// counts, real data), the image input (SADG1102, SADG1107), operators (building the graph, SADG1101; the opset
/// upgrade of the writer), the layers <c>--exclude</c> and <c>--layer-bits</c> name (SADG1406), a size budget below the smallest feasible size (SADG1407), the graph's structure (SADG1401, SADG1103), one run of the model on two images
/// (SADG1104), a float output [N, …] (SADG1404: reconstruction and SADAG compare outputs), and what the method needs
/// (SADG1404): SADAG a last quantized layer, Genie-D and SADAG BatchNormalization statistics or class scores.
/// </summary>
public static class Preflight
{
    /// <summary>Checks <paramref name="model"/> (already given its input shape) and returns what its output is.</summary>
    public static OutputKind Check(OnnxModel model, GraphModule fp, PipelineOptions options)
    {
        CheckOptions(model, options);
        var input = model.GetImageInput();
        if (model.Opset != OpsetUpgrader.TargetOpset) OpsetUpgrader.Upgrade(model.Proto, model.Path);
        var layers = options.Quantization().Layers;
        layers.Check(fp, QuantizeSchema.Exclude.Label, QuantizeSchema.LayerBits.Label, model.Path);
        BlockPartition.Partition(fp, n => fp.IsQuantizable(n) && !layers.IsExcluded(n));
        SizeBudgetSearch.Check(fp, options, model.Path);

        var head = ClassifierHead.TryFind(fp);
        var kind = Probe(model, fp, input, head);
        if (options.Method == CalibrationMethod.Sadag && head is null) ClassifierHead.Find(fp);
        if (options.Method is CalibrationMethod.Sadag or CalibrationMethod.Genie && kind != OutputKind.ClassScores)
        {
            if (!BnStatisticsLoss.HasStatistics(fp))
                throw new SadgException(SadgErrorCode.MethodNotApplicable,
                    $"{Name(model)} has no BatchNormalization statistics and its output is not class scores, so " +
                    $"{QuantizeSchema.Method.Label} {PipelineOptions.MethodName(options.Method)} has nothing to generate images from. Use " +
                    $"Method real with {QuantizeSchema.CalibrationData.Label}, or export the model with BatchNormalization kept.", model.Path);
        }
        return kind;
    }

    static void CheckOptions(OnnxModel model, PipelineOptions options)
    {
        options.Quantization().Validate();
        switch (options.Method)
        {
            case CalibrationMethod.Real:
                var images = options.CalibrationImages
                    ?? throw new SadgException(SadgErrorCode.CalibrationDataInvalid, $"{QuantizeSchema.Method.Label} real needs calibration images ({QuantizeSchema.CalibrationData.Label}).");
                ModelCalibration.CheckCalibrationData(model, images);
                break;
            case CalibrationMethod.Gaussian:
                if (options.ResolvedSamples < 1)
                    throw new SadgException(SadgErrorCode.InvalidOptionValue, $"{QuantizeSchema.Samples.Label} must be at least 1, not {options.ResolvedSamples}.");
                break;
            default:
                GeneratedCalibration.GenerationFor(options).Validate();
                break;
        }
    }

    /// <summary>Runs the model once on two zero images: every node must run, and the output says what kind it is.</summary>
    static OutputKind Probe(OnnxModel model, GraphModule fp, ImageInput input, ClassifierHead? head)
    {
        using var noGrad = no_grad();
        using var scope = NewDisposeScope();
        long[]? featureShape = null;
        using var shape = head is null ? null : fp.AddHook(head.Features, t =>
        {
            featureShape = t.shape;
            return t;
        }, first: true);
        var output = fp.forward(zeros([2, input.Channels, input.Height, input.Width], device: fp.Device));
        if (!output.is_floating_point() || output.dim() < 2)
            throw new SadgException(SadgErrorCode.MethodNotApplicable,
                $"The first output '{fp.OutputNames[0]}' of {Name(model)} is {output.dtype} of rank {output.dim()}" +
                (output.is_floating_point() ? "" : " (class indices, e.g. from a final ArgMax)") + ", but block reconstruction " +
                "and SADAG compare the FP and the quantized model's float outputs [N, …]. Export the model without its final " +
                "ArgMax (output the scores; take the ArgMax in the app).", model.Path);
        long perImage = output.numel() / 2;
        return head is not null && featureShape is not null && perImage >= 2 && head.IsClassifierHead(fp, featureShape, perImage)
            ? OutputKind.ClassScores : OutputKind.Features;
    }

    static string Name(OnnxModel model) => model.Path is { } path ? $"'{Path.GetFileName(path)}'" : "the model";
}
