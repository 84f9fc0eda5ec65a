using static TorchSharp.torch;

namespace Sadg.Generation;

/// <summary>
/// The result of Genie-D warm-up (optionally refined by SADAG): batches of images with their generators and
/// latents until refined (a refined batch keeps only its images). Dispose it when done; <see cref="Images"/> returns a
/// new tensor the caller owns.
/// </summary>
public sealed class SyntheticImages : IDisposable
{
    readonly List<SyntheticBatch> batches;

    internal SyntheticImages(List<SyntheticBatch> batches, bool usedStatistics, string? warning)
    {
        this.batches = batches;
        UsedBatchNormStatistics = usedStatistics;
        Warning = warning;
    }

    public IReadOnlyList<SyntheticBatch> Batches => batches;

    /// <summary>False when the model had no BatchNormalization layers and the statistics-free objective was used.</summary>
    public bool UsedBatchNormStatistics { get; }

    /// <summary>The notice given to the user during generation, if any.</summary>
    public string? Warning { get; }

    /// <summary>True once SADAG refinement has run on these batches.</summary>
    public bool Refined { get; internal set; }

    /// <summary>All images [N, C, H, W] in batch order (a new tensor, detached from any dispose scope).</summary>
    public Tensor Images() => cat(batches.Select(b => b.Images).ToArray(), 0).DetachFromDisposeScope();

    /// <summary>
    /// An independent copy of every batch. Refining the copy leaves this warm-up as it is, so one warm-up can serve
    /// Genie-D and SADAG at several bit widths; the copy refines exactly as the original would.
    /// </summary>
    public SyntheticImages Copy() =>
        new(batches.Select(b => b.Copy()).ToList(), UsedBatchNormStatistics, Warning) { Refined = Refined };

    public void Dispose()
    {
        foreach (var b in batches) b.Dispose();
        batches.Clear();
    }
}
