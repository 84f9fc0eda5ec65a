namespace Sadg.BuildTasks.Tests;

/// <summary>
/// Which tool package a build takes: the one for this machine's RID (Sadg.Tool.&lt;RID&gt;), and error SADG1603
/// naming the supported machines on one that has none. No tool runs here (the fake-tool setup of BuildTests).
/// </summary>
[Collection("build")]
public sealed class ToolHostTests(BuildFixture fixture)
{
    [Fact]
    public void AMachineWithoutAToolPackageFailsWithSADG1603NamingTheSupportedOnes()
    {
        var c = new Consumer(fixture, "nohost", fakeTool: false);
        c.WriteModel("tiny.onnx", TinyModels.Classifier(1));
        // SadgToolRuntimeIdentifier defaults to this machine's OS and architecture; linux-arm64 stands for a machine
        // no package is made for.
        c.WriteProject("""    <QuantizeModel Include="Models/tiny.onnx" />""", properties: "<SadgToolRuntimeIdentifier>linux-arm64</SadgToolRuntimeIdentifier>",
            targetFrameworks: "<TargetFramework>net10.0</TargetFramework>", useFakeTool: false);
        var build = c.Build();
        Assert.NotEqual(0, build.ExitCode);
        Assert.True(build.Output.Contains("error SADG1603"), build.Output);
        Assert.Matches(@"App\.csproj(\(0,0\))? ?: error SADG1603: The Sadg\.Tool package has no build for this machine \(linux-arm64, .*\); it is made for linux-x64, win-x64, osx-arm64\.", build.Output);
        Assert.DoesNotContain("downloading", build.Output);
        Assert.DoesNotContain("SADG1601", build.Output);
    }

    [Fact]
    public void TheToolPathIsThePackageForThisMachinesRid()
    {
        var c = new Consumer(fixture, "toolpath", fakeTool: false);
        c.WriteProject("", targetFrameworks: "<TargetFramework>net10.0</TargetFramework>", useFakeTool: false);
        Assert.Equal(0, Dotnet.Run(c.Dir, "restore", c.ProjectFile, "-nodeReuse:false").ExitCode);
        string rid = (OperatingSystem.IsWindows() ? "win" : OperatingSystem.IsMacOS() ? "osx" : "linux") + "-"
            + System.Runtime.InteropServices.RuntimeInformation.OSArchitecture.ToString().ToLowerInvariant();
        var path = Dotnet.Run(c.Dir, "msbuild", c.ProjectFile, "-getProperty:SadgToolPath", "-getProperty:SadgToolRuntimeIdentifier", "-nodeReuse:false");
        Assert.True(path.ExitCode == 0, path.Output);
        Assert.Contains($"\"SadgToolRuntimeIdentifier\": \"{rid}\"", path.Output);
        string expected = $"sadg.tool.{rid}/{fixture.Version.ToLowerInvariant()}/tools/net10.0/{rid}/sadg.dll";
        Assert.Contains(expected, path.Output.Replace('\\', '/'));

        // The CUDA flavour is a package id away; it is made for linux-x64 only.
        var cuda = Dotnet.Run(c.Dir, "msbuild", c.ProjectFile, "-getProperty:SadgToolPath", "-getProperty:SadgToolSupportedRuntimeIdentifiers",
            "-p:SadgToolPackageId=Sadg.Tool.Cuda", "-p:SadgToolRuntimeIdentifier=linux-x64", "-nodeReuse:false");
        Assert.True(cuda.ExitCode == 0, cuda.Output);
        Assert.Contains($"sadg.tool.cuda.linux-x64/{fixture.Version.ToLowerInvariant()}/tools/net10.0/linux-x64/sadg.dll", cuda.Output.Replace('\\', '/'));
        Assert.Contains("\"SadgToolSupportedRuntimeIdentifiers\": \"linux-x64\"", cuda.Output);
    }
}
