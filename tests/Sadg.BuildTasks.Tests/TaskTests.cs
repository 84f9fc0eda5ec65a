using Microsoft.Build.Framework;
using Microsoft.Build.Utilities;

namespace Sadg.BuildTasks.Tests;

/// <summary>The tasks on their own, with a fake build engine: command lines, checks, diagnostics, stamps.</summary>
public sealed class TaskTests : IDisposable
{
    private readonly string _dir = Path.Combine(Path.GetTempPath(), "sadg-tasks-" + Guid.NewGuid().ToString("N"));
    private readonly string _project;
    private readonly string _tool;
    private readonly FakeBuildEngine _engine;

    public TaskTests()
    {
        Directory.CreateDirectory(Path.Combine(_dir, "Models"));
        File.WriteAllBytes(Path.Combine(_dir, "Models", "resnet20.onnx"), [1, 2, 3]);
        File.WriteAllBytes(Path.Combine(_dir, "Models", "my-model.v2.onnx"), [1, 2, 3]);
        _tool = Path.Combine(_dir, "tool", "sadg.dll");
        Directory.CreateDirectory(Path.GetDirectoryName(_tool)!);
        File.WriteAllBytes(_tool, [0]);
        _project = Path.Combine(_dir, "App.csproj");
        File.WriteAllText(_project, """
            <Project Sdk="Microsoft.NET.Sdk">
              <ItemGroup>
                <QuantizeModel Include="Models/resnet20.onnx" Bits="12" />
              </ItemGroup>
            </Project>
            """);
        _engine = new FakeBuildEngine(_project);
    }

    public void Dispose()
    {
        try { Directory.Delete(_dir, true); } catch (IOException) { }
    }

    private static TaskItem Item(string spec, params (string Key, string Value)[] metadata)
    {
        var item = new TaskItem(spec);
        foreach (var (k, v) in metadata) item.SetMetadata(k, v);
        return item;
    }

    private SadgQuantize Quantize(ITaskItem model, string? tool = null) => new()
    {
        BuildEngine = _engine,
        Model = model,
        OutputFile = Path.Combine(_dir, "obj", "out.onnx"),
        SadgTool = tool ?? _tool,
        DotnetHostPath = "/usr/bin/dotnet",
        ProjectDirectory = _dir,
    };

    [Fact]
    public void DefaultCommandLineRunsTheDllUnderTheDotnetHost()
    {
        string line = Quantize(Item("Models/resnet20.onnx")).CommandLineForTests();
        Assert.Empty(_engine.Errors);
        string model = Path.Combine(_dir, "Models", "resnet20.onnx");
        string output = Path.Combine(_dir, "obj", "out.onnx");
        Assert.Equal($"/usr/bin/dotnet {_tool} quantize {model} -o {output} --bits 4 --activation-bits 4 --method sadag --profile default " +
                     "--seed 0 --device auto --input-prior auto --neighbour random", line);
    }

    [Fact]
    public void EveryMetadataValueReachesTheCommandLine()
    {
        Directory.CreateDirectory(Path.Combine(_dir, "cal data"));
        var task = Quantize(Item("Models/resnet20.onnx", ("Bits", "3"), ("ActivationBits", "none"), ("Method", "Real"),
            ("CalibrationData", "cal data"), ("Samples", "256"), ("Profile", "quick"), ("Seed", "7"), ("Device", "cpu"), ("InputShape", "3, 48,320")));
        task.CacheDirectory = Path.Combine(_dir, "cache");
        string line = task.CommandLineForTests();
        Assert.Empty(_engine.Errors);
        Assert.EndsWith($"--bits 3 --activation-bits none --method real --calibration-data \"{Path.Combine(_dir, "cal data")}\" " +
                        $"--samples 256 --profile quick --seed 7 --device cpu --input-shape \"3,48,320\" --input-prior auto --neighbour random " +
                        $"--cache-dir {Path.Combine(_dir, "cache")}", line);
    }

    /// <summary>For each metadata setting of the schema: a base and a variant that differs in it (SchemaTests has the same table for the cache key).</summary>
    public static TheoryData<string, string, string> MetadataRows() => new()
    {
        { "Bits", "", "Bits=3" },
        { "ActivationBits", "", "ActivationBits=none" },
        { "Method", "", "Method=genie" },
        { "CalibrationData", "Method=real;CalibrationData=cal a", "Method=real;CalibrationData=cal b" },
        { "Samples", "", "Samples=9" },
        { "Profile", "", "Profile=quick" },
        { "Seed", "", "Seed=5" },
        { "Device", "", "Device=cuda" },
        { "InputShape", "", "InputShape=3,8,8" },
        { "InputRange", "", "InputRange=0,255" },
        { "InputMean", "", "InputMean=0.5;InputStd=0.25" },
        { "InputStd", "InputMean=0.5;InputStd=0.25", "InputMean=0.5;InputStd=0.5" },
        { "InputPrior", "", "InputPrior=off" },
        { "Neighbour", "", "Neighbour=raw" },
        { "BiasCorrection", "", "BiasCorrection=off" },
        { "MinAgreement", "", "MinAgreement=90" },
        { "ValidationData", "ValidationData=cal a", "ValidationData=cal b" },
        { "Resize", "ValidationData=cal a", "ValidationData=cal a;Resize=36" },
        { "Crop", "ValidationData=cal a;Resize=36", "ValidationData=cal a;Resize=36;Crop=center" },
        { "ChannelOrder", "ValidationData=cal a", "ValidationData=cal a;ChannelOrder=bgr" },
        { "Exclude", "", "Exclude=conv1,Gemm" },
        { "LayerBits", "", "LayerBits=conv1=3" },
        { "FirstLastBits", "", "FirstLastBits=same" },
        { "SizeBudget", "", "SizeBudget=600KiB" },
    };

    [Fact]
    public void EveryMetadataSettingHasARow() =>
        Assert.Equal(Sadg.Options.QuantizeSchema.All.Where(s => s.IsMetadata).Select(s => s.Name), MetadataRows().Select(r => (string)r[0]));

    private (string Stamp, string CommandLine) StampAndCommandLine(string metadata)
    {
        var values = metadata.Split(';', StringSplitOptions.RemoveEmptyEntries).Select(kv => kv.Split('=', 2)).Select(kv => (kv[0], kv[1])).ToArray();
        var p = Prepare(Item("Models/resnet20.onnx", values));
        Assert.True(p.Execute(), string.Join("\n", _engine.Errors.Select(e => e.Message)));
        var prepared = p.PreparedModels.Single();
        string stamp = File.ReadAllText(prepared.GetMetadata("StampFile"));
        string line = Quantize(prepared).CommandLineForTests();
        Assert.Empty(_engine.Errors);
        return (stamp, line);
    }

    [Theory]
    [MemberData(nameof(MetadataRows))]
    public void ChangingASettingChangesTheStampAndTheCommandLine(string setting, string baseline, string variant)
    {
        Directory.CreateDirectory(Path.Combine(_dir, "cal a"));
        Directory.CreateDirectory(Path.Combine(_dir, "cal b"));
        var a = StampAndCommandLine(baseline);
        var b = StampAndCommandLine(variant);
        Assert.NotEqual(a.Stamp, b.Stamp);
        Assert.NotEqual(a.CommandLine, b.CommandLine);
        var flag = Sadg.Options.QuantizeSchema.All.Single(s => s.Name == setting).Flag;
        if (variant.Contains(setting + "=")) Assert.Contains(flag + " ", b.CommandLine);
    }

    [Fact]
    public void AToolThatIsNotADllRunsDirectly()
    {
        string script = Path.Combine(_dir, "tool", "fake-sadg.sh");
        File.WriteAllText(script, "#!/bin/sh\n");
        string line = Quantize(Item("Models/resnet20.onnx"), script).CommandLineForTests();
        Assert.StartsWith($"{script} quantize ", line);
    }

    [Fact]
    public void EveryBadValueIsAnErrorAgainstTheProjectFileBeforeAnythingRuns()
    {
        var task = Quantize(Item("Models/resnet20.onnx", ("Bits", "12"), ("ActivationBits", "abc"), ("Method", "magic"),
            ("Samples", "0"), ("Profile", "slow"), ("Seed", "x"), ("Device", "tpu"), ("InputShape", "3,48"), ("Embed", "maybe")));
        Assert.False(task.Execute());
        Assert.Equal(["SADG1402", "SADG1402", "SADG1502", "SADG1502", "SADG1502", "SADG1502", "SADG1502", "SADG1502", "SADG1502"],
            _engine.Errors.Select(e => e.Code));
        Assert.All(_engine.Errors, e => Assert.Equal(_project, e.File));
        Assert.All(_engine.Errors, e => Assert.Equal(3, e.LineNumber)); // the line with Include="Models/resnet20.onnx"
        Assert.Contains("Bits (`--bits` / `Bits` metadata) must be a whole number from 2 to 8, not \"12\".", _engine.Errors[0].Message);
    }

    [Fact]
    public void BadResizeAndCropAreErrorsAgainstTheProjectFile()
    {
        Directory.CreateDirectory(Path.Combine(_dir, "val"));
        var task = Quantize(Item("Models/resnet20.onnx", ("ValidationData", "val"), ("Resize", "0"), ("Crop", "corner")));
        Assert.False(task.Execute());
        Assert.Equal(["SADG1502", "SADG1502"], _engine.Errors.Select(e => e.Code));
        Assert.All(_engine.Errors, e => Assert.Equal(_project, e.File));
        Assert.Contains("Resize (`--resize` / `Resize` metadata) must be a whole number of at least 1 (the shorter side in pixels), or model, not \"0\".",
            _engine.Errors[0].Message);
        Assert.Contains("Crop (`--crop` / `Crop` metadata) must be one of none, center, not \"corner\".", _engine.Errors[1].Message);
    }

    [Fact]
    public void ABadSizeBudgetIsAnErrorAgainstTheProjectFileAndAGoodOneReachesTheCommandLine()
    {
        var task = Quantize(Item("Models/resnet20.onnx", ("SizeBudget", "600KB")));
        Assert.False(task.Execute());
        var error = Assert.Single(_engine.Errors);
        Assert.Equal(("SADG1502", _project), (error.Code, error.File));
        Assert.Contains("SizeBudget (`--size-budget` / `SizeBudget` metadata) must be a ratio greater than 0 and at most 1", error.Message);
        _engine.Errors.Clear();
        string line = Quantize(Item("Models/resnet20.onnx", ("SizeBudget", "0.2"))).CommandLineForTests();
        Assert.Empty(_engine.Errors);
        Assert.Contains("--size-budget 0.2", line);
    }

    [Fact]
    public void ResizeAndCropReachTheCommandLine()
    {
        Directory.CreateDirectory(Path.Combine(_dir, "val"));
        string line = Quantize(Item("Models/resnet20.onnx", ("ValidationData", "val"), ("Resize", "256"), ("Crop", "Center"))).CommandLineForTests();
        Assert.Empty(_engine.Errors);
        Assert.EndsWith($"--validation-data {Path.Combine(_dir, "val")} --resize 256 --crop center", line);
    }

    [Fact]
    public void MissingModelMissingToolAndRealWithoutDataAreErrors()
    {
        var task = Quantize(Item("Models/missing.onnx", ("Method", "real")), Path.Combine(_dir, "nope", "sadg.dll"));
        Assert.False(task.Execute());
        Assert.Equal(["SADG1001", "SADG1403", "SADG1601"], _engine.Errors.Select(e => e.Code));
    }

    [Fact]
    public void ToolDiagnosticsBecomeErrorsWithFileLineAndCode()
    {
        var task = Quantize(Item("Models/resnet20.onnx"));
        task.CommandLineForTests();
        var log = typeof(SadgQuantize).GetMethod("LogEventsFromTextOutput",
            System.Reflection.BindingFlags.NonPublic | System.Reflection.BindingFlags.Instance)!;
        log.Invoke(task, ["/m/a.onnx(0,0): error SADG1101: The model uses operators Sadg cannot run: Foo.", MessageImportance.Normal]);
        log.Invoke(task, ["sadg(0,0): error SADG1901: quantization pipeline not wired yet", MessageImportance.Normal]);
        log.Invoke(task, ["data(2,5): warning SADG1302: odd", MessageImportance.Normal]);
        log.Invoke(task, ["evaluating a.onnx: 40% (4/10)", MessageImportance.Normal]);
        Assert.Equal(2, _engine.Errors.Count);
        Assert.Equal(("/m/a.onnx", 0, "SADG1101"), (_engine.Errors[0].File, _engine.Errors[0].LineNumber, _engine.Errors[0].Code));
        Assert.Equal("The model uses operators Sadg cannot run: Foo.", _engine.Errors[0].Message);
        // The tool's own errors belong to the model being quantized.
        Assert.Equal(Path.Combine(_dir, "Models", "resnet20.onnx"), _engine.Errors[1].File);
        Assert.Equal(("data", 2, 5, "SADG1302"), (_engine.Warnings[0].File, _engine.Warnings[0].LineNumber, _engine.Warnings[0].ColumnNumber, _engine.Warnings[0].Code));
        Assert.Contains(_engine.Messages, m => m.Message == "evaluating a.onnx: 40% (4/10)");
    }

    [Fact]
    public void ToolDiagnosticsCarryAHelpLinkToTheirRowOfErrorsMd()
    {
        var task = Quantize(Item("Models/resnet20.onnx"));
        task.ErrorsPage = "https://example.org/sadg/docs/errors.md";
        task.CommandLineForTests();
        var log = typeof(SadgQuantize).GetMethod("LogEventsFromTextOutput",
            System.Reflection.BindingFlags.NonPublic | System.Reflection.BindingFlags.Instance)!;
        // The line exactly as the tool's one format writes it.
        log.Invoke(task, [Sadg.Options.DiagnosticFormat.Format(true, 2001, "no BN", "/m/a.onnx"), MessageImportance.High]);
        log.Invoke(task, [Sadg.Options.DiagnosticFormat.Format(false, 1101, "bad op", null), MessageImportance.High]);
        Assert.Equal(("SADG2001", "https://example.org/sadg/docs/errors.md#sadg2001", "/m/a.onnx"),
            (_engine.Warnings[0].Code, _engine.Warnings[0].HelpLink, _engine.Warnings[0].File));
        Assert.Equal("https://example.org/sadg/docs/errors.md#sadg1101", _engine.Errors[0].HelpLink);
    }

    [Fact]
    public void EveryCodeHasAnAnchoredRowInErrorsMd()
    {
        string errors = File.ReadAllText(Path.Combine(BuildFixture.RepoRoot, "docs", "errors.md"));
        var documented = System.Text.RegularExpressions.Regex.Matches(errors, @"<a id=""(sadg\d{4})""></a>SADG\d{4}")
            .Select(m => m.Groups[1].Value).ToHashSet();
        var codes = System.Text.RegularExpressions.Regex.Matches(
                File.ReadAllText(Path.Combine(BuildFixture.RepoRoot, "src", "Sadg.Core", "SadgException.cs")), @"= (\d{4}),")
            .Select(m => Sadg.Options.DiagnosticFormat.Anchor(Sadg.Options.DiagnosticFormat.Code(int.Parse(m.Groups[1].Value))));
        Assert.Equal([], codes.Where(c => !documented.Contains(c)).ToArray());
    }

    private SadgPrepareModels Prepare(params ITaskItem[] items) => new()
    {
        BuildEngine = _engine,
        Models = items,
        IntermediateDirectory = Path.Combine(_dir, "obj", "sadg"),
        ToolIdentity = "tool|1.0",
        ProjectDirectory = _dir,
    };

    [Fact]
    public void PrepareFillsDefaultsWritesTheStampOnlyWhenItChangesAndGivesOtherOptionsTheirOwn()
    {
        var p = Prepare(Item("Models/resnet20.onnx"), Item("Models/my-model.v2.onnx", ("Bits", "3"), ("Embed", "false")));
        Assert.True(p.Execute());
        var (a, b) = (p.PreparedModels[0], p.PreparedModels[1]);
        Assert.Equal(("resnet20.q4.onnx", "Resnet20", "true", "4"), (a.GetMetadata("LogicalName"), a.GetMetadata("AccessorName"), a.GetMetadata("Embed"), a.GetMetadata("ActivationBits")));
        Assert.Equal(("my-model.v2.q3.onnx", "MyModelV2", "false", "3"), (b.GetMetadata("LogicalName"), b.GetMetadata("AccessorName"), b.GetMetadata("Embed"), b.GetMetadata("ActivationBits")));
        Assert.Equal("Models/resnet20.onnx", a.GetMetadata("Source"));
        string stamp = a.GetMetadata("StampFile");
        Assert.Contains("bits=4", File.ReadAllText(stamp));

        var written = new DateTime(2001, 1, 1, 0, 0, 0, DateTimeKind.Utc);
        File.SetLastWriteTimeUtc(stamp, written);
        Assert.True(Prepare(Item("Models/resnet20.onnx")).Execute());
        Assert.Equal(written, File.GetLastWriteTimeUtc(stamp));

        // Other options: their own stamp and model beside the first ones, which stay as they were.
        var seeded = Prepare(Item("Models/resnet20.onnx", ("Seed", "1")));
        Assert.True(seeded.Execute());
        string seededStamp = seeded.PreparedModels[0].GetMetadata("StampFile");
        Assert.NotEqual(stamp, seededStamp);
        Assert.NotEqual(a.GetMetadata("OutputFile"), seeded.PreparedModels[0].GetMetadata("OutputFile"));
        Assert.Contains("seed=1", File.ReadAllText(seededStamp));
        Assert.Contains("seed=0", File.ReadAllText(stamp));
        Assert.Equal(written, File.GetLastWriteTimeUtc(stamp));

        var shaped = Prepare(Item("Models/resnet20.onnx", ("Seed", "1"), ("InputShape", "3,48,320")));
        Assert.True(shaped.Execute());
        string shapedStamp = shaped.PreparedModels[0].GetMetadata("StampFile");
        Assert.NotEqual(seededStamp, shapedStamp);
        Assert.Contains("input_shape=3,48,320", File.ReadAllText(shapedStamp));
        Assert.Equal("3,48,320", shaped.PreparedModels[0].GetMetadata("InputShape"));
    }

    [Fact]
    public void TheStampChangesWithExtraArgumentsReportFolderAndDataContentAndReportsArePerItem()
    {
        Directory.CreateDirectory(Path.Combine(_dir, "data"));
        File.WriteAllBytes(Path.Combine(_dir, "data", "images.f32"), new byte[16]);
        var item = Item("Models/resnet20.onnx", ("Method", "real"), ("CalibrationData", "data"));
        string Stamp(string extra = "", string report = "")
        {
            var p = Prepare(item);
            p.ExtraArguments = extra;
            p.ReportDirectory = report;
            Assert.True(p.Execute());
            return File.ReadAllText(p.PreparedModels[0].GetMetadata("StampFile"));
        }
        string first = Stamp();
        Assert.Equal(first, Stamp());
        Assert.NotEqual(first, Stamp(extra: "--samples 8"));
        Assert.NotEqual(first, Stamp(report: "reports"));
        // Same size, an older timestamp: only the content says it changed.
        File.WriteAllBytes(Path.Combine(_dir, "data", "images.f32"), Enumerable.Repeat((byte)1, 16).ToArray());
        File.SetLastWriteTimeUtc(Path.Combine(_dir, "data", "images.f32"), new DateTime(2001, 1, 1, 0, 0, 0, DateTimeKind.Utc));
        Assert.NotEqual(first, Stamp());

        var prepared = Prepare(Item("Models/resnet20.onnx"), Item("Models/my-model.v2.onnx"));
        prepared.ReportDirectory = "reports";
        Assert.True(prepared.Execute());
        Assert.Equal([Path.Combine(_dir, "reports", "Resnet20"), Path.Combine(_dir, "reports", "MyModelV2")],
            prepared.PreparedModels.Select(m => m.GetMetadata("ReportDirectory")));
    }

    [Fact]
    public void TheStampChangesWithTheExternalDataTheModelNames()
    {
        // TinyModels' classifier with its initializers in "ext.onnx.data" beside it.
        var model = Onnx.ModelProto.Parser.ParseFrom(TinyModels.Classifier(1));
        var data = new MemoryStream();
        foreach (var t in model.Graph.Initializer)
        {
            byte[] raw = t.RawData.Length > 0 ? t.RawData.ToByteArray() : t.FloatData.SelectMany(BitConverter.GetBytes).ToArray();
            t.ExternalData.Add(new Onnx.StringStringEntryProto { Key = "location", Value = "ext.onnx.data" });
            t.ExternalData.Add(new Onnx.StringStringEntryProto { Key = "offset", Value = data.Position.ToString() });
            t.ExternalData.Add(new Onnx.StringStringEntryProto { Key = "length", Value = raw.Length.ToString() });
            t.DataLocation = Onnx.TensorProto.Types.DataLocation.External;
            t.RawData = Google.Protobuf.ByteString.Empty;
            t.FloatData.Clear();
            data.Write(raw);
        }
        string dataFile = Path.Combine(_dir, "Models", "ext.onnx.data");
        File.WriteAllBytes(Path.Combine(_dir, "Models", "ext.onnx"), Google.Protobuf.MessageExtensions.ToByteArray(model));
        File.WriteAllBytes(dataFile, data.ToArray());
        string Stamp()
        {
            var p = Prepare(Item("Models/ext.onnx"));
            Assert.True(p.Execute());
            return File.ReadAllText(p.PreparedModels[0].GetMetadata("StampFile"));
        }
        string first = Stamp();
        Assert.Matches("model-external-data-sha256=[0-9a-f]{64}\n", first);
        Assert.Equal(first, Stamp());

        // Other weights in the data file (same size, an older timestamp), the .onnx file untouched.
        byte[] other = File.ReadAllBytes(dataFile);
        other[0] ^= 0xff;
        File.WriteAllBytes(dataFile, other);
        File.SetLastWriteTimeUtc(dataFile, new DateTime(2001, 1, 1, 0, 0, 0, DateTimeKind.Utc));
        Assert.NotEqual(first, Stamp());

        // A model without external data names none.
        var plain = Prepare(Item("Models/resnet20.onnx"));
        Assert.True(plain.Execute());
        Assert.Contains("model-external-data-sha256=\n", File.ReadAllText(plain.PreparedModels[0].GetMetadata("StampFile")));
    }

    [Fact]
    public void LogicalNamesThatDifferOnlyInCaseAreOneName()
    {
        var p = Prepare(Item("Models/resnet20.onnx", ("LogicalName", "models/net.onnx")),
            Item("Models/my-model.v2.onnx", ("LogicalName", "Models/Net.onnx"), ("Embed", "false")));
        Assert.False(p.Execute());
        var error = Assert.Single(_engine.Errors);
        Assert.Equal("SADG1602", error.Code);
        Assert.Contains("LogicalName", error.Message);
    }

    [Fact]
    public void AStampThatCannotBeWrittenIsAnErrorNotASuccess()
    {
        var first = Prepare(Item("Models/resnet20.onnx"));
        Assert.True(first.Execute());
        string stamp = first.PreparedModels[0].GetMetadata("StampFile");
        File.Delete(stamp);
        Directory.CreateDirectory(stamp); // where the stamp goes, something that is not a file

        var again = Prepare(Item("Models/resnet20.onnx"));
        Assert.False(again.Execute());
        var error = Assert.Single(_engine.Errors);
        Assert.Equal("SADG1201", error.Code);
        Assert.Contains(stamp, error.Message);
    }

    [Fact]
    public void UseCacheFalseIsNoCacheAndAnEmptyCacheDirLeavesTheDefaultToTheTool()
    {
        var off = Quantize(Item("Models/resnet20.onnx"));
        off.CacheDirectory = Path.Combine(_dir, "cache");
        off.UseCache = false;
        Assert.EndsWith(" --no-cache", off.CommandLineForTests());
        Assert.DoesNotContain("--cache-dir", Quantize(Item("Models/resnet20.onnx")).CommandLineForTests());
    }

    [Fact]
    public void PrepareReportsEveryItemsProblemsAndDuplicateNames()
    {
        var p = Prepare(Item("Models/resnet20.onnx", ("Bits", "12")), Item("Models/missing.onnx"),
            Item("Models/my-model.v2.onnx", ("LogicalName", "resnet20.q4.onnx"), ("AccessorName", "Resnet20")));
        Assert.False(p.Execute());
        Assert.Equal(["SADG1402", "SADG1001", "SADG1602", "SADG1602"], _engine.Errors.Select(e => e.Code));
        Assert.False(Directory.Exists(Path.Combine(_dir, "obj", "sadg")));
    }

    [Fact]
    public void AccessorHasAPropertyPerModel()
    {
        var p = Prepare(Item("Models/resnet20.onnx"), Item("Models/my-model.v2.onnx", ("Embed", "false")));
        Assert.True(p.Execute());
        var g = new SadgGenerateAccessor { BuildEngine = _engine, Models = p.PreparedModels, OutputFile = Path.Combine(_dir, "obj", "Q.g.cs"), Namespace = "My.App" };
        Assert.True(g.Execute());
        string text = File.ReadAllText(g.OutputFile);
        Assert.Contains("namespace My.App", text);
        Assert.Contains("internal static partial class QuantizedModels", text);
        Assert.Contains("public static byte[] Resnet20 => ReadAll(OpenResnet20());", text);
        Assert.Contains("public static global::System.IO.Stream OpenResnet20() => OpenResource(\"resnet20.q4.onnx\");", text);
        Assert.Contains("public static global::System.IO.Stream OpenMyModelV2() => OpenFile(\"my-model.v2.q4.onnx\");", text);
    }
}
