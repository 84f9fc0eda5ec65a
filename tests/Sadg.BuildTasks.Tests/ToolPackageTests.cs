using System.Diagnostics;
using System.IO.Compression;

namespace Sadg.BuildTasks.Tests;

/// <summary>
/// The real tool as packages: dotnet pack of src/Sadg.Cli (a copy of the sources, so the repo's outputs are left
/// alone) gives the top-level Sadg.Tool and one package per RID (linux-x64, win-x64, osx-arm64), each under
/// nuget.org's 250 MB limit, with only its own native libraries and none that nothing loads, and the libLibTorchSharp
/// fix applied on Linux. The linux-x64 one installs as a local tool and runs --help, inspect, a tiny quantization of
/// the sample model and --device cuda (which names Sadg.Tool.Cuda); a consumer of Sadg.BuildTasks without
/// SadgToolPath gets it through PackageDownload and runs it. The packages folder is a temporary one, removed afterwards.
/// </summary>
[Collection("build")]
public sealed class ToolPackageTests(BuildFixture fixture)
{
    /// <summary>nuget.org refuses packages over 250 MB.</summary>
    public const long NuGetOrgLimit = 250L * 1024 * 1024;

    /// <summary>Native libraries no part of the tool loads (src/Sadg.Cli/Sadg.Cli.csproj, SadgUnusedNativeFiles).</summary>
    public static readonly string[] UnusedNativeFiles =
    [
        "libtorch_python.so", "libtorch_python.dylib", "libshm.so", "libshm.dylib", "libtorchbind_test.so",
        "libjitbackend_test.so", "libbackend_with_compiler.so", "libaoti_custom_ops.so", "libnnapi_backend.so",
        "onnxruntime.lib", "onnxruntime_providers_shared.lib", "libonnxruntime_providers_cuda.so",
        "libonnxruntime_providers_tensorrt.so", "onnxruntime_providers_cuda.dll", "onnxruntime_providers_tensorrt.dll",
    ];

    [Fact]
    [Trait("Category", "Packaging")]
    public void TheToolPacksPerRidUnderTheLimitInstallsAsALocalToolAndTheBuildPackageDownloadsAndRunsIt()
    {
        string src = Path.Combine(fixture.Root, "repo");
        foreach (var file in new[] { "Directory.Build.props", "Directory.Build.targets", "Directory.Packages.props", "global.json", "README.md", "BannedSymbols.txt" })
            File.Copy(Path.Combine(BuildFixture.RepoRoot, file), Path.Combine(src, file).Also(p => Directory.CreateDirectory(Path.GetDirectoryName(p)!)));
        foreach (var dir in new[] { "build", "src/Sadg.Options", "src/Sadg.Core", "src/Sadg.Cli" })
            CopySources(Path.Combine(BuildFixture.RepoRoot, dir), Path.Combine(src, dir));

        var clock = Stopwatch.StartNew();
        var pack = Dotnet.Run(src, "pack", "src/Sadg.Cli/Sadg.Cli.csproj", "-c", "Release", "-o", fixture.Feed,
            "-p:Version=" + fixture.Version, "-nodeReuse:false");
        Assert.True(pack.ExitCode == 0, pack.Output);
        Console.WriteLine($"dotnet pack src/Sadg.Cli: {clock.Elapsed.TotalSeconds:F0} s");

        // The top-level package points at one package per RID and carries no implementation.
        using (var zip = ZipFile.OpenRead(Nupkg("Sadg.Tool")))
        {
            using var reader = new StreamReader(zip.GetEntry("tools/any/any/DotnetToolSettings.xml")!.Open());
            string settings = reader.ReadToEnd();
            foreach (var rid in new[] { "linux-x64", "win-x64", "osx-arm64" })
                Assert.Contains($"RuntimeIdentifier=\"{rid}\" Id=\"Sadg.Tool.{rid}\"", settings);
            Assert.DoesNotContain(zip.Entries, e => e.FullName.EndsWith(".dll", StringComparison.Ordinal));
            CheckMetadata(zip, "Sadg.Tool");
        }

        // Each RID package: under the limit, its own native libraries only, none that nothing loads.
        CheckRidPackage("linux-x64", ["libtorch_cpu.so", "libc10.so", "libLibTorchSharp.so", "libonnxruntime.so", "libSkiaSharp.so"], [".dylib", ".dll"]);
        CheckRidPackage("win-x64", ["torch_cpu.dll", "c10.dll", "LibTorchSharp.dll", "onnxruntime.dll", "libSkiaSharp.dll"], [".so", ".dylib"]);
        CheckRidPackage("osx-arm64", ["libtorch_cpu.dylib", "libc10.dylib", "libLibTorchSharp.dylib", "libonnxruntime.dylib", "libSkiaSharp.dylib"], [".so", ".dll"]);

        // linux-x64: the shipped libLibTorchSharp.so has GLIBCXX_3.4.32 marked weak; the tool rolls forward to later .NET.
        using (var zip = ZipFile.OpenRead(Nupkg("Sadg.Tool.linux-x64")))
        {
            string so = Path.Combine(fixture.Root, "libLibTorchSharp.so");
            zip.GetEntry("tools/net10.0/linux-x64/libLibTorchSharp.so")!.ExtractToFile(so, true);
            Assert.True(GlibcxxEntryIsWeak(so, "GLIBCXX_3.4.32"));
            using var reader = new StreamReader(zip.GetEntry("tools/net10.0/linux-x64/sadg.runtimeconfig.json")!.Open());
            Assert.Contains("\"rollForward\": \"Major\"", reader.ReadToEnd());
        }

        string model = Path.Combine(fixture.Root, "tiny.onnx");
        File.WriteAllBytes(model, TinyModels.Classifier(1));
        string packages = Path.Combine(fixture.Root, "packages");
        var env = new Dictionary<string, string> { ["NUGET_PACKAGES"] = packages };
        try
        {
            // The build package brings the tool by itself: no SadgToolPath, the build downloads Sadg.Tool.linux-x64
            // of the same version and the task runs it. A model without an image input is refused by the tool
            // (SADG1102) before anything long runs, and the build shows that as an error against the model.
            string toolDir = Path.Combine(packages, "sadg.tool.linux-x64");
            string toolDll = Path.Combine(toolDir, fixture.Version.ToLowerInvariant(), "tools", "net10.0", "linux-x64", "sadg.dll");
            var c = new Consumer(fixture, "realtool", fakeTool: false);
            c.WriteModel("flat.onnx", TinyModels.Flat());
            c.WriteProject("""    <QuantizeModel Include="Models/flat.onnx" />""",
                targetFrameworks: "<TargetFramework>net10.0</TargetFramework>", useFakeTool: false);
            var build = Dotnet.Run(c.Dir, env, "build", c.ProjectFile, "-nodeReuse:false");
            Assert.NotEqual(0, build.ExitCode);
            Assert.Contains("sadg: downloading the Sadg.Tool.linux-x64", build.Output);
            Assert.True(System.Text.RegularExpressions.Regex.IsMatch(build.Output, @"Models/flat\.onnx(\(0,0\))? ?: error SADG1102"), build.Output);
            Assert.True(File.Exists(toolDll));

            // The local tool manifest path: dotnet tool install (as dotnet tool restore does) puts the same package
            // in the global packages folder, where a build that never restores the tool finds it.
            Directory.Delete(toolDir, true);
            string tools = Path.Combine(fixture.Root, "localtool");
            Directory.CreateDirectory(tools);
            Assert.Equal(0, Dotnet.Run(tools, env, "new", "tool-manifest").ExitCode);
            var install = Dotnet.Run(tools, env, "tool", "install", "--local", "Sadg.Tool", "--add-source", fixture.Feed, "--version", fixture.Version);
            Assert.True(install.ExitCode == 0, install.Output);
            Assert.True(File.Exists(toolDll), "dotnet tool install did not put the tool at " + toolDll);
            var help = Dotnet.Run(tools, env, "sadg", "--help");
            Assert.True(help.ExitCode == 0, help.Output);
            Assert.Contains("quantize", help.Output);
            var inspect = Dotnet.Run(tools, env, "sadg", "inspect", model);
            Assert.True(inspect.ExitCode == 0, inspect.Output);
            Assert.Contains("Conv", inspect.Output);

            // A global-style install (dotnet tool install --tool-path, as --global does into ~/.dotnet/tools) runs too.
            string toolPath = Path.Combine(fixture.Root, "globaltool");
            var globalInstall = Dotnet.Run(fixture.Root, env, "tool", "install", "Sadg.Tool", "--tool-path", toolPath, "--add-source", fixture.Feed,
                "--version", fixture.Version);
            Assert.True(globalInstall.ExitCode == 0, globalInstall.Output);
            var globalVersion = Process.Start(new ProcessStartInfo(Path.Combine(toolPath, "sadg"), "--version") { RedirectStandardOutput = true })!;
            string globalOut = globalVersion.StandardOutput.ReadToEnd();
            globalVersion.WaitForExit();
            Assert.True(globalVersion.ExitCode == 0, globalOut);
            Assert.Contains(fixture.Version.Split('-')[0], globalOut);

            // The packed tool quantizes (libtorch and ONNX Runtime load without the files left out): the sample model,
            // the smallest budget.
            string sample = Path.Combine(BuildFixture.RepoRoot, "samples", "models", "resnet20-fmnist.onnx");
            string quantized = Path.Combine(fixture.Root, "resnet20.q4.onnx");
            clock.Restart();
            var quantize = Dotnet.Run(tools, env, "sadg", "quantize", sample, "-o", quantized, "--profile", "quick", "--samples", "4",
                "--reconstruction-steps", "2", "--generation-steps", "2", "--no-cache");
            Assert.True(quantize.ExitCode == 0, quantize.Output);
            Assert.True(new FileInfo(quantized).Length > 0);
            Console.WriteLine($"packed sadg quantize (tiny budget): {clock.Elapsed.TotalSeconds:F0} s");

            // The CPU build says where CUDA is.
            var cuda = Dotnet.Run(tools, env, "sadg", "quantize", model, "-o", Path.Combine(fixture.Root, "cuda.onnx"), "--device", "cuda");
            if (!cuda.Output.Contains("Device: CUDA"))
            {
                Assert.Equal(1, cuda.ExitCode);
                Assert.Contains("error SADG1106: ", cuda.Output);
                Assert.Contains("Sadg.Tool.Cuda", cuda.Output);
            }

            // A build without restore and SadgRestoreTool=false uses that tool and downloads nothing.
            var offline = new Consumer(fixture, "norestore", fakeTool: false);
            offline.WriteModel("flat.onnx", TinyModels.Flat());
            offline.WriteProject("""    <QuantizeModel Include="Models/flat.onnx" />""",
                targetFrameworks: "<TargetFramework>net10.0</TargetFramework>", useFakeTool: false);
            Assert.Equal(0, Dotnet.Run(offline.Dir, env, "restore", offline.ProjectFile, "-nodeReuse:false").ExitCode);
            var noRestore = Dotnet.Run(offline.Dir, env, "build", offline.ProjectFile, "--no-restore", "-p:SadgRestoreTool=false", "-nodeReuse:false");
            Assert.NotEqual(0, noRestore.ExitCode);
            Assert.DoesNotContain("downloading", noRestore.Output);
            Assert.True(System.Text.RegularExpressions.Regex.IsMatch(noRestore.Output, @"Models/flat\.onnx(\(0,0\))? ?: error SADG1102"), noRestore.Output);
        }
        finally
        {
            try { Directory.Delete(packages, true); } catch (IOException) { }
        }
    }

    private string Nupkg(string id) => Path.Combine(fixture.Feed, $"{id}.{fixture.Version}.nupkg");

    private void CheckRidPackage(string rid, string[] required, string[] foreignExtensions)
    {
        string path = Nupkg("Sadg.Tool." + rid);
        long packed = new FileInfo(path).Length;
        using var zip = ZipFile.OpenRead(path);
        long unpacked = zip.Entries.Sum(e => e.Length);
        Console.WriteLine($"Sadg.Tool.{rid}: {packed / 1e6:F1} MB packed, {unpacked / 1e6:F1} MB unpacked");
        Assert.True(packed < NuGetOrgLimit, $"Sadg.Tool.{rid} is {packed} bytes, over nuget.org's {NuGetOrgLimit}");
        string dir = $"tools/net10.0/{rid}/";
        Assert.NotNull(zip.GetEntry(dir + "sadg.dll"));
        Assert.NotNull(zip.GetEntry(dir + "DotnetToolSettings.xml"));
        foreach (var file in required) Assert.True(zip.GetEntry(dir + file) != null, $"Sadg.Tool.{rid} lacks {file}");
        var names = zip.Entries.Select(e => e.FullName).ToList();
        Assert.All(names.Where(n => n.StartsWith("tools/", StringComparison.Ordinal)), n => Assert.StartsWith(dir, n));
        foreach (var file in UnusedNativeFiles) Assert.DoesNotContain(dir + file, names);
        // No other OS's native libraries (managed assemblies are .dll everywhere).
        foreach (var ext in foreignExtensions)
            Assert.DoesNotContain(names, n => n.EndsWith(ext, StringComparison.Ordinal) && !IsManaged(zip.GetEntry(n)!));
        CheckMetadata(zip, "Sadg.Tool." + rid);
    }

    /// <summary>A .dll is managed when it is a PE file with a CLI header (data directory 14 non-empty).</summary>
    private static bool IsManaged(ZipArchiveEntry entry)
    {
        using var stream = entry.Open();
        using var copy = new MemoryStream();
        stream.CopyTo(copy);
        copy.Position = 0;
        try
        {
            using var pe = new System.Reflection.PortableExecutable.PEReader(copy);
            return pe.HasMetadata;
        }
        catch (BadImageFormatException)
        {
            return false;
        }
    }

    private static void CheckMetadata(ZipArchive zip, string id)
    {
        using var reader = new StreamReader(zip.GetEntry(id + ".nuspec")!.Open());
        string nuspec = reader.ReadToEnd();
        Assert.Contains("<license type=\"expression\">MIT</license>", nuspec);
        Assert.Contains("<readme>README.md</readme>", nuspec);
        Assert.Contains("<tags>onnx quantization", nuspec);
        Assert.Contains("<repository type=\"git\"", nuspec);
        Assert.NotNull(zip.GetEntry("README.md"));
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
