using System.Text.Json;

namespace Sadg.BuildTasks.Tests;

/// <summary>
/// The backend switch, by evaluating the repository's projects (no restore, no build): the default CPU build and
/// -p:SadgBackend=cuda reference the packages docs/packaging.md names, with versions pinned centrally. The CUDA
/// packages are not on every feed, so nothing here restores them.
/// </summary>
public sealed class BackendSwitchTests
{
    [Fact]
    public void TheDefaultBackendIsCpuForThreeRids()
    {
        var cli = Evaluate("src/Sadg.Cli/Sadg.Cli.csproj");
        Assert.Equal("Sadg.Tool", cli.Property("PackageId"));
        Assert.Equal("linux-x64;win-x64;osx-arm64", cli.Property("RuntimeIdentifiers"));
        Assert.Equal("Major", cli.Property("RollForward"));
        Assert.DoesNotContain("SADG_CUDA", cli.Property("DefineConstants"));
        Assert.Contains("Microsoft.ML.OnnxRuntime", cli.References);
        Assert.DoesNotContain(cli.References, r => r.StartsWith("Microsoft.ML.OnnxRuntime.Gpu", StringComparison.Ordinal));

        var core = Evaluate("src/Sadg.Core/Sadg.Core.csproj");
        Assert.Equal(["TorchSharp", "libtorch-cpu-linux-x64", "libtorch-cpu-win-x64", "libtorch-cpu-osx-arm64"],
            core.References.Where(r => r.Contains("orch", StringComparison.Ordinal)));
    }

    [Fact]
    public void SadgBackendCudaReferencesTheCudaPackagesAsSadgToolCuda()
    {
        var cli = Evaluate("src/Sadg.Cli/Sadg.Cli.csproj", "-p:SadgBackend=cuda");
        Assert.Equal("Sadg.Tool.Cuda", cli.Property("PackageId"));
        Assert.Equal("linux-x64", cli.Property("RuntimeIdentifiers"));
        Assert.Contains("SADG_CUDA", cli.Property("DefineConstants"));
        Assert.Contains("Microsoft.ML.OnnxRuntime.Gpu", cli.References);
        Assert.DoesNotContain("Microsoft.ML.OnnxRuntime", cli.References);
        Assert.Equal("1.31.0", cli.Versions["Microsoft.ML.OnnxRuntime.Gpu"]);

        var core = Evaluate("src/Sadg.Core/Sadg.Core.csproj", "-p:SadgBackend=cuda");
        Assert.Contains("TorchSharp-cuda-linux", core.References);
        Assert.DoesNotContain(core.References, r => r.StartsWith("libtorch-cpu", StringComparison.Ordinal) || r == "TorchSharp");
        Assert.Equal("0.107.0", core.Versions["TorchSharp-cuda-linux"]);
        Assert.Equal(core.Versions["TorchSharp"], core.Versions["TorchSharp-cuda-linux"]);
    }

    [Fact]
    public void AnUnknownBackendIsAnError()
    {
        var r = Dotnet.Run(BuildFixture.RepoRoot, "msbuild", "src/Sadg.Cli/Sadg.Cli.csproj", "-t:SadgCheckBackend", "-p:SadgBackend=rocm", "-nodeReuse:false");
        Assert.NotEqual(0, r.ExitCode);
        Assert.Contains("SadgBackend='rocm' is not a backend: use cpu (the default) or cuda.", r.Output);
    }

    private sealed record Evaluation(Dictionary<string, string> Properties, List<string> References, Dictionary<string, string> Versions)
    {
        public string Property(string name) => Properties[name];
    }

    private static Evaluation Evaluate(string project, params string[] extra)
    {
        var r = Dotnet.Run(BuildFixture.RepoRoot, ["msbuild", project, "-nodeReuse:false", "-getItem:PackageReference", "-getItem:PackageVersion",
            "-getProperty:PackageId", "-getProperty:RuntimeIdentifiers", "-getProperty:RollForward", "-getProperty:DefineConstants", .. extra]);
        Assert.True(r.ExitCode == 0, r.Output);
        using var json = JsonDocument.Parse(r.Output[r.Output.IndexOf('{')..]);
        var properties = json.RootElement.GetProperty("Properties").EnumerateObject().ToDictionary(p => p.Name, p => p.Value.GetString() ?? "");
        var items = json.RootElement.GetProperty("Items");
        var references = items.GetProperty("PackageReference").EnumerateArray().Select(i => i.GetProperty("Identity").GetString()!).ToList();
        var versions = items.GetProperty("PackageVersion").EnumerateArray()
            .ToDictionary(i => i.GetProperty("Identity").GetString()!, i => i.GetProperty("Version").GetString()!);
        return new Evaluation(properties, references, versions);
    }
}
