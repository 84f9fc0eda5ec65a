using Sadg.Generation;
using Sadg.Reconstruction;

namespace Sadg.Pipeline;

/// <summary>Turns generation progress into stages (warm-up, refinement) with a total, and keeps the first and last losses.</summary>
internal sealed class GenerationRecorder(IPipelineReporter reporter, string? name = null) : IProgress<GenerationProgress>
{
    IPipelineStage? stage;
    GenerationStage kind;
    IReadOnlyDictionary<string, double>? first, last;

    public void Report(GenerationProgress value)
    {
        if (value.Warning is not null) reporter.Warning(value.Warning);
        if (stage is null)
        {
            kind = value.Stage;
            string title = name ?? (value.Stage == GenerationStage.Refinement ? "refining images (SADAG)" : "generating images (Genie-D warm-up)");
            stage = reporter.Stage(title, (long)Math.Max(1, value.Batches) * Math.Max(1, value.Steps));
        }
        if (value.Step > 0 && value.Losses.Count > 0)
        {
            var copy = new SortedDictionary<string, double>(value.Losses.ToDictionary(k => k.Key, k => k.Value), StringComparer.Ordinal);
            first ??= copy;
            last = copy;
        }
        stage.Report((long)value.Batch * Math.Max(1, value.Steps) + value.Step);
    }

    public void Finish(List<StageLosses> losses)
    {
        stage?.Dispose();
        if (first is not null && last is not null)
            losses.Add(new StageLosses(kind == GenerationStage.Refinement ? "refinement (SADAG)" : "warm-up (Genie-D)", first, last));
    }
}

/// <summary>A stage whose total is known only when its first progress comes: begun then, ended when disposed.</summary>
internal sealed class LazyStage(IPipelineReporter reporter, string name) : IDisposable
{
    IPipelineStage? stage;

    public void Report(long done, long total) => (stage ??= reporter.Stage(name, total)).Report(done);

    public void Dispose() => stage?.Dispose();
}

/// <summary>Turns reconstruction progress into one stage over all blocks' steps, and keeps the first and last losses.</summary>
internal sealed class ReconstructionRecorder(IPipelineReporter reporter, string name) : IProgress<ReconstructionProgress>
{
    readonly LazyStage stage = new(reporter, name);
    IReadOnlyDictionary<string, double>? first, last;

    public void Report(ReconstructionProgress value)
    {
        if (value.Steps > 0)
        {
            var losses = new SortedDictionary<string, double>(StringComparer.Ordinal)
            {
                ["block"] = value.Block,
                ["reconstruction"] = value.ReconstructionLoss,
                ["rounding"] = value.RoundingLoss,
            };
            first ??= losses;
            last = losses;
        }
        stage.Report((long)(value.Block - 1) * Math.Max(1, value.Steps) + Math.Max(1, value.Step), (long)value.Blocks * Math.Max(1, value.Steps));
    }

    public void Finish(List<StageLosses> losses, string stageName = "reconstruction")
    {
        stage.Dispose();
        if (first is not null && last is not null) losses.Add(new StageLosses(stageName, first, last));
    }
}

/// <summary>Turns the output tuning's progress into a stage, and keeps its first and last losses.</summary>
internal sealed class TuningRecorder(IPipelineReporter reporter, string name) : IProgress<TuningProgress>
{
    readonly LazyStage stage = new(reporter, name);
    IReadOnlyDictionary<string, double>? first, last;

    public void Report(TuningProgress value)
    {
        var losses = new SortedDictionary<string, double>(StringComparer.Ordinal) { ["output"] = value.Loss };
        first ??= losses;
        last = losses;
        stage.Report(value.Step, value.Steps);
    }

    public void Finish(List<StageLosses> losses, string stageName)
    {
        stage.Dispose();
        if (first is not null && last is not null) losses.Add(new StageLosses(stageName, first, last));
    }
}
