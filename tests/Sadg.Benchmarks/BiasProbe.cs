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
        var (test, real, description) = StepsBenchmark.Arg(args, "--resize", "") is "" ? QuantizationBenchmark.LoadData(model, folder, null) : WholeFolder(model, folder, args);
        using var testSet = test;
        using var realSet = real;
        var fed = InputStandardization.FromMetadata(model);
        using var outer = NewDisposeScope();
        var testImages = fed.Standardize(test.Images);
        var (w, a) = QuantizationBenchmark.Bits(bits);
        Console.WriteLine($"{modelPath}, {bits}, {(genie ? $"Genie-D images and reconstruction of the {profile} profile" : $"{steps} steps per block")}; {description}");
        for (int seed = 1; seed <= seeds; seed++)
        {
            using var scope = NewDisposeScope();
            var options = new QuantizationOptions { WeightBits = w, ActivationBits = a, Iterations = steps, Seed = seed };
            var calibration = fed.Standardize(real.Images);
            var pipeline = new PipelineOptions { WeightBits = w, ActivationBits = a, Profile = profile, Seed = seed, Method = CalibrationMethod.Genie };
            using var generated = genie ? GenieImages(model, pipeline) : null;
            if (generated is not null)
            {
                calibration = generated;
                options = pipeline.Quantization();
            }
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

    /// <summary>Every image of the folder as the test set (resized, cropped and standardized as the options say); no real calibration images.</summary>
    static (LabelledImages Test, LabelledImages Real, string Description) WholeFolder(OnnxModel model, string folder, string[] args)
    {
        var input = model.GetImageInput();
        ImageResize.TryParse(StepsBenchmark.Arg(args, "--resize", ""), out var resize);
        var crop = StepsBenchmark.Arg(args, "--crop", "none") == "center" ? CropMode.Center : CropMode.None;
        var all = ImageFolder.Read(folder, input.Channels, input.Height, input.Width, resize: resize, crop: crop);
        double mean = QuantizationBenchmark.Number(args, "--mean") ?? 0, std = QuantizationBenchmark.Number(args, "--std") ?? 1;
        var images = all.Images.Sub(mean).Div(std).DetachFromDisposeScope();
        var test = new LabelledImages(images, all.Labels.clone().DetachFromDisposeScope());
        all.Dispose();
        var none = new LabelledImages(images.narrow(0, 0, 1).clone().DetachFromDisposeScope(), test.Labels.narrow(0, 0, 1).clone().DetachFromDisposeScope());
        return (test, none, $"image folder `{folder}`, all {test.Count} images, --resize {resize} --crop {crop}, (x − {mean}) / {std}");
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
