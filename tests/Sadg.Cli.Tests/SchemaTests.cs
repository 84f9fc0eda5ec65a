using System.CommandLine;
using Sadg.Cli.Commands;
using Sadg.Pipeline;
using Sadg.Tests.Support;
using static TorchSharp.torch;

namespace Sadg.Cli.Tests;

/// <summary>
/// The settings schema drives both doors: for every setting, a change reaches the cache key, and the command line the
/// build passes (<see cref="QuantizeSettings.Arguments"/>) reads back through the tool's options to the same settings.
/// The stamp half of the table is in the build task tests (TaskTests).
/// </summary>
public class SchemaTests
{
    /// <summary>For each setting: metadata-style values of a base and of a variant that differs in that setting.</summary>
    public static readonly (Setting Setting, (string, string)[] Base, (string, string)[] Variant)[] Rows =
    [
        (QuantizeSchema.Bits, [], [("Bits", "3")]),
        (QuantizeSchema.ActivationBits, [], [("ActivationBits", "none")]),
        (QuantizeSchema.Method, [], [("Method", "genie")]),
        (QuantizeSchema.CalibrationData, [("Method", "real"), ("CalibrationData", "a")], [("Method", "real"), ("CalibrationData", "b")]),
        (QuantizeSchema.Samples, [], [("Samples", "9")]),
        (QuantizeSchema.Profile, [], [("Profile", "quick")]),
        (QuantizeSchema.Seed, [], [("Seed", "5")]),
        (QuantizeSchema.Device, [("Device", "cpu")], [("Device", "cuda")]),
        (QuantizeSchema.InputShape, [], [("InputShape", "3,8,8")]),
        (QuantizeSchema.InputRange, [], [("InputRange", "0,255")]),
        (QuantizeSchema.InputMean, [], [("InputMean", "0.5"), ("InputStd", "0.25")]),
        (QuantizeSchema.InputStd, [("InputMean", "0.5"), ("InputStd", "0.25")], [("InputMean", "0.5"), ("InputStd", "0.5")]),
        (QuantizeSchema.InputPrior, [], [("InputPrior", "off")]),
        (QuantizeSchema.Neighbour, [], [("Neighbour", "raw")]),
        (QuantizeSchema.BiasCorrection, [], [("BiasCorrection", "off")]),
        (QuantizeSchema.MinAgreement, [], [("MinAgreement", "90")]),
        (QuantizeSchema.ValidationData, [], [("ValidationData", "a")]),
        (QuantizeSchema.Resize, [("ValidationData", "a")], [("ValidationData", "a"), ("Resize", "36")]),
        (QuantizeSchema.Crop, [("ValidationData", "a"), ("Resize", "36")], [("ValidationData", "a"), ("Resize", "36"), ("Crop", "center")]),
        (QuantizeSchema.ChannelOrder, [("ValidationData", "a")], [("ValidationData", "a"), ("ChannelOrder", "bgr")]),
        (QuantizeSchema.Exclude, [], [("Exclude", "conv1,Gemm")]),
        (QuantizeSchema.LayerBits, [], [("LayerBits", "conv1=3")]),
        (QuantizeSchema.FirstLastBits, [], [("FirstLastBits", "same")]),
        (QuantizeSchema.SizeBudget, [("SizeBudget", "0.125")], [("SizeBudget", "W3")]),
        (QuantizeSchema.ReconstructionSteps, [], [("ReconstructionSteps", "7")]),
        (QuantizeSchema.GenerationSteps, [], [("GenerationSteps", "7")]),
    ];

    public static TheoryData<string> Settings() => [.. QuantizeSchema.All.Select(s => s.Name)];

    static QuantizeSettings Read(params (string Name, string Value)[] values)
    {
        var problems = new List<OptionProblem>();
        var settings = QuantizeSettings.Parse(s => values.FirstOrDefault(v => v.Name == s.Name).Value, problems);
        Assert.Empty(problems.Select(p => p.Message));
        return settings;
    }

    /// <summary>The cache key's canonical options, as the tool computes them (the device resolved, the data by content).</summary>
    static string CacheKey(QuantizeSettings s) => (PipelineOptions.From(s, channels: 3) with
    {
        Device = s.Device == DeviceKind.Cuda ? new Device(TorchSharp.DeviceType.CUDA) : CPU,
        CalibrationDataHash = s.CalibrationData is { } data ? "hash of " + data : null,
        ValidationDataHash = s.ValidationData is { } held ? "hash of " + held : null,
    }).Canonical();

    [Fact]
    public void Every_setting_has_a_row() =>
        Assert.Equal(QuantizeSchema.All.Select(s => s.Name), Rows.Select(r => r.Setting.Name));

    [Theory]
    [MemberData(nameof(Settings))]
    public void Changing_a_setting_changes_the_cache_key(string name)
    {
        var row = Rows.Single(r => r.Setting.Name == name);
        Assert.NotEqual(CacheKey(Read(row.Base)), CacheKey(Read(row.Variant)));
    }

    [Theory]
    [MemberData(nameof(Settings))]
    public void The_command_line_reads_back_through_the_tools_options(string name)
    {
        var row = Rows.Single(r => r.Setting.Name == name);
        foreach (var values in new[] { row.Base, row.Variant })
        {
            var settings = Read(values);
            var options = new SettingOptions(QuantizeSchema.All);
            var command = new RootCommand();
            foreach (var option in options.All) command.Options.Add(option);
            string[] args = [.. settings.Arguments().SelectMany(a => new[] { a.Key, a.Value })];
            var parse = command.Parse(args);
            Assert.Empty(parse.Errors);
            var back = options.Read(parse);
            Assert.Equal(settings.Canonical(), back.Canonical());
            Assert.Equal(CacheKey(settings), CacheKey(back));
        }
    }

    /// <summary>
    /// The gate's threshold does not change the written bytes (the tool checks it against the agreement recorded in the
    /// model), so it is not in the cache key; whether there is a validation, and on which data, is.
    /// </summary>
    [Fact]
    public void The_gate_threshold_is_not_in_the_cache_key_but_the_validation_data_is()
    {
        Assert.Equal(CacheKey(Read(("MinAgreement", "10"))), CacheKey(Read(("MinAgreement", "99.5"))));
        Assert.NotEqual(Read(("MinAgreement", "10")).Canonical(), Read(("MinAgreement", "99.5")).Canonical());
        Assert.DoesNotContain("min_agreement", CacheKey(Read(("MinAgreement", "10"))));
        Assert.Contains("validation_data=synthetic", CacheKey(Read(("MinAgreement", "10"))));
        Assert.Contains("validation_data=sha256:hash of a", CacheKey(Read(("MinAgreement", "10"), ("ValidationData", "a"))));
        // Runs without a validation keep the keys they had before the gate existed.
        Assert.DoesNotContain("validation_data", CacheKey(Read()));
    }

    /// <summary>Layer lists are sets: their order, blanks and repeats do not change the key; unset or default they are not in it.</summary>
    [Fact]
    public void Layer_choices_are_in_the_cache_key_only_when_set_and_in_any_order()
    {
        Assert.Equal(CacheKey(Read(("Exclude", "b, a"))), CacheKey(Read(("Exclude", "a;b,a"))));
        Assert.Equal(CacheKey(Read(("LayerBits", "b=3,a=5"))), CacheKey(Read(("LayerBits", " a=5 ;b=3"))));
        Assert.Contains("exclude=a,b", CacheKey(Read(("Exclude", "b,a"))));
        Assert.Contains("layer_bits=a=5,b=3", CacheKey(Read(("LayerBits", "b=3,a=5"))));
        Assert.Equal(CacheKey(Read()), CacheKey(Read(("FirstLastBits", "8"))));
        Assert.DoesNotContain("exclude", CacheKey(Read()));
        Assert.DoesNotContain("layer_bits", CacheKey(Read()));
        Assert.DoesNotContain("first_last_bits", CacheKey(Read()));
    }

    [Theory]
    [InlineData("Exclude", ",", "Exclude (`--exclude` / `Exclude` metadata) must be a comma-separated list of node names or op types, not \",\".")]
    [InlineData("LayerBits", "conv1=9", "LayerBits (`--layer-bits` / `LayerBits` metadata) must be a comma-separated list of node=bits pairs, bits a whole number from 2 to 8, not \"conv1=9\".")]
    [InlineData("LayerBits", "conv1", "LayerBits (`--layer-bits` / `LayerBits` metadata) must be a comma-separated list of node=bits pairs, bits a whole number from 2 to 8, not \"conv1\".")]
    [InlineData("LayerBits", "a=3,a=4", "LayerBits (`--layer-bits` / `LayerBits` metadata) must be a comma-separated list of node=bits pairs, bits a whole number from 2 to 8, not \"a=3,a=4\".")]
    [InlineData("FirstLastBits", "4", "FirstLastBits (`--first-last-bits` / `FirstLastBits` metadata) must be 8 or same, not \"4\".")]
    public void Bad_layer_choices_name_the_setting(string name, string value, string message)
    {
        var problems = new List<OptionProblem>();
        QuantizeSettings.Parse(s => s.Name == name ? value : null, problems);
        Assert.Equal(message, Assert.Single(problems).Message);
    }

    /// <summary>A ratio, a KiB size and a uniform width keep their meaning through the key; unset, the budget is not in it.</summary>
    [Fact]
    public void The_size_budget_is_in_the_cache_key_only_when_set()
    {
        Assert.Contains("size_budget=0.125", CacheKey(Read(("SizeBudget", "0.125"))));
        Assert.Contains("size_budget=600KiB", CacheKey(Read(("SizeBudget", "600 kib"))));
        Assert.Equal(CacheKey(Read(("SizeBudget", "600KiB"))), CacheKey(Read(("SizeBudget", "600kib"))));
        Assert.NotEqual(CacheKey(Read(("SizeBudget", "0.125"))), CacheKey(Read(("SizeBudget", "0.25"))));
        Assert.DoesNotContain("size_budget", CacheKey(Read()));
        Assert.Contains("size_budget=W3", CacheKey(Read(("SizeBudget", "w3"))));
        Assert.NotEqual(CacheKey(Read(("SizeBudget", "W3"))), CacheKey(Read(("SizeBudget", "W4"))));
        static long Uniform(int bits) => 100 * bits;
        Assert.Equal(1000 * 1024L, Read(("SizeBudget", "1000KiB")).SizeBudget!.Bytes(1, Uniform));
        Assert.Equal(125L, Read(("SizeBudget", "0.125")).SizeBudget!.Bytes(1000, Uniform));
        Assert.Equal(300L, Read(("SizeBudget", "W3")).SizeBudget!.Bytes(1000, Uniform));
    }

    [Theory]
    [InlineData("0")]
    [InlineData("1.5")]
    [InlineData("-0.1")]
    [InlineData("0KiB")]
    [InlineData("12.5KiB")]
    [InlineData("600KB")]
    [InlineData("600")]
    [InlineData("KiB")]
    [InlineData("W1")]
    [InlineData("W9")]
    [InlineData("W")]
    [InlineData("W3.5")]
    public void A_bad_size_budget_names_the_setting_and_both_forms(string value)
    {
        var problems = new List<OptionProblem>();
        QuantizeSettings.Parse(s => s.Name == "SizeBudget" ? value : null, problems);
        var problem = Assert.Single(problems);
        Assert.Equal("SADG1502", problem.Code);
        Assert.Equal($"SizeBudget (`--size-budget` / `SizeBudget` metadata) must be a ratio greater than 0 and at most 1 (e.g. 0.125), " +
            $"a whole number of KiB (e.g. 600KiB), or W and a bit width from 2 to 8 (e.g. W3), not \"{value}\".", problem.Message);
    }

    [Fact]
    public void Resize_and_crop_are_in_the_cache_key_only_when_set()
    {
        string plain = CacheKey(Read(("Method", "real"), ("CalibrationData", "a")));
        Assert.DoesNotContain("resize", plain);
        Assert.DoesNotContain("crop", plain);
        Assert.Equal(plain, CacheKey(Read(("Method", "real"), ("CalibrationData", "a"), ("Crop", "none"))));
        string cropped = CacheKey(Read(("Method", "real"), ("CalibrationData", "a"), ("Resize", "256"), ("Crop", "center")));
        Assert.Contains("resize=256", cropped);
        Assert.Contains("crop=center", cropped);
        Assert.Contains("resize=model", CacheKey(Read(("Method", "real"), ("CalibrationData", "a"), ("Resize", "Model"))));
    }

    [Theory]
    [InlineData("Resize", "0", "Resize (`--resize` / `Resize` metadata) must be a whole number of at least 1 (the shorter side in pixels), or model, not \"0\".")]
    [InlineData("Resize", "-3", "Resize (`--resize` / `Resize` metadata) must be a whole number of at least 1 (the shorter side in pixels), or model, not \"-3\".")]
    [InlineData("Resize", "32x32", "Resize (`--resize` / `Resize` metadata) must be a whole number of at least 1 (the shorter side in pixels), or model, not \"32x32\".")]
    [InlineData("Crop", "corner", "Crop (`--crop` / `Crop` metadata) must be one of none, center, not \"corner\".")]
    [InlineData("ChannelOrder", "rbg", "ChannelOrder (`--channel-order` / `ChannelOrder` metadata) must be one of rgb, bgr, not \"rbg\".")]
    public void Bad_resize_and_crop_values_are_refused(string name, string value, string message)
    {
        var problems = new List<OptionProblem>();
        QuantizeSettings.Parse(s => s.Name == name ? value : s == QuantizeSchema.ValidationData ? "a" : null, problems);
        Assert.Equal(message, Assert.Single(problems).Message);
        Assert.Equal("SADG1502", problems[0].Code);
    }

    [Fact]
    public void Resize_without_data_to_read_is_refused()
    {
        var problems = new List<OptionProblem>();
        QuantizeSettings.Parse(s => s == QuantizeSchema.Resize ? "256" : null, problems);
        Assert.Equal("Resize (`--resize` / `Resize` metadata) applies to the image folders of CalibrationData (`--calibration-data` / " +
            "`CalibrationData` metadata) or ValidationData (`--validation-data` / `ValidationData` metadata); give one of them, or leave it out.",
            Assert.Single(problems).Message);
        Assert.Equal("SADG1502", problems[0].Code);
    }

    [Theory]
    [InlineData("genie", "raw", true)]
    [InlineData("gaussian", "paper", true)]
    [InlineData("real", "raw", true)]
    [InlineData("sadag", "raw", false)]
    [InlineData("genie", "random", false)]
    public void A_neighbour_other_than_the_default_is_refused_for_a_method_without_the_refinement(string method, string neighbour, bool refused)
    {
        var problems = new List<OptionProblem>();
        QuantizeSettings.Parse(s => s == QuantizeSchema.Method ? method : s == QuantizeSchema.Neighbour ? neighbour
            : s == QuantizeSchema.CalibrationData && method == "real" ? "a" : null, problems);
        if (!refused) Assert.Empty(problems.Select(p => p.Message));
        else
        {
            Assert.Equal($"Neighbour (`--neighbour` / `Neighbour` metadata) {neighbour} is read by Method (`--method` / `Method` metadata) " +
                $"sadag only; {method} has no sharpness-aware refinement to use it. Leave it out, or choose sadag.", Assert.Single(problems).Message);
            Assert.Equal("SADG1502", problems[0].Code);
        }
    }

    [Theory]
    [InlineData("101")]
    [InlineData("-1")]
    [InlineData("ninety")]
    public void A_threshold_outside_0_to_100_is_refused(string value)
    {
        var problems = new List<OptionProblem>();
        QuantizeSettings.Parse(s => s == QuantizeSchema.MinAgreement ? value : null, problems);
        Assert.Equal($"MinAgreement (`--min-agreement` / `MinAgreement` metadata) must be a percentage: a number from 0 to 100, not \"{value}\".",
            Assert.Single(problems).Message);
        Assert.Equal("SADG1502", problems[0].Code);
    }

    [Fact]
    public void Errors_name_the_setting_for_both_doors()
    {
        var problems = new List<OptionProblem>();
        QuantizeSettings.Parse(s => s == QuantizeSchema.Samples ? "0" : null, problems);
        Assert.Equal("Samples (`--samples` / `Samples` metadata) must be a whole number of at least 1, not \"0\".", Assert.Single(problems).Message);
        Assert.Equal("SADG1502", problems[0].Code);
    }

    /// <summary>
    /// inspect's estimate asks Core's rule (OnnxTensors.IntegerBytes): at every bit width it equals the bytes of the
    /// quantized weights in the model the tool writes.
    /// </summary>
    [Fact]
    public async Task Inspect_estimate_equals_the_written_weight_bytes_at_every_bit_width()
    {
        using var folder = new TempFolder();
        string model = Models.Save(TestModels.ResNet(seed: 3, width: 4, channels: 1, size: 8), folder, "m.onnx");
        var analysis = ModelAnalysis.Analyze(model);
        var weights = analysis.Layers.Select(l => l.Weight).ToHashSet();
        for (int bits = 2; bits <= 8; bits++)
        {
            string output = folder.File($"q{bits}.onnx");
            var r = await CliRunner.RunAsync("quantize", model, "-o", output, "--bits", $"{bits}", "--method", "gaussian", "--samples", "4",
                "--device", "cpu", "--profile", "quick", "--reconstruction-steps", "1", "--no-cache");
            Assert.True(r.ExitCode == 0, r.Err);
            var written = global::Onnx.ModelProto.Parser.ParseFrom(File.ReadAllBytes(output));
            long bytes = written.Graph.Initializer
                .Where(t => t.Dims.Count >= 2 && (t.DataType is (int)global::Onnx.TensorProto.Types.DataType.Int4
                    or (int)global::Onnx.TensorProto.Types.DataType.Uint4 or (int)global::Onnx.TensorProto.Types.DataType.Int8
                    or (int)global::Onnx.TensorProto.Types.DataType.Uint8))
                .Sum(t => (long)t.RawData.Length);
            Assert.True(bytes > 0);
            Assert.Equal(analysis.Sizes.Single(s => s.Bits == bits).DefaultPolicyWeightBytes, bytes);
        }
    }
}
