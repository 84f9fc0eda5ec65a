using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Sadg.Generation;

/// <summary>
/// One batch of synthetic images with what made them: its generator and latents (kept so that SADAG refinement
/// continues from them) and, for BN-free models, its random target classes. Owns all of its tensors.
/// </summary>
public sealed class SyntheticBatch : IDisposable
{
    internal SyntheticBatch(int index, GenieGenerator generator, Parameter latent, Tensor images, Tensor? targets)
    {
        Index = index;
        Generator = generator;
        Latent = latent;
        Images = images;
        Targets = targets;
    }

    public int Index { get; }

    public GenieGenerator Generator { get; }

    /// <summary>The latents z [B, LatentDim].</summary>
    public Parameter Latent { get; }

    /// <summary>The batch's images [B, C, H, W] (detached), replaced when refined.</summary>
    public Tensor Images { get; private set; }

    /// <summary>Random target classes [B] of the statistics-free objective; null with BN statistics.</summary>
    public Tensor? Targets { get; }

    internal void SetImages(Tensor images)
    {
        var old = Images;
        Images = images;
        old.Dispose();
    }

    /// <summary>An independent copy (generator, latents, images and targets), for refining one warm-up in several ways.</summary>
    public SyntheticBatch Copy()
    {
        using var noGrad = no_grad();
        return new SyntheticBatch(Index, Generator.Copy(),
            (Parameter)new Parameter(Latent.detach().clone(), Latent.requires_grad).DetachFromDisposeScope(),
            Images.detach().clone().DetachFromDisposeScope(), Targets?.clone().DetachFromDisposeScope());
    }

    public void Dispose()
    {
        Generator.Dispose();
        Latent.Dispose();
        Images.Dispose();
        Targets?.Dispose();
    }
}
