using System.CommandLine;
using System.CommandLine.Invocation;
using Sadg.Cli.Commands;
using Sadg.Cli.Output;
using Sadg.Cli.Pipeline;

namespace Sadg.Cli;

/// <summary>The exit codes of <c>sadg</c> (docs/cli.md).</summary>
public static class ExitCodes
{
    public const int Ok = 0;
    public const int Failed = 1;
    public const int Usage = 2;
    public const int Internal = 3;
    public const int Cancelled = 130;
}

/// <summary>What the commands write to and which pipelines they call; tests pass their own.</summary>
public sealed record CliServices(TextWriter Out, TextWriter Error)
{
    public IQuantizationPipeline Quantization { get; init; } = new LibraryQuantizationPipeline();
    public IDataGenerationPipeline Generation { get; init; } = new LibraryDataGenerationPipeline();

    /// <summary>The cache folder when --cache-dir is not given (null: $SADG_CACHE_DIR, $XDG_CACHE_HOME/sadg, ~/.cache/sadg).</summary>
    public string? CacheDirectory { get; init; }

    /// <summary>Forces the progress display (null: redraw only when stdout and stderr are a terminal).</summary>
    public bool? Interactive { get; init; }
}

/// <summary>Builds the command tree and runs one command line.</summary>
public static class CliApp
{
    public static readonly Option<bool> Quiet = new("--quiet", "-q")
    {
        Description = "Print only results, warnings and errors (no progress, no information lines).",
        Recursive = true,
    };

    public static readonly Option<bool> Verbose = new("--verbose", "-v")
    {
        Description = "Print details of each stage.",
        Recursive = true,
    };

    public static RootCommand CreateRoot(CliServices services)
    {
        var root = new RootCommand(
            "sadg: quantizes ONNX image classifiers to 2-8 bits without data (sharpness-aware data generation, ICML 2024). " +
            "Errors are printed as 'path(line,col): error SADGnnnn: message'; exit codes: 0 ok, 1 error, 2 usage, 3 internal error, 130 cancelled.");
        // The version of this tool, not of the host process (tests run it inside testhost).
        foreach (var version in root.Options.OfType<VersionOption>()) version.Action = new PrintVersion();
        root.Options.Add(Quiet);
        root.Options.Add(Verbose);
        root.Subcommands.Add(QuantizeCommand.Create(services));
        root.Subcommands.Add(InspectCommand.Create(services));
        root.Subcommands.Add(GenerateCommand.Create(services));
        root.Subcommands.Add(EvaluateCommand.Create(services));
        return root;
    }

    /// <summary>The informational version of the sadg assembly, e.g. "0.1.0+commit".</summary>
    public static string Version =>
        typeof(CliApp).Assembly.GetCustomAttributes(typeof(System.Reflection.AssemblyInformationalVersionAttribute), false)
            .OfType<System.Reflection.AssemblyInformationalVersionAttribute>().FirstOrDefault()?.InformationalVersion
        ?? typeof(CliApp).Assembly.GetName().Version?.ToString() ?? "unknown";

    sealed class PrintVersion : SynchronousCommandLineAction
    {
        public override int Invoke(ParseResult parseResult)
        {
            parseResult.InvocationConfiguration.Output.WriteLine(Version);
            return ExitCodes.Ok;
        }
    }

    /// <summary>Parses and runs <paramref name="args"/>; returns the exit code. Never throws for user errors.</summary>
    public static async Task<int> RunAsync(string[] args, CliServices services, CancellationToken cancellationToken)
    {
        var root = CreateRoot(services);
        var parse = root.Parse(args);
        if (parse.Action is ParseErrorAction)
        {
            foreach (var error in parse.Errors)
                services.Error.WriteLine($"sadg(0,0): error SADG{(int)SadgErrorCode.UsageError:D4}: {error.Message}");
            string verb = parse.CommandResult.Command is RootCommand ? "" : parse.CommandResult.Command.Name + " ";
            services.Error.WriteLine($"Run 'sadg {verb}--help' for usage.");
            return ExitCodes.Usage;
        }
        var config = new InvocationConfiguration
        {
            Output = services.Out,
            Error = services.Error,
            EnableDefaultExceptionHandler = false,
            ProcessTerminationTimeout = null, // Ctrl+C is handled by Program, which cancels the token.
        };
        return await parse.InvokeAsync(config, cancellationToken);
    }

    /// <summary>
    /// Wraps a command's body: sets up the console, turns every <see cref="SadgException"/> into its diagnostic line
    /// and exit 1, cancellation into exit 130, anything else into an internal error (exit 3).
    /// </summary>
    public static Func<ParseResult, CancellationToken, Task<int>> Guard(CliServices services,
        Func<CliConsole, ParseResult, CancellationToken, Task<int>> body) => async (parse, cancellationToken) =>
    {
        var verbosity = parse.GetValue(Quiet) ? Verbosity.Quiet : parse.GetValue(Verbose) ? Verbosity.Verbose : Verbosity.Normal;
        using var console = new CliConsole(services.Out, services.Error, verbosity, services.Interactive);
        try
        {
            cancellationToken.ThrowIfCancellationRequested();
            return await Task.Run(() => body(console, parse, cancellationToken), CancellationToken.None);
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
            console.Diagnostic("sadg: cancelled; no output was written.");
            return ExitCodes.Cancelled;
        }
        catch (SadgException e)
        {
            console.Diagnostic(e.ToDiagnostic());
            if (console.Verbosity == Verbosity.Verbose && e.InnerException is { } inner) console.Log.Debug(inner, "Caused by:");
            return ExitCodes.Failed;
        }
        catch (Exception e)
        {
            console.Diagnostic($"sadg(0,0): error SADG{(int)SadgErrorCode.InternalError:D4}: internal error: {e.GetType().Name}: {e.Message.Split('\n')[0]} (run with --verbose for the stack trace; please report it).");
            console.Log.Debug(e, "Stack trace:");
            return ExitCodes.Internal;
        }
    };
}
