using System.Diagnostics;

namespace Sadg.Pipeline;

/// <summary>The median time of one step and the mean minor page faults per step (0 where they cannot be read).</summary>
public sealed record StepMedian(double Seconds, double FaultsPerStep);

/// <summary>
/// Progress reports with their time and the process's minor page faults, taken synchronously. Each stage
/// (warm-up, refinement, block reconstruction) reports after every step, so the time between two reports is one step.
/// </summary>
/// <param name="then">Called after each report is taken (for example to stop the stage early).</param>
public sealed class StepTicks<T>(Action<T>? then = null) : IProgress<T>
{
    readonly List<(T Value, long Time, long Faults)> seen = [];

    /// <summary>Records the report's time and faults.</summary>
    public void Report(T value)
    {
        seen.Add((value, Stopwatch.GetTimestamp(), StageClock.MinorFaults() ?? 0));
        then?.Invoke(value);
    }

    /// <summary>
    /// The median time between consecutive reports that <paramref name="match"/> after the first <paramref name="skip"/>
    /// intervals (untimed warm-up steps), and the mean faults per timed step. Throws when no interval is left.
    /// </summary>
    public StepMedian Median(int skip, Func<T, bool> match)
    {
        var m = seen.Where(s => match(s.Value)).ToList();
        var intervals = m.Zip(m.Skip(1)).Skip(skip).Select(p => (Seconds: Stopwatch.GetElapsedTime(p.First.Time, p.Second.Time).TotalSeconds,
            Faults: (double)(p.Second.Faults - p.First.Faults))).ToList();
        if (intervals.Count == 0) throw new InvalidOperationException("No steps were timed.");
        var sorted = intervals.Select(i => i.Seconds).Order().ToArray();
        double median = sorted.Length % 2 == 1 ? sorted[sorted.Length / 2] : (sorted[sorted.Length / 2 - 1] + sorted[sorted.Length / 2]) / 2;
        return new StepMedian(median, intervals.Average(i => i.Faults));
    }
}
