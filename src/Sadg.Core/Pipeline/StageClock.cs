using System.Diagnostics;
using System.Globalization;

namespace Sadg.Pipeline;

/// <summary>
/// Times a pipeline stage and, on Linux, its peak resident memory and minor page faults: <see cref="Restart"/> resets the process's peak
/// resident set (VmHWM, through /proc/self/clear_refs) and the stopwatch; <see cref="Finish"/> reads both. Elsewhere
/// the peak is not known (null).
/// </summary>
public sealed class StageClock
{
    readonly Stopwatch watch = new();
    long? faultsAtStart;

    StageClock() => Restart();

    public static StageClock Start() => new();

    /// <summary>
    /// Starts the next stage: hands the heap's free pages back first (<see cref="NativeHeap.ReleaseFree"/>), so that
    /// what earlier stages freed counts neither in this stage's peak nor in the process's.
    /// </summary>
    public void Restart()
    {
        NativeHeap.ReleaseFree();
        ResetPeakResident();
        faultsAtStart = MinorFaults();
        watch.Restart();
    }

    /// <summary>The stage's time and peak resident memory since the last <see cref="Restart"/>.</summary>
    public StageTiming Finish(string stage) =>
        new(stage, watch.Elapsed.TotalSeconds, PeakResidentBytes(), MinorFaults() - faultsAtStart);

    /// <summary>The process's minor page faults so far (Linux: /proc/self/stat, field 10); null elsewhere.</summary>
    public static long? MinorFaults()
    {
        if (!OperatingSystem.IsLinux()) return null;
        try
        {
            string stat = File.ReadAllText("/proc/self/stat");
            // The fields after the command name, which is in parentheses and may hold spaces: state is [0], minflt [7].
            var fields = stat[(stat.LastIndexOf(')') + 2)..].Split(' ');
            return long.Parse(fields[7], CultureInfo.InvariantCulture);
        }
        catch (IOException)
        {
            return null;
        }
    }

    /// <summary>Resets the process's peak resident set to its current size (Linux: "5" into /proc/self/clear_refs).</summary>
    public static void ResetPeakResident()
    {
        if (!OperatingSystem.IsLinux()) return;
        try { File.WriteAllText("/proc/self/clear_refs", "5"); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { }
    }

    /// <summary>The process's peak resident set since the last reset (VmHWM), in bytes; null where it cannot be read.</summary>
    public static long? PeakResidentBytes()
    {
        if (!OperatingSystem.IsLinux() || !File.Exists("/proc/self/status")) return null;
        var line = File.ReadLines("/proc/self/status").FirstOrDefault(l => l.StartsWith("VmHWM:", StringComparison.Ordinal));
        return line is null ? null : long.Parse(line.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1], CultureInfo.InvariantCulture) * 1024;
    }
}
