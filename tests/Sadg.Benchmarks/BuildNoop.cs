using System.Diagnostics;
using System.Runtime.InteropServices;
using Sadg.BuildTasks.Tests;

namespace Sadg.Benchmarks;

/// <summary>
/// The cost of Sadg.BuildTasks on a build where nothing changed: the same console app built with and without two
/// QuantizeModel items (the packed package, the fake tool), timed over repeated no-op `dotnet build --no-restore`
/// runs. Writes docs/benchmarks/build-noop.md.
///   dotnet run -c Release --project tests/Sadg.Benchmarks -- build-noop [--iterations N]
/// </summary>
public static class BuildNoop
{
    public static int Run(string[] args, int iterations)
    {
        using var fixture = new BuildFixture();
        var plain = new Consumer(fixture, "plain");
        plain.WriteProject("");
        var sadg = new Consumer(fixture, "sadg");
        sadg.WriteModel("tiny.onnx", TinyModels.Classifier(1));
        sadg.WriteModel("other.onnx", TinyModels.Classifier(2));
        sadg.WriteProject("""
                <QuantizeModel Include="Models/tiny.onnx" />
                <QuantizeModel Include="Models/other.onnx" Bits="3" Embed="false" />
            """);
        // The plain project references the package too (restore and imports are the same); only the items differ.
        foreach (var c in new[] { plain, sadg })
        {
            c.WriteProgram("System.Console.WriteLine(1);");
            var first = c.Build();
            if (first.ExitCode != 0) throw new InvalidOperationException(first.Output);
        }
        var times = new Dictionary<string, List<double>> { ["plain"] = [], ["sadg"] = [] };
        for (int i = 0; i < iterations; i++)
            foreach (var (name, c) in new[] { ("plain", plain), ("sadg", sadg) })
            {
                long start = Stopwatch.GetTimestamp();
                var r = c.Build("--no-restore");
                times[name].Add(Stopwatch.GetElapsedTime(start).TotalSeconds);
                if (r.ExitCode != 0) throw new InvalidOperationException(r.Output);
            }
        if (sadg.Calls().Count != 2) throw new InvalidOperationException("a no-op build ran the tool");
        double Median(List<double> v) { var s = v.Order().ToArray(); return s.Length % 2 == 1 ? s[s.Length / 2] : (s[s.Length / 2 - 1] + s[s.Length / 2]) / 2; }
        double p = Median(times["plain"]), q = Median(times["sadg"]);
        string report = $"""
            # No-op build overhead of Sadg.BuildTasks

            A console app built again with nothing changed (`dotnet build --no-restore`, MSBuild node reuse off, so
            every run starts MSBuild), with and without two `QuantizeModel` items (one embedded, one copied). Both
            reference the package. The tool is not run on these builds (checked).

            - Machine: {Environment.ProcessorCount} cores, {RuntimeInformation.OSDescription}
            - .NET: {RuntimeInformation.FrameworkDescription}
            - Iterations: {iterations} each, interleaved

            ## Command

            ```
            dotnet run -c Release --project tests/Sadg.Benchmarks -- build-noop --iterations {iterations}
            ```

            ## Results (seconds per build, median)

            | project | median | min | max |
            |---|---:|---:|---:|
            | without items | {p:F2} | {times["plain"].Min():F2} | {times["plain"].Max():F2} |
            | with 2 QuantizeModel items | {q:F2} | {times["sadg"].Min():F2} | {times["sadg"].Max():F2} |

            Ratio with / without (median): {q / p:F3}x

            """;
        string path = Path.Combine(BuildFixture.RepoRoot, "docs", "benchmarks", "build-noop.md");
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        File.WriteAllText(path, report);
        Console.WriteLine(report);
        Console.WriteLine($"written to {path}");
        return 0;
    }
}
