namespace Sadg.Generation;

/// <summary>The stage of data generation a progress report is about.</summary>
public enum GenerationStage
{
    /// <summary>Gaussian noise images (a baseline).</summary>
    Noise,

    /// <summary>Genie-D warm-up: generator and latents trained on the BN statistics (or the fallback objective).</summary>
    Warmup,

    /// <summary>SADAG refinement against the frozen warm-up quantized model Q₀.</summary>
    Refinement,
}

/// <summary>
/// One progress report: where generation is and the loss terms of the latest step (by name: "bn", "prior",
/// "gm", "div", "ce", "tv", "l2", "total"). <see cref="Warning"/>, when set, is a one-time coded warning for the user
/// (e.g. that the model has no BatchNormalization layers); the library never writes to the console itself.
/// </summary>
public sealed record GenerationProgress(
    GenerationStage Stage,
    int Batch,
    int Batches,
    int Step,
    int Steps,
    IReadOnlyDictionary<string, double> Losses,
    SadgWarning? Warning = null);
