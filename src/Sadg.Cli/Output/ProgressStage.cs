using System.Diagnostics;
using System.Globalization;

namespace Sadg.Cli.Output;

public enum ProgressMode
{
    /// <summary>Nothing (--quiet).</summary>
    Silent,

    /// <summary>One line redrawn in place with a carriage return (a terminal).</summary>
    Redraw,

    /// <summary>Plain lines at most every <see cref="ProgressStage.LineInterval"/> (redirected output, CI logs).</summary>
    Lines,
}

/// <summary>
/// Progress of one long stage: how much is done, the fraction, and an ETA extrapolated from the elapsed time.
/// On a terminal it redraws one line (at most 10 times a second); otherwise it prints a plain line when the stage
/// starts, at most every <see cref="LineInterval"/>, and when it ends. Thread-safe; <see cref="Report"/> is cheap.
/// Also an <see cref="IProgress{T}"/> of the fraction done, for code that reports fractions.
/// </summary>
public sealed class ProgressStage : IProgress<double>, IDisposable
{
    public static readonly TimeSpan LineInterval = TimeSpan.FromSeconds(5);
    static readonly TimeSpan RedrawInterval = TimeSpan.FromMilliseconds(100);

    readonly CliConsole console;
    readonly ProgressMode mode;
    readonly Stopwatch clock = Stopwatch.StartNew();
    readonly object gate = new();
    TimeSpan? lastDrawn;
    long done;
    bool finished;
    int lastWidth;

    internal ProgressStage(CliConsole console, string name, long total, ProgressMode mode)
    {
        this.console = console;
        Name = name;
        Total = Math.Max(total, 1);
        this.mode = mode;
        if (mode == ProgressMode.Lines) WriteLine(Format(0));
        else if (mode == ProgressMode.Redraw) Draw(0);
        // The next line comes an interval later, with an estimate from more than the first step.
        lastDrawn = clock.Elapsed;
    }

    public string Name { get; }

    public long Total { get; }

    public long Done => Interlocked.Read(ref done);

    /// <summary>Sets the amount done (0..Total).</summary>
    public void Report(long value)
    {
        value = Math.Clamp(value, 0, Total);
        Interlocked.Exchange(ref done, value);
        if (mode == ProgressMode.Silent) return;
        lock (gate)
        {
            if (finished) return;
            var now = clock.Elapsed;
            var interval = mode == ProgressMode.Redraw ? RedrawInterval : LineInterval;
            if (value < Total && lastDrawn is { } last && now - last < interval) return;
            lastDrawn = now;
            if (mode == ProgressMode.Redraw) Draw(value);
            else if (value < Total) WriteLine(Format(value));
        }
    }

    /// <summary>Reports a fraction in [0, 1] of <see cref="Total"/>.</summary>
    void IProgress<double>.Report(double fraction) => Report((long)Math.Round(Math.Clamp(fraction, 0, 1) * Total));

    /// <summary>Ends the stage, printing its final line (with the elapsed time).</summary>
    public void Dispose()
    {
        lock (gate)
        {
            if (finished || mode == ProgressMode.Silent) { finished = true; return; }
            finished = true;
            string line = $"{Name}: {(Done >= Total ? "done" : $"stopped at {Done}/{Total}")} in {FormatTime(clock.Elapsed)}";
            if (mode == ProgressMode.Redraw)
                lock (console.Error) { console.Error.Write("\r" + line.PadRight(lastWidth) + Environment.NewLine); console.Error.Flush(); }
            else WriteLine(line);
        }
    }

    /// <summary>"stage 45% (12/27), 0:13 left" — the ETA once something is done.</summary>
    internal string Format(long value)
    {
        double fraction = (double)value / Total;
        string percent = (fraction * 100).ToString("0", CultureInfo.InvariantCulture);
        string eta = value <= 0 ? "" :
            $", {FormatTime(TimeSpan.FromTicks((long)(clock.Elapsed.Ticks * (double)(Total - value) / value)))} left";
        return $"{Name}: {percent}% ({value}/{Total}){eta}";
    }

    internal static string FormatTime(TimeSpan t) =>
        t.TotalHours >= 1 ? $"{(int)t.TotalHours}:{t.Minutes:00}:{t.Seconds:00}" : $"{t.Minutes}:{t.Seconds:00}";

    void Draw(long value)
    {
        const int barWidth = 24;
        int filled = (int)(barWidth * value / Total);
        string line = $"[{new string('#', filled)}{new string('.', barWidth - filled)}] {Format(value)}";
        lock (console.Error)
        {
            console.Error.Write("\r" + line.PadRight(lastWidth));
            console.Error.Flush();
        }
        lastWidth = line.Length;
    }

    void WriteLine(string line)
    {
        lock (console.Error)
        {
            console.Error.WriteLine(line);
            console.Error.Flush();
        }
    }
}
