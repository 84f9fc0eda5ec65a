using System.Diagnostics;
using System.Globalization;
using System.Runtime.InteropServices;
using System.Text;
using System.Text.Json;
using Google.Protobuf;
using Microsoft.ML.OnnxRuntime;
using Sadg.Data;
using Sadg.Generation;
using Sadg.Graph;
using Sadg.Onnx;
using Sadg.Pipeline;
using Sadg.Quantization;
using static TorchSharp.torch;

namespace Sadg.Benchmarks;

/// <summary>
/// The paper's kind of table on the sample model: bit widths × calibration data (Gaussian noise with
/// round-to-nearest, Genie-D, SADAG, 1024 real training images) × seeds; top-1 on the Fashion-MNIST test set with
/// ONNX Runtime, time per stage, peak memory and file size. Writes docs/benchmarks.md and docs/benchmarks.json.
///   dotnet run -c Release --project tests/Sadg.Benchmarks -- quantization [--reduced] [--profile quick|default|paper]
///       [--seeds N] [--bits W8A8,W4A4,W3A3] [--methods gaussian,genie,sadag,real] [--model path] [--data folder]
///       [--out name (docs/name.md and .json; default benchmarks)]
/// --reduced = every bit width and method, one seed, the quick profile (about 15 minutes on 2 cores).
/// </summary>
static class QuantizationBenchmark
{
    sealed record Row(string Bits, string Method, int Seed, double Top1, double GenerateSeconds, double QuantizeSeconds,
        double EvaluateSeconds, long PeakRssBytes, long FileBytes);

    public static int Run(string[] args)
    {
        if (args.Contains("--report-only")) return Rewrite(RepoRoot(), args);
        bool reduced = args.Contains("--reduced");
        string profile = Arg(args, "--profile", reduced ? "quick" : "default");
        int seeds = int.Parse(Arg(args, "--seeds", reduced ? "1" : "3"), CultureInfo.InvariantCulture);
        var bits = Arg(args, "--bits", "W8A8,W4A4,W3A3").Split(',');
        var methods = Arg(args, "--methods", "gaussian,genie,sadag,real").Split(',');
        string root = RepoRoot();
        string modelPath = Arg(args, "--model", Path.Combine(root, "samples", "models", "resnet20-fmnist.onnx"));
        string dataFolder = Arg(args, "--data", "/usr/share/datasets/fashion-mnist");
        set_num_threads(Environment.ProcessorCount);

        var model = OnnxModel.Load(modelPath);
        var meta = model.Proto.MetadataProps.ToDictionary(p => p.Key, p => p.Value);
        float mean = float.Parse(meta["sadg.input_mean"], CultureInfo.InvariantCulture), std = float.Parse(meta["sadg.input_std"], CultureInfo.InvariantCulture);
        using var test = LabelledImages.FromIdx(Path.Combine(dataFolder, "t10k-images-idx3-ubyte.gz"), Path.Combine(dataFolder, "t10k-labels-idx1-ubyte.gz"));
        using var train = LabelledImages.FromIdx(Path.Combine(dataFolder, "train-images-idx3-ubyte.gz"), Path.Combine(dataFolder, "train-labels-idx1-ubyte.gz"), 1024);
        using var testImages = ((test.Images - mean) / std).DetachFromDisposeScope();
        long[] labels = test.Labels.data<long>().ToArray();

        double fp32 = Accuracy(model.Proto, testImages, labels);
        Console.WriteLine($"FP32 top-1 {fp32:P2} on {labels.Length} test images; profile {profile}, {seeds} seed(s)");
        var (generationStep, reconstructionStep) = StepTimes(model);
        Console.WriteLine($"one Genie-D step (batch 64): {generationStep * 1000:F0} ms; one reconstruction step (batch 32, averaged over blocks): {reconstructionStep * 1000:F0} ms");

        var rows = new List<Row>();
        foreach (string b in bits)
        {
            int weightBits = int.Parse(b[1..b.IndexOf('A')], CultureInfo.InvariantCulture), activationBits = int.Parse(b[(b.IndexOf('A') + 1)..], CultureInfo.InvariantCulture);
            foreach (string method in methods)
                for (int seed = 1; seed <= seeds; seed++)
                {
                    var row = RunOne(model, profile, method, weightBits, activationBits, seed, train.Images, testImages, labels, root, saveGrids: !args.Contains("--out"));
                    rows.Add(row with { Bits = b });
                    Console.WriteLine($"{b} {method} seed {seed}: top-1 {row.Top1:P2} (generate {row.GenerateSeconds:F0} s, quantize {row.QuantizeSeconds:F0} s)");
                }
        }
        Write(root, rows, fp32, profile, seeds, args, generationStep, reconstructionStep, modelPath);
        return 0;
    }

    /// <summary>One cell: the library pipeline (as `sadg quantize` runs it), then ONNX Runtime on the test set.</summary>
    static Row RunOne(OnnxModel model, string profile, string method, int weightBits, int activationBits, int seed,
        Tensor realPixels, Tensor testImages, long[] labels, string root, bool saveGrids)
    {
        var options = new PipelineOptions
        {
            WeightBits = weightBits, ActivationBits = activationBits, Profile = profile, Seed = seed,
            Method = method switch
            {
                "gaussian" => CalibrationMethod.Gaussian,
                "genie" => CalibrationMethod.Genie,
                "sadag" => CalibrationMethod.Sadag,
                "real" => CalibrationMethod.Real,
                _ => throw new ArgumentException($"Unknown method '{method}'."),
            },
            // Gaussian noise is the round-to-nearest baseline: no reconstruction.
            ReconstructionSteps = method == "gaussian" ? 0 : null,
            CalibrationImages = method == "real" ? realPixels : null,
            Samples = method == "real" ? (int)realPixels.shape[0] : null,
        };
        using var result = QuantizationPipeline.Quantize(model, options);
        var timings = result.Report.Timings;
        double quantizeSeconds = timings.Where(t => t.Stage == "reconstruction").Sum(t => t.Seconds);
        double generateSeconds = timings.Where(t => t.Stage != "reconstruction" && !t.Stage.Contains("ONNX Runtime")).Sum(t => t.Seconds);
        if (seed == 1 && weightBits == 4 && method is "genie" or "sadag")
        {
            Directory.CreateDirectory(Path.Combine(root, "docs", "images"));
            using var fp = new GraphModule(model);
            var images = result.Images.Images;
            ImageGrid.Save(fp, images.narrow(0, 0, Math.Min(64, images.shape[0])), Path.Combine(root, "docs", "images", $"{method}.png"), columns: 16);
        }
        var watch = Stopwatch.StartNew();
        double top1 = Accuracy(result.Model, testImages, labels);
        return new Row("", method, seed, top1, generateSeconds, quantizeSeconds, watch.Elapsed.TotalSeconds, PeakRss(), result.ModelBytes.Length);
    }

    /// <summary>Seconds per Genie-D step (one batch of 64) and per reconstruction step (batch 32), on this model.</summary>
    static (double Generation, double Reconstruction) StepTimes(OnnxModel model)
    {
        const int steps = 20;
        using var fp = new GraphModule(model);
        var watch = Stopwatch.StartNew();
        using (var warm = SyntheticData.WarmUp(fp, GenerationOptions.Quick with { Images = 64, BatchSize = 64, WarmupSteps = steps })) { }
        double generation = watch.Elapsed.TotalSeconds / steps;
        using var images = SyntheticData.GaussianNoise(fp, 64, 0);
        watch.Restart();
        var (quantized, fold) = ModelQuantizer.Calibrate(model, images, new QuantizationOptions { Iterations = steps });
        int blocks = Sadg.Reconstruction.BlockPartition.Partition(quantized.Graph, quantized.QuantizedNodes.Contains).Count;
        quantized.Dispose();
        return (generation, watch.Elapsed.TotalSeconds / (steps * blocks));
    }

    static double Accuracy(global::Onnx.ModelProto model, Tensor images, long[] labels)
    {
        using var session = new InferenceSession(model.ToByteArray());
        string input = session.InputMetadata.Keys.Single();
        long correct = 0;
        for (long start = 0; start < images.shape[0]; start += 1000)
        {
            using var scope = NewDisposeScope();
            var x = images.narrow(0, start, Math.Min(1000, images.shape[0] - start)).contiguous();
            var dense = new Microsoft.ML.OnnxRuntime.Tensors.DenseTensor<float>(x.data<float>().ToArray(), x.shape.Select(d => (int)d).ToArray());
            using var results = session.Run([NamedOnnxValue.CreateFromTensor(input, dense)]);
            var logits = results[0].AsTensor<float>();
            for (int i = 0; i < x.shape[0]; i++)
            {
                int best = 0;
                for (int c = 1; c < logits.Dimensions[1]; c++) if (logits[i, c] > logits[i, best]) best = c;
                if (best == labels[start + i]) correct++;
            }
        }
        return (double)correct / images.shape[0];
    }

    /// <summary>The process's peak resident set so far (VmHWM), in bytes.</summary>
    static long PeakRss()
    {
        var line = File.Exists("/proc/self/status") ? File.ReadLines("/proc/self/status").FirstOrDefault(l => l.StartsWith("VmHWM:")) : null;
        return line is null ? 0 : long.Parse(line.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1], CultureInfo.InvariantCulture) * 1024;
    }

    static void Write(string root, List<Row> rows, double fp32, string profile, int seeds, string[] args, double generationStep,
        double reconstructionStep, string modelPath, string? commit = null)
    {
        string command = "dotnet run -c Release --project tests/Sadg.Benchmarks -- quantization" + (args.Length > 0 ? " " + string.Join(' ', args) : "");
        commit ??= Git("rev-parse --short HEAD");
        string machine = $"{Environment.ProcessorCount} cores, {RuntimeInformation.OSDescription}, {RuntimeInformation.FrameworkDescription}, TorchSharp CPU";
        var md = new StringBuilder();
        md.AppendLine("# Quantization benchmark: ResNet-20 on Fashion-MNIST");
        md.AppendLine();
        md.AppendLine($"Model `{Path.GetRelativePath(root, modelPath)}` (FP32 top-1 **{fp32:P2}** on the 10,000 test images). Every quantized");
        md.AppendLine("model is written as QDQ ONNX and scored by ONNX Runtime on the same 10,000 test images. Calibration data:");
        md.AppendLine("Gaussian noise with round-to-nearest (no reconstruction); Genie-D images; SADAG images; 1024 real training");
        md.AppendLine($"images (the ceiling). Profile `{profile}`: {GenerationOptions.Profile(profile).Images} synthetic images, " +
            $"{PipelineOptions.ProfileReconstructionSteps(profile)} reconstruction steps per block. Bit policy: first layer W8 with a float input, second layer's input 8-bit, last layer W8A8.");
        md.AppendLine();
        md.AppendLine($"- Machine: {machine}");
        md.AppendLine($"- Commit: {commit}");
        md.AppendLine($"- Command: `{command}`");
        md.AppendLine($"- One Genie-D step (batch 64): {generationStep * 1000:F0} ms; one reconstruction step (batch 32, mean over blocks, calibration included): {reconstructionStep * 1000:F0} ms");
        md.AppendLine();
        md.AppendLine($"| bits | method | top-1 (mean ± std over {seeds} seed{(seeds > 1 ? "s" : "")}) | Δ vs FP32 | generate s | quantize s | peak RSS MB | file KB |");
        md.AppendLine("|---|---|---:|---:|---:|---:|---:|---:|");
        foreach (var group in rows.GroupBy(r => (r.Bits, r.Method)))
        {
            var top1 = group.Select(r => r.Top1).ToArray();
            double m = top1.Average(), s = top1.Length > 1 ? Math.Sqrt(top1.Sum(v => (v - m) * (v - m)) / (top1.Length - 1)) : 0;
            md.AppendLine($"| {group.Key.Bits} | {group.Key.Method} | {m * 100:F2} ± {s * 100:F2} | {(m - fp32) * 100:+0.00;-0.00} | " +
                $"{group.Average(r => r.GenerateSeconds):F0} | {group.Average(r => r.QuantizeSeconds):F0} | {group.Max(r => r.PeakRssBytes) / 1048576} | {group.First().FileBytes / 1024} |");
        }
        md.AppendLine();
        md.AppendLine("Peak RSS is the benchmark process's peak so far (it only grows), not a per-row measurement.");
        md.AppendLine();
        md.AppendLine("## Targets");
        md.AppendLine();
        double? Mean(string bits, string method) =>
            rows.Where(r => r.Bits == bits && r.Method == method).Select(r => r.Top1).DefaultIfEmpty(double.NaN).Average() is var v && !double.IsNaN(v) ? v : null;
        string Verdict(bool met) => met ? "met" : "**missed**";
        foreach (string method in rows.Where(r => r.Bits == "W8A8").Select(r => r.Method).Distinct())
            md.AppendLine($"- W8A8 within 0.3 pt of FP32, {method}: {(Mean("W8A8", method)!.Value - fp32) * 100:+0.00;-0.00} pt, {Verdict(fp32 - Mean("W8A8", method)!.Value <= 0.003)}.");
        if (Mean("W4A4", "sadag") is { } w4)
            md.AppendLine($"- W4A4 SADAG within 2 pt of FP32: {(w4 - fp32) * 100:+0.00;-0.00} pt, {Verdict(fp32 - w4 <= 0.02)}.");
        foreach (string bits in new[] { "W4A4", "W3A3" })
            if (Mean(bits, "sadag") is { } sadag && Mean(bits, "genie") is { } genie)
                md.AppendLine($"- SADAG ≥ Genie-D at {bits}: {sadag * 100:F2} vs {genie * 100:F2}, {Verdict(sadag >= genie)}.");
        md.AppendLine();
        md.AppendLine(seeds == 1
            ? "One seed per cell: differences of a few tenths of a point are within run-to-run noise, so this run cannot rank Genie-D and SADAG; the full table (3 seeds) is the command without --reduced."
            : $"Means over {seeds} seeds; the ± is the sample standard deviation.");
        md.AppendLine();
        md.AppendLine("Synthetic images (seed 1, labelled by the FP32 model's class): Genie-D, then SADAG.");
        md.AppendLine();
        md.AppendLine("![Genie-D](images/genie.png)");
        md.AppendLine();
        md.AppendLine("![SADAG](images/sadag.png)");
        string name = Arg(args, "--out", "benchmarks");
        File.WriteAllText(Path.Combine(root, "docs", $"{name}.md"), md.ToString());
        File.WriteAllText(Path.Combine(root, "docs", $"{name}.json"), JsonSerializer.Serialize(new
        {
            machine, commit, command, profile, seeds, fp32, generationStepMs = generationStep * 1000, reconstructionStepMs = reconstructionStep * 1000,
            rows = rows.Select(r => new { r.Bits, r.Method, r.Seed, r.Top1, r.GenerateSeconds, r.QuantizeSeconds, r.EvaluateSeconds, r.PeakRssBytes, r.FileBytes }),
        }, new JsonSerializerOptions { WriteIndented = true }));
        Console.WriteLine(md);
    }

    /// <summary>Rewrites docs/benchmarks.md from docs/benchmarks.json (after a change to the report's layout).</summary>
    static int Rewrite(string root, string[] args)
    {
        using var json = JsonDocument.Parse(File.ReadAllText(Path.Combine(root, "docs", "benchmarks.json")));
        var r = json.RootElement;
        var rows = r.GetProperty("rows").EnumerateArray().Select(e => new Row(e.GetProperty("Bits").GetString()!, e.GetProperty("Method").GetString()!,
            e.GetProperty("Seed").GetInt32(), e.GetProperty("Top1").GetDouble(), e.GetProperty("GenerateSeconds").GetDouble(),
            e.GetProperty("QuantizeSeconds").GetDouble(), e.GetProperty("EvaluateSeconds").GetDouble(), e.GetProperty("PeakRssBytes").GetInt64(),
            e.GetProperty("FileBytes").GetInt64())).ToList();
        string command = r.GetProperty("command").GetString()!;
        var original = command.Split(" -- quantization").Last().Split(' ', StringSplitOptions.RemoveEmptyEntries);
        Write(root, rows, r.GetProperty("fp32").GetDouble(), r.GetProperty("profile").GetString()!, r.GetProperty("seeds").GetInt32(), original,
            r.GetProperty("generationStepMs").GetDouble() / 1000, r.GetProperty("reconstructionStepMs").GetDouble() / 1000,
            Path.Combine(root, "samples", "models", "resnet20-fmnist.onnx"), r.GetProperty("commit").GetString()!);
        return 0;
    }

    static string Arg(string[] args, string name, string fallback)
    {
        int i = Array.IndexOf(args, name);
        return i >= 0 && i + 1 < args.Length ? args[i + 1] : fallback;
    }

    internal static string RepoRoot()
    {
        for (var dir = new DirectoryInfo(Directory.GetCurrentDirectory()); dir is not null; dir = dir.Parent)
            if (File.Exists(Path.Combine(dir.FullName, "Sadg.BuildTasks.sln"))) return dir.FullName;
        return Directory.GetCurrentDirectory();
    }

    internal static string Git(string arguments)
    {
        try
        {
            using var git = Process.Start(new ProcessStartInfo("git", arguments) { RedirectStandardOutput = true, RedirectStandardError = true })!;
            string text = git.StandardOutput.ReadToEnd().Trim();
            git.WaitForExit();
            return git.ExitCode == 0 ? text : "unknown";
        }
        catch (System.ComponentModel.Win32Exception)
        {
            return "unknown";
        }
    }
}
