using System.Diagnostics;
using Microsoft.ML.OnnxRuntime;
using Sadg.Cli.Data;
using Sadg.Cli.Output;
using Sadg.Cli.Pipeline;
using Sadg.Export;
using Sadg.Onnx;
using Sadg.Pipeline;
using Sadg.Tests.Support;
using SkiaSharp;

namespace Sadg.Cli.Tests;

/// <summary>The real pipelines end to end on a small BN model, with tiny budgets (hidden step options).</summary>
public class PipelineTests
{
    /// <summary>Tiny budgets: 8 images, 4 generation steps, 4 reconstruction steps per block.</summary>
    static readonly string[] Tiny = ["--device", "cpu", "--profile", "quick", "--samples", "8", "--generation-steps", "4", "--reconstruction-steps", "4"];

    /// <summary>A ResNet-style classifier of 1x8x8 images with BatchNormalization kept.</summary>
    static string SmallModel(TempFolder folder) =>
        Models.Save(TestModels.ResNet(seed: 3, width: 4, channels: 1, size: 8), folder, "m.onnx");

    static string[] Args(params string[] args) => [.. args, .. Tiny];

    /// <summary>The tiny budgets with some options replaced (pairs of option and value).</summary>
    static string[] With(params string[] overrides)
    {
        var result = new List<string>();
        for (int i = 0; i < Tiny.Length; i += 2)
            if (!overrides.Where((_, k) => k % 2 == 0).Contains(Tiny[i])) result.AddRange([Tiny[i], Tiny[i + 1]]);
        return [.. result, .. overrides];
    }

    static void RunsInOnnxRuntime(string path)
    {
        using var session = new InferenceSession(path);
        using var value = OrtValue.CreateTensorValueFromMemory(new float[2 * 64], [2, 1, 8, 8]);
        using var outputs = session.Run(new RunOptions(), [session.InputNames[0]], [value], [session.OutputNames[0]]);
        Assert.Equal(20, outputs[0].GetTensorDataAsSpan<float>().Length);
    }

    [Fact]
    public void The_tool_restarts_itself_with_a_heap_that_reuses_freed_memory_unless_told_not_to()
    {
        using var folder = new TempFolder();
        string model = SmallModel(folder);
        // Unset: jemalloc where it is installed, else glibc's settings; "glibc": glibc's settings; "system": no restart.
        string chosen = NativeHeap.JemallocPaths.Any(File.Exists) ? "jemalloc" : "reused";
        foreach (var (heap, expected) in new[] { ((string?)null, chosen), ("glibc", "reused"), ("system", "system") })
        {
            // glibc's and jemalloc's own variables unset, as in a user's shell.
            var start = NativeHeap.Variables.ToDictionary(name => name, string? (_) => null);
            start[NativeHeap.Variable] = heap;
            string report = folder.File($"report-{heap ?? "default"}");
            var r = CliRunner.RunProcess(Args(["quantize", model, "-o", folder.File($"{heap ?? "default"}.onnx"), "--method", "gaussian", "--no-cache", "--report", report]), start);
            Assert.True(r.ExitCode == 0, r.Err);
            Assert.Equal(expected, QuantizationReport.FromJson(File.ReadAllText(Path.Combine(report, "report.json"))).NativeHeap);
            // The restart keeps the process's standard streams: the command's output arrives as usual.
            Assert.Contains("wrote", r.Out + r.Err);
        }
    }

    [Theory]
    [InlineData("sadag")]
    [InlineData("genie")]
    [InlineData("gaussian")]
    [InlineData("real")]
    public async Task Quantize_writes_a_model_ONNX_Runtime_runs_and_a_report(string method)
    {
        using var folder = new TempFolder();
        string model = SmallModel(folder);
        var extra = new List<string>();
        if (method == "real")
        {
            var random = new Random(1);
            new ImageSet(Enumerable.Range(0, 8 * 64).Select(_ => (float)random.NextDouble()).ToArray(), [8, 1, 8, 8], new int[8], "test").Save(folder.File("calib"));
            extra.AddRange(["--calibration-data", folder.File("calib")]);
        }
        var r = await CliRunner.RunAsync(Args(["quantize", model, "-o", folder.File("out.onnx"), "--method", method, "--report", folder.File("report"), .. extra]));
        Assert.True(r.ExitCode == 0, r.Err);
        RunsInOnnxRuntime(folder.File("out.onnx"));
        var written = OnnxModel.Load(folder.File("out.onnx"));
        var metadata = written.Proto.MetadataProps.ToDictionary(p => p.Key, p => p.Value);
        Assert.Equal(method, metadata[SadgMetadata.Method]);
        Assert.True(metadata.ContainsKey(SadgMetadata.Top1Agreement));
        Assert.True(metadata.ContainsKey(SadgMetadata.OptionsHash));

        var report = QuantizationReport.FromJson(File.ReadAllText(folder.File("report/report.json")));
        Assert.NotEmpty(report.Layers);
        Assert.Equal(8, report.CalibrationImages);
        Assert.NotNull(report.Check);
        Assert.InRange(report.Check!.Top1Agreement!.Value, 0, 1);
        Assert.Equal(new FileInfo(folder.File("out.onnx")).Length, report.OutputBytes);
        Assert.Contains("4-bit", File.ReadAllText(folder.File("report/report.md")));
        using (var png = SKBitmap.Decode(folder.File("report/synthetic.png"))) Assert.True(png.Width > 0);
        if (method != "real" && method != "gaussian") Assert.Contains("generating images", r.Err);
        Assert.Contains("reconstructing: done", r.Err);
        Assert.Contains("top-1 agreement", r.Out);
    }

    [Fact]
    public async Task Same_seed_gives_identical_bytes_and_another_seed_does_not()
    {
        using var folder = new TempFolder();
        string model = SmallModel(folder);
        foreach (var (name, seed) in new[] { ("a.onnx", "5"), ("b.onnx", "5"), ("c.onnx", "6") })
        {
            var r = await CliRunner.RunAsync(Args(["quantize", model, "-o", folder.File(name), "--seed", seed, "--no-cache"]));
            Assert.True(r.ExitCode == 0, r.Err);
        }
        Assert.Equal(File.ReadAllBytes(folder.File("a.onnx")), File.ReadAllBytes(folder.File("b.onnx")));
        Assert.NotEqual(File.ReadAllBytes(folder.File("a.onnx")), File.ReadAllBytes(folder.File("c.onnx")));
    }

    sealed class CountingPipeline(IQuantizationPipeline inner) : IQuantizationPipeline
    {
        int calls;

        public int Calls => calls;

        public Task<QuantizationResult> RunAsync(QuantizationRequest request, CliConsole console, CancellationToken cancellationToken)
        {
            Interlocked.Increment(ref calls);
            return inner.RunAsync(request, console, cancellationToken);
        }
    }

    [Fact]
    public async Task A_second_identical_run_is_a_cache_hit_and_any_option_change_a_miss()
    {
        using var folder = new TempFolder();
        string model = SmallModel(folder);
        string cache = folder.File("cache");
        var pipeline = new CountingPipeline(new LibraryQuantizationPipeline());
        var services = new CliServices(TextWriter.Null, TextWriter.Null) { Quantization = pipeline };
        string[] Run(string output, params string[] more) => ["quantize", model, "-o", folder.File(output), "--cache-dir", cache, .. With(more)];

        var first = await CliRunner.RunAsync(Run("a.onnx"), services);
        Assert.True(first.ExitCode == 0, first.Err);
        Assert.Equal(1, pipeline.Calls);

        var clock = Stopwatch.StartNew();
        var second = await CliRunner.RunAsync(Run("b.onnx", "--report", folder.File("report")), services);
        clock.Stop();
        Assert.True(second.ExitCode == 0, second.Err);
        Assert.Equal(1, pipeline.Calls);
        Assert.Contains("cache hit", second.Out);
        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(1), $"cache hit took {clock.Elapsed}");
        Assert.Equal(File.ReadAllBytes(folder.File("a.onnx")), File.ReadAllBytes(folder.File("b.onnx")));
        QuantizationReport.FromJson(File.ReadAllText(folder.File("report/report.json")));

        int calls = 1;
        foreach (var change in new[] { new[] { "--bits", "3" }, ["--activation-bits", "none"], ["--seed", "1"], ["--samples", "6"],
                     ["--method", "gaussian"], ["--reconstruction-steps", "3"] })
        {
            var r = await CliRunner.RunAsync(Run("c.onnx", change), services);
            Assert.True(r.ExitCode == 0, r.Err);
            Assert.DoesNotContain("cache hit", r.Out);
            Assert.Equal(++calls, pipeline.Calls);
        }
        Assert.Empty(Directory.GetFileSystemEntries(cache, ".*"));
    }

    [Fact]
    public async Task Two_concurrent_runs_on_one_key_both_succeed_and_leave_one_valid_entry()
    {
        using var folder = new TempFolder();
        string model = SmallModel(folder);
        string cache = folder.File("cache");
        var runs = new[] { "a.onnx", "b.onnx" }.Select(o => Task.Run(() =>
            CliRunner.RunAsync(Args(["quantize", model, "-o", folder.File(o), "--cache-dir", cache])))).ToArray();
        var results = await Task.WhenAll(runs);
        foreach (var r in results) Assert.True(r.ExitCode == 0, r.Err);
        var entries = Directory.GetFileSystemEntries(cache);
        Assert.Single(entries);
        RunsInOnnxRuntime(Path.Combine(entries[0], ModelCache.ModelFile));
        QuantizationReport.FromJson(File.ReadAllText(Path.Combine(entries[0], "report.json")));
        RunsInOnnxRuntime(folder.File("a.onnx"));
        RunsInOnnxRuntime(folder.File("b.onnx"));
        // A third run is a hit on that entry.
        var third = await CliRunner.RunAsync(Args(["quantize", model, "-o", folder.File("c.onnx"), "--cache-dir", cache]));
        Assert.Contains("cache hit", third.Out);
    }

    /// <summary>Signals when a line containing <paramref name="text"/> is written.</summary>
    sealed class WatchingWriter(string text) : StringWriter
    {
        public TaskCompletionSource Seen { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public override void WriteLine(string? value)
        {
            base.WriteLine(value);
            if (value?.Contains(text) == true) Seen.TrySetResult();
        }

        public override void Write(string? value)
        {
            base.Write(value);
            if (value?.Contains(text) == true) Seen.TrySetResult();
        }
    }

    [Fact]
    public async Task Cancelling_mid_pipeline_exits_130_and_leaves_nothing()
    {
        using var folder = new TempFolder();
        string model = SmallModel(folder);
        string cache = folder.File("cache");
        Directory.CreateDirectory(cache);
        var error = new WatchingWriter("reconstructing the warm-up model Q0");
        var services = new CliServices(new StringWriter(), error) { Interactive = false };
        using var cancellation = new CancellationTokenSource();
        var run = CliApp.RunAsync(["quantize", model, "-o", folder.File("out.onnx"), "--cache-dir", cache, "--report", folder.File("report"),
            "--device", "cpu", "--profile", "quick", "--samples", "8", "--generation-steps", "4", "--reconstruction-steps", "2000"], services, cancellation.Token);
        await error.Seen.Task.WaitAsync(TimeSpan.FromSeconds(120));
        cancellation.Cancel();
        int code = await run.WaitAsync(TimeSpan.FromSeconds(30));
        Assert.True(code == 130, error.ToString());
        Assert.Equal(["cache", "m.onnx"], Directory.GetFileSystemEntries(folder.Path).Select(Path.GetFileName).Order());
        Assert.Empty(Directory.GetFileSystemEntries(cache));
    }

    [Fact]
    public async Task Generate_writes_a_tensor_folder_and_a_png()
    {
        using var folder = new TempFolder();
        string model = SmallModel(folder);
        var r = await CliRunner.RunAsync(Args(["generate", model, "-o", folder.File("data")]));
        Assert.True(r.ExitCode == 0, r.Err);
        var set = ImageSet.Load(folder.File("data"));
        Assert.Equal([8, 1, 8, 8], set.Shape);
        Assert.All(set.Labels, l => Assert.InRange(l, 0, 9));
        using (var png = SKBitmap.Decode(folder.File("data/synthetic.png"))) Assert.True(png.Width > 0);
        Assert.Contains("wrote 8 images", r.Out);
    }

    [Fact]
    public async Task Generate_npy_holds_the_images_and_labels_of_the_tensor_folder()
    {
        using var folder = new TempFolder();
        string model = SmallModel(folder);
        var tensors = await CliRunner.RunAsync(Args(["generate", model, "-o", folder.File("tensors"), "--seed", "3"]));
        Assert.True(tensors.ExitCode == 0, tensors.Err);
        var npy = await CliRunner.RunAsync(Args(["generate", model, "-o", folder.File("npy"), "--seed", "3", "--format", "npy"]));
        Assert.True(npy.ExitCode == 0, npy.Err);
        Assert.Equal(["images.npy", "labels.npy", "synthetic.png"], Directory.GetFiles(folder.File("npy")).Select(Path.GetFileName).Order());

        var set = ImageSet.Load(folder.File("tensors"));
        var (imageType, imageShape, imageData) = ReadNpy(folder.File("npy/images.npy"));
        Assert.Equal("<f4", imageType);
        Assert.Equal(set.Shape, imageShape);
        var images = new float[imageData.Length / 4];
        for (int i = 0; i < images.Length; i++) images[i] = System.Buffers.Binary.BinaryPrimitives.ReadSingleLittleEndian(imageData.AsSpan(i * 4));
        Assert.Equal(set.Images, images);
        var (labelType, labelShape, labelData) = ReadNpy(folder.File("npy/labels.npy"));
        Assert.Equal("<i8", labelType);
        Assert.Equal([set.Count], labelShape);
        var labels = new long[labelData.Length / 8];
        for (int i = 0; i < labels.Length; i++) labels[i] = System.Buffers.Binary.BinaryPrimitives.ReadInt64LittleEndian(labelData.AsSpan(i * 8));
        Assert.Equal(set.Labels.Select(l => (long)l), labels);

        // An npy folder is for other toolchains: read back as data it is refused, naming the form Sadg reads, not taken
        // for an image folder of its synthetic.png.
        var asData = await CliRunner.RunAsync(["evaluate", model, "--data", folder.File("npy")]);
        Assert.Equal(1, asData.ExitCode);
        Assert.Contains("error SADG1302", asData.Err);
        Assert.Contains("--format tensors", asData.Err);
        // --split is for IDX folders: on a tensor folder it is refused rather than ignored.
        var split = await CliRunner.RunAsync(["evaluate", model, "--data", folder.File("tensors"), "--split", "train"]);
        Assert.Equal(1, split.ExitCode);
        Assert.Contains("error SADG1502: --split applies to IDX folders", split.Err);

        var bad = await CliRunner.RunAsync(Args(["generate", model, "-o", folder.File("bad"), "--format", "csv"]));
        Assert.Equal(1, bad.ExitCode);
        Assert.Contains("SADG1502", bad.Err);
        Assert.False(Directory.Exists(folder.File("bad")));
    }

    [Theory]
    [InlineData("tensors")]
    [InlineData("npy")]
    public async Task Generate_into_an_existing_empty_folder_keeps_that_folder_and_fills_it(string format)
    {
        using var folder = new TempFolder();
        string model = SmallModel(folder);
        string target = folder.File("empty");
        Directory.CreateDirectory(target);
        // The folder stays the same folder (it may be a mount point, or a shell's current folder): the same inode.
        long inode = Inode(target);
        var r = await CliRunner.RunAsync(Args(["generate", model, "-o", target, "--format", format]));
        Assert.True(r.ExitCode == 0, r.Err);
        Assert.Equal(inode, Inode(target));
        Assert.Contains("synthetic.png", Directory.GetFiles(target).Select(Path.GetFileName));
        Assert.Empty(Directory.GetFileSystemEntries(folder.Path, ".*")); // no temporary left beside it

        static long Inode(string path)
        {
            var stat = System.Diagnostics.Process.Start(new System.Diagnostics.ProcessStartInfo("stat", ["-c", "%i", path]) { RedirectStandardOutput = true })!;
            string text = stat.StandardOutput.ReadToEnd();
            stat.WaitForExit();
            return long.Parse(text.Trim());
        }
    }

    [Fact]
    public async Task Generate_to_a_folder_that_cannot_be_made_fails_before_generating()
    {
        using var folder = new TempFolder();
        string model = SmallModel(folder);
        File.WriteAllText(folder.File("afile"), "a file where a folder is needed");
        var r = await CliRunner.RunAsync(Args(["generate", model, "-o", folder.File("afile/gen")]));
        Assert.Equal(1, r.ExitCode);
        Assert.Contains("error SADG1201", r.Err);
        Assert.Contains("nothing was run", r.Err);
        Assert.DoesNotContain("generating images", r.Err);
    }

    /// <summary>
    /// Reads an .npy file as NumPy's format specification defines version 1.0: magic, version, header length, a dict
    /// literal padded to 64 bytes; returns the dtype, the shape and the data bytes, checking C order.
    /// </summary>
    static (string Descr, int[] Shape, byte[] Data) ReadNpy(string path)
    {
        byte[] bytes = File.ReadAllBytes(path);
        Assert.Equal(new byte[] { 0x93, (byte)'N', (byte)'U', (byte)'M', (byte)'P', (byte)'Y', 1, 0 }, bytes[..8]);
        int length = bytes[8] | (bytes[9] << 8);
        Assert.Equal(0, (10 + length) % 64);
        string header = System.Text.Encoding.ASCII.GetString(bytes, 10, length);
        Assert.EndsWith("\n", header);
        var match = System.Text.RegularExpressions.Regex.Match(header,
            @"^\{'descr': '([^']+)', 'fortran_order': False, 'shape': \(([0-9, ]*)\), \} *\n$");
        Assert.True(match.Success, header);
        int[] shape = match.Groups[2].Value.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).Select(int.Parse).ToArray();
        int itemSize = int.Parse(match.Groups[1].Value[2..]);
        byte[] data = bytes[(10 + length)..];
        Assert.Equal(shape.Aggregate(1L, (n, d) => n * d) * itemSize, data.LongLength);
        return (match.Groups[1].Value, shape, data);
    }
}
