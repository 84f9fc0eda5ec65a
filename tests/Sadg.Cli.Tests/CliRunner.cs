using System.Diagnostics;
using Sadg.Cli;

namespace Sadg.Cli.Tests;

/// <summary>Runs the tool in this process with captured writers, or as a child process.</summary>
public static class CliRunner
{
    public sealed record Result(int ExitCode, string Out, string Err);

    public static async Task<Result> RunAsync(string[] args, CliServices? services = null, CancellationToken cancellationToken = default)
    {
        var output = new StringWriter();
        var error = new StringWriter();
        var s = services is null ? new CliServices(output, error) : services with { Out = output, Error = error };
        // Never the user's cache: a fresh folder per run unless the test passes --cache-dir or its own folder.
        string? cache = s.CacheDirectory is null ? Path.Combine(Path.GetTempPath(), "sadg-test-cache-" + Guid.NewGuid().ToString("N")) : null;
        if (cache is not null) s = s with { CacheDirectory = cache };
        try
        {
            int code = await CliApp.RunAsync(args, s, cancellationToken);
            return new Result(code, output.ToString(), error.ToString());
        }
        finally
        {
            if (cache is not null && Directory.Exists(cache)) Directory.Delete(cache, recursive: true);
        }
    }

    public static Task<Result> RunAsync(params string[] args) => RunAsync(args, null);

    /// <summary>Runs <c>dotnet sadg.dll args</c> (the copy beside the test assembly) as a separate process.</summary>
    public static Result RunProcess(params string[] args) => RunProcess(args, new Dictionary<string, string?>());

    /// <summary>Runs <c>dotnet sadg.dll args</c> as a separate process with these environment variables set (null: removed).</summary>
    public static Result RunProcess(string[] args, IReadOnlyDictionary<string, string?> environment)
    {
        string dll = Path.Combine(AppContext.BaseDirectory, "sadg.dll");
        var start = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true };
        start.Environment["SADG_CACHE_DIR"] = Path.Combine(Path.GetTempPath(), "sadg-test-cache-process");
        foreach (var (name, value) in environment)
            if (value is null) start.Environment.Remove(name);
            else start.Environment[name] = value;
        start.ArgumentList.Add(dll);
        foreach (var a in args) start.ArgumentList.Add(a);
        using var process = Process.Start(start)!;
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        if (!process.WaitForExit(120_000)) { process.Kill(true); throw new TimeoutException("sadg did not finish in 2 minutes"); }
        return new Result(process.ExitCode, stdout.Result, stderr.Result);
    }
}
