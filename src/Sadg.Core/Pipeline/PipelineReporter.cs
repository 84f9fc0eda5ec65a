namespace Sadg.Pipeline;

/// <summary>One long stage of the pipeline: how much of <c>total</c> is done. Disposed when the stage ends.</summary>
public interface IPipelineStage : IDisposable
{
    void Report(long done);
}

/// <summary>
/// How the pipeline tells its caller what it is doing (the library never writes to the console): long stages with
/// a total (the tool shows them with an ETA), information lines and warnings.
/// </summary>
public interface IPipelineReporter
{
    IPipelineStage Stage(string name, long total);

    void Info(string message);

    /// <summary>A coded warning (SADG2xxx, docs/errors.md); the run goes on.</summary>
    void Warning(SadgWarning warning);
}

/// <summary>Reports nothing.</summary>
public sealed class NullPipelineReporter : IPipelineReporter
{
    public static readonly NullPipelineReporter Instance = new();

    public IPipelineStage Stage(string name, long total) => NullStage.Instance;

    public void Info(string message) { }

    public void Warning(SadgWarning warning) { }

    sealed class NullStage : IPipelineStage
    {
        public static readonly NullStage Instance = new();

        public void Report(long done) { }

        public void Dispose() { }
    }
}

/// <summary>
/// Passes everything on to <paramref name="inner"/> and keeps the warnings, in the order they came, for the run's
/// report (<see cref="QuantizationReport.Warnings"/>): a cached result reports them again.
/// </summary>
public sealed class WarningRecorder(IPipelineReporter inner) : IPipelineReporter
{
    readonly List<SadgWarning> warnings = [];

    public IReadOnlyList<SadgWarning> Warnings => warnings;

    public IPipelineStage Stage(string name, long total) => inner.Stage(name, total);

    public void Info(string message) => inner.Info(message);

    public void Warning(SadgWarning warning)
    {
        warnings.Add(warning);
        inner.Warning(warning);
    }
}
