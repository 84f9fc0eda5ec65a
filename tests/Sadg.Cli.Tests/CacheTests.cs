using Google.Protobuf;
using Onnx;
using Sadg.Cli.Output;
using Sadg.Cli.Pipeline;
using Sadg.Onnx;
using Sadg.Pipeline;
using Sadg.Tests.Support;

namespace Sadg.Cli.Tests;

/// <summary>
/// The cache never serves a wrong model: tampered, truncated, emptied and incomplete entries are reported, removed
/// and recomputed; entries are whole or absent; and the checks that need no pipeline run before it.
/// </summary>
public class CacheTests
{
    /// <summary>A pipeline that returns a fixed "quantized" model (a second tiny model) and counts its calls.</summary>
    sealed class FixedPipeline(Action<QuantizationRequest>? during = null) : IQuantizationPipeline
    {
        public static readonly byte[] Result = Models.Tiny(42).ToByteArray();
        int calls;

        public int Calls => calls;

        public Task<QuantizationResult> RunAsync(QuantizationRequest request, CliConsole console, CancellationToken cancellationToken)
        {
            Interlocked.Increment(ref calls);
            during?.Invoke(request);
            return Task.FromResult(new QuantizationResult(ModelProto.Parser.ParseFrom(Result), ["summary"])
            {
                ReportFiles = new Dictionary<string, byte[]> { ["report.json"] = "{}"u8.ToArray() },
            });
        }
    }

    static CliServices Services(IQuantizationPipeline pipeline) =>
        new(TextWriter.Null, TextWriter.Null) { Quantization = pipeline, Interactive = false };

    static Task<CliRunner.Result> Quantize(TempFolder folder, IQuantizationPipeline pipeline, string output, params string[] more) =>
        CliRunner.RunAsync(["quantize", folder.File("m.onnx"), "-o", folder.File(output), "--device", "cpu", "--cache-dir", folder.File("cache"), .. more],
            Services(pipeline));

    /// <summary>A folder with m.onnx and a plain file named <paramref name="blocker"/> where a folder will be needed.</summary>
    static TempFolder WithModelAndBlockingFile(string blocker)
    {
        var folder = new TempFolder();
        Models.Save(Models.Tiny(1), folder, "m.onnx");
        File.WriteAllText(folder.File(blocker), "a file where a folder is needed");
        return folder;
    }

    static string OnlyEntry(TempFolder folder) => Assert.Single(Directory.GetDirectories(folder.File("cache")));

    [Theory]
    [InlineData("flip")]
    [InlineData("truncate")]
    [InlineData("empty")]
    [InlineData("delete-manifest")]
    [InlineData("only-report")]
    [InlineData("extra-file")]
    public async Task A_damaged_entry_is_reported_removed_and_recomputed(string damage)
    {
        using var folder = new TempFolder();
        Models.Save(Models.Tiny(1), folder, "m.onnx");
        var pipeline = new FixedPipeline();
        var first = await Quantize(folder, pipeline, "a.onnx");
        Assert.True(first.ExitCode == 0, first.Err);
        string entry = OnlyEntry(folder);
        string cached = Path.Combine(entry, ModelCache.ModelFile);
        Assert.Equal(FixedPipeline.Result, File.ReadAllBytes(cached));

        switch (damage)
        {
            case "flip":
                var bytes = File.ReadAllBytes(cached);
                for (int i = 0; i < 64; i++) bytes[bytes.Length / 2 + i] ^= 0x5A;
                File.WriteAllBytes(cached, bytes);
                break;
            case "truncate":
                File.WriteAllBytes(cached, File.ReadAllBytes(cached)[..(FixedPipeline.Result.Length / 2)]);
                break;
            case "empty":
                File.WriteAllBytes(cached, []);
                break;
            case "delete-manifest":
                File.Delete(Path.Combine(entry, ModelCache.ManifestFile));
                break;
            case "only-report":
                foreach (var f in Directory.GetFiles(entry).Where(f => Path.GetFileName(f) != "report.json")) File.Delete(f);
                break;
            case "extra-file":
                File.WriteAllText(Path.Combine(entry, "model.onnx.data"), "x");
                break;
        }

        var second = await Quantize(folder, pipeline, "b.onnx");
        Assert.True(second.ExitCode == 0, second.Err);
        Assert.Equal(2, pipeline.Calls);
        Assert.DoesNotContain("cache hit", second.Out);
        Assert.Contains($"{folder.File("m.onnx")}(0,0): warning SADG1202: The cache entry '{entry}' is not used: ", second.Err);
        Assert.Equal(FixedPipeline.Result, File.ReadAllBytes(folder.File("b.onnx")));

        // The entry was replaced by a good one: the next run is a hit with the right bytes.
        var third = await Quantize(folder, pipeline, "c.onnx");
        Assert.True(third.ExitCode == 0, third.Err);
        Assert.Equal(2, pipeline.Calls);
        Assert.Contains("cache hit", third.Out);
        Assert.DoesNotContain("SADG1202", third.Err);
        Assert.Equal(FixedPipeline.Result, File.ReadAllBytes(folder.File("c.onnx")));
        Assert.Empty(Directory.GetFileSystemEntries(folder.File("cache"), ".*"));
    }

    [Fact]
    public async Task A_hit_writes_the_verified_report_files()
    {
        using var folder = new TempFolder();
        Models.Save(Models.Tiny(1), folder, "m.onnx");
        var pipeline = new FixedPipeline();
        Assert.Equal(0, (await Quantize(folder, pipeline, "a.onnx")).ExitCode);
        var hit = await Quantize(folder, pipeline, "b.onnx", "--report", folder.File("report"));
        Assert.True(hit.ExitCode == 0, hit.Err);
        Assert.Contains("cache hit", hit.Out);
        Assert.Equal(["report.json"], Directory.GetFiles(folder.File("report")).Select(Path.GetFileName));
    }

    [Fact]
    public async Task A_hit_reports_the_warnings_of_the_run_that_made_it()
    {
        using var folder = new TempFolder();
        string model = Models.Save(TestModels.Vgg(), folder, "vgg.onnx"); // no BatchNorm: SADG2001, and no input range to infer: SADG2002
        string[] run = ["quantize", model, "--device", "cpu", "--profile", "quick", "--samples", "8", "--generation-steps", "4",
            "--reconstruction-steps", "2", "--method", "genie", "--cache-dir", folder.File("cache")];
        static List<string> Warnings(CliRunner.Result r) => r.Err.Split('\n').Select(l => l.TrimEnd('\r')).Where(l => l.Contains(": warning SADG2")).ToList();

        var first = await CliRunner.RunAsync([.. run, "-o", folder.File("a.onnx")]);
        Assert.True(first.ExitCode == 0, first.Err);
        Assert.DoesNotContain("cache hit", first.Out);
        var warned = Warnings(first);
        Assert.Contains(warned, l => l.StartsWith($"{model}(0,0): warning SADG2001: ", StringComparison.Ordinal));
        Assert.Contains(warned, l => l.StartsWith($"{model}(0,0): warning SADG2002: ", StringComparison.Ordinal));
        using (var json = System.Text.Json.JsonDocument.Parse(File.ReadAllBytes(Path.Combine(OnlyEntry(folder), "report.json"))))
            Assert.Equal(["SADG2002", "SADG2001"], json.RootElement.GetProperty("warnings").EnumerateArray().Select(w => w.GetProperty("code").GetString()));

        var hit = await CliRunner.RunAsync([.. run, "-o", folder.File("b.onnx")]);
        Assert.True(hit.ExitCode == 0, hit.Err);
        Assert.Contains("cache hit", hit.Out);
        Assert.Equal(warned, Warnings(hit));
    }

    [Fact]
    public void Concurrent_writers_of_one_key_end_with_one_verified_entry_and_nothing_else()
    {
        using var folder = new TempFolder();
        var cache = new ModelCache(folder.File("cache"));
        Directory.CreateDirectory(cache.Directory);
        string key = new string('a', 64);
        // A broken entry in the way is replaced too.
        Directory.CreateDirectory(cache.EntryPath(key));
        File.WriteAllText(Path.Combine(cache.EntryPath(key), "report.json"), "{}");
        var files = new Dictionary<string, byte[]> { ["report.json"] = "{}"u8.ToArray() };
        var outcomes = Enumerable.Range(0, 8).AsParallel().WithDegreeOfParallelism(8)
            .Select(_ => cache.Put(key, FixedPipeline.Result, files)).ToList();
        Assert.Single(outcomes, o => o == CachePutOutcome.Stored);
        var found = cache.Lookup(key);
        Assert.Null(found.Problem);
        Assert.Equal(FixedPipeline.Result, found.Entry!.Model);
        Assert.Equal([key], Directory.GetFileSystemEntries(cache.Directory).Select(Path.GetFileName));
    }

    [Fact]
    public void Leftovers_of_killed_writers_are_swept_once_a_day_old()
    {
        using var folder = new TempFolder();
        var cache = new ModelCache(folder.File("cache"));
        string old = Path.Combine(cache.Directory, ".k.1.a.tmp"), fresh = Path.Combine(cache.Directory, ".k.2.b.tmp");
        Directory.CreateDirectory(old);
        Directory.CreateDirectory(fresh);
        Directory.SetLastWriteTimeUtc(old, DateTime.UtcNow.AddDays(-2));
        cache.Put(new string('b', 64), FixedPipeline.Result, new Dictionary<string, byte[]>());
        Assert.False(Directory.Exists(old));
        Assert.True(Directory.Exists(fresh));
    }

    [Fact]
    public async Task No_cache_neither_reads_nor_writes_it()
    {
        using var folder = new TempFolder();
        Models.Save(Models.Tiny(1), folder, "m.onnx");
        var pipeline = new FixedPipeline();
        Assert.Equal(0, (await Quantize(folder, pipeline, "a.onnx")).ExitCode);
        var r = await CliRunner.RunAsync(["quantize", folder.File("m.onnx"), "-o", folder.File("b.onnx"), "--device", "cpu", "--no-cache"], Services(pipeline));
        Assert.True(r.ExitCode == 0, r.Err);
        Assert.Equal(2, pipeline.Calls);
        Assert.DoesNotContain("cache hit", r.Out);

        // With --cache-dir as well, one of the two would be ignored: a usage error, before anything runs.
        var both = await Quantize(folder, pipeline, "c.onnx", "--no-cache");
        Assert.Equal(2, both.ExitCode);
        Assert.Contains("error SADG1501: --no-cache turns the cache off and --cache-dir names its folder", both.Err);
        Assert.Equal(2, pipeline.Calls);
    }

    [Fact]
    public async Task An_output_folder_that_cannot_be_made_leaves_no_report_folder_behind()
    {
        using var folder = WithModelAndBlockingFile("afile");
        var pipeline = new FixedPipeline();
        var r = await CliRunner.RunAsync(["quantize", folder.File("m.onnx"), "-o", folder.File("afile/out.onnx"), "--report", folder.File("newreport"),
            "--device", "cpu", "--no-cache"], Services(pipeline));
        Assert.Equal(1, r.ExitCode);
        Assert.Contains("error SADG1201", r.Err);
        Assert.False(Directory.Exists(folder.File("newreport")));
        Assert.Equal(0, pipeline.Calls);
    }

    [Fact]
    public async Task A_run_that_fails_leaves_none_of_the_folders_it_made()
    {
        using var folder = new TempFolder();
        Models.Save(Models.Tiny(1), folder, "m.onnx");
        var pipeline = new FixedPipeline(_ => throw new SadgException(SadgErrorCode.InvalidGraph, "the pipeline failed"));
        var r = await CliRunner.RunAsync(["quantize", folder.File("m.onnx"), "-o", folder.File("new/deeper/out.onnx"),
            "--report", folder.File("new/report"), "--device", "cpu", "--no-cache"], Services(pipeline));
        Assert.Equal(1, r.ExitCode);
        Assert.Contains("the pipeline failed", r.Err);
        Assert.Equal(["m.onnx"], Directory.GetFileSystemEntries(folder.Path).Select(Path.GetFileName));
    }

    [Theory]
    [InlineData("report/report.md")]
    [InlineData("report/synthetic.png")]
    [InlineData("report")]
    [InlineData("out/")]
    public async Task An_output_the_report_would_overwrite_or_a_folder_is_refused_before_anything_runs(string output)
    {
        using var folder = new TempFolder();
        Models.Save(Models.Tiny(1), folder, "m.onnx");
        var pipeline = new FixedPipeline();
        var r = await CliRunner.RunAsync(["quantize", folder.File("m.onnx"), "-o", folder.File(output), "--report", folder.File("report"),
            "--device", "cpu", "--no-cache"], Services(pipeline));
        Assert.Equal(1, r.ExitCode);
        Assert.Contains("error SADG1503: -o '", r.Err);
        Assert.Equal(0, pipeline.Calls);
        Assert.Equal(["m.onnx"], Directory.GetFileSystemEntries(folder.Path).Select(Path.GetFileName));
    }

    [Fact]
    public async Task Output_through_a_linked_folder_to_the_input_is_refused_and_the_input_kept()
    {
        using var folder = new TempFolder();
        Directory.CreateDirectory(folder.File("m"));
        string model = Models.Save(Models.Tiny(1), folder, "m/model.onnx");
        byte[] before = File.ReadAllBytes(model);
        Directory.CreateSymbolicLink(folder.File("link"), folder.File("m"));
        File.CreateSymbolicLink(folder.File("file-link.onnx"), model);
        var pipeline = new FixedPipeline();
        foreach (string output in new[] { "link/model.onnx", "file-link.onnx", "m/../link/./model.onnx" })
        {
            var r = await CliRunner.RunAsync(["quantize", "--no-cache", model, "-o", folder.File(output)], Services(pipeline));
            Assert.Equal(1, r.ExitCode);
            Assert.Contains("error SADG1503: ", r.Err);
            Assert.Contains("is the input model", r.Err);
        }
        Assert.Equal(0, pipeline.Calls);
        Assert.Equal(before, File.ReadAllBytes(model));
    }

    [Fact]
    public async Task An_output_folder_that_cannot_be_written_fails_before_the_pipeline()
    {
        using var folder = WithModelAndBlockingFile("not-a-folder");
        var pipeline = new FixedPipeline();
        var r = await Quantize(folder, pipeline, "not-a-folder/out.onnx");
        Assert.Equal(1, r.ExitCode);
        Assert.Contains("error SADG1201: Cannot write into the folder", r.Err);
        Assert.Equal(0, pipeline.Calls);
    }

    [Fact]
    public async Task A_cache_dir_that_cannot_be_used_fails_before_the_pipeline()
    {
        using var folder = WithModelAndBlockingFile("cache");
        var pipeline = new FixedPipeline();
        var r = await Quantize(folder, pipeline, "out.onnx");
        Assert.Equal(1, r.ExitCode);
        Assert.Contains($"{folder.File("cache")}(0,0): error SADG1203: ", r.Err);
        Assert.Equal(0, pipeline.Calls);
        Assert.False(File.Exists(folder.File("out.onnx")));
    }

    [Fact]
    public async Task A_default_cache_folder_that_cannot_be_used_is_a_warning_and_the_run_goes_on()
    {
        using var folder = WithModelAndBlockingFile("cache");
        var pipeline = new FixedPipeline();
        var services = Services(pipeline) with { CacheDirectory = folder.File("cache") };
        var r = await CliRunner.RunAsync(["quantize", folder.File("m.onnx"), "-o", folder.File("out.onnx"), "--device", "cpu"], services);
        Assert.True(r.ExitCode == 0, r.Err);
        // A warning is put on the model being quantized (MSBuild shows it on that item); the message names the folder.
        Assert.Contains($"{folder.File("m.onnx")}(0,0): warning SADG1203: ", r.Err);
        Assert.Contains(folder.File("cache"), r.Err);
        Assert.Equal(1, pipeline.Calls);
        Assert.Equal(FixedPipeline.Result, File.ReadAllBytes(folder.File("out.onnx")));
    }

    [Fact]
    public async Task When_writing_the_output_fails_after_the_run_the_result_is_cached()
    {
        using var folder = new TempFolder();
        Models.Save(Models.Tiny(1), folder, "m.onnx");
        Directory.CreateDirectory(folder.File("out"));
        // The output folder disappears while the pipeline runs (a file takes its place).
        var pipeline = new FixedPipeline(_ =>
        {
            Directory.Delete(folder.File("out"), recursive: true);
            File.WriteAllText(folder.File("out"), "x");
        });
        var r = await Quantize(folder, pipeline, "out/q.onnx");
        Assert.Equal(1, r.ExitCode);
        Assert.Contains("error SADG1201: ", r.Err);
        Assert.Contains("The finished model is in the cache", r.Err);
        Assert.Equal(1, pipeline.Calls);

        File.Delete(folder.File("out"));
        var again = await Quantize(folder, new FixedPipeline(), "out/q.onnx");
        Assert.True(again.ExitCode == 0, again.Err);
        Assert.Contains("cache hit", again.Out);
        Assert.Equal(FixedPipeline.Result, File.ReadAllBytes(folder.File("out/q.onnx")));
    }
}
