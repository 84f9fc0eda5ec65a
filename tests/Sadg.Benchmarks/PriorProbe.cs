using System.Globalization;
using Sadg.Data;
using Sadg.Generation;
using Sadg.Graph;
using Sadg.Onnx;
using Sadg.Pipeline;
using static TorchSharp.torch;

namespace Sadg.Benchmarks;

/// <summary>
/// What the inferred input prior is measured against: the statistics of real images of a model, as the model is fed
/// them, beside the prior <see cref="InputPrior.FitToFirstBatchNorm"/> infers from the model alone, and the first
/// BatchNormalization node's statistics term for real images whose contrast about their own mean is scaled by a
/// (a = 1: the images as they are) and then shifted by a share of their per-image std, so that one sees whether that
/// term is smallest at the real contrast and brightness. Each fit's time is printed (three seeds).
///   dotnet run -c Release --project tests/Sadg.Benchmarks -- prior --model M.onnx [--data FOLDER] [--scale K]
/// Without --data it fits and times the prior only. --scale: the model is fed K × pixels in [0, 1] (255 for a model fed 0..255).
/// </summary>
static class PriorProbe
{
    public static int Run(string[] args)
    {
        string modelPath = StepsBenchmark.Arg(args, "--model", "");
        string folder = StepsBenchmark.Arg(args, "--data", "");
        double scale = double.Parse(StepsBenchmark.Arg(args, "--scale", "1"), CultureInfo.InvariantCulture);
        set_num_threads(Environment.ProcessorCount);
        var model = OnnxModel.Load(modelPath);
        var input = model.GetImageInput();
        using var fp = new GraphModule(model);
        for (int seed = 1; seed <= 3; seed++)
        {
            var clock = System.Diagnostics.Stopwatch.StartNew();
            var prior = InputPrior.FitToFirstBatchNorm(fp, input.Channels, input.Height, input.Width, seed);
            Console.WriteLine($"fit, seed {seed} ({clock.Elapsed.TotalSeconds:0.0} s): {prior}");
        }
        if (folder == "") return 0;
        var (test, real, description) = QuantizationBenchmark.LoadData(model, folder, null);
        test.Dispose();
        using var realSet = real;
        using var scope = NewDisposeScope();
        // As the model is fed them: its metadata's normalization (none: the pixels in [0, 1]), times --scale.
        var fed = InputStandardization.FromMetadata(model);
        var x = fed.Standardize(real.Images).Mul(scale);
        var flat = x.flatten(2);
        var imageMean = flat.mean([2]);
        var imageStd = flat.std(2, unbiased: false);
        var batch = x.transpose(0, 1).flatten(1);
        Console.WriteLine($"{modelPath}: {x.shape[0]} real calibration images ({description}), fed ×{scale.ToString(CultureInfo.InvariantCulture)} after {fed}");
        Console.WriteLine($"  batch mean per channel        {List(batch.mean([1]))}");
        Console.WriteLine($"  batch std per channel         {List(batch.std(1, unbiased: false))}");
        Console.WriteLine($"  per-image mean: average       {List(imageMean.mean([0]))}, spread {List(imageMean.std(0, unbiased: false))}");
        Console.WriteLine($"  per-image std: average        {List(imageStd.mean([0]))}, spread {List(imageStd.std(0, unbiased: false))}");
        Console.WriteLine($"  spectrum: amplitude ∝ f^-{SpectralSlope(x).ToString("0.00", CultureInfo.InvariantCulture)} (radial average, images less their mean)");

        using var bn = new BnStatisticsLoss(fp, prior: null, firstOnly: true);
        using var all = new BnStatisticsLoss(fp, prior: null);
        // The first BN's and all BNs' statistics terms for `images`.
        string Terms(Tensor images)
        {
            var t = StatisticsTerms(fp, images, bn, all);
            return $"first BN term {t[0]:0.0000}, all BN {t[1]:0.0000}";
        }
        var imageMeans = x.mean([2, 3], keepdim: true);
        foreach (double a in new[] { 0.6, 0.8, 0.9, 1.0, 1.1, 1.25, 1.5 })
        {
            using var inner = NewDisposeScope();
            using var noGrad = no_grad();
            Console.WriteLine($"  contrast ×{a:0.00}: {Terms((x - imageMeans).Mul(a).Add(imageMeans))}");
        }
        double spread = imageStd.mean().item<float>();
        foreach (double shift in new[] { -0.3, -0.2, -0.1, 0.0, 0.1 })
        {
            using var inner = NewDisposeScope();
            using var noGrad = no_grad();
            Console.WriteLine($"  shifted by {shift:+0.0;-0.0;0.0} × their std: {Terms(x.Add(shift * spread))}");
        }
        return 0;
    }

    /// <summary>The slope α of log amplitude against log frequency, radially averaged, over the images less their mean.</summary>
    static double SpectralSlope(Tensor x)
    {
        using var scope = NewDisposeScope();
        long h = x.shape[2], w = x.shape[3];
        var centred = x - x.mean([2, 3], keepdim: true);
        var amplitude = fft.rfft2(centred).abs().mean([0, 1]);
        var fy = fft.fftfreq(h).reshape(-1, 1);
        var fx = fft.rfftfreq(w).reshape(1, -1);
        var radius = fy.Square().Add(fx.Square()).sqrt();
        var (r, amp) = (radius.flatten().data<float>().ToArray(), amplitude.flatten().data<float>().ToArray());
        var points = r.Zip(amp).Where(p => p.First > 1.5 / Math.Max(h, w) && p.First < 0.45).Select(p => (X: Math.Log(p.First), Y: Math.Log(p.Second))).ToList();
        double mx = points.Average(p => p.X), my = points.Average(p => p.Y);
        return -points.Sum(p => (p.X - mx) * (p.Y - my)) / points.Sum(p => (p.X - mx) * (p.X - mx));
    }

    /// <summary>
    /// Each of <paramref name="losses"/>' BN statistics term (they must hook <paramref name="fp"/>) for one run of
    /// <paramref name="fp"/> on <paramref name="images"/>, without a graph.
    /// </summary>
    internal static double[] StatisticsTerms(GraphModule fp, Tensor images, params BnStatisticsLoss[] losses)
    {
        using var noGrad = no_grad();
        using var scope = NewDisposeScope();
        fp.Run(new Dictionary<string, Tensor> { [fp.InputNames[0]] = images }, fp.OutputNames.ToList());
        var terms = losses.Select(l => (double)l.Statistics().item<float>()).ToArray();
        foreach (var l in losses) l.Clear();
        return terms;
    }

    static string List(Tensor t) => "[" + string.Join(", ", t.cpu().data<float>().ToArray().Select(v => v.ToString("0.###", CultureInfo.InvariantCulture))) + "]";
}
