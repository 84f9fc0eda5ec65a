using System.Diagnostics;
using System.Globalization;
using System.Runtime.InteropServices;
using System.Text;
using System.Text.Json;
using Google.Protobuf;
using Microsoft.ML.OnnxRuntime;
using Sadg.Data;
using Sadg.Export;
using Sadg.Generation;
using Sadg.Graph;
using Sadg.Onnx;
using Sadg.Pipeline;
using Sadg.Quantization;
using Sadg.Reconstruction;
using static Sadg.Benchmarks.StepsBenchmark;
using static TorchSharp.torch;

namespace Sadg.Benchmarks;

/// <summary>
/// The paper's kind of table on the sample model: bit widths × calibration data (Gaussian noise with
/// round-to-nearest, Genie-D, SADAG, 1024 real training images) × seeds; top-1 on the Fashion-MNIST test set with
/// ONNX Runtime, time per stage, peak memory and file size. Writes docs/benchmarks.md and docs/benchmarks.json (the
/// synthetic image grids in docs/images only from that full run).
///   dotnet run -c Release --project tests/Sadg.Benchmarks -- quantization [--reduced] [--profile quick|default|paper]
///       [--seeds N] [--first-seed K (seeds K … K+N−1; default 1)] [--bits W8A8,W4A4,W3A3] [--methods gaussian,genie,sadag,real] [--model path] [--data folder]
///       [--out name (docs/name.md and .json; default benchmarks, or benchmarks-reduced with --reduced)] [--resume (keep the rows of an interrupted run)]
///       [--scale-steps relative|absolute|budgetrelative|budgetrelativeweights (the scales' learning rates, ScaleSteps; absolute is the paper's form)]
///       [--rounding-rate step-relative|fixed] [--input-prior auto|off|standardized] [--neighbour random|paper|raw]
///       [--bias-correction depthwise|off]
///       [--ablate FloorFollowsScale|LossSumsPositions|… (MethodAblation: put back one earlier behaviour)]
///       [--size-budget ratio|NKiB|Wb (mixed precision: each run's weight bits chosen to fit; the W of --bits is then only a label)]
///       [--rho r] [--zeta z] [--lambda-div l] [--lambda-bn l] (SADAG's neighbour radius, diversity margin, diversity weight and
///       the refinement's BN-statistics weight; the method's when not given)
///       [--images N] (images the zero-shot methods make; the profile's when not given; real data keeps its own set)
///       [--warmup-steps N] (Genie-D warm-up steps per batch; the profile's when not given)
///       [--refinement-steps N] (SADAG refinement steps per batch; the profile's when not given)
///       [--real-images N] (real calibration images: N/classes of each class's first 100 of an image folder, the first N
///       training images of an IDX folder; 1,000 and 1,024 when not given; the test set does not change)
///       [--reconstruction-steps N] (steps per block of the final reconstruction, Q₀ a fifth of it; the profile's when not given)
///       [--output-tuning N] (steps of OutputTuning, every activation and weight scale tuned together on the model's output; 0 switches
///       it off; the profile's when not given)
/// A bit width written with an M in front (MW4A4) is mixed precision at the nominal size of uniform weights of those bits
/// (--size-budget W4), A bits as given: with the uniform row of the same bits it shares each seed's warm-up images.
/// --reduced = every bit width and method, one seed, the quick profile (about 15 minutes on 2 cores).
/// --report-only --out name rewrites docs/name.md from docs/name.json after a change to the page's layout, with the model
/// and data the JSON records (or, for a JSON written before it recorded them, the ones its command names).
/// --data may be an IDX folder (real calibration: the first 1024 training images; scored on the test set) or an image
/// folder with one subfolder per class (real calibration: the first 100 images of each class; scored on the others).
/// </summary>
static class QuantizationBenchmark
{
    /// <summary>One cell of the table. Warm-up: the Genie-D warm-up, made once per seed and shared by Genie-D and SADAG at
    /// every bit width; Refine: SADAG's Q₀ reconstruction and refinement; Reconstruction: the final quantization.</summary>
    sealed record Row(string Bits, string Method, int Seed, double Top1, double WarmupSeconds, double RefineSeconds,
        double ReconstructionSeconds, double EvaluateSeconds, long PeakRssBytes, long FileBytes);

    /// <summary>Every option the benchmark reads; any other stops it before it starts an hour of work.</summary>
    static readonly string[] KnownOptions = ["--ablate", "--bias-correction", "--bits", "--data", "--first-seed", "--images", "--input-prior",
        "--input-range", "--lambda-bn", "--lambda-div", "--mean", "--methods", "--model", "--neighbour", "--out", "--profile",
        "--real-images", "--reconstruction-steps", "--reduced", "--refinement-steps", "--report-only", "--resume", "--rho",
        "--output-tuning", "--rounding-rate", "--rounding-weight", "--scale-steps", "--seeds", "--size-budget", "--std", "--warmup-steps", "--zeta"];

    public static int Run(string[] args)
    {
        if (args.FirstOrDefault(a => (a.StartsWith("--", StringComparison.Ordinal) && !KnownOptions.Contains(a)) || a is "-h" or "-?") is { } unknown)
        {
            Console.Error.WriteLine($"quantization: unknown option '{unknown}'. Options: {string.Join(" ", KnownOptions)} " +
                "(see the comment at the top of QuantizationBenchmark.cs and docs/benchmarks.md for their use).");
            return 2;
        }
        if (args.Contains("--report-only")) return Rewrite(RepoRoot(), args);
        bool reduced = args.Contains("--reduced");
        string profile = Arg(args, "--profile", reduced ? "quick" : "default");
        int seeds = int.Parse(Arg(args, "--seeds", reduced ? "1" : "3"), CultureInfo.InvariantCulture);
        int firstSeed = int.Parse(Arg(args, "--first-seed", "1"), CultureInfo.InvariantCulture);
        var bits = Arg(args, "--bits", "W8A8,W4A4,W3A3").Split(',');
        var methods = Arg(args, "--methods", "gaussian,genie,sadag,real").Split(',');
        var scaleSteps = Enum.Parse<ScaleSteps>(ScaleStepsArg(args), ignoreCase: true);
        var knobs = new Knobs(scaleSteps, Enum.Parse<RoundingRate>(Arg(args, "--rounding-rate", "step-relative").Replace("-", ""), ignoreCase: true),
            Enum.Parse<InputPriorMode>(Arg(args, "--input-prior", "auto"), ignoreCase: true),
            Enum.Parse<NeighbourMode>(Arg(args, "--neighbour", "random"), ignoreCase: true),
            Enum.Parse<MethodAblation>(Arg(args, "--ablate", "None"), ignoreCase: true),
            QuantizeSchema.TryName(Arg(args, "--bias-correction", "depthwise"), out BiasCorrectionMode biasCorrection) ? biasCorrection
                : throw new ArgumentException($"--bias-correction takes {string.Join(" or ", QuantizeSchema.Names<BiasCorrectionMode>())}."),
            Arg(args, "--size-budget", "") is "" ? null
                : SizeBudget.TryParse(Arg(args, "--size-budget", ""), out var budget) ? budget
                : throw new ArgumentException($"--size-budget takes a ratio in (0, 1], NKiB or Wb, not '{Arg(args, "--size-budget", "")}'."),
            new SadagLossSettings(Number(args, "--rho"), Number(args, "--zeta"), Number(args, "--lambda-div"), Number(args, "--lambda-bn")) is var loss && loss != new SadagLossSettings() ? loss : null,
            Arg(args, "--images", "") is "" ? null : int.Parse(Arg(args, "--images", ""), CultureInfo.InvariantCulture),
            Arg(args, "--warmup-steps", "") is "" ? null : int.Parse(Arg(args, "--warmup-steps", ""), CultureInfo.InvariantCulture),
            Number(args, "--reconstruction-steps") is double r ? (int)r : null,
            Number(args, "--refinement-steps") is double rs ? (int)rs : null,
            Number(args, "--rounding-weight"),
            Number(args, "--output-tuning") is double ot ? (int)ot : null);
        string root = RepoRoot();
        string name = Arg(args, "--out", reduced ? "benchmarks-reduced" : "benchmarks");
        string modelPath = ModelPath(root, args, Directory.GetCurrentDirectory());
        string dataFolder = DataFolder(args);
        set_num_threads(Environment.ProcessorCount);
        // The commit measured, read now: the working tree may move on during a long run.
        string commit = Git("rev-parse --short HEAD") + (Git("status --porcelain --untracked-files=no") is "" or "unknown" ? "" : " (with uncommitted changes)");

        var model = OnnxModel.Load(modelPath);
        var (test, train, dataDescription) = LoadData(model, dataFolder, Number(args, "--real-images") is double ri ? (int)ri : null);
        using var testSet = test;
        using var trainSet = train;
        // --input-range lo,hi or --mean/--std: what the user states the model is fed, as with sadg quantize --input-range or
        // --input-mean/--input-std. The test images are fed that way, and the pipeline maps the real calibration images
        // the same way; without either, as the model's metadata says.
        double[]? range = Arg(args, "--input-range", "") is "" ? null
            : Arg(args, "--input-range", "").Split(',').Select(v => double.Parse(v, NumberStyles.Float, CultureInfo.InvariantCulture)).ToArray();
        if (range is not null && (Arg(args, "--mean", "") != "" || Arg(args, "--std", "") != ""))
            throw new ArgumentException("Give --input-range or --mean/--std, not both.");
        knobs = knobs with
        {
            Input = range is [var lo, var hi] ? InputStandardization.FromRange(lo, hi, (int)test.Images.shape[1])
                : BiasProbe.Standardization(model, args) is { Convention: InputConvention.Normalization } stated ? stated : null,
        };
        var fed = knobs.Input ?? InputStandardization.FromMetadata(model);
        using var testImages = fed.Standardize(test.Images).DetachFromDisposeScope();
        long[] labels = test.Labels.data<long>().ToArray();

        double fp32 = Accuracy(model.Proto, testImages, labels);
        Console.WriteLine($"FP32 top-1 {fp32:P2} on {labels.Length} test images; profile {profile}, {seeds} seed(s)");
        var context = new Context(modelPath, dataDescription, labels.Length, (int)train.Count);
        var (generationStep, reconstructionStep) = StepTimes(InputShapes.ForPipeline(model, null)); // the model as the pipeline runs it
        Console.WriteLine($"one Genie-D step (batch 64): {generationStep * 1000:F0} ms; one reconstruction step (batch 32, averaged over blocks): {reconstructionStep * 1000:F0} ms");

        // --resume keeps the rows of an interrupted run with the same command (docs/<out>.partial.json).
        string partial = Path.Combine(root, "docs", $"{name}.partial.json");
        Directory.CreateDirectory(Path.GetDirectoryName(partial)!); // --out may name a folder that does not exist yet
        var wall = Stopwatch.StartNew();
        var (rows, priorWall) = args.Contains("--resume") ? ReadPartial(partial, CommandLine(args)) : ([], 0);
        if (rows.Count > 0) Console.WriteLine($"resuming: {rows.Count} row(s) from {Path.GetRelativePath(root, partial)}");
        for (int seed = firstSeed; seed < firstSeed + seeds; seed++)
        {
            var todo = bits.SelectMany(b => methods.Select(m => (Bits: b, Method: m)))
                .Where(c => !rows.Any(r => r.Bits == c.Bits && r.Method == c.Method && r.Seed == seed)).ToList();
            if (todo.Count == 0) continue;
            // One Genie-D warm-up per seed serves Genie-D and SADAG at every bit width (it does not depend on the bits).
            SyntheticImages? warm = null;
            double warmSeconds = 0;
            long warmPeak = 0;
            if (todo.Any(c => c.Method is "genie" or "sadag"))
            {
                ResetPeakRss();
                var watch = Stopwatch.StartNew();
                warm = QuantizationPipeline.WarmUp(model, Options(profile, "genie", 4, 4, seed, train.Images, knobs));
                warmSeconds = watch.Elapsed.TotalSeconds;
                warmPeak = PeakRss();
                Console.WriteLine($"seed {seed}: Genie-D warm-up {warmSeconds:F0} s");
            }
            using (warm)
                foreach (var (b, method) in todo)
                {
                    bool mixed = b.StartsWith('M');
                    string uniform = mixed ? b[1..] : b;
                    var (weightBits, activationBits) = Bits(uniform);
                    bool generated = method is "genie" or "sadag";
                    var rowKnobs = mixed ? knobs with { SizeBudget = new SizeBudget(null, null, weightBits) } : knobs;
                    var row = RunOne(model, Options(profile, method, weightBits, activationBits, seed, train.Images, rowKnobs), generated ? warm : null,
                        testImages, labels, root, saveGrids: name == "benchmarks");
                    row = row with
                    {
                        Bits = b, WarmupSeconds = generated ? warmSeconds : 0,
                        PeakRssBytes = generated ? Math.Max(row.PeakRssBytes, warmPeak) : row.PeakRssBytes,
                    };
                    rows.Add(row);
                    WritePartial(partial, CommandLine(args), rows, priorWall + wall.Elapsed.TotalSeconds);
                    Console.WriteLine($"{b} {method} seed {seed}: top-1 {row.Top1:P2} (warm-up {row.WarmupSeconds:F0} s, refine {row.RefineSeconds:F0} s, " +
                        $"reconstruction {row.ReconstructionSeconds:F0} s, peak RSS {row.PeakRssBytes / 1048576} MB)");
                }
        }
        // The table in the order asked for: bit widths, then methods, then seeds.
        rows = rows.OrderBy(r => Array.IndexOf(bits, r.Bits)).ThenBy(r => Array.IndexOf(methods, r.Method)).ThenBy(r => r.Seed).ToList();
        Write(root, rows, fp32, profile, seeds, args, generationStep, reconstructionStep, context, commit, priorWall + wall.Elapsed.TotalSeconds);
        File.Delete(partial);
        return 0;
    }

    /// <summary>The settings a run may change for an experiment (each is part of the written models' options).</summary>
    sealed record Knobs(ScaleSteps ScaleSteps, RoundingRate RoundingRate, InputPriorMode InputPrior, NeighbourMode Neighbour, MethodAblation Ablation,
        BiasCorrectionMode BiasCorrection, SizeBudget? SizeBudget, SadagLossSettings? SadagLoss, int? Images = null, int? WarmupSteps = null,
        int? ReconstructionSteps = null, int? RefinementSteps = null, double? RoundingWeight = null, int? OutputTuning = null,
        InputStandardization? Input = null);

    /// <summary>The number after <paramref name="name"/>, or null when the option is not given.</summary>
    internal static double? Number(string[] args, string name) =>
        Arg(args, name, "") is "" ? null : double.Parse(Arg(args, name, ""), NumberStyles.Float, CultureInfo.InvariantCulture);

    /// <summary>What the table describes: the model, the data and how it was split.</summary>
    sealed record Context(string ModelPath, string Data, int TestImages, int RealImages);

    /// <summary>The weight and activation bits of a uniform bit-width name, <c>W&lt;w&gt;A&lt;a&gt;</c> (e.g. W4A4).</summary>
    internal static (int Weight, int Activation) Bits(string name) =>
        (int.Parse(name[1..name.IndexOf('A')], CultureInfo.InvariantCulture), int.Parse(name[(name.IndexOf('A') + 1)..], CultureInfo.InvariantCulture));

    /// <summary>The model a run quantizes: <c>--model</c> (relative to <paramref name="baseFolder"/>, the run's working folder), or the sample.</summary>
    internal static string ModelPath(string root, string[] args, string baseFolder) =>
        Path.GetFullPath(Arg(args, "--model", Path.Combine(root, "samples", "models", "resnet20-fmnist.onnx")), baseFolder);

    /// <summary>The labelled images a run scores on and calibrates <c>real</c> with: <c>--data</c>, or Fashion-MNIST.</summary>
    internal static string DataFolder(string[] args) => Arg(args, "--data", "/usr/share/datasets/fashion-mnist");

    /// <summary>
    /// The test set and the real calibration set, pixels in [0, 1]. An image folder (one subfolder per class) holds out
    /// the first 100 images of each class and scores on the rest; it calibrates on the first 100 of each class, or on
    /// the first <paramref name="realImages"/>/classes. An IDX folder scores on its test set and calibrates on the first
    /// 1024 training images, or the first <paramref name="realImages"/>.
    /// </summary>
    internal static (LabelledImages Test, LabelledImages Real, string Description) LoadData(OnnxModel model, string folder, int? realImages)
    {
        if (Directory.GetDirectories(folder).Length > 0 && !File.Exists(Path.Combine(folder, "t10k-images-idx3-ubyte.gz")))
        {
            var input = model.GetImageInput();
            const int heldOut = 100;
            int perClass = realImages is int n ? Math.Clamp(n / Directory.GetDirectories(folder).Length, 1, heldOut) : heldOut;
            var real = ImageFolder.Read(folder, input.Channels, input.Height, input.Width, i => i < perClass);
            var test = ImageFolder.Read(folder, input.Channels, input.Height, input.Width, i => i >= heldOut);
            return (test, real, $"image folder `{folder}`: real calibration on the first {perClass} images of each class, every method scored on the {test.Count} after each class's first {heldOut}");
        }
        int count = realImages ?? 1024;
        return (LabelledImages.FromIdx(Path.Combine(folder, "t10k-images-idx3-ubyte.gz"), Path.Combine(folder, "t10k-labels-idx1-ubyte.gz")),
            LabelledImages.FromIdx(Path.Combine(folder, "train-images-idx3-ubyte.gz"), Path.Combine(folder, "train-labels-idx1-ubyte.gz"), count),
            $"IDX folder `{folder}`: real calibration on the first {count} training images, every method scored on the 10,000 test images");
    }

    static PipelineOptions Options(string profile, string method, int weightBits, int activationBits, int seed, Tensor realPixels, Knobs knobs) => new()
    {
        WeightBits = weightBits, ActivationBits = activationBits, Profile = Enum.Parse<StepProfile>(profile, ignoreCase: true), Seed = seed, ScaleSteps = knobs.ScaleSteps,
        RoundingRate = knobs.RoundingRate, RoundingLossWeight = knobs.RoundingWeight, OutputTuningSteps = knobs.OutputTuning, InputPrior = knobs.InputPrior, Neighbour = knobs.Neighbour, Ablation = knobs.Ablation,
        BiasCorrection = knobs.BiasCorrection,
        SizeBudget = knobs.SizeBudget,
        SadagLoss = knobs.SadagLoss,
        Method = method switch
        {
            "gaussian" => CalibrationMethod.Gaussian,
            "genie" => CalibrationMethod.Genie,
            "sadag" => CalibrationMethod.Sadag,
            "real" => CalibrationMethod.Real,
            _ => throw new ArgumentException($"Unknown method '{method}'."),
        },
        // Gaussian noise is the round-to-nearest baseline: no reconstruction.
        ReconstructionSteps = method == "gaussian" ? 0 : knobs.ReconstructionSteps,
        CalibrationImages = method == "real" ? realPixels : null,
        // --images: how many images the zero-shot methods make; real data keeps its own set.
        Samples = method == "real" ? (int)realPixels.shape[0] : knobs.Images,
        WarmupSteps = knobs.WarmupSteps,
        RefinementSteps = knobs.RefinementSteps,
        // --input-range or --mean/--std: what the user states (also the prior for a model without BN).
        Input = knobs.Input,
    };

    /// <summary>One cell: the library pipeline (as `sadg quantize` runs it, with a shared warm-up), then ONNX Runtime on the test set.</summary>
    static Row RunOne(OnnxModel model, PipelineOptions options, SyntheticImages? warm, Tensor testImages, long[] labels, string root, bool saveGrids)
    {
        ResetPeakRss();
        using var result = QuantizationPipeline.Quantize(model, options, warmUp: warm);
        var timings = result.Report.Timings;
        double reconstruction = timings.Where(t => t.Stage == "reconstruction").Sum(t => t.Seconds);
        double refine = timings.Where(t => t.Stage is "reconstruction (Q0)" or "refinement (SADAG)").Sum(t => t.Seconds);
        string method = PipelineOptions.MethodName(options.Method);
        if (saveGrids && options.Seed == 1 && options.WeightBits == 4 && options.Method is CalibrationMethod.Genie or CalibrationMethod.Sadag)
        {
            Directory.CreateDirectory(Path.Combine(root, "docs", "images"));
            using var fp = new GraphModule(InputShapes.ForPipeline(model, null));
            var images = result.Images.Images;
            ImageGrid.Save(fp, images.narrow(0, 0, Math.Min(64, images.shape[0])), Path.Combine(root, "docs", "images", $"{method}.png"), columns: 16);
        }
        if (options.Method is CalibrationMethod.Genie or CalibrationMethod.Sadag)
            Console.WriteLine($"{method} seed {options.Seed}: {ClassSpread(model.Proto, result.Images.Images)}");
        var watch = Stopwatch.StartNew();
        double top1 = Accuracy(result.Model, testImages, labels);
        return new Row("", method, options.Seed, top1, 0, refine, reconstruction, watch.Elapsed.TotalSeconds, PeakRss(), result.ModelBytes.Length);
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
        var quantized = ModelCalibration.Calibrate(model, images, new QuantizationOptions { Iterations = steps }).Quantized;
        int blocks = Sadg.Reconstruction.BlockPartition.Partition(quantized.Graph, quantized.QuantizedNodes.Contains).Count;
        quantized.Dispose();
        return (generation, watch.Elapsed.TotalSeconds / (steps * blocks));
    }

    internal static double Accuracy(global::Onnx.ModelProto model, Tensor images, long[] labels)
    {
        long[] predicted = Predictions(model, images);
        return (double)predicted.Zip(labels).Count(p => p.First == p.Second) / images.shape[0];
    }

    /// <summary>
    /// ONNX Runtime's top-1 class of <paramref name="model"/> for each of <paramref name="images"/> [N, C, H, W]: batches
    /// of 1,000, or full batches of the model's fixed batch (the last padded), fed as the model declares its input.
    /// </summary>
    static long[] Predictions(global::Onnx.ModelProto model, Tensor images)
    {
        using var session = new InferenceSession(model.ToByteArray());
        string input = session.InputMetadata.Keys.Single();
        bool channelsLast = OnnxModel.FromProto(model).GetImageInput().ChannelsLast;
        int declared = session.InputMetadata[input].Dimensions[0];
        float[] pixels;
        using (var x = images.contiguous()) pixels = x.data<float>().ToArray();
        int[] chw = [.. images.shape[1..].Select(d => (int)d)];
        return [.. Sadg.Cli.Pipeline.OrtPredictions.Top1(session, input, session.OutputNames[0], pixels, (int)images.shape[0], chw,
            declared > 0 ? declared : 1000, declared > 0, prepare: null, progress: null, path: null, CancellationToken.None, channelsLast)
            .Select(c => (long)c)];
    }

    /// <summary>How the FP32 model classifies the synthetic images: the count per class, most frequent first, and the
    /// entropy of that distribution in bits (log2 of the class count when balanced).</summary>
    static string ClassSpread(global::Onnx.ModelProto model, Tensor images)
    {
        var counts = Predictions(model, images).GroupBy(c => c).Select(g => g.Count()).OrderByDescending(n => n).ToArray();
        double entropy = -counts.Sum(n => (double)n / images.shape[0] * Math.Log2((double)n / images.shape[0]));
        return $"FP32 classes of the {images.shape[0]} images: {string.Join(' ', counts)} (entropy {entropy:F2} bits)";
    }

    static void ResetPeakRss() => StageClock.ResetPeakResident();

    static long PeakRss() => StageClock.PeakResidentBytes() ?? 0;

    static void Write(string root, List<Row> rows, double fp32, string profile, int seeds, string[] args, double generationStep,
        double reconstructionStep, Context context, string? commit = null, double? wallSeconds = null)
    {
        string modelPath = context.ModelPath;
        bool sample = Path.GetFileName(modelPath) == "resnet20-fmnist.onnx";
        bool depthwiseSample = Path.GetFileName(modelPath) == "mobilenetv2-fmnist.onnx";
        string command = CommandLine(args);
        string name = Arg(args, "--out", args.Contains("--reduced") ? "benchmarks-reduced" : "benchmarks");
        string docs = Path.Combine(root, "docs");
        // Links to docs/cli.md and docs/images from the page's own folder (pages may be written to docs/benchmarks/…).
        string up = Path.GetRelativePath(Path.GetDirectoryName(Path.GetFullPath(Path.Combine(docs, $"{name}.md")))!, docs).Replace('\\', '/');
        string Link(string target) => up == "." ? target : $"{up}/{target}";
        commit ??= Git("rev-parse --short HEAD");
        string machine = $"{Environment.ProcessorCount} cores, {RuntimeInformation.OSDescription}, {RuntimeInformation.FrameworkDescription}, TorchSharp CPU";
        var md = new StringBuilder();
        md.AppendLine(sample ? "# Quantization benchmark: ResNet-20 on Fashion-MNIST"
            : depthwiseSample ? "# Quantization benchmark: the depthwise sample (MobileNetV2-style) on Fashion-MNIST"
            : $"# Quantization benchmark: {Path.GetFileNameWithoutExtension(modelPath)}");
        md.AppendLine();
        md.AppendLine($"Model `{Path.GetRelativePath(root, modelPath)}` (FP32 top-1 **{fp32:P2}** on the {context.TestImages:N0} test images). Every quantized");
        md.AppendLine($"model is written as QDQ ONNX and scored by ONNX Runtime on the same {context.TestImages:N0} test images. Data: {context.Data}.");
        md.AppendLine($"Calibration data: Gaussian noise with round-to-nearest (no reconstruction); Genie-D images; SADAG images; {context.RealImages} real");
        var stepProfile = Enum.Parse<StepProfile>(profile, ignoreCase: true);
        var budgets = GenerationOptions.Profile(stepProfile);
        md.AppendLine($"images (the ceiling). Profile `{profile}`: {Arg(args, "--images", budgets.Images.ToString(CultureInfo.InvariantCulture))} synthetic images, " +
            $"{Arg(args, "--warmup-steps", budgets.WarmupSteps.ToString(CultureInfo.InvariantCulture))} warm-up steps per batch, " +
            $"{Arg(args, "--refinement-steps", budgets.RefinementSteps.ToString(CultureInfo.InvariantCulture))} SADAG refinement steps per batch, " +
            $"{Arg(args, "--reconstruction-steps", PipelineOptions.ProfileReconstructionSteps(stepProfile).ToString(CultureInfo.InvariantCulture))} reconstruction steps per block, scale learning rates {ScaleStepsArg(args)} " +
            $"(see [the CLI's profiles]({Link("cli.md")})). Bit policy: first layer W8 with a float input, second layer's input 8-bit, last layer W8A8.");
        md.AppendLine();
        md.AppendLine($"- Machine: {machine}");
        md.AppendLine($"- Commit: {commit}");
        md.AppendLine($"- Command: `{command}`");
        if (wallSeconds is { } w) md.AppendLine($"- Wall time of the whole run: {w / 60:F0} min");
        md.AppendLine($"- One Genie-D step (batch 64): {generationStep * 1000:F0} ms; one reconstruction step (batch 32, mean over blocks, calibration included): {reconstructionStep * 1000:F0} ms");
        md.AppendLine();
        md.AppendLine($"| bits | method | top-1 (mean ± std over {seeds} seed{(seeds > 1 ? "s" : "")}) | Δ vs FP32 | warm-up s | Q₀ + refine s | reconstruction s | peak RSS MB | file KB |");
        md.AppendLine("|---|---|---:|---:|---:|---:|---:|---:|---:|");
        foreach (var group in rows.GroupBy(r => (r.Bits, r.Method)))
        {
            var top1 = group.Select(r => r.Top1).ToArray();
            double m = top1.Average(), s = top1.Length > 1 ? Math.Sqrt(top1.Sum(v => (v - m) * (v - m)) / (top1.Length - 1)) : 0;
            md.AppendLine($"| {group.Key.Bits} | {group.Key.Method} | {m * 100:F2} ± {s * 100:F2} | {(m - fp32) * 100:+0.00;-0.00} | " +
                $"{group.Average(r => r.WarmupSeconds):F0} | {group.Average(r => r.RefineSeconds):F0} | {group.Average(r => r.ReconstructionSeconds):F0} | " +
                $"{group.Max(r => r.PeakRssBytes) / 1048576} | {group.First().FileBytes / 1024} |");
        }
        md.AppendLine();
        md.AppendLine("Times are means over seeds, in seconds. The Genie-D warm-up does not depend on the bit width, so it runs once per seed and " +
            "serves Genie-D and SADAG at every bit width (the pipeline copies it; the result is the same as a run of its own); its time is shown on " +
            "each row that uses it. Q₀ + refine is SADAG's own cost: reconstructing the warm-up quantized model Q₀ and the sharpness-aware refinement. " +
            "One `sadg quantize` run costs warm-up + Q₀ + refine + reconstruction. Peak RSS is the process's peak resident memory during the row " +
            "(reset before each row through /proc/self/clear_refs; for Genie-D and SADAG the larger of the row's and the warm-up's), with the " +
            "10,000 test images and the model loaded.");
        md.AppendLine();
        md.AppendLine("## Targets");
        md.AppendLine();
        double? Mean(string bits, string method) =>
            rows.Where(r => r.Bits == bits && r.Method == method).Select(r => r.Top1).DefaultIfEmpty(double.NaN).Average() is var v && !double.IsNaN(v) ? v : null;
        string Verdict(bool met) => met ? "met" : "**missed**";
        // The sample's targets, the depthwise sample's, or a pretrained model's (issue targets for the bench ResNet-8 and models like it).
        double w8 = sample ? 0.3 : 0.5, w4Drop = sample ? 2 : depthwiseSample ? 5 : 3, w3Drop = sample ? 0.5 : 10;
        if (depthwiseSample)
            foreach (string method in rows.Where(r => r.Bits == "W4A8").Select(r => r.Method).Distinct().Where(m => m != "gaussian"))
                md.AppendLine($"- W4A8 within 2 pt of FP32, {method}: {(Mean("W4A8", method)!.Value - fp32) * 100:+0.00;-0.00} pt, {Verdict(fp32 - Mean("W4A8", method)!.Value <= 0.02)}.");
        foreach (string method in rows.Where(r => r.Bits == "W8A8").Select(r => r.Method).Distinct())
            md.AppendLine($"- W8A8 within {w8} pt of FP32, {method}: {(Mean("W8A8", method)!.Value - fp32) * 100:+0.00;-0.00} pt, {Verdict(fp32 - Mean("W8A8", method)!.Value <= w8 / 100)}.");
        if (Mean("W4A4", "sadag") is { } w4)
            md.AppendLine($"- W4A4 SADAG within {w4Drop} pt of FP32: {(w4 - fp32) * 100:+0.00;-0.00} pt, {Verdict(fp32 - w4 <= w4Drop / 100)}.");
        if (Mean("W3A3", "sadag") is { } w3)
            md.AppendLine($"- W3A3 SADAG within {w3Drop} pt of FP32: {(w3 - fp32) * 100:+0.00;-0.00} pt, {Verdict(fp32 - w3 <= w3Drop / 100)}.");
        foreach (string bits in new[] { "W4A4", "W3A3" })
            if (Mean(bits, "sadag") is { } sadag && Mean(bits, "genie") is { } genie)
                md.AppendLine($"- SADAG ≥ Genie-D at {bits}: {sadag * 100:F2} vs {genie * 100:F2}, {Verdict(sadag >= genie)}.");
        if (!sample && Mean("W4A4", "sadag") is { } zs && Mean("W4A4", "real") is { } real)
            md.AppendLine($"- Zero-shot SADAG within 1 pt of real data at W4A4: {zs * 100:F2} vs {real * 100:F2}, {Verdict(real - zs <= 0.01)}.");
        md.AppendLine();
        md.AppendLine(seeds == 1
            ? "One seed per cell: differences of a few tenths of a point are within run-to-run noise, so this run cannot rank Genie-D and SADAG; the full table (3 seeds) is the command without --reduced."
            : $"Means over {seeds} seeds; the ± is the sample standard deviation.");
        md.AppendLine();
        if (sample)
        {
            md.AppendLine("Synthetic images (seed 1, labelled by the FP32 model's class): Genie-D, then SADAG.");
            md.AppendLine();
            md.AppendLine($"![Genie-D]({Link("images/genie.png")})");
            md.AppendLine();
            md.AppendLine($"![SADAG]({Link("images/sadag.png")})");
        }
        File.WriteAllText(Path.Combine(root, "docs", $"{name}.md"), md.ToString());
        File.WriteAllText(Path.Combine(root, "docs", $"{name}.json"), JsonSerializer.Serialize(new
        {
            machine, commit, command, profile, seeds, fp32, wallSeconds, generationStepMs = generationStep * 1000, reconstructionStepMs = reconstructionStep * 1000,
            context = new { model = Path.GetRelativePath(root, context.ModelPath), data = context.Data, testImages = context.TestImages, realImages = context.RealImages },
            rows,
        }, new JsonSerializerOptions { WriteIndented = true }));
        Console.WriteLine(md);
    }

    /// <summary>Rewrites docs/&lt;out&gt;.md from docs/&lt;out&gt;.json (after a change to the report's layout).</summary>
    static int Rewrite(string root, string[] args)
    {
        using var json = JsonDocument.Parse(File.ReadAllText(Path.Combine(root, "docs", Arg(args, "--out", "benchmarks") + ".json")));
        var r = json.RootElement;
        var rows = r.GetProperty("rows").Deserialize<List<Row>>()!;
        string command = r.GetProperty("command").GetString()!;
        var original = command.Split(" -- quantization").Last().Split(' ', StringSplitOptions.RemoveEmptyEntries);
        // The model and data the run described; a JSON written before it recorded them names them in its command.
        var context = r.TryGetProperty("context", out var c)
            ? new Context(Path.GetFullPath(Path.Combine(root, c.GetProperty("model").GetString()!)), c.GetProperty("data").GetString()!,
                c.GetProperty("testImages").GetInt32(), c.GetProperty("realImages").GetInt32())
            : ContextOf(root, original);
        Write(root, rows, r.GetProperty("fp32").GetDouble(), r.GetProperty("profile").GetString()!, r.GetProperty("seeds").GetInt32(), original,
            r.GetProperty("generationStepMs").GetDouble() / 1000, r.GetProperty("reconstructionStepMs").GetDouble() / 1000,
            context, r.GetProperty("commit").GetString()!, r.TryGetProperty("wallSeconds", out var w) ? w.GetDouble() : null);
        return 0;
    }

    /// <summary>The context a run with <paramref name="args"/> described, read again from its model and data (run from the repository root).</summary>
    static Context ContextOf(string root, string[] args)
    {
        string modelPath = ModelPath(root, args, root);
        var (test, real, description) = LoadData(OnnxModel.Load(modelPath), DataFolder(args), Number(args, "--real-images") is double ri ? (int)ri : null);
        using (test)
        using (real)
            return new Context(modelPath, description, (int)test.Count, (int)real.Count);
    }

    static string CommandLine(string[] args) =>
        "dotnet run -c Release --project tests/Sadg.Benchmarks -- quantization" +
        (args.Where(a => a != "--resume").ToArray() is { Length: > 0 } rest ? " " + string.Join(' ', rest) : "");

    /// <summary>The rows finished so far by an interrupted run of the same command, or none.</summary>
    static (List<Row> Rows, double WallSeconds) ReadPartial(string path, string command)
    {
        if (!File.Exists(path)) return ([], 0);
        using var json = JsonDocument.Parse(File.ReadAllText(path));
        var r = json.RootElement;
        return r.GetProperty("command").GetString() == command
            ? (r.GetProperty("rows").Deserialize<List<Row>>()!, r.GetProperty("wallSeconds").GetDouble()) : ([], 0);
    }

    static void WritePartial(string path, string command, List<Row> rows, double wallSeconds)
    {
        string tmp = path + ".tmp";
        File.WriteAllText(tmp, JsonSerializer.Serialize(new { command, wallSeconds, rows }, new JsonSerializerOptions { WriteIndented = true }));
        File.Move(tmp, path, overwrite: true);
    }

    /// <summary>The benchmark's <c>--scale-steps</c>, <see cref="QuantizationOptions.DefaultScaleSteps"/> when not given.</summary>
    static string ScaleStepsArg(string[] args) => Arg(args, "--scale-steps", QuantizationOptions.DefaultScaleSteps.ToString().ToLowerInvariant());


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
