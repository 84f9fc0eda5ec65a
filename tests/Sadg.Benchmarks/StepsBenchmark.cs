using System.Diagnostics;
using System.Globalization;
using System.Runtime.InteropServices;
using System.Text;
using System.Text.Json;
using Sadg.Export;
using Sadg.Generation;
using Sadg.Graph;
using Sadg.Onnx;
using Sadg.Pipeline;
using Sadg.Quantization;
using Sadg.Reconstruction;
using Sadg.Tests.Support;
using static TorchSharp.torch;

namespace Sadg.Benchmarks;

/// <summary>
/// Sadg's per-step cost against the PyTorch-eager anchors in ../shared/anchors (same architectures, shapes, batch and
/// thread count, in the same run, one after the other). Each Sadg step is timed on Sadg's own code path: the Genie-D
/// warm-up (<see cref="SyntheticData.WarmUp"/>), SADAG's refinement (<see cref="SyntheticData.Refine"/> against a
/// round-to-nearest Q₀) and block reconstruction (<see cref="ModelCalibration.Calibrate"/>), each step's end read from
/// the progress report the stage makes after every step; the median of the steps after the first ones is reported.
/// Writes the "Step times" section of docs/benchmarks/steps.md (the rest of the page is kept) and docs/benchmarks/steps.json.
///   dotnet run -c Release --project tests/Sadg.Benchmarks -- steps [--steps N (timed steps per measurement, default 6)]
///       [--warmup N (untimed steps first, default 2)] [--only mobilenet|resnet20] [--python /usr/bin/python3]
///       [--anchors ../shared/anchors] [--no-write]
/// </summary>
static class StepsBenchmark
{
    const string Begin = "<!-- steps:begin (written by `Sadg.Benchmarks steps`) -->";
    const string End = "<!-- steps:end -->";

    /// <summary>One row of the table: Sadg's median ms per step, the anchor's, and Sadg's minor page faults per step.</summary>
    sealed record Row(string Model, string Step, double? SadgMs, double? TorchMs, double? FaultsPerStep, string Sadg, string Torch)
    {
        public double? Ratio => SadgMs is { } s && TorchMs is { } t && t > 0 ? s / t : null;
    }

    public static int Run(string[] args)
    {
        int steps = Option(args, "--steps", 6), warmup = Option(args, "--warmup", 2);
        string only = Arg(args, "--only", "all");
        string python = Arg(args, "--python", "/usr/bin/python3");
        string root = QuantizationBenchmark.RepoRoot();
        string anchors = Path.GetFullPath(Arg(args, "--anchors", Path.Combine(root, "..", "shared", "anchors")));
        int threads = Environment.ProcessorCount;
        set_num_threads(threads);
        string loadBefore = Load();
        var wall = Stopwatch.StartNew();

        var rows = new List<Row>();
        var anchorHeaders = new List<string>();
        var notes = new List<string>();
        if (only is "all" or "mobilenet") MobileNet(rows, anchorHeaders, notes, steps, warmup, python, anchors, root);
        if (only is "all" or "resnet20") ResNet20(rows, anchorHeaders, notes, steps, warmup, python, anchors, root);

        string section = Section(rows, anchorHeaders, notes, args, steps, warmup, threads, loadBefore, Load(), wall.Elapsed.TotalMinutes);
        Console.WriteLine(section);
        if (args.Contains("--no-write")) return 0;
        string path = Path.Combine(root, "docs", "benchmarks", "steps.md");
        File.WriteAllText(path, Splice(File.Exists(path) ? File.ReadAllText(path) : "# Step cost\n", section));
        File.WriteAllText(Path.ChangeExtension(path, ".json"), JsonSerializer.Serialize(new
        {
            command = CommandLine(args), commit = QuantizationBenchmark.Git("rev-parse --short HEAD"), machine = Machine(threads),
            nativeHeap = NativeHeap.Mode, threads, steps, warmup, loadBefore, loadAfter = Load(),
            rows = rows.Select(r => new { r.Model, r.Step, r.SadgMs, r.TorchMs, r.Ratio, r.FaultsPerStep, r.Sadg, r.Torch }),
            anchorHeaders, notes,
        }, new JsonSerializerOptions { WriteIndented = true }));
        Console.WriteLine($"written to {path} and {Path.ChangeExtension(path, ".json")}");
        return 0;
    }

    // ---- MobileNetV1 α = 0.25 at 224×224 ----

    static void MobileNet(List<Row> rows, List<string> headers, List<string> notes, int steps, int warmup, string python, string anchors, string root)
    {
        const string name = "MobileNetV1 α=0.25, 3×224×224";
        var model = OnnxModel.FromProto(TestModels.MobileNetV1());
        // Sadg's quick profile: batch 32, a generator of C0 = GeneratorChannels and C1 = C0 / 2 channels.
        var quick = GenerationOptions.Quick;
        int batch = quick.BatchSize, c0 = quick.GeneratorChannels, c1 = Math.Max(1, c0 / 2);
        var generation = quick with { Images = batch, BatchSize = batch, InputPrior = InputPrior.Standardized(3, "benchmark") };

        using var fp = new GraphModule(model);
        var (genie, genieFaults, warm) = TimeWarmUp(fp, generation, steps, warmup);
        Console.WriteLine($"{name}: Sadg Genie-D step {genie:F0} ms");
        double? sadag = null, sadagFaults = null;
        using (warm)
        {
            (sadag, sadagFaults) = TimeRefinement(model, fp, warm, generation, steps, warmup);
            Console.WriteLine($"{name}: Sadg SADAG step {sadag:F0} ms");
        }

        // The first depthwise + pointwise pair: which blocks the partition puts them in.
        var options = new QuantizationOptions { WeightBits = 4, ActivationBits = 4, BatchSize = 32 };
        var blocks = Partition(model, options);
        // The first depthwise Conv and the Conv after it, and the blocks that hold them.
        var convs = blocks.SelectMany(b => b.QuantizedNodes.Select(n => (Block: b.Index, Node: n))).ToList();
        int dw = convs.FindIndex(c => IsDepthwise(c.Node));
        var (depthwise, pointwise) = (blocks[convs[dw].Block], blocks[convs[dw + 1].Block]);
        var wanted = new[] { depthwise.Index, pointwise.Index }.Distinct().ToArray();
        var recon = TimeReconstruction(model, fp, images: 2 * batch, options, wanted, steps, warmup);
        double reconSum = wanted.Sum(b => recon[b].Ms);
        double reconFaults = wanted.Sum(b => recon[b].Faults);
        string blocksText = string.Join(" and ", wanted.Select(b => Describe(blocks[b])));
        Console.WriteLine($"{name}: Sadg reconstruction {string.Join(", ", wanted.Select(b => $"block {b + 1} {recon[b].Ms:F0} ms"))}");

        var torch = Anchor(python, Path.Combine(anchors, "mobilenet_v1_224_step.py"), [batch, c0, c1], headers);
        rows.Add(new Row(name, $"Genie-D step (batch {batch}, generator {c0}→{c1})", genie, torch.GetValueOrDefault("mbv1_genie_step_ms"), genieFaults,
            "`GenieWarmup` (quick profile, swing convolution on, input prior)", "`genie_step` (no swing convolution)"));
        var sadagTorch = Anchor(python, Path.Combine(root, "tests", "Sadg.Benchmarks", "anchors", "mobilenet_v1_224_sadag_step.py"), [batch, c0, c1], headers);
        rows.Add(new Row(name, $"SADAG step (batch {batch}, generator {c0}→{c1})", sadag, sadagTorch.GetValueOrDefault("mbv1_sadag_step_ms"), sadagFaults,
            "`SharpnessAwareRefinement` against a round-to-nearest W4A4 Q₀",
            "`tests/Sadg.Benchmarks/anchors/mobilenet_v1_224_sadag_step.py`: a lower bound (Q₀ a float copy), as `resnet20_steps.py`'s"));
        if (wanted.Length == 2)
            foreach (int b in wanted)
                rows.Add(new Row(name, $"reconstruction step, block {b + 1} alone (batch 32)", recon[b].Ms, null, recon[b].Faults,
                    Describe(blocks[b]), "—"));
        rows.Add(new Row(name, "reconstruction step, first dw+pw pair at 112×112 (batch 32), against a float block", reconSum,
            torch.GetValueOrDefault("mbv1_first_block_recon_step_ms"), reconFaults,
            wanted.Length == 2 ? $"sum of the two blocks' steps: Sadg reconstructs the pair as two blocks ({blocksText})" : blocksText,
            "`recon_step`: float dw+BN+ReLU6+pw+BN+ReLU6 (BN in training mode), Adam on its weights"));
        // The same quantized step written in PyTorch eager (this repository's anchor; ../shared/anchors' block is float).
        var quantized = Anchor(python, Path.Combine(root, "tests", "Sadg.Benchmarks", "anchors", "recon_quantized_step.py"), [32], headers);
        rows.Add(new Row(name, "reconstruction step, the same quantized dw+pw block (batch 32)", reconSum,
            quantized.GetValueOrDefault("mbv1_first_block_quantized_recon_step_ms"), reconFaults, blocksText,
            "`tests/Sadg.Benchmarks/anchors/recon_quantized_step.py`: QDrop, LSQ activation quantizers, AdaRound weights, three Adams"));
        if (wanted.Length == 2)
            notes.Add($"Sadg's partition cuts MobileNetV1 at every activation (no residuals): the first depthwise and pointwise convolutions are " +
                $"separate blocks ({blocksText}), each reconstructed with its own steps, so one step of each is the pair's cost.");
    }

    // ---- ResNet-20 at 1×28×28 (the sample's shapes) ----

    static void ResNet20(List<Row> rows, List<string> headers, List<string> notes, int steps, int warmup, string python, string anchors, string root)
    {
        const int batch = 64;
        string sample = Path.Combine(root, "samples", "models", "resnet20-fmnist.onnx");
        var model = File.Exists(sample) ? OnnxModel.Load(sample) : OnnxModel.FromProto(TestModels.ResNet20());
        string name = File.Exists(sample) ? "ResNet-20, 1×28×28 (samples/models/resnet20-fmnist.onnx)" : "ResNet-20, 1×28×28 (TestModels.ResNet20)";
        // The anchor's generator is Genie's (128 → 64); Sadg's is given the same width here, at the anchor's batch.
        var generation = GenerationOptions.Default with
        {
            Images = batch, BatchSize = batch, GeneratorChannels = 128, InputPrior = InputPrior.Standardized(1, "benchmark"),
        };
        using var fp = new GraphModule(model);
        var (genie, genieFaults, warm) = TimeWarmUp(fp, generation, steps, warmup);
        Console.WriteLine($"{name}: Sadg Genie-D step {genie:F1} ms");
        double? sadag, sadagFaults;
        using (warm) (sadag, sadagFaults) = TimeRefinement(model, fp, warm, generation, steps, warmup);
        Console.WriteLine($"{name}: Sadg SADAG step {sadag:F1} ms");

        var options = new QuantizationOptions { WeightBits = 4, ActivationBits = 4, BatchSize = 32 };
        var blocks = Partition(model, options);
        // The anchor's block: the first basic block of the first stage (the first block after the stem).
        var first = blocks.First(b => b.QuantizedNodes.Count >= 2);
        var recon = TimeReconstruction(model, fp, images: batch, options, [first.Index], steps, warmup);
        Console.WriteLine($"{name}: Sadg reconstruction step {recon[first.Index].Ms:F1} ms");

        var torch = Anchor(python, Path.Combine(anchors, "resnet20_steps.py"), [batch], headers);
        rows.Add(new Row(name, $"training fwd+bwd (batch {batch})", null, torch.GetValueOrDefault("train_fwd_bwd_ms"), null,
            "— (Sadg does not train)", "`train_step`: SGD, BN in training mode"));
        rows.Add(new Row(name, $"Genie-D step (batch {batch}, generator 128→64)", genie, torch.GetValueOrDefault("genie_step_ms"), genieFaults,
            "`GenieWarmup` (swing convolution on, input prior)", "`genie_step` (no swing convolution)"));
        rows.Add(new Row(name, $"SADAG step (batch {batch})", sadag, torch.GetValueOrDefault("sadag_step_ms"), sadagFaults,
            "`SharpnessAwareRefinement` against a round-to-nearest W4A4 Q₀", "`sadag_step`: a lower bound (Q₀ a float copy)"));
        rows.Add(new Row(name, "reconstruction step, first stage block (batch 32)", recon[first.Index].Ms, torch.GetValueOrDefault("recon_block_step_ms"),
            recon[first.Index].Faults, Describe(first), "`recon_step`: float block, Adam on its weights"));
    }

    // ---- Timing Sadg's stages step by step ----

    /// <summary>Genie-D warm-up of one batch; returns the median step, minor faults per step and the warm-up's images (for SADAG).</summary>
    static (double Ms, double Faults, SyntheticImages Images) TimeWarmUp(GraphModule fp, GenerationOptions generation, int steps, int warmup)
    {
        var ticks = new StepTicks<GenerationProgress>();
        var images = SyntheticData.WarmUp(fp, generation with { WarmupSteps = warmup + steps + 1 }, ticks);
        var (ms, faults) = Ms(ticks.Median(warmup, _ => true));
        return (ms, faults, images);
    }

    /// <summary>SADAG refinement of the warm-up's batch against Q₀ = the round-to-nearest quantized model of its images.</summary>
    static (double Ms, double Faults) TimeRefinement(OnnxModel model, GraphModule fp, SyntheticImages warm, GenerationOptions generation, int steps, int warmup)
    {
        var q0Options = new QuantizationOptions { WeightBits = 4, ActivationBits = 4, BatchSize = 32, Iterations = 0 };
        QuantizedGraph q0;
        using (var images = warm.Images()) q0 = ModelCalibration.Calibrate(model, images, q0Options).Quantized;
        using (q0)
        {
            var ticks = new StepTicks<GenerationProgress>();
            SyntheticData.Refine(warm, fp, q0.Graph, generation with { RefinementSteps = warmup + steps + 1 }, ticks);
            return Ms(ticks.Median(warmup, _ => true));
        }
    }

    /// <summary>
    /// Block reconstruction of the model on Gaussian images, stopped after the last wanted block; the median step of each
    /// wanted block (0-based index) and its minor faults per step.
    /// </summary>
    static Dictionary<int, (double Ms, double Faults)> TimeReconstruction(OnnxModel model, GraphModule fp, int images, QuantizationOptions options,
        int[] wanted, int steps, int warmup)
    {
        using var x = SyntheticData.GaussianNoise(fp, images, 0);
        using var stop = new CancellationTokenSource();
        int last = wanted.Max() + 1;
        var ticks = new StepTicks<ReconstructionProgress>(p =>
        {
            if (p.Block >= last && p.Step == p.Steps) stop.Cancel();
        });
        try
        {
            var quantized = ModelCalibration.Calibrate(model, x, options with { Iterations = warmup + steps + 1 }, progress: ticks, cancellationToken: stop.Token);
            quantized.Dispose();
        }
        catch (OperationCanceledException) when (stop.IsCancellationRequested)
        {
        }
        return wanted.ToDictionary(b => b, b => Ms(ticks.Median(warmup, p => p.Block == b + 1)));
    }

    static IReadOnlyList<Block> Partition(OnnxModel model, QuantizationOptions options)
    {
        var fold = BatchNormFolding.FoldWithReport(model);
        using var q = new QuantizedGraph(fold.Model, options);
        return BlockPartition.Partition(q.Graph, q.QuantizedNodes.Contains);
    }

    static bool IsDepthwise(GraphNode node) =>
        node.OpType == "Conv" && node.Proto.Attribute.FirstOrDefault(a => a.Name == "group") is { I: > 1 };

    static string Describe(Block block) =>
        $"block {block.Index + 1}: {string.Join(" + ", block.QuantizedNodes.Select(n => IsDepthwise(n) ? "depthwise Conv" : n.OpType))}";

    /// <summary>A median step (<see cref="StepTicks{T}"/>) in milliseconds, with its faults per step.</summary>
    static (double Ms, double Faults) Ms(StepMedian median) => (median.Seconds * 1000, median.FaultsPerStep);

    // ---- The PyTorch anchor ----

    /// <summary>
    /// Runs an anchor script and reads its "name value" lines. glibc's heap variables that Sadg set for itself are taken
    /// out of the script's environment, so PyTorch runs as it would for a user.
    /// </summary>
    static Dictionary<string, double> Anchor(string python, string script, int[] arguments, List<string> headers)
    {
        var start = new ProcessStartInfo(python) { RedirectStandardOutput = true, RedirectStandardError = true };
        start.ArgumentList.Add(script);
        foreach (int a in arguments) start.ArgumentList.Add(a.ToString(CultureInfo.InvariantCulture));
        foreach (var variable in NativeHeap.Variables) start.Environment.Remove(variable);
        Console.WriteLine($"running {python} {string.Join(' ', start.ArgumentList)}");
        using var process = Process.Start(start)!;
        var error = process.StandardError.ReadToEndAsync();
        string output = process.StandardOutput.ReadToEnd();
        process.WaitForExit();
        if (process.ExitCode != 0)
            throw new InvalidOperationException($"{Path.GetFileName(script)} failed ({process.ExitCode}): {error.Result}");
        var values = new Dictionary<string, double>(StringComparer.Ordinal);
        foreach (var line in output.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            Console.WriteLine($"  {line}");
            var parts = line.Split(' ');
            if (parts.Length == 2 && double.TryParse(parts[1], NumberStyles.Float, CultureInfo.InvariantCulture, out double v)) values[parts[0]] = v;
            else headers.Add($"`{Path.GetFileName(script)} {string.Join(' ', arguments)}`: {line}");
        }
        return values;
    }

    // ---- The page ----

    static string Section(List<Row> rows, List<string> headers, List<string> notes, string[] args, int steps, int warmup, int threads,
        string loadBefore, string loadAfter, double minutes)
    {
        var md = new StringBuilder();
        md.AppendLine("## Step times against PyTorch eager");
        md.AppendLine();
        md.AppendLine("Median milliseconds per step of Sadg's own code path (the Genie-D warm-up, SADAG's refinement, block reconstruction; each");
        md.AppendLine("step's end read from the progress report the stage makes after it) against the PyTorch-eager anchors in");
        md.AppendLine("`../shared/anchors/` (same architecture, shapes, batch and thread count), run one after the other in the same process");
        md.AppendLine($"tree. Sadg: {warmup} untimed steps, then the median of {steps}; the anchors: their own 2 untimed and 6 (MobileNet) or");
        md.AppendLine("3 and 12 (ResNet-20) timed steps. Ratio = Sadg ÷ PyTorch (below 1: Sadg is faster). Faults: Sadg's minor page faults per step.");
        md.AppendLine();
        md.AppendLine($"- Machine: {Machine(threads)}");
        md.AppendLine($"- Commit: {QuantizationBenchmark.Git("rev-parse --short HEAD")}");
        md.AppendLine($"- Command: `{CommandLine(args)}`");
        md.AppendLine($"- Threads: {threads} for both (TorchSharp `set_num_threads`, the anchors' `torch.set_num_threads(2)`)");
        md.AppendLine($"- Sadg's native heap: `{NativeHeap.Mode}` (`NativeHeap`; the anchors run with glibc's defaults)");
        foreach (var h in headers) md.AppendLine($"- PyTorch: {h}");
        md.AppendLine($"- Load average (1 min) before / after: {loadBefore} / {loadAfter}; whole run {minutes:F1} min. A load above the core count");
        md.AppendLine("  means other work shared the cores: both runners were slowed, not necessarily alike, so ratios are indicative");
        md.AppendLine();
        md.AppendLine("| model | step | Sadg ms | PyTorch ms | ratio | Sadg faults/step | Sadg runs | PyTorch runs |");
        md.AppendLine("|---|---|---:|---:|---:|---:|---|---|");
        foreach (var r in rows)
            md.AppendLine($"| {r.Model} | {r.Step} | {Num(r.SadgMs)} | {Num(r.TorchMs)} | {(r.Ratio is { } x ? x.ToString("F2", CultureInfo.InvariantCulture) : "—")} | " +
                $"{(r.FaultsPerStep is { } f ? f.ToString("N0", CultureInfo.InvariantCulture) : "—")} | {r.Sadg} | {r.Torch} |");
        md.AppendLine();
        foreach (var n in notes) md.AppendLine($"- {n}");
        return md.ToString();

        static string Num(double? v) => v is { } x ? x.ToString(x >= 100 ? "F0" : "F1", CultureInfo.InvariantCulture) : "—";
    }

    /// <summary>The page with the section between the markers replaced (or inserted after the title).</summary>
    static string Splice(string page, string section)
    {
        string block = $"{Begin}\n{section.TrimEnd()}\n{End}";
        int b = page.IndexOf(Begin, StringComparison.Ordinal), e = page.IndexOf(End, StringComparison.Ordinal);
        if (b >= 0 && e > b) return page[..b] + block + page[(e + End.Length)..];
        int title = page.IndexOf('\n');
        return title < 0 ? page + "\n\n" + block + "\n" : page[..(title + 1)] + "\n" + block + "\n" + page[(title + 1)..];
    }

    static string Machine(int threads)
    {
        string cpu = File.Exists("/proc/cpuinfo")
            ? File.ReadLines("/proc/cpuinfo").FirstOrDefault(l => l.StartsWith("model name", StringComparison.Ordinal))?.Split(':', 2)[1].Trim() ?? "unknown CPU"
            : "unknown CPU";
        return $"{threads} cores ({cpu}), {RuntimeInformation.OSDescription}, {RuntimeInformation.FrameworkDescription}, " +
            $"TorchSharp {Informational(typeof(TorchSharp.torch).Assembly)} (libtorch CPU)";
    }

    static string Informational(System.Reflection.Assembly assembly) =>
        assembly.GetCustomAttributes(typeof(System.Reflection.AssemblyInformationalVersionAttribute), false)
            .OfType<System.Reflection.AssemblyInformationalVersionAttribute>().FirstOrDefault()?.InformationalVersion.Split('+')[0]
        ?? assembly.GetName().Version?.ToString() ?? "unknown";

    static string Load() => File.Exists("/proc/loadavg") ? File.ReadAllText("/proc/loadavg").Split(' ')[0] : "unknown";

    static string CommandLine(string[] args) =>
        "dotnet run -c Release --project tests/Sadg.Benchmarks -- steps" +
        (args.Where(a => a != "--no-write").ToArray() is { Length: > 0 } rest ? " " + string.Join(' ', rest) : "");

    internal static int Option(string[] args, string name, int fallback)
    {
        int i = Array.IndexOf(args, name);
        return i >= 0 && i + 1 < args.Length && int.TryParse(args[i + 1], out int v) && v > 0 ? v : fallback;
    }

    internal static string Arg(string[] args, string name, string fallback)
    {
        int i = Array.IndexOf(args, name);
        return i >= 0 && i + 1 < args.Length ? args[i + 1] : fallback;
    }
}
