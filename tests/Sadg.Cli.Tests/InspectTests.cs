using System.Text.Json;
using Google.Protobuf;
using Sadg.Tests.Support;

namespace Sadg.Cli.Tests;

public class InspectTests
{
    [Fact]
    public async Task Inspect_shows_layers_blocks_and_sizes()
    {
        using var folder = new TempFolder();
        string path = Models.Save(TestModels.ResNet(), folder, "resnet.onnx");
        var r = await CliRunner.RunAsync("inspect", path);
        Assert.True(r.ExitCode == 0, r.Err);
        Assert.Contains("quantizable layers (7,", r.Out);
        Assert.Contains("BatchNormalization", r.Out);
        Assert.Contains("'input' 3x32x32 (CxHxW, declared NCHW), batch dynamic", r.Out);
        Assert.Contains("nothing stops quantization", r.Out);
        Assert.Equal("", r.Err);
    }

    [Fact]
    public async Task Inspect_json_has_the_numbers()
    {
        using var folder = new TempFolder();
        var proto = TestModels.ResNet();
        string path = Models.Save(proto, folder, "resnet.onnx");
        var r = await CliRunner.RunAsync("inspect", path, "--json");
        Assert.Equal(0, r.ExitCode);
        using var json = JsonDocument.Parse(r.Out);
        var root = json.RootElement;
        Assert.True(root.GetProperty("ready").GetBoolean());
        Assert.False(root.GetProperty("batchNormFolded").GetBoolean());
        var layers = root.GetProperty("quantizableLayers").EnumerateArray().ToList();
        Assert.Equal(7, layers.Count);
        Assert.Equal(6, layers.Count(l => l.GetProperty("op").GetString() == "Conv"));
        Assert.True(root.GetProperty("blocks").GetInt32() >= 3);

        // Sizes: recompute the 4-bit estimate from the initializers.
        var weights = layers.Select(l => l.GetProperty("weight").GetString()!).ToHashSet();
        long quantized = 0, other = 0;
        foreach (var t in proto.Graph.Initializer)
        {
            long n = t.Dims.Aggregate(1L, (a, b) => a * b);
            if (weights.Contains(t.Name)) quantized += (n * 4 + 7) / 8 + t.Dims[0] * 4 + (t.Dims[0] * 4 + 7) / 8;
            else other += n * 4;
        }
        var sizes = root.GetProperty("estimatedBytes").EnumerateArray().ToList();
        Assert.Equal(7, sizes.Count);
        var four = sizes.Single(s => s.GetProperty("bits").GetInt32() == 4);
        Assert.Equal(quantized + other, four.GetProperty("allLayers").GetInt64());
        var all = sizes.Select(s => s.GetProperty("allLayers").GetInt64()).ToList();
        Assert.Equal(all.Order(), all);
        Assert.True(all[^1] < root.GetProperty("fileBytes").GetInt64());
    }

    [Fact]
    public async Task Estimate_time_prints_one_line_per_profile_and_method()
    {
        using var folder = new TempFolder();
        string path = Models.Save(TestModels.ResNet(seed: 3, width: 4, channels: 1, size: 8), folder, "small.onnx");
        var plain = await CliRunner.RunAsync("inspect", path);
        Assert.DoesNotContain("estimated time", plain.Out);

        var r = await CliRunner.RunAsync("inspect", path, "--estimate-time");
        Assert.True(r.ExitCode == 0, r.Err);
        Assert.Contains("estimated time of sadg quantize on this machine", r.Out);
        var lines = r.Out.Split('\n');
        foreach (var profile in Enum.GetValues<StepProfile>())
            foreach (var method in new[] { "gaussian", "genie", "sadag" })
                Assert.Single(lines, l => System.Text.RegularExpressions.Regex.IsMatch(l, $@"^\s+{QuantizeSchema.Name(profile)}\s+{method}\s"));
    }

    [Fact]
    public async Task Estimate_time_json_has_the_step_times_and_the_runs()
    {
        using var folder = new TempFolder();
        string path = Models.Save(TestModels.ResNet(seed: 3, width: 4, channels: 1, size: 8), folder, "small.onnx");
        using (var plain = JsonDocument.Parse((await CliRunner.RunAsync("inspect", path, "--json")).Out))
            Assert.Equal(JsonValueKind.Null, plain.RootElement.GetProperty("estimatedTime").ValueKind);

        var r = await CliRunner.RunAsync("inspect", path, "--json", "--estimate-time");
        Assert.True(r.ExitCode == 0, r.Err);
        using var json = JsonDocument.Parse(r.Out);
        var estimate = json.RootElement.GetProperty("estimatedTime");
        Assert.Equal(json.RootElement.GetProperty("blocks").GetInt32(), estimate.GetProperty("blockStepSeconds").GetArrayLength());
        foreach (var field in new[] { "genieStepSeconds", "refinementStepSeconds", "measurementSeconds", "runtimeSecondsPerImage", "forwardSecondsPerImage" })
            Assert.True(estimate.GetProperty(field).GetDouble() > 0, field);
        Assert.True(estimate.GetProperty("calibrationSecondsPerImage").GetDouble() >= 0);
        Assert.Equal(32, estimate.GetProperty("generationBatch").GetInt32());
        var runs = estimate.GetProperty("runs").EnumerateArray().ToList();
        Assert.Equal(Enum.GetValues<StepProfile>().Length * 3, runs.Count);
        foreach (var run in runs)
        {
            var stages = run.GetProperty("stages").EnumerateArray().ToList();
            Assert.Equal(run.GetProperty("totalSeconds").GetDouble(), stages.Sum(s => s.GetProperty("seconds").GetDouble()), 6);
            Assert.All(stages, s => Assert.True(s.GetProperty("steps").GetInt32() >= 0 && s.GetProperty("repeats").GetInt32() >= 1));
        }
        var sadag = runs.Single(x => x.GetProperty("profile").GetString() == "quick" && x.GetProperty("method").GetString() == "sadag");
        Assert.Contains(sadag.GetProperty("stages").EnumerateArray(), s => s.GetProperty("stage").GetString() == "refinement (SADAG)");
        Assert.Contains(sadag.GetProperty("stages").EnumerateArray(), s => s.GetProperty("stage").GetString() == "layer sensitivity");
        Assert.True(estimate.GetProperty("quantizedLayers").GetInt32() > 0);
    }

    [Fact]
    public async Task Estimate_time_is_at_the_bits_given_bits_outside_2_to_8_are_refused_before_timing_and_bits_alone_is_a_usage_error()
    {
        using var folder = new TempFolder();
        string path = Models.Save(TestModels.ResNet(seed: 3, width: 4, channels: 1, size: 8), folder, "small.onnx");

        var text = await CliRunner.RunAsync("inspect", path, "--estimate-time", "--bits", "3");
        Assert.True(text.ExitCode == 0, text.Err);
        Assert.Contains("estimated time of sadg quantize on this machine (W3A3,", text.Out);
        var json = await CliRunner.RunAsync("inspect", path, "--json", "--estimate-time", "--bits", "3");
        Assert.True(json.ExitCode == 0, json.Err);
        using (var doc = JsonDocument.Parse(json.Out))
            Assert.Equal(3, doc.RootElement.GetProperty("estimatedTime").GetProperty("bits").GetInt32());

        var bad = await CliRunner.RunAsync("inspect", path, "--estimate-time", "--bits", "9");
        Assert.NotEqual(0, bad.ExitCode);
        Assert.Contains("SADG1402", bad.Err);
        Assert.DoesNotContain("Timing a few steps", bad.Err + bad.Out);
        Assert.DoesNotContain("estimated time", bad.Out);

        var alone = await CliRunner.RunAsync("inspect", path, "--bits", "3");
        Assert.Equal(2, alone.ExitCode);
        Assert.Contains("SADG1501", alone.Err);
        Assert.Contains("--estimate-time and --sensitivity", alone.Err);
    }

    [Fact]
    public async Task Model_without_batchnorm_is_reported_with_the_export_that_keeps_it()
    {
        using var folder = new TempFolder();
        string path = Models.Save(TestModels.Vgg(), folder, "vgg.onnx");
        var r = await CliRunner.RunAsync("inspect", path);
        Assert.Equal(0, r.ExitCode);
        Assert.Contains("BatchNorm:  none: the model has no BatchNormalization nodes (folded into the convolutions at export", r.Out);
        Assert.Contains("training=torch.onnx.TrainingMode.PRESERVE", r.Out);
        Assert.Contains("input:      nothing says: generation assumes a standardized input", r.Out);
    }

    /// <summary>
    /// inspect says what generation will take the model to be fed, in quantize's order: the first BatchNorm (fitted
    /// when quantizing), a BN-free graph's own input normalization (read here), the uint8 type, or nothing.
    /// </summary>
    [Fact]
    public async Task Inspect_says_what_the_model_is_taken_to_be_fed()
    {
        using var folder = new TempFolder();
        async Task<string> Expectation(global::Onnx.ModelProto proto, string name)
        {
            var r = await CliRunner.RunAsync("inspect", Models.Save(proto, folder, name), "--json");
            Assert.True(r.ExitCode == 0, r.Err);
            using var json = JsonDocument.Parse(r.Out);
            return json.RootElement.GetProperty("inputExpectation").GetString()!;
        }
        Assert.Equal("fitted to the first BatchNormalization's statistics when quantizing", await Expectation(Models.Of(Models.Kind.Rgb), "bn.onnx"));
        string normalized = await Expectation(Models.WithoutBatchNorm(Models.Of(Models.Kind.Rgb)), "normalizing.onnx");
        Assert.StartsWith("inferred from the graph's input normalization", normalized);
        Assert.EndsWith("pixels in [0, 1]", normalized);
        Assert.StartsWith("nothing says", await Expectation(Models.WithoutBatchNorm(Models.Of(Models.Kind.ConvHead)), "plain.onnx"));
    }

    /// <summary>A model of an opset newer than Sadg reads is a blocker in inspect, as quantize's preflight refuses it.</summary>
    [Fact]
    public async Task An_opset_newer_than_sadg_reads_is_a_blocker()
    {
        using var folder = new TempFolder();
        var proto = Models.Tiny(1);
        proto.OpsetImport[0].Version = Sadg.Onnx.OpsetUpgrader.NewestKnownOpset + 1;
        var r = await CliRunner.RunAsync("inspect", Models.Save(proto, folder, "new.onnx"));
        Assert.Equal(1, r.ExitCode);
        Assert.Contains("error SADG1101", r.Err);
        Assert.Contains($"newer than opset {Sadg.Onnx.OpsetUpgrader.NewestKnownOpset}", r.Err);
    }

    public static TheoryData<string, int> BadInputs => new()
    {
        { "missing", 1001 },
        { "empty", 1002 },
        { "random", 1003 },
        { "truncated", 1003 },
        { "unsupported", 1101 },
        { "no-image", 1102 },
    };

    [Theory]
    [MemberData(nameof(BadInputs))]
    public async Task Bad_models_print_a_diagnostic_and_exit_1(string kind, int code)
    {
        using var folder = new TempFolder();
        string path = folder.File(kind + ".onnx");
        switch (kind)
        {
            case "missing": break;
            case "empty": File.WriteAllBytes(path, []); break;
            case "random":
                var bytes = new byte[4096];
                new Random(7).NextBytes(bytes);
                bytes[0] = 0xff; // an invalid tag: never valid protobuf
                File.WriteAllBytes(path, bytes);
                break;
            case "truncated":
                var full = TestModels.ResNet().ToByteArray();
                File.WriteAllBytes(path, full[..(full.Length / 2)]);
                break;
            case "unsupported": Models.Save(Models.UnsupportedOp(), folder, kind + ".onnx"); break;
            case "no-image": Models.Save(TestModels.Mlp(), folder, kind + ".onnx"); break;
        }
        var r = await CliRunner.RunAsync("inspect", path);
        Assert.Equal(1, r.ExitCode);
        Assert.Contains($"{path}(0,0): error SADG{code}: ", r.Err);
        if (kind == "unsupported") Assert.Contains("FrobnicateImage", r.Err);
    }
}
