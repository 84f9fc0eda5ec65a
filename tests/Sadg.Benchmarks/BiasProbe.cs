using System.Globalization;
using Sadg.Data;
using Sadg.Generation;
using Sadg.Graph;
using Sadg.Onnx;
using Sadg.Options;
using Sadg.Pipeline;
using Sadg.Quantization;
using Sadg.Reconstruction;
using static TorchSharp.torch;

namespace Sadg.Benchmarks;

/// <summary>
/// How much of a quantized model's error is a per-channel mean shift of its layers' outputs: quantizes a model on its
/// real calibration images (block reconstruction at the default budget), scores the quantized graph in TorchSharp on
/// the test images, then corrects each quantized layer's bias, in execution order, by the mean over the calibration
/// images of (FP output − quantized output) per output channel (empirical bias correction), and scores it again.
///   dotnet run -c Release --project tests/Sadg.Benchmarks -- bias [--model M.onnx --data FOLDER] [--bits W8A3] [--seeds 1] [--steps 500]
/// With <c>--calibration genie --profile P</c> the calibration images are the profile's Genie-D images (zero-shot; the
/// reconstruction and its budget the profile's) and the correction is measured on them; with <c>--resize N --crop center
/// --mean m --std s</c> the whole image folder is the test set, read as <c>sadg evaluate</c> reads it with those options
/// (for a folder with fewer than 100 images per class, such as one ImageNet image per class).
/// </summary>
static class BiasProbe
{
    public static int Run(string[] args)
    {
        string modelPath = QuantizationBenchmark.ModelPath(QuantizationBenchmark.RepoRoot(), args, Directory.GetCurrentDirectory());
        string folder = QuantizationBenchmark.DataFolder(args);
        string bits = StepsBenchmark.Arg(args, "--bits", "W8A3");
        int seeds = int.Parse(StepsBenchmark.Arg(args, "--seeds", "1"), CultureInfo.InvariantCulture);
        int steps = int.Parse(StepsBenchmark.Arg(args, "--steps", "500"), CultureInfo.InvariantCulture);
        set_num_threads(Environment.ProcessorCount);
        bool genie = StepsBenchmark.Arg(args, "--calibration", "real") == "genie";
        var profile = Enum.Parse<StepProfile>(StepsBenchmark.Arg(args, "--profile", "default"), ignoreCase: true);
        var model = OnnxModel.Load(modelPath);
        bool wholeFolder = StepsBenchmark.Arg(args, "--resize", "") is not "";
        if (wholeFolder && !genie)
            throw new ArgumentException("--resize scores the whole folder and leaves no real calibration images: add --calibration genie.");
        var (test, real, description) = wholeFolder ? WholeFolder(model, folder, args) : QuantizationBenchmark.LoadData(model, folder, null);
        using var testSet = test;
        using var realSet = real;
        var fed = Standardization(model, args);
        using var outer = NewDisposeScope();
        var testImages = fed.Standardize(test.Images);
        var (w, a) = QuantizationBenchmark.Bits(bits);
        Console.WriteLine($"{modelPath}, {bits}, {(genie ? $"Genie-D images and reconstruction of the {profile} profile" : $"{steps} steps per block")}; {description}");
        for (int seed = 1; seed <= seeds; seed++)
        {
            using var scope = NewDisposeScope();
            var options = new QuantizationOptions { WeightBits = w, ActivationBits = a, Iterations = steps, Seed = seed };
            var pipeline = new PipelineOptions { WeightBits = w, ActivationBits = a, Profile = profile, Seed = seed, Method = CalibrationMethod.Genie };
            using var generated = genie ? GenieImages(model, pipeline) : null;
            if (generated is not null) options = pipeline.Quantization();
            var calibration = generated ?? fed.Standardize(real!.Images);
            using var calibrated = ModelCalibration.Calibrate(model, calibration, options);
            var q = calibrated.Quantized;
            using var fp = new GraphModule(calibrated.Fold.Model);
            double fpTop1 = Top1(fp, testImages, test.Labels), before = Top1(q.Graph, testImages, test.Labels);
            int corrected = 0;
            double shiftShare = 0;
            foreach (var node in q.QuantizedNodes)
            {
                if (node.Inputs.Count < 3 || node.Inputs[2].Length == 0 || !q.Graph.Weights.TryGetValue(node.Inputs[2], out var bias)) continue;
                using var inner = NewDisposeScope();
                using var noGrad = no_grad();
                var error = Outputs(fp, calibration, node.Outputs[0]) - Outputs(q.Graph, calibration, node.Outputs[0]);
                var axes = Enumerable.Range(0, (int)error.dim()).Where(d => d != 1).Select(d => (long)d).ToArray();
                var shift = error.mean(axes);
                // The share of the layer's squared error that the per-channel mean explains.
                shiftShare += shift.Square().sum().Mul(error.numel() / error.shape[1]).item<float>() / Math.Max(1e-30, error.Square().sum().item<float>());
                bias.Add_(shift.to_type(bias.dtype));
                corrected++;
            }
            double after = Top1(q.Graph, testImages, test.Labels);
            Console.WriteLine($"seed {seed}: FP32 {fpTop1:0.00}, quantized {before:0.00}, bias-corrected {after:0.00} ({after - before:+0.00;-0.00}); " +
                $"{corrected} layers, the mean shift was {100 * shiftShare / Math.Max(1, corrected):0.0} % of a layer's squared error on average");
        }
        return 0;
    }

    /// <summary>The Genie-D images the pipeline makes with <paramref name="pipeline"/>; the caller disposes them.</summary>
    static Tensor GenieImages(OnnxModel model, PipelineOptions pipeline)
    {
        using var warm = QuantizationPipeline.WarmUp(model, pipeline);
        return warm.Images();
    }

    /// <summary>
    /// Every image of the folder as the test set, in [0, 1], resized and cropped as <c>--resize</c> and <c>--crop</c> say
    /// (parsed as <c>sadg evaluate</c> parses them); no real calibration images.
    /// </summary>
    static (LabelledImages Test, LabelledImages? Real, string Description) WholeFolder(OnnxModel model, string folder, string[] args)
    {
        var input = model.GetImageInput();
        string resizeText = StepsBenchmark.Arg(args, "--resize", ""), cropText = StepsBenchmark.Arg(args, "--crop", "none");
        if (!ImageResize.TryParse(resizeText, out var resize)) throw new ArgumentException($"--resize {resizeText}: give N or model.");
        if (!QuantizeSchema.TryName(cropText, out CropMode crop)) throw new ArgumentException($"--crop {cropText}: give none or center.");
        var test = ImageFolder.Read(folder, input.Channels, input.Height, input.Width, resize: resize, crop: crop);
        return (test, null, $"image folder `{folder}`, all {test.Count} images, --resize {resize} --crop {cropText}");
    }

    /// <summary>What the test images are fed through: <c>--mean</c>/<c>--std</c> when given (as for <c>sadg evaluate</c>), else the model's metadata.</summary>
    static InputStandardization Standardization(OnnxModel model, string[] args)
    {
        string mean = StepsBenchmark.Arg(args, "--mean", ""), std = StepsBenchmark.Arg(args, "--std", "");
        if (mean is "" && std is "") return InputStandardization.FromMetadata(model);
        if (!NumberLists.TryParse(mean, out var m) || !NumberLists.TryParse(std, out var d))
            throw new ArgumentException("Give both --mean and --std, each one number or one per channel.");
        return InputStandardization.FromNormalization(m!, d!, model.GetImageInput().Channels, "--mean", "--std");
    }

    /// <summary>A graph's <paramref name="value"/> for every image, in chunks, without gradients.</summary>
    static Tensor Outputs(GraphModule graph, Tensor images, string value)
    {
        using var noGrad = no_grad();
        var parts = new List<Tensor>();
        for (long start = 0; start < images.shape[0]; start += 256)
        {
            using var scope = NewDisposeScope();
            var x = images.narrow(0, start, Math.Min(256, images.shape[0] - start));
            parts.Add(graph.Run(new Dictionary<string, Tensor> { [graph.InputNames[0]] = x }, [value])[value].detach().MoveToOuterDisposeScope());
        }
        return cat(parts, 0);
    }

    static double Top1(GraphModule graph, Tensor images, Tensor labels)
    {
        using var scope = NewDisposeScope();
        var logits = Outputs(graph, images, graph.OutputNames[0]);
        return 100.0 * logits.flatten(1).argmax(1).eq(labels).to_type(ScalarType.Float32).mean().item<float>();
    }
}
