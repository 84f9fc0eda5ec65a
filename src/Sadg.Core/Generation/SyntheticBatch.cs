using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Sadg.Generation;

/// <summary>
/// One batch of synthetic images with what made them: its generator and latents (kept so that SADAG refinement
/// continues from them, and released once it has) and, for BN-free models, its random target classes. Owns all of
/// its tensors.
/// </summary>
public sealed class SyntheticBatch : IDisposable
{
    GenieGenerator? generator;
    Parameter? latent;

    internal SyntheticBatch(int index, GenieGenerator? generator, Parameter? latent, Tensor images, Tensor? targets)
    {
        Index = index;
        this.generator = generator;
        this.latent = latent;
        Images = images;
        Targets = targets;
    }

    public int Index { get; }

    /// <summary>False once the batch is refined: nothing continues from its generator and latents, so they are released.</summary>
    public bool HasGenerator => generator is not null;

    public GenieGenerator Generator => generator ?? throw Released();

    /// <summary>The latents z [B, LatentDim].</summary>
    public Parameter Latent => latent ?? throw Released();

    /// <summary>The batch's images [B, C, H, W] (detached), replaced when refined.</summary>
    public Tensor Images { get; private set; }

    /// <summary>Random target classes [B] of the statistics-free objective; null with BN statistics.</summary>
    public Tensor? Targets { get; }

    /// <summary>
    /// Replaces the images with the refined ones and releases the generator and latents (at 224² a quick profile's
    /// generator is 103 MB, and a pending batch's would otherwise sit beside the one being refined).
    /// </summary>
    internal void Finish(Tensor images)
    {
        var old = Images;
        Images = images;
        old.Dispose();
        ReleaseGenerator();
    }

    void ReleaseGenerator()
    {
        generator?.Dispose();
        latent?.Dispose();
        generator = null;
        latent = null;
    }

    /// <summary>An independent copy (generator and latents if still held, images and targets), for refining one warm-up in several ways.</summary>
    public SyntheticBatch Copy()
    {
        using var noGrad = no_grad();
        return new SyntheticBatch(Index, generator?.Copy(),
            latent is null ? null : (Parameter)new Parameter(latent.detach().clone(), latent.requires_grad).DetachFromDisposeScope(),
            Images.detach().clone().DetachFromDisposeScope(), Targets?.clone().DetachFromDisposeScope());
    }

    static InvalidOperationException Released() =>
        new("This batch is refined: its generator and latents were released when its refinement ended.");

    public void Dispose()
    {
        ReleaseGenerator();
        Images.Dispose();
        Targets?.Dispose();
    }
}
