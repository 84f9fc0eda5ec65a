namespace Sadg.BuildTasks.Tests;

/// <summary>
/// The build is never stale and passes the cache settings through: every input that changes the quantized model
/// re-runs the tool, SadgUseCache=false reaches the tool, SADG_CACHE_DIR is honoured, each item has its own report
/// folder. dotnet build of temporary consumers against the packed package and the fake tool.
/// </summary>
[Collection("build")]
public sealed class StaleBuildTests(BuildFixture fixture)
{
    private const string Tfm = "<TargetFramework>net10.0</TargetFramework>";

    [Fact]
    public void ChangingTheExtraArgumentsQuantizesAgain()
    {
        var c = new Consumer(fixture, "extra");
        c.WriteModel("tiny.onnx", TinyModels.Classifier(1));
        c.WriteProject("""    <QuantizeModel Include="Models/tiny.onnx" />""", "<SadgExtraArguments>--samples 4</SadgExtraArguments>", Tfm);
        Assert.Equal(0, c.Build().ExitCode);
        Assert.Single(c.Calls());

        c.WriteProject("""    <QuantizeModel Include="Models/tiny.onnx" />""", "<SadgExtraArguments>--samples 8</SadgExtraArguments>", Tfm);
        var build = c.Build();
        Assert.True(build.ExitCode == 0, build.Output);
        var calls = c.Calls();
        Assert.Equal(2, calls.Count);
        Assert.Equal("8", Consumer.Option(calls[^1], "--samples"));

        // The same again: nothing to do.
        Assert.Equal(0, c.Build().ExitCode);
        Assert.Equal(2, c.Calls().Count);
    }

    [Fact]
    public void ReplacingCalibrationFilesOrTheModelWithOlderTimestampsQuantizesAgain()
    {
        var c = new Consumer(fixture, "data");
        c.WriteModel("tiny.onnx", TinyModels.Classifier(1));
        string data = c.Path_("data");
        Directory.CreateDirectory(data);
        File.WriteAllBytes(Path.Combine(data, "images.f32"), new byte[64]);
        c.WriteProject("""    <QuantizeModel Include="Models/tiny.onnx" Method="real" CalibrationData="data" />""", targetFrameworks: Tfm);
        Assert.Equal(0, c.Build().ExitCode);
        Assert.Single(c.Calls());

        // Replaced by a file of the same size and an older timestamp: only the content differs.
        var old = new DateTime(2001, 1, 1, 0, 0, 0, DateTimeKind.Utc);
        File.WriteAllBytes(Path.Combine(data, "images.f32"), Enumerable.Repeat((byte)7, 64).ToArray());
        File.SetLastWriteTimeUtc(Path.Combine(data, "images.f32"), old);
        var build = c.Build();
        Assert.True(build.ExitCode == 0, build.Output);
        Assert.Equal(2, c.Calls().Count);

        // A file added to the folder.
        File.WriteAllBytes(Path.Combine(data, "labels.i32"), new byte[4]);
        File.SetLastWriteTimeUtc(Path.Combine(data, "labels.i32"), old);
        Assert.Equal(0, c.Build().ExitCode);
        Assert.Equal(3, c.Calls().Count);

        // The model replaced by an older copy of another one.
        c.WriteModel("tiny.onnx", TinyModels.Classifier(2));
        File.SetLastWriteTimeUtc(c.Path_("Models", "tiny.onnx"), old);
        Assert.Equal(0, c.Build().ExitCode);
        Assert.Equal(4, c.Calls().Count);

        // Nothing changed: nothing to do.
        Assert.Equal(0, c.Build().ExitCode);
        Assert.Equal(4, c.Calls().Count);
    }

    [Fact]
    public void EachSetOfOptionsHasItsOwnModelSoSwitchingBackIsUpToDate()
    {
        // Metadata that depends on the configuration, as a Debug/Release or per-framework setting would.
        var c = new Consumer(fixture, "options");
        c.WriteModel("tiny.onnx", TinyModels.Classifier(1));
        c.WriteProject("""    <QuantizeModel Include="Models/tiny.onnx" Bits="$(QBits)" LogicalName="tiny.onnx" />""", targetFrameworks: Tfm);
        Assert.Equal(0, c.Build("-p:QBits=4").ExitCode);
        Assert.Equal(0, c.Build("-p:QBits=8").ExitCode);
        var calls = c.Calls();
        Assert.Equal(["4", "8"], calls.Select(call => Consumer.Option(call, "--bits")));
        // Each set of options wrote its own model beside the other's.
        Assert.Equal(2, Directory.GetFiles(c.Path_("obj", "sadg"), "tiny.*.q.onnx").Length);

        // Back to 4 bits: its model and stamp are untouched, so nothing to do; then 8 again, the same.
        var back = c.Build("-p:QBits=4");
        Assert.True(back.ExitCode == 0, back.Output);
        Assert.Equal(0, c.Build("-p:QBits=8").ExitCode);
        Assert.Equal(2, c.Calls().Count);
    }

    [Fact]
    public void AQuantizedModelChangedSinceTheToolWroteItIsNeverEmbedded()
    {
        var c = new Consumer(fixture, "edited");
        c.WriteModel("tiny.onnx", TinyModels.Classifier(1));
        c.WriteProject("""    <QuantizeModel Include="Models/tiny.onnx" />""", targetFrameworks: Tfm);
        Assert.Equal(0, c.Build().ExitCode);
        string output = Assert.Single(Directory.GetFiles(c.Path_("obj", "sadg"), "tiny.*.q.onnx"));
        byte[] written = File.ReadAllBytes(output); // the fake tool writes a copy of the model
        Assert.Equal(TinyModels.Classifier(1), written);
        Assert.Empty(Directory.GetFiles(c.Path_("obj", "sadg"), "*.tmp*"));

        // Edited by hand (or replaced, or damaged) after the build: newer than every input, but not what the tool wrote.
        File.WriteAllText(output, "HANDEDITED");
        var build = c.Build();
        Assert.True(build.ExitCode == 0, build.Output);
        Assert.Equal(2, c.Calls().Count);
        Assert.Equal(written, File.ReadAllBytes(output));

        // Nothing changed since: nothing to do.
        Assert.Equal(0, c.Build().ExitCode);
        Assert.Equal(2, c.Calls().Count);
    }

    [Fact]
    public void UseCacheFalsePassesNoCache()
    {
        var c = new Consumer(fixture, "nocache");
        c.WriteModel("tiny.onnx", TinyModels.Classifier(1));
        c.WriteProject("""    <QuantizeModel Include="Models/tiny.onnx" />""", "<SadgUseCache>false</SadgUseCache>", Tfm);
        var build = c.Build();
        Assert.True(build.ExitCode == 0, build.Output);
        var call = Assert.Single(c.Calls());
        Assert.Contains("--no-cache", call);
        Assert.DoesNotContain("--cache-dir", call);
    }

    [Fact]
    public void WithoutSadgCacheDirTheToolsDefaultHonoursSadgCacheDirVariable()
    {
        var c = new Consumer(fixture, "envcache");
        c.WriteModel("tiny.onnx", TinyModels.Classifier(1));
        c.WriteProject("""    <QuantizeModel Include="Models/tiny.onnx" />""", targetFrameworks: Tfm, cacheDir: "");
        string cache = c.Path_("env-cache");
        var build = c.Build(new Dictionary<string, string> { ["SADG_CACHE_DIR"] = cache, ["XDG_CACHE_HOME"] = c.Path_("xdg") });
        Assert.True(build.ExitCode == 0, build.Output);
        var call = Assert.Single(c.Calls());
        // No --cache-dir of the build's own: the tool decides, and it sees SADG_CACHE_DIR first.
        Assert.DoesNotContain("--cache-dir", call);
        Assert.DoesNotContain("--no-cache", call);
        Assert.Equal(cache, Consumer.CacheEnvironment(call));
    }

    [Fact]
    public void EachItemWritesItsReportToItsOwnFolder()
    {
        var c = new Consumer(fixture, "reports");
        c.WriteTinyAndOther();
        c.WriteProject("""
                <QuantizeModel Include="Models/tiny.onnx" />
                <QuantizeModel Include="Models/other.onnx" />
            """, "<SadgReportDir>reports</SadgReportDir>", Tfm);
        var build = c.Build();
        Assert.True(build.ExitCode == 0, build.Output);
        var reports = c.Calls().Select(call => Consumer.Option(call, "--report")).Order(StringComparer.Ordinal).ToArray();
        Assert.Equal([c.Path_("reports", "Other"), c.Path_("reports", "Tiny")], reports);
    }
}
