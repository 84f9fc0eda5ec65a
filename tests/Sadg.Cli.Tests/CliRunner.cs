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
        int code = await CliApp.RunAsync(args, s, cancellationToken);
        return new Result(code, output.ToString(), error.ToString());
    }

    public static Task<Result> RunAsync(params string[] args) => RunAsync(args, null);

    /// <summary>Runs <c>dotnet sadg.dll args</c> (the copy beside the test assembly) as a separate process.</summary>
    public static Result RunProcess(params string[] args)
    {
        string dll = Path.Combine(AppContext.BaseDirectory, "sadg.dll");
        var start = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true };
        start.ArgumentList.Add(dll);
        foreach (var a in args) start.ArgumentList.Add(a);
        using var process = Process.Start(start)!;
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        if (!process.WaitForExit(120_000)) { process.Kill(true); throw new TimeoutException("sadg did not finish in 2 minutes"); }
        return new Result(process.ExitCode, stdout.Result, stderr.Result);
    }
}
