using Sadg.Cli.Output;

namespace Sadg.Cli.Tests;

public class ProgressTests
{
    /// <summary>
    /// Without a terminal, progress is one line per interval: the stage's first line at 0 %, the next an interval
    /// later. Steps reported right after the start print nothing (a line at the first step gave "1 %, 0:00 left", an
    /// estimate from one step); the end prints "done".
    /// </summary>
    [Fact]
    public void Lines_start_at_zero_and_the_next_waits_an_interval()
    {
        var error = new StringWriter();
        var console = new CliConsole(TextWriter.Null, error, Verbosity.Normal, interactive: false);
        using (var stage = console.Stage("working", 100))
            for (int i = 1; i <= 100; i++) stage.Report(i);
        var lines = error.ToString().Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(l => l.TrimEnd('\r')).ToList();
        Assert.Equal("working: 0% (0/100)", lines[0]);
        Assert.Equal(2, lines.Count);
        Assert.StartsWith("working: done in ", lines[1]);
    }
}
