using System.Diagnostics;
using System.IO.Compression;

namespace Sadg.BuildTasks.Tests;

/// <summary>
/// The real tool as a package: dotnet pack of src/Sadg.Cli (a copy of the sources, so the repo's outputs are left
/// alone) gives a linux-x64 tool package with the libLibTorchSharp fix applied; it installs as a local tool and runs
/// --help and inspect; and a consumer of Sadg.BuildTasks without SadgToolPath gets it through PackageDownload and
/// runs it. The packages folder is a temporary one (the tool package holds ~800 MB unpacked), removed afterwards.
/// </summary>
[Collection("build")]
public sealed class ToolPackageTests(BuildFixture fixture)
{
    [Fact]
    [Trait("Category", "Packaging")]
    public void TheToolPackInstallsAsALocalToolAndTheBuildPackageDownloadsAndRunsIt()
    {
        string src = Path.Combine(fixture.Root, "repo");
        foreach (var file in new[] { "Directory.Build.props", "Directory.Build.targets", "Directory.Packages.props", "global.json" })
            File.Copy(Path.Combine(BuildFixture.RepoRoot, file), Path.Combine(src, file).Also(p => Directory.CreateDirectory(Path.GetDirectoryName(p)!)));
        foreach (var dir in new[] { "build", "src/Sadg.Core", "src/Sadg.Cli" })
            CopySources(Path.Combine(BuildFixture.RepoRoot, dir), Path.Combine(src, dir));

        var clock = Stopwatch.StartNew();
        var pack = Dotnet.Run(src, "pack", "src/Sadg.Cli/Sadg.Cli.csproj", "-c", "Release", "-o", fixture.Feed,
            "-p:Version=" + fixture.Version, "-nodeReuse:false");
        Assert.True(pack.ExitCode == 0, pack.Output);
        string nupkg = Path.Combine(fixture.Feed, $"Sadg.Tool.{fixture.Version}.nupkg");
        Console.WriteLine($"dotnet pack src/Sadg.Cli: {clock.Elapsed.TotalSeconds:F0} s, {new FileInfo(nupkg).Length / 1e6:F0} MB");

        // RID-specific layout, and the shipped libLibTorchSharp.so has GLIBCXX_3.4.32 marked weak.
        using (var zip = ZipFile.OpenRead(nupkg))
        {
            Assert.NotNull(zip.GetEntry("tools/net10.0/linux-x64/sadg.dll"));
            Assert.NotNull(zip.GetEntry("tools/net10.0/linux-x64/DotnetToolSettings.xml"));
            var lib = zip.GetEntry("tools/net10.0/linux-x64/libLibTorchSharp.so");
            Assert.NotNull(lib);
            string so = Path.Combine(fixture.Root, "libLibTorchSharp.so");
            lib!.ExtractToFile(so, true);
            Assert.True(GlibcxxEntryIsWeak(so, "GLIBCXX_3.4.32"));
        }

        string model = Path.Combine(fixture.Root, "tiny.onnx");
        File.WriteAllBytes(model, TinyModels.Classifier(1));
        string packages = Path.Combine(fixture.Root, "packages");
        var env = new Dictionary<string, string> { ["NUGET_PACKAGES"] = packages };
        try
        {
            // The build package brings the tool by itself: no SadgToolPath, restore downloads Sadg.Tool of the
            // same version and the task runs it. A model without an image input is refused by the tool (SADG1102)
            // before anything long runs, and the build shows that as an error against the model.
            var c = new Consumer(fixture, "realtool", fakeTool: false);
            c.WriteModel("flat.onnx", TinyModels.Flat());
            c.WriteProject("""    <QuantizeModel Include="Models/flat.onnx" />""",
                targetFrameworks: "<TargetFramework>net10.0</TargetFramework>", useFakeTool: false);
            var build = Dotnet.Run(c.Dir, env, "build", c.ProjectFile, "-nodeReuse:false");
            Assert.NotEqual(0, build.ExitCode);
            Assert.True(System.Text.RegularExpressions.Regex.IsMatch(build.Output, @"Models/flat\.onnx(\(0,0\))? ?: error SADG1102"), build.Output);
            Assert.True(File.Exists(Path.Combine(packages, "sadg.tool", fixture.Version.ToLowerInvariant(), "tools", "net10.0", "linux-x64", "sadg.dll")));

            string tools = Path.Combine(fixture.Root, "localtool");
            Directory.CreateDirectory(tools);
            Assert.Equal(0, Dotnet.Run(tools, env, "new", "tool-manifest").ExitCode);
            var install = Dotnet.Run(tools, env, "tool", "install", "--local", "Sadg.Tool", "--add-source", fixture.Feed, "--version", fixture.Version);
            Assert.True(install.ExitCode == 0, install.Output);
            var help = Dotnet.Run(tools, env, "sadg", "--help");
            Assert.True(help.ExitCode == 0, help.Output);
            Assert.Contains("quantize", help.Output);
            var inspect = Dotnet.Run(tools, env, "sadg", "inspect", model);
            Assert.True(inspect.ExitCode == 0, inspect.Output);
            Assert.Contains("Conv", inspect.Output);
        }
        finally
        {
            try { Directory.Delete(packages, true); } catch (IOException) { }
        }
    }

    private static void CopySources(string from, string to)
    {
        Directory.CreateDirectory(to);
        foreach (var f in Directory.GetFiles(from)) File.Copy(f, Path.Combine(to, Path.GetFileName(f)));
        foreach (var d in Directory.GetDirectories(from))
        {
            string name = Path.GetFileName(d);
            if (name is "bin" or "obj") continue;
            CopySources(d, Path.Combine(to, name));
        }
    }

    /// <summary>Whether the ELF file's version-needed entry of that name has VER_FLG_WEAK (ELF64 little-endian).</summary>
    private static bool GlibcxxEntryIsWeak(string path, string version)
    {
        byte[] elf = File.ReadAllBytes(path);
        long shoff = BitConverter.ToInt64(elf, 0x28);
        int shentsize = BitConverter.ToUInt16(elf, 0x3A), shnum = BitConverter.ToUInt16(elf, 0x3C);
        for (int s = 0; s < shnum; s++)
        {
            int sh = (int)(shoff + (long)s * shentsize);
            if (BitConverter.ToUInt32(elf, sh + 4) != 0x6ffffffe) continue;
            long vn = BitConverter.ToInt64(elf, sh + 0x18);
            int strSh = (int)(shoff + (long)BitConverter.ToUInt32(elf, sh + 0x28) * shentsize);
            long str = BitConverter.ToInt64(elf, strSh + 0x18);
            while (true)
            {
                int count = BitConverter.ToUInt16(elf, (int)vn + 2);
                long aux = vn + BitConverter.ToUInt32(elf, (int)vn + 8);
                for (int a = 0; a < count; a++)
                {
                    int start = (int)(str + BitConverter.ToUInt32(elf, (int)aux + 8)), end = start;
                    while (elf[end] != 0) end++;
                    if (System.Text.Encoding.ASCII.GetString(elf, start, end - start) == version)
                        return (BitConverter.ToUInt16(elf, (int)aux + 4) & 2) != 0;
                    uint nextAux = BitConverter.ToUInt32(elf, (int)aux + 12);
                    if (nextAux == 0) break;
                    aux += nextAux;
                }
                uint next = BitConverter.ToUInt32(elf, (int)vn + 12);
                if (next == 0) break;
                vn += next;
            }
        }
        return false;
    }
}

internal static class Extensions
{
    public static string Also(this string s, Action<string> action)
    {
        action(s);
        return s;
    }
}
