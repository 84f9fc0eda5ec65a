using System.Reflection.Metadata;
using System.Reflection.PortableExecutable;
using System.Text.RegularExpressions;
using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;

namespace Sadg.BuildTasks.Tests;

[CollectionDefinition("build")]
public sealed class BuildCollection : ICollectionFixture<BuildFixture>;

/// <summary>
/// dotnet build of temporary consumer projects against the packed Sadg.BuildTasks package and a fake sadg tool that
/// records its calls and writes a copy of the model.
/// </summary>
[Collection("build")]
public sealed class BuildTests(BuildFixture fixture)
{
    private const string Items = """
            <QuantizeModel Include="Models/tiny.onnx" />
            <QuantizeModel Include="Models/other.onnx" Bits="3" Embed="false" />
        """;

    private const string Program = """
        // Prints the embedded resources and writes each model the accessor returns.
        foreach (var n in typeof(App.QuantizedModels).Assembly.GetManifestResourceNames()) System.Console.WriteLine("resource " + n);
        System.IO.File.WriteAllBytes(System.IO.Path.Combine(args[0], "tiny.bin"), App.QuantizedModels.Tiny);
        System.IO.File.WriteAllBytes(System.IO.Path.Combine(args[0], "other.bin"), App.QuantizedModels.Other);
        """;

    [Fact]
    public void EmbedsTheModelSkipsWhenNothingChangedAndRedoesOnlyTheChangedItem()
    {
        var c = new Consumer(fixture, "app");
        byte[] tiny = TinyModels.Classifier(1), other = TinyModels.Classifier(2);
        c.WriteModel("tiny.onnx", tiny);
        c.WriteModel("other.onnx", other);
        c.WriteProject(Items);
        c.WriteProgram(Program);

        var first = c.Build();
        Assert.True(first.ExitCode == 0, first.Output);
        var calls = c.Calls();
        Assert.Equal(2, calls.Count);
        Assert.All(calls, call => Assert.Equal(c.Path_("cache"), Consumer.Option(call, "--cache-dir")));
        var otherCall = calls.Single(call => Consumer.ModelOf(call).EndsWith("other.onnx"));
        Assert.Equal(("3", "3"), (Consumer.Option(otherCall, "--bits"), Consumer.Option(otherCall, "--activation-bits")));

        // The app finds both models through the accessor; tiny is embedded, other sits beside the assembly.
        string outDir = c.Path_("out");
        Directory.CreateDirectory(outDir);
        var run = Dotnet.Run(c.Dir, c.Path_("bin", "Debug", "net10.0", "App.dll"), outDir);
        Assert.True(run.ExitCode == 0, run.Output);
        Assert.Contains("resource tiny.q4.onnx", run.Output);
        Assert.DoesNotContain("other", run.Output);
        Assert.True(File.Exists(c.Path_("bin", "Debug", "net10.0", "other.q3.onnx")));
        byte[] embedded = File.ReadAllBytes(Path.Combine(outDir, "tiny.bin"));
        Assert.Equal(tiny, embedded);
        Assert.Equal(other, File.ReadAllBytes(Path.Combine(outDir, "other.bin")));
        using (var session = new InferenceSession(embedded))
        {
            var input = new DenseTensor<float>(Enumerable.Repeat(0.5f, 3 * 8 * 8).ToArray(), [1, 3, 8, 8]);
            using var results = session.Run([NamedOnnxValue.CreateFromTensor("input", input)]);
            Assert.Equal([1, 10], results.First().AsTensor<float>().Dimensions.ToArray());
        }

        // Nothing changed: the quantize target is skipped for both items.
        var second = c.Build("-v:n");
        Assert.True(second.ExitCode == 0, second.Output);
        Assert.Equal(2, c.Calls().Count);
        Assert.Equal(2, Regex.Matches(second.Output, "Skipping target \"_SadgQuantizeModel\" because all output files are up-to-date").Count);

        // One item's metadata changed: only that item is quantized again.
        c.WriteProject(Items.Replace("Bits=\"3\"", "Bits=\"3\" Seed=\"9\""));
        var third = c.Build();
        Assert.True(third.ExitCode == 0, third.Output);
        calls = c.Calls();
        Assert.Equal(3, calls.Count);
        Assert.EndsWith("other.onnx", Consumer.ModelOf(calls[^1]));
        Assert.Equal("9", Consumer.Option(calls[^1], "--seed"));

        // One model file changed: only that model is quantized again.
        c.WriteModel("tiny.onnx", TinyModels.Classifier(3));
        var fourth = c.Build();
        Assert.True(fourth.ExitCode == 0, fourth.Output);
        calls = c.Calls();
        Assert.Equal(4, calls.Count);
        Assert.EndsWith("tiny.onnx", Consumer.ModelOf(calls[^1]));

        // dotnet clean removes the quantized models and stamps.
        Assert.NotEmpty(Directory.GetFiles(c.Path_("obj", "sadg")));
        var clean = Dotnet.Run(c.Dir, "clean", c.ProjectFile, "-nodeReuse:false");
        Assert.True(clean.ExitCode == 0, clean.Output);
        Assert.False(Directory.Exists(c.Path_("obj", "sadg")));
    }

    [Fact]
    public void BadMetadataFailsWithItsCodeAgainstTheProjectFileBeforeAnyWork()
    {
        var c = new Consumer(fixture, "bad");
        c.WriteModel("tiny.onnx", TinyModels.Classifier(1));
        c.WriteModel("other.onnx", TinyModels.Classifier(2));
        c.WriteProject("""
                <QuantizeModel Include="Models/tiny.onnx" Bits="12" />
                <QuantizeModel Include="Models/other.onnx" Bits="abc" />
                <QuantizeModel Include="Models/missing.onnx" />
            """, targetFrameworks: "<TargetFramework>net10.0</TargetFramework>");
        var build = c.Build();
        Assert.NotEqual(0, build.ExitCode);
        int line = Array.FindIndex(File.ReadAllLines(c.ProjectFile), l => l.Contains("tiny.onnx")) + 1;
        Assert.Matches($@"App\.csproj\({line}(,0)?\): error SADG1402: QuantizeModel 'Models/tiny.onnx': Bits \(`--bits` / `Bits` metadata\) must be a whole number from 2 to 8, not ""12""", build.Output);
        Assert.Matches(@"App\.csproj\(\d+(,0)?\): error SADG1402: QuantizeModel 'Models/other.onnx': Bits \(`--bits` / `Bits` metadata\) must be a whole number from 2 to 8, not ""abc""", build.Output);
        Assert.Matches(@"App\.csproj\(\d+(,0)?\): error SADG1001: QuantizeModel 'Models/missing.onnx'", build.Output);
        Assert.Empty(c.Calls());
    }

    [Fact]
    public void ToolErrorsAreBuildErrorsWithTheModelFileAndCode()
    {
        var c = new Consumer(fixture, "toolerror");
        c.WriteModel("broken.onnx", TinyModels.Classifier(1));
        c.WriteProject("""    <QuantizeModel Include="Models/broken.onnx" />""", targetFrameworks: "<TargetFramework>net10.0</TargetFramework>");
        var build = c.Build();
        Assert.NotEqual(0, build.ExitCode);
        Assert.Matches(@"Models/broken\.onnx(\(0,0\))? ?: error SADG1101: The model uses operators Sadg cannot run: Foo", build.Output);
        Assert.DoesNotContain("MSB6006", build.Output); // no second, generic "exited with code" error
    }

    [Fact]
    public void ToolWarningsAreCodedMSBuildWarningsThatNoWarnAndWarningsAsErrorsActOn()
    {
        var c = new Consumer(fixture, "toolwarning");
        c.WriteModel("nobn.onnx", TinyModels.Classifier(1));
        const string item = """    <QuantizeModel Include="Models/nobn.onnx" />""";
        const string tfm = "<TargetFramework>net10.0</TargetFramework>";

        // Default verbosity: the warning with its code, against the model, with a help link; the outcome line.
        c.WriteProject(item, targetFrameworks: tfm);
        var build = c.Build();
        Assert.True(build.ExitCode == 0, build.Output);
        Assert.Matches(@"Models/nobn\.onnx(\(0,0\))? ?: warning SADG2001: The model has no BatchNormalization layers", build.Output);
        Assert.Contains("outcome: nobn.onnx: W4A8 sadag", build.Output);

        c.WriteProject(item, "<NoWarn>$(NoWarn);SADG2001</NoWarn>", targetFrameworks: tfm);
        var silenced = c.Build("-t:Rebuild");
        Assert.True(silenced.ExitCode == 0, silenced.Output);
        Assert.DoesNotContain("SADG2001", silenced.Output);
        Assert.Contains("outcome: nobn.onnx", silenced.Output);

        c.WriteProject(item, "<WarningsAsErrors>$(WarningsAsErrors);SADG2001</WarningsAsErrors>", targetFrameworks: tfm);
        var failed = c.Build("-t:Rebuild");
        Assert.NotEqual(0, failed.ExitCode);
        Assert.Matches(@"Models/nobn\.onnx(\(0,0\))? ?: error SADG2001:", failed.Output);

        // Building again does not turn the failure into a success: the failed run left no model behind, so the tool
        // runs again and the build fails again.
        int calls = c.Calls().Count;
        var again = c.Build();
        Assert.NotEqual(0, again.ExitCode);
        Assert.Matches(@"Models/nobn\.onnx(\(0,0\))? ?: error SADG2001:", again.Output);
        Assert.Equal(calls + 1, c.Calls().Count);
        Assert.Empty(Directory.GetFiles(c.Path_("obj"), "*.onnx", SearchOption.AllDirectories));
    }

    [Fact]
    public void AFailingAccuracyGateFailsTheBuildAgainstTheItemInTheProjectFile()
    {
        var c = new Consumer(fixture, "gate");
        c.WriteModel("tiny.onnx", TinyModels.Classifier(1));
        c.WriteProject("""    <QuantizeModel Include="Models/tiny.onnx" MinAgreement="100" ValidationData="Models" />""",
            targetFrameworks: "<TargetFramework>net10.0</TargetFramework>");
        var build = c.Build();
        Assert.NotEqual(0, build.ExitCode);
        int line = Array.FindIndex(File.ReadAllLines(c.ProjectFile), l => l.Contains("tiny.onnx")) + 1;
        Assert.Matches($@"App\.csproj\({line}(,0)?\): error SADG1405: QuantizeModel 'Models/tiny\.onnx': The accuracy gate failed: .* is 87\.50% on held-out synthetic images .*, below the threshold of 100%", build.Output);
        Assert.DoesNotContain("MSB6006", build.Output);
        var call = Assert.Single(c.Calls());
        Assert.Equal("100", Consumer.Option(call, "--min-agreement"));
        Assert.Equal(c.Path_("Models"), Consumer.Option(call, "--validation-data"));
        // Nothing quantized to embed: no model in obj or bin.
        foreach (var dir in new[] { c.Path_("obj"), c.Path_("bin") }.Where(Directory.Exists))
            Assert.Empty(Directory.GetFiles(dir, "*.onnx", SearchOption.AllDirectories));
    }

    [Fact]
    public void AMultiTargetedProjectQuantizesOnceWithParallelBuilds()
    {
        var c = new Consumer(fixture, "multi");
        c.WriteTinyAndOther();
        c.WriteProject("""
                <QuantizeModel Include="Models/tiny.onnx" />
                <QuantizeModel Include="Models/other.onnx" ActivationBits="none" LogicalName="models/other.onnx" />
            """, targetFrameworks: "<TargetFrameworks>net10.0;netstandard2.0</TargetFrameworks><LangVersion>latest</LangVersion>");
        File.WriteAllText(c.Path_("Lib.cs"), "namespace App { public static class Lib { public static int Size => QuantizedModels.Tiny.Length + QuantizedModels.Other.Length; } }");

        var build = c.Build("-m:2");
        Assert.True(build.ExitCode == 0, build.Output);
        var calls = c.Calls();
        Assert.Equal(2, calls.Count);
        Assert.Contains(calls, call => Consumer.Option(call, "--activation-bits") == "none");
        foreach (var tfm in new[] { "net10.0", "netstandard2.0" })
            Assert.Equal(["models/other.onnx", "tiny.q4.onnx"], ResourceNames(c.Path_("bin", "Debug", tfm, "App.dll")));

        var again = c.Build("-m:2");
        Assert.True(again.ExitCode == 0, again.Output);
        Assert.Equal(2, c.Calls().Count);
    }

    private static string[] ResourceNames(string assembly)
    {
        using var pe = new PEReader(File.OpenRead(assembly));
        var md = pe.GetMetadataReader();
        return md.ManifestResources.Select(h => md.GetString(md.GetManifestResource(h).Name)).Order(StringComparer.Ordinal).ToArray();
    }
}
