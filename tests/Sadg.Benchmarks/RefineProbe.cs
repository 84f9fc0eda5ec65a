using System.Globalization;
using Sadg.Generation;
using Sadg.Graph;
using Sadg.Onnx;
using Sadg.Pipeline;
using static TorchSharp.torch;

namespace Sadg.Benchmarks;

/// <summary>
/// What SADAG's refinement does to the Genie-D warm-up's images: per seed, one warm-up, then SADAG on it with each
/// number of refinement steps, printing how far the images moved (‖x − x₀‖ / ‖x₀‖), their BN statistics term (all BN
/// layers, the images as one batch), their power on the stride grid (checkerboards) and the quantized model's top-1 on
/// the test images. Zero steps reproduce Genie-D's row exactly: the pipelines differ only in the images.
///   dotnet run -c Release --project tests/Sadg.Benchmarks -- refine --model M.onnx --data FOLDER [--profile quick]
///     [--seeds 3] [--steps 20,100] [--rho R] [--lambda-div L] [--lambda-bn L] [--bits 4]
/// </summary>
static class RefineProbe
{
    public static int Run(string[] args)
    {
        string modelPath = StepsBenchmark.Arg(args, "--model", "");
        string folder = StepsBenchmark.Arg(args, "--data", "");
        var profile = Enum.Parse<StepProfile>(StepsBenchmark.Arg(args, "--profile", "quick"), ignoreCase: true);
        int seeds = int.Parse(StepsBenchmark.Arg(args, "--seeds", "3"), CultureInfo.InvariantCulture);
        int bits = int.Parse(StepsBenchmark.Arg(args, "--bits", "4"), CultureInfo.InvariantCulture);
        int[] steps = StepsBenchmark.Arg(args, "--steps", "20,100").Split(',').Select(s => int.Parse(s, CultureInfo.InvariantCulture)).ToArray();
        var loss = new SadagLossSettings(QuantizationBenchmark.Number(args, "--rho"), LambdaDiv: QuantizationBenchmark.Number(args, "--lambda-div"),
            LambdaBn: QuantizationBenchmark.Number(args, "--lambda-bn"));
        set_num_threads(Environment.ProcessorCount);
        var model = OnnxModel.Load(modelPath);
        var (test, real, _) = QuantizationBenchmark.LoadData(model, folder, null);
        real.Dispose();
        using var testSet = test;
        long[] labels = test.Labels.data<long>().ToArray();
        using var fp = new GraphModule(InputShapes.ForPipeline(model, null));
        using var bn = new BnStatisticsLoss(fp, prior: null);
        double Term(Tensor images) => PriorProbe.StatisticsTerms(fp, images, bn)[0];
        for (int seed = 1; seed <= seeds; seed++)
        {
            var options = new PipelineOptions
            {
                WeightBits = bits, ActivationBits = bits, Profile = profile, Seed = seed, Method = CalibrationMethod.Genie,
                SadagLoss = loss,
            };
            using var warm = QuantizationPipeline.WarmUp(model, options);
            using var x0 = warm.Images();
            using (var genie = QuantizationPipeline.Quantize(model, options, warmUp: warm))
                Console.WriteLine($"seed {seed}, Genie-D: BN term {Term(x0):0.0000}, {Grid(x0)}, top-1 {QuantizationBenchmark.Accuracy(genie.Model, test.Images, labels) * 100:0.00}");
            foreach (int n in steps)
            {
                using var result = QuantizationPipeline.Quantize(model, options with { Method = CalibrationMethod.Sadag, RefinementSteps = n }, warmUp: warm);
                using var scope = NewDisposeScope();
                var x = result.Images.Images;
                double moved = (x - x0).norm().item<float>() / x0.norm().item<float>();
                var perImage = (x - x0).flatten(1).norm(1) / x0.flatten(1).norm(1);
                Console.WriteLine($"seed {seed}, SADAG {n} steps: moved {moved:0.0000} (per image max {perImage.max().item<float>():0.0000}), " +
                    $"BN term {Term(x):0.0000}, {Grid(x)}, top-1 {QuantizationBenchmark.Accuracy(result.Model, test.Images, labels) * 100:0.00}");
            }
        }
        return 0;
    }

    /// <summary>
    /// The share of the images' power (each image less its mean) on the stride grid: at the frequencies that are
    /// multiples of a quarter of the sampling rate along either axis (where strided convolutions leave checkerboards),
    /// against what those lines would hold in a smooth spectrum (their share of all frequencies).
    /// </summary>
    static string Grid(Tensor images)
    {
        using var scope = NewDisposeScope();
        var x = images - images.mean([2, 3], keepdim: true);
        var power = fft.fft2(x).abs().Square().mean([0, 1]); // [H, W]
        long h = power.shape[0], w = power.shape[1];
        var onGrid = zeros([h, w], dtype: ScalarType.Bool);
        for (long k = 1; k < 4; k++)
        {
            if (h % 4 == 0) onGrid[TensorIndex.Single(k * h / 4), TensorIndex.Colon] = true;
            if (w % 4 == 0) onGrid[TensorIndex.Colon, TensorIndex.Single(k * w / 4)] = true;
        }
        var nyquist = zeros([h, w], dtype: ScalarType.Bool);
        nyquist[TensorIndex.Single(h / 2), TensorIndex.Colon] = true;
        nyquist[TensorIndex.Colon, TensorIndex.Single(w / 2)] = true;
        double total = power.sum().item<float>();
        double grid = power.masked_select(onGrid).sum().item<float>() / total;
        double ny = power.masked_select(nyquist).sum().item<float>() / total;
        return $"power on the stride-4 grid {grid:0.0000} (Nyquist lines {ny:0.0000})";
    }
}
