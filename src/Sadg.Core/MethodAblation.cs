namespace Sadg;

/// <summary>
/// Switches that put back, one at a time, what Sadg did before it followed the references (docs/method.md), so the
/// benchmark can measure what each part is worth. Not a user setting: the tool never sets them; when any is set it is
/// part of the canonical options (and so of the cache key and the options hash).
/// </summary>
[Flags]
public enum MethodAblation
{
    None = 0,

    /// <summary>1: AdaRound's floor recomputed with the learned scale (floor(w / s) instead of floor(w / s₀)).</summary>
    FloorFollowsScale = 1 << 0,

    /// <summary>2: the reconstruction loss summed over channels and positions, averaged over the batch only.</summary>
    LossSumsPositions = 1 << 1,

    /// <summary>3: the rounding variables' learning rate fixed at 1e-3 whatever the budget.</summary>
    FixedRoundingRate = 1 << 2,

    /// <summary>4: SADAG refinement without its learning-rate schedules.</summary>
    NoRefinementSchedules = 1 << 3,

    /// <summary>5: L_div's within-batch partner side not detached.</summary>
    DiversityBothSides = 1 << 4,

    /// <summary>6: activation scales without the cosine decay.</summary>
    NoActivationScaleDecay = 1 << 5,

    /// <summary>7: Q₀ reconstructed with the final reconstruction's budget.</summary>
    FullBudgetQ0 = 1 << 6,

    /// <summary>8: the input prior fixed at mean 0, std 1.</summary>
    StandardizedPrior = 1 << 7,

    /// <summary>A depthwise convolution reconstructed as a block of its own instead of with the layers after it.</summary>
    DepthwiseAlone = 1 << 8,

    /// <summary>The generator's images at per-channel batch mean 0 and std 1 (Genie's output BatchNorm alone) whatever
    /// the input prior says the model is fed.</summary>
    StandardizedGeneratorOutput = 1 << 9,

    /// <summary>The input prior's differences in the model's input units (0..255 pixels weigh 255² times more than
    /// [0, 1] ones) instead of in units of the prior's std.</summary>
    PriorInInputUnits = 1 << 10,

    /// <summary>QDrop on the block input alone: only the block input mixes the float and quantized paths' values;
    /// every activation quantizer inside the block quantizes every element during reconstruction. Neither reference
    /// does this: QDrop's and Genie's code both also let each quantizer keep an element's float value with p = ½, as
    /// Sadg does.</summary>
    BlockInputDropOnly = 1 << 11,

    /// <summary>Genie's activation grid: data with negatives gets the symmetric signed grid [−2^(b−1), 2^(b−1) − 1]
    /// instead of BRECQ's and QDrop's asymmetric one with a zero point.</summary>
    SymmetricActivations = 1 << 12,
}
