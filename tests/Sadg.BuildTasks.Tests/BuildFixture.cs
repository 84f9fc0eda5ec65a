using System.Diagnostics;
using System.Text;

namespace Sadg.BuildTasks.Tests;

/// <summary>
/// Packs Sadg.BuildTasks once per test run, with a version of its own (so no earlier package in the global packages
/// folder can stand in for it), into a temporary local feed; writes the fake sadg tool. The package's folder in the
/// global packages folder is removed at the end.
/// </summary>
public sealed class BuildFixture : IDisposable
{
    public BuildFixture()
    {
        Root = Path.Combine(Path.GetTempPath(), "sadg-build-tests-" + Guid.NewGuid().ToString("N")[..8]);
        Feed = Path.Combine(Root, "feed");
        Directory.CreateDirectory(Feed);
        Version = "0.0.0-test." + DateTime.UtcNow.ToString("yyyyMMddHHmmss") + "." + Guid.NewGuid().ToString("N")[..6];
        var pack = Dotnet.Run(RepoRoot, "pack", Path.Combine(RepoRoot, "src", "Sadg.BuildTasks", "Sadg.BuildTasks.csproj"),
            "-c", "Release", "-o", Feed, "-p:Version=" + Version, "-nodeReuse:false",
            // Build into the temp folder, so the repo's own outputs are left alone.
            "-p:OutputPath=" + Path.Combine(Root, "pack-bin") + "/", "-p:IntermediateOutputPath=" + Path.Combine(Root, "pack-obj") + "/");
        if (pack.ExitCode != 0) throw new InvalidOperationException("dotnet pack failed:\n" + pack.Output);
    }

    public string Root { get; }
    public string Feed { get; }
    public string Version { get; }

    public static string RepoRoot { get; } = FindRepoRoot();

    private static string FindRepoRoot()
    {
        for (var d = new DirectoryInfo(AppContext.BaseDirectory); d != null; d = d.Parent)
            if (File.Exists(Path.Combine(d.FullName, "Sadg.BuildTasks.sln"))) return d.FullName;
        throw new InvalidOperationException("Sadg.BuildTasks.sln not found above " + AppContext.BaseDirectory);
    }

    public void Dispose()
    {
        try { Directory.Delete(Root, true); } catch (IOException) { }
        string packages = Environment.GetEnvironmentVariable("NUGET_PACKAGES") is { Length: > 0 } p ? p
            : Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".nuget", "packages");
        try { Directory.Delete(Path.Combine(packages, "sadg.buildtasks", Version.ToLowerInvariant()), true); }
        catch (IOException) { }
        catch (UnauthorizedAccessException) { }
    }
}

public static class Dotnet
{
    public sealed record Result(int ExitCode, string Output);

    /// <summary>Runs dotnet with the arguments in the folder; stdout and stderr together.</summary>
    public static Result Run(string workingDirectory, params string[] args) => Run(workingDirectory, null, args);

    public static Result Run(string workingDirectory, IDictionary<string, string>? environment, params string[] args)
    {
        var start = new ProcessStartInfo("dotnet")
        {
            WorkingDirectory = workingDirectory,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        foreach (var a in args) start.ArgumentList.Add(a);
        start.Environment["DOTNET_CLI_TELEMETRY_OPTOUT"] = "1";
        start.Environment["DOTNET_NOLOGO"] = "1";
        start.Environment["MSBUILDDISABLENODEREUSE"] = "1";
        // The test host's own MSBuild variables must not leak into the child build.
        foreach (var key in new[] { "MSBuildExtensionsPath", "MSBuildSDKsPath", "MSBUILD_EXE_PATH" }) start.Environment.Remove(key);
        if (environment != null) foreach (var (k, v) in environment) start.Environment[k] = v;
        var output = new StringBuilder();
        using var process = new Process { StartInfo = start };
        process.OutputDataReceived += (_, e) => { if (e.Data != null) lock (output) output.AppendLine(e.Data); };
        process.ErrorDataReceived += (_, e) => { if (e.Data != null) lock (output) output.AppendLine(e.Data); };
        process.Start();
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        if (!process.WaitForExit(300_000))
        {
            process.Kill(true);
            throw new TimeoutException("dotnet " + string.Join(' ', args) + " did not finish in 5 minutes:\n" + output);
        }
        process.WaitForExit();
        lock (output) return new Result(process.ExitCode, output.ToString());
    }
}

/// <summary>One consumer project in a temporary folder, with the fake tool and the local feed.</summary>
public sealed class Consumer
{
    public const string FakeTool = """
        #!/bin/sh
        # A stand-in for sadg: records its arguments (one file per call) and writes -o as a copy of the model.
        dir=$(dirname "$0"); model=""; out=""; prev=""; gate=""
        for a in "$@"; do
          [ "$prev" = "-o" ] && out="$a"
          [ "$prev" = "quantize" ] && model="$a"
          [ "$prev" = "--min-agreement" ] && gate="$a"
          prev="$a"
        done
        mkdir -p "$dir/calls"
        { printf '%s\n' "$@"; printf 'env:SADG_CACHE_DIR=%s\n' "$SADG_CACHE_DIR"; } > "$dir/calls/$(date +%s%N)-$$.args"
        case "$model" in *broken*) echo "$model(0,0): error SADG1101: The model uses operators Sadg cannot run: Foo (node n1)." >&2; exit 1;; esac
        case "$model" in *nobn*) echo "$model(0,0): warning SADG2001: The model has no BatchNormalization layers." >&2;; esac
        [ "$gate" = "100" ] && { echo "$model(0,0): error SADG1405: The accuracy gate failed: the quantized model's top-1 agreement with the FP32 model is 87.50% on held-out synthetic images (64 Genie-D images, seed 1000003), below the threshold of 100%." >&2; exit 1; }
        echo "fake sadg: quantizing $model" >&2
        cp "$model" "$out.tmp" && mv "$out.tmp" "$out"
        echo "outcome: $(basename "$model"): W4A8 sadag, 1.0 KB -> 1.0 KB (1.0x smaller), top-1 agreement 100.00%, quantized"
        """;

    public Consumer(BuildFixture fixture, string name, bool fakeTool = true)
    {
        Dir = Path.Combine(fixture.Root, name);
        Directory.CreateDirectory(Path.Combine(Dir, "Models"));
        File.WriteAllText(Path.Combine(Dir, "NuGet.config"), $"""
            <configuration>
              <packageSources>
                <clear />
                <add key="local" value="{fixture.Feed}" />
                <add key="nuget.org" value="https://api.nuget.org/v3/index.json" />
              </packageSources>
            </configuration>
            """);
        if (fakeTool)
        {
            string tool = Path.Combine(Dir, "fake-sadg.sh");
            File.WriteAllText(tool, FakeTool.Replace("\r\n", "\n") + "\n");
            if (!OperatingSystem.IsWindows()) File.SetUnixFileMode(tool, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
        }
        Version = fixture.Version;
    }

    public string Dir { get; }
    public string Version { get; }
    public string ProjectFile => Path.Combine(Dir, "App.csproj");

    public string Path_(params string[] parts) => Path.Combine([Dir, .. parts]);

    public void WriteModel(string name, byte[] bytes) => File.WriteAllBytes(Path.Combine(Dir, "Models", name), bytes);

    /// <summary>Models/tiny.onnx and Models/other.onnx, two different small classifiers.</summary>
    public void WriteTinyAndOther()
    {
        WriteModel("tiny.onnx", TinyModels.Classifier(1));
        WriteModel("other.onnx", TinyModels.Classifier(2));
    }

    /// <summary>Writes App.csproj: the package reference, the fake tool, and the given items and properties.</summary>
    public void WriteProject(string items, string properties = "", string targetFrameworks = "<TargetFramework>net10.0</TargetFramework><OutputType>Exe</OutputType>", bool useFakeTool = true,
        string cacheDir = "<SadgCacheDir>$(MSBuildProjectDirectory)/cache</SadgCacheDir>")
    {
        string tool = useFakeTool ? "<SadgToolPath>$(MSBuildProjectDirectory)/fake-sadg.sh</SadgToolPath>" : "";
        File.WriteAllText(ProjectFile, $"""
            <Project Sdk="Microsoft.NET.Sdk">
              <PropertyGroup>
                {targetFrameworks}
                <Nullable>enable</Nullable>
                <RootNamespace>App</RootNamespace>
                {tool}
                {cacheDir}
                {properties}
              </PropertyGroup>
              <ItemGroup>
                <PackageReference Include="Sadg.BuildTasks" Version="{Version}" PrivateAssets="all" />
              </ItemGroup>
              <ItemGroup>
            {items}
              </ItemGroup>
            </Project>
            """);
    }

    public void WriteProgram(string code) => File.WriteAllText(Path.Combine(Dir, "Program.cs"), code);

    public Dotnet.Result Build(params string[] extra) => Dotnet.Run(Dir, ["build", ProjectFile, "-nodeReuse:false", .. extra]);

    public Dotnet.Result Build(IDictionary<string, string> environment, params string[] extra) =>
        Dotnet.Run(Dir, environment, ["build", ProjectFile, "-nodeReuse:false", .. extra]);

    /// <summary>The fake tool's calls so far, oldest first, each as its argument list.</summary>
    public List<string[]> Calls()
    {
        string calls = Path.Combine(Dir, "calls");
        if (!Directory.Exists(calls)) return [];
        return Directory.GetFiles(calls).Order(StringComparer.Ordinal).Select(f => File.ReadAllLines(f)).ToList();
    }

    public static string ModelOf(string[] call) => call[Array.IndexOf(call, "quantize") + 1];
    public static string Option(string[] call, string name) => call[Array.IndexOf(call, name) + 1];

    /// <summary>The value of SADG_CACHE_DIR the tool saw.</summary>
    public static string CacheEnvironment(string[] call) => call.Single(a => a.StartsWith("env:SADG_CACHE_DIR=", StringComparison.Ordinal))["env:SADG_CACHE_DIR=".Length..];
}
