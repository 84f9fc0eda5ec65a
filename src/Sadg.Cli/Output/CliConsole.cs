using Serilog;
using Serilog.Core;
using Serilog.Events;
using Serilog.Formatting.Display;
using Serilog.Sinks.SystemConsole.Themes;

namespace Sadg.Cli.Output;

/// <summary>How much the tool says on stderr.</summary>
public enum Verbosity
{
    Quiet,
    Normal,
    Verbose,
}

/// <summary>
/// Where a command writes. Results (reports, tables, JSON) go to <see cref="Out"/>; log lines, progress and
/// diagnostics go to <see cref="Error"/>, so stdout stays machine-readable. Log lines use Serilog: its console
/// sink when the writers are the process's console, a plain text sink otherwise (tests, embedding).
/// </summary>
public sealed class CliConsole : IDisposable
{
    const string Template = "{Message:lj}{NewLine}{Exception}";
    readonly Logger logger;

    public CliConsole(TextWriter output, TextWriter error, Verbosity verbosity, bool? interactive = null)
    {
        Out = output;
        Error = error;
        Verbosity = verbosity;
        bool isProcessConsole = ReferenceEquals(error, Console.Error);
        // Redraw a progress line only when a person is watching: both streams are a terminal.
        Interactive = interactive ?? (isProcessConsole && !Console.IsOutputRedirected && !Console.IsErrorRedirected);
        var level = verbosity switch
        {
            Verbosity.Quiet => LogEventLevel.Warning,
            Verbosity.Verbose => LogEventLevel.Debug,
            _ => LogEventLevel.Information,
        };
        var config = new LoggerConfiguration().MinimumLevel.Is(level);
        logger = isProcessConsole
            ? config.WriteTo.Console(outputTemplate: Template, standardErrorFromLevel: LogEventLevel.Verbose,
                theme: Interactive ? AnsiConsoleTheme.Code : ConsoleTheme.None, applyThemeToRedirectedOutput: false).CreateLogger()
            : config.WriteTo.Sink(new TextWriterSink(error, new MessageTemplateTextFormatter(Template))).CreateLogger();
    }

    public TextWriter Out { get; }

    public TextWriter Error { get; }

    public Verbosity Verbosity { get; }

    /// <summary>True when progress redraws one line in place; false when it prints plain periodic lines.</summary>
    public bool Interactive { get; }

    public ILogger Log => logger;

    /// <summary>A progress display for one long stage; disposed when the stage ends.</summary>
    public ProgressStage Stage(string name, long total) =>
        new(this, name, total, Verbosity == Verbosity.Quiet ? ProgressMode.Silent : Interactive ? ProgressMode.Redraw : ProgressMode.Lines);

    /// <summary>Prints a diagnostic line (<c>path(0,0): error SADGnnnn: message</c>) to stderr, whatever the verbosity.</summary>
    public void Diagnostic(string line)
    {
        lock (Error) Error.WriteLine(line);
    }

    public void Dispose() => logger.Dispose();

    sealed class TextWriterSink(TextWriter writer, MessageTemplateTextFormatter formatter) : ILogEventSink
    {
        public void Emit(LogEvent logEvent)
        {
            lock (writer)
            {
                formatter.Format(logEvent, writer);
                writer.Flush();
            }
        }
    }
}
