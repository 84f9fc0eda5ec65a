using System.Globalization;
using Sadg.Graph;
using Sadg.Onnx;
using static TorchSharp.torch;

namespace Sadg.Pipeline;

/// <summary>
/// The FP and the quantized model run by ONNX Runtime on the same images, their outputs compared: the check on the
/// calibration images, and the validation on images the quantization never saw.
/// </summary>
internal static class RuntimeValidation
{
    /// <summary>
    /// <paramref name="runtime"/> fed as <paramref name="source"/> declares its input: [N, C, H, W] images are passed
    /// on as [N, H, W, C] when that input is channels-last (<see cref="InputLayout"/>); as they are otherwise.
    /// </summary>
    [return: System.Diagnostics.CodeAnalysis.NotNullIfNotNull(nameof(runtime))]
    public static RuntimeOutputs? AsDeclared(RuntimeOutputs? runtime, OnnxModel source)
    {
        var inputs = source.RuntimeInputs;
        if (runtime is null || inputs.Count != 1 || !InputLayout.IsChannelsLast(source.Graph, inputs[0].Name)) return runtime;
        return (model, images, shape, cancellationToken) =>
        {
            var nhwc = new float[images.Length];
            InputLayout.ToChannelsLast(images, nhwc, (int)shape[0], (int)shape[1], (int)shape[2], (int)shape[3]);
            return runtime(model, nhwc, [shape[0], shape[2], shape[3], shape[1]], cancellationToken);
        };
    }

    /// <summary>Runs the FP and the quantized model with ONNX Runtime on the same images and compares their outputs.</summary>
    public static RuntimeCheck RunAndCompare(RuntimeOutputs runtime, string stageName, byte[] fpModel, byte[] quantized, float[] pixels, long[] shape,
        OutputKind kind, IPipelineReporter reporter, CancellationToken cancellationToken)
    {
        using var stage = reporter.Stage(stageName, 2);
        float[] fpOutputs = runtime(fpModel, pixels, shape, cancellationToken);
        stage.Report(1);
        float[] qOutputs = runtime(quantized, pixels, shape, cancellationToken);
        stage.Report(2);
        return OutputComparison.Compare("ONNX Runtime (CPU, default graph optimizations)", kind, fpOutputs, qOutputs, (int)shape[0]);
    }

    /// <summary>
    /// Compares the models on the validation images: the user's images (standardized as calibration images are),
    /// else held-out synthetic images, Genie-D generated with <see cref="PipelineOptions.ValidationSeed"/> (never the
    /// calibration images, whatever the calibration method). Returns the comparison and a description of the images
    /// (no paths: it goes into the model and the cached report).
    /// </summary>
    public static (RuntimeCheck Check, string Data) Validate(OnnxModel model, byte[] quantized, byte[] modelBytes, PipelineOptions options,
        OutputKind kind, InputStandardization standardization, RuntimeOutputs runtime, IPipelineReporter reporter, CancellationToken cancellationToken)
    {
        var device = options.Device ?? CPU;
        float[] pixels;
        long[] shape;
        string data;
        if (options.ValidationImages is { } given)
        {
            using var scope = NewDisposeScope();
            var x = standardization.Standardize(given.to(ScalarType.Float32).to(device)).cpu().contiguous();
            pixels = x.data<float>().ToArray();
            shape = x.shape;
            string hash = options.ValidationDataHash is { } h ? $"sha256:{h[..Math.Min(16, h.Length)]}" : "unhashed";
            data = $"validation data {hash} ({shape[0]} images)";
        }
        else
        {
            manual_seed(options.ValidationSeed);
            using var fp = new GraphModule(model, device);
            using var warm = GeneratedCalibration.WarmUp(model, fp, options, standardization, reporter,
                "generating validation images (Genie-D, held-out seed)", cancellationToken, options.ValidationSeed);
            using var all = warm.Images();
            using var scope = NewDisposeScope();
            var x = all.cpu().contiguous();
            pixels = x.data<float>().ToArray();
            shape = x.shape;
            data = $"held-out synthetic images ({shape[0]} Genie-D images, seed {options.ValidationSeed.ToString(CultureInfo.InvariantCulture)})";
        }
        if (shape[0] < 1)
            throw new SadgException(SadgErrorCode.DataInvalid, "The validation data holds no images.");
        cancellationToken.ThrowIfCancellationRequested();
        return (RunAndCompare(runtime, "measuring the agreement on the validation images", modelBytes, quantized, pixels, shape, kind, reporter,
            cancellationToken), data);
    }
}
