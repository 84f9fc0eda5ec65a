using System.Globalization;
using Sadg.Cli.Data;
using Sadg.Export;
using Sadg.Pipeline;
using Sadg.Tests.Support;

namespace Sadg.Cli.Tests;

/// <summary>
/// The accuracy gate (--min-agreement, --validation-data): measured on held-out images after quantizing, recorded in
/// the model and the report; below the threshold SADG1405, nothing written and nothing cached, also on a cache hit.
/// </summary>
public class GateTests
{
    static readonly string[] Tiny = ["--device", "cpu", "--profile", "quick", "--samples", "16", "--generation-steps", "4", "--reconstruction-steps", "2"];

    static string Model(TempFolder folder) => Models.Save(TestModels.ResNet(seed: 3, width: 4, channels: 1, size: 8), folder, "m.onnx");

    static Dictionary<string, string> Metadata(string path) =>
        global::Onnx.ModelProto.Parser.ParseFrom(File.ReadAllBytes(path)).MetadataProps.ToDictionary(p => p.Key, p => p.Value);

    [Fact]
    public async Task A_threshold_of_0_passes_and_the_agreement_on_held_out_synthetic_images_is_recorded()
    {
        using var folder = new TempFolder();
        string model = Model(folder), output = folder.File("q.onnx"), report = folder.File("report");
        var r = await CliRunner.RunAsync(["quantize", model, "-o", output, "--method", "gaussian", "--min-agreement", "0",
            "--report", report, "--no-cache", .. Tiny]);
        Assert.True(r.ExitCode == 0, r.Err);
        Assert.DoesNotContain("SADG2003", r.Err);
        var meta = Metadata(output);
        double agreement = double.Parse(meta[SadgMetadata.ValidationAgreement], CultureInfo.InvariantCulture);
        Assert.InRange(agreement, 0, 1);
        Assert.Equal("held-out synthetic images (16 Genie-D images, seed 1000003)", meta[SadgMetadata.ValidationData]);
        Assert.Equal("16", meta[SadgMetadata.ValidationImages]);
        Assert.Contains($"accuracy gate passed: top-1 agreement {agreement * 100:0.00}% >= 0% on held-out synthetic images", r.Out);
        var json = QuantizationReport.FromJson(File.ReadAllText(Path.Combine(report, "report.json")));
        Assert.Equal(agreement, json.Validation!.Top1Agreement!.Value, 4);
        Assert.Equal(16, json.Validation.Images);
        Assert.Equal(meta[SadgMetadata.ValidationData], json.ValidationData);
        Assert.Contains("Validation (the accuracy gate's measurement)", File.ReadAllText(Path.Combine(report, "report.md")));
        // The outcome line (last on stdout) gives the held-out measurement, not the flattering calibration-set one.
        string outcome = r.Out.TrimEnd().Split('\n')[^1];
        Assert.StartsWith("outcome: m.onnx: W4A4 ", outcome);
        Assert.Contains($"top-1 agreement {agreement * 100:0.00}%", outcome);
        Assert.EndsWith("on held-out synthetic images (16 Genie-D images, seed 1000003), quantized", outcome);
    }

    /// <summary>
    /// A model without BatchNorm statistics gets SADG2003 when the gate would measure on held-out synthetic images, and
    /// not when it is given validation data; a model with BatchNorm does not get it (the test above).
    /// </summary>
    [Fact]
    public async Task A_gate_on_synthetic_images_of_a_model_without_batchnorm_warns_and_validation_data_silences_it()
    {
        using var folder = new TempFolder();
        string model = Models.Save(TestModels.ResNet(seed: 3, width: 4, channels: 1, size: 8, batchNorm: false), folder, "plain.onnx");
        string[] args = ["quantize", model, "-o", folder.File("q.onnx"), "--method", "gaussian", "--input-range", "0,1", "--min-agreement", "0", "--no-cache", .. Tiny];
        var warned = await CliRunner.RunAsync(args);
        Assert.True(warned.ExitCode == 0, warned.Err);
        Assert.Contains("warning SADG2003: The agreement with the FP32 model will be measured on held-out synthetic images", warned.Err);
        Assert.Contains("ValidationData (`--validation-data`", warned.Err);

        string data = folder.File("val");
        var random = new Random(5);
        new ImageSet(Enumerable.Range(0, 12 * 64).Select(_ => (float)random.NextDouble()).ToArray(), [12, 1, 8, 8],
            Enumerable.Range(0, 12).Select(i => i % 10).ToArray(), "test").Save(data);
        var given = await CliRunner.RunAsync([.. args, "--validation-data", data]);
        Assert.True(given.ExitCode == 0, given.Err);
        Assert.DoesNotContain("SADG2003", given.Err);
    }

    [Fact]
    public async Task A_threshold_that_is_not_met_fails_writes_nothing_and_caches_nothing_also_on_a_cache_hit()
    {
        using var folder = new TempFolder();
        string model = Model(folder), output = folder.File("q.onnx"), cache = folder.File("cache"), report = folder.File("report");
        string[] args = ["quantize", model, "-o", output, "--bits", "2", "--method", "gaussian", "--cache-dir", cache, .. Tiny];

        var failed = await CliRunner.RunAsync([.. args, "--min-agreement", "100", "--report", report]);
        Assert.Equal(1, failed.ExitCode);
        Assert.Contains("m.onnx(0,0): error SADG1405: The accuracy gate failed: the quantized model's top-1 agreement with the FP32 model is ", failed.Err);
        Assert.Contains("% on held-out synthetic images (16 Genie-D images, seed 1000003), below the threshold of 100% " +
            "(MinAgreement (`--min-agreement` / `MinAgreement` metadata)). Nothing was written and nothing was cached.", failed.Err);
        Assert.False(File.Exists(output));
        Assert.False(Directory.Exists(report));
        Assert.Empty(Directory.GetFileSystemEntries(cache));

        // The same model passes a threshold of 0; its recorded agreement is the one the failure named.
        var passed = await CliRunner.RunAsync([.. args, "--min-agreement", "0"]);
        Assert.True(passed.ExitCode == 0, passed.Err);
        double agreement = double.Parse(Metadata(output)[SadgMetadata.ValidationAgreement], CultureInfo.InvariantCulture);
        Assert.True(agreement < 1);
        Assert.Contains($"is {agreement * 100:0.00}% on held-out", failed.Err);
        File.Delete(output);

        // The threshold is not in the cache key: this is a cache hit, and the gate still fails on the recorded agreement.
        var hit = await CliRunner.RunAsync([.. args, "--min-agreement", "100"]);
        Assert.Equal(1, hit.ExitCode);
        Assert.Contains("error SADG1405: ", hit.Err);
        Assert.DoesNotContain("cache hit", hit.Out);
        Assert.False(File.Exists(output));
    }

    [Fact]
    public async Task The_agreement_is_measured_on_validation_data_when_given()
    {
        using var folder = new TempFolder();
        string model = Model(folder), output = folder.File("q.onnx"), data = folder.File("val");
        var random = new Random(5);
        var pixels = Enumerable.Range(0, 12 * 64).Select(_ => (float)random.NextDouble()).ToArray();
        new ImageSet(pixels, [12, 1, 8, 8], Enumerable.Range(0, 12).Select(i => i % 10).ToArray(), "test").Save(data);
        var r = await CliRunner.RunAsync(["quantize", model, "-o", output, "--method", "gaussian", "--min-agreement", "0",
            "--validation-data", data, "--no-cache", .. Tiny]);
        Assert.True(r.ExitCode == 0, r.Err);
        var meta = Metadata(output);
        Assert.Matches(@"^validation data sha256:[0-9a-f]{16} \(12 images\)$", meta[SadgMetadata.ValidationData]);
        Assert.Equal("12", meta[SadgMetadata.ValidationImages]);
        Assert.Contains($"on '{data}': validation data sha256:", r.Out);
    }

    [Fact]
    public async Task Validation_data_of_the_wrong_size_is_refused_before_any_work()
    {
        using var folder = new TempFolder();
        string model = Model(folder), output = folder.File("q.onnx"), data = folder.File("val");
        new ImageSet(new float[2 * 3 * 4 * 4], [2, 3, 4, 4], [0, 1], "test").Save(data);
        var r = await CliRunner.RunAsync(["quantize", model, "-o", output, "--min-agreement", "50", "--validation-data", data, "--no-cache", .. Tiny]);
        Assert.Equal(1, r.ExitCode);
        Assert.Contains("error SADG1302: The validation images (ValidationData (`--validation-data` / `ValidationData` metadata)) are 3x4x4; the model takes 1x8x8.", r.Err);
        Assert.False(File.Exists(output));
    }
}
