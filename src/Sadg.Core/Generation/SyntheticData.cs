using Sadg.Graph;
using TorchSharp;
using static TorchSharp.torch;

namespace Sadg.Generation;

/// <summary>How calibration images are made.</summary>
public enum GenerationMethod
{
    /// <summary>Baseline: images of N(0, 1) noise (seeded).</summary>
    GaussianNoise,

    /// <summary>Genie-D: the warm-up alone.</summary>
    GenieD,

    /// <summary>SADAG: the warm-up, then sharpness-aware refinement against the warm-up quantized model Q₀.</summary>
    Sadag,
}

/// <summary>
/// The entry point of data generation. A pipeline either calls <see cref="Generate"/> with a callback that builds
/// Q₀ from the warm-up images, or runs the steps itself: <see cref="WarmUp"/>, build Q₀ from
/// <see cref="SyntheticImages.Images"/>, then <see cref="Refine"/>.
/// </summary>
public static class SyntheticData
{
    /// <summary>Gaussian noise images [count, C, H, W] ~ N(0, 1), seeded; the caller owns the tensor.</summary>
    public static Tensor GaussianNoise(GraphModule model, int count, long seed)
    {
        var input = model.Model.GetChannelsFirstImageInput();
        using var random = new torch.Generator((ulong)GenieWarmup.DeriveSeed(seed, 0, 5));
        using var scope = NewDisposeScope();
        return randn([count, input.Channels, input.Height, input.Width], generator: random).to(model.Device)
            .MoveToOuterDisposeScope().DetachFromDisposeScope();
    }

    /// <summary>Genie-D warm-up (see <see cref="GenieWarmup"/>).</summary>
    public static SyntheticImages WarmUp(GraphModule model, GenerationOptions options,
        IProgress<GenerationProgress>? progress = null, CancellationToken cancellationToken = default) =>
        GenieWarmup.Run(model, options, progress, cancellationToken);

    /// <summary>SADAG refinement of warm-up images against a frozen Q₀ (see <see cref="SharpnessAwareRefinement"/>).</summary>
    public static void Refine(SyntheticImages images, GraphModule model, GraphModule quantized, GenerationOptions options,
        IProgress<GenerationProgress>? progress = null, CancellationToken cancellationToken = default) =>
        SharpnessAwareRefinement.Run(images, model, quantized, options, progress, cancellationToken);

    /// <summary>
    /// Makes <see cref="GenerationOptions.Images"/> calibration images [N, C, H, W] with <paramref name="method"/>; the
    /// caller owns the tensor. For <see cref="GenerationMethod.Sadag"/>, <paramref name="quantizeWarmup"/> receives the
    /// warm-up images and returns Q₀ (a GraphModule of the quantized model, frozen); Generate does not dispose it.
    /// </summary>
    internal static Tensor Generate(GraphModule model, GenerationMethod method, GenerationOptions options,
        Func<Tensor, GraphModule>? quantizeWarmup = null, IProgress<GenerationProgress>? progress = null,
        CancellationToken cancellationToken = default)
    {
        options.Validate();
        if (method == GenerationMethod.GaussianNoise) return GaussianNoise(model, options.Images, options.Seed);
        if (method == GenerationMethod.Sadag && quantizeWarmup is null)
            throw new ArgumentNullException(nameof(quantizeWarmup), "SADAG refines against the warm-up quantized model Q₀; pass a function that builds it from the warm-up images.");
        using var images = WarmUp(model, options, progress, cancellationToken);
        if (method == GenerationMethod.Sadag)
        {
            GraphModule q0;
            using (var warm = images.Images()) q0 = quantizeWarmup!(warm);
            Refine(images, model, q0, options, progress, cancellationToken);
        }
        return images.Images();
    }
}
