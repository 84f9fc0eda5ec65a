namespace Sadg.Quantization;

/// <summary>
/// Which bit widths each quantized operator gets (Genie-M's defaults, DESIGN §3): the first operator keeps 8-bit
/// weights and a float input (the image), the second operator's input is 8-bit, the last operator is W8A8, and
/// every other operator uses the model's bit widths.
/// </summary>
public sealed record BitPolicy
{
    /// <summary>Weight bits of the first quantized operator (8).</summary>
    public int FirstWeightBits { get; init; } = 8;

    /// <summary>Whether the first operator's input (the image) is quantized (no).</summary>
    public bool QuantizeFirstInput { get; init; }

    /// <summary>Input bits of the second quantized operator (8).</summary>
    public int SecondInputBits { get; init; } = 8;

    /// <summary>Weight and input bits of the last quantized operator (8).</summary>
    public int LastBits { get; init; } = 8;

    /// <summary>Every operator at the model's bit widths, the first input included.</summary>
    public static BitPolicy Uniform(int weightBits, int? activationBits) => new()
    {
        FirstWeightBits = weightBits,
        QuantizeFirstInput = activationBits is not null,
        SecondInputBits = activationBits ?? weightBits,
        LastBits = Math.Max(weightBits, activationBits ?? weightBits),
    };
}

/// <summary>How a learning rate of a quantization scale is measured.</summary>
public enum ScaleSteps
{
    /// <summary>
    /// Each Adam step moves a scale by about lr × its initial value: the same relative change for an 8-bit weight
    /// scale of 0.005 as for an activation scale of 0.5, and for a model whose weights are multiplied by 10.
    /// </summary>
    Relative,

    /// <summary>Each Adam step moves a scale by about lr, whatever its size (the paper's form).</summary>
    Absolute,
}

/// <summary>How the rounding variables' learning rate follows the step budget.</summary>
public enum RoundingRate
{
    /// <summary>
    /// lr_V = <see cref="QuantizationOptions.RoundingLearningRate"/> × max(1, 20000 / steps): the paper's total movement
    /// (1e-3 × 20000 steps), so that V can reach the saturated ends of h(V) (|V| ≳ 2.4) within any budget. At the paper's
    /// budget it is the paper's rate.
    /// </summary>
    StepRelative,

    /// <summary>lr_V = <see cref="QuantizationOptions.RoundingLearningRate"/> whatever the budget (the paper's form).</summary>
    Fixed,
}

/// <summary>
/// Quantization and block reconstruction (Genie-M / BRECQ with QDrop). Each hyper-parameter shows its paper value;
/// the defaults are the paper's except the iteration count, which is the caller's budget.
/// </summary>
public sealed record QuantizationOptions
{
    /// <summary>b for weights, 2–8.</summary>
    public int WeightBits { get; init; } = 4;

    /// <summary>b for activations, 2–8, or null for weight-only quantization.</summary>
    public int? ActivationBits { get; init; } = 4;

    public BitPolicy Policy { get; init; } = new();

    /// <summary>Reconstruction steps per block (paper: 20000). 0 = round to nearest, no reconstruction.</summary>
    public int Iterations { get; init; } = 20000;

    /// <summary>Reconstruction batch size (paper: 32).</summary>
    public int BatchSize { get; init; } = 32;

    /// <summary>The paper's reconstruction steps per block, the reference of <see cref="RoundingRate.StepRelative"/>.</summary>
    public const int PaperIterations = 20000;

    /// <summary>Adam learning rate of the rounding variables V at the paper's budget (paper: 1e-3).</summary>
    public double RoundingLearningRate { get; init; } = 1e-3;

    /// <summary>How the rounding variables' learning rate follows <see cref="Iterations"/> (default: step-relative).</summary>
    public RoundingRate RoundingRate { get; init; } = RoundingRate.StepRelative;

    /// <summary>The rounding variables' learning rate used for <see cref="Iterations"/> steps.</summary>
    public double EffectiveRoundingLearningRate => RoundingRate == RoundingRate.StepRelative && Iterations > 0
        && !Ablation.HasFlag(MethodAblation.FixedRoundingRate)
        ? RoundingLearningRate * Math.Max(1.0, (double)PaperIterations / Iterations)
        : RoundingLearningRate;

    /// <summary>
    /// Adam learning rate of the weight scales, with cosine decay (paper: 1e-4). With
    /// <see cref="ScaleSteps.Relative"/> it is a fraction of each scale's initial value per step.
    /// </summary>
    public double WeightScaleLearningRate { get; init; } = 1e-4;

    /// <summary>Adam learning rate of the activation scales, LSQ, with cosine decay (paper: 4e-5); relative like <see cref="WeightScaleLearningRate"/>.</summary>
    public double ActivationScaleLearningRate { get; init; } = 4e-5;

    /// <summary>Whether the scale learning rates are absolute or relative to each scale's initial value (default: relative).</summary>
    public ScaleSteps ScaleSteps { get; init; } = ScaleSteps.Relative;

    /// <summary>λ, the weight of the rounding regularizer (paper: 1).</summary>
    public double RoundingLossWeight { get; init; } = 1.0;

    /// <summary>p, the QDrop probability of an element keeping its float value (paper: 0.5).</summary>
    public double DropProbability { get; init; } = 0.5;

    /// <summary>Calibration images used to set each activation quantizer's initial scale.</summary>
    public int ActivationCalibrationSamples { get; init; } = 256;

    public int Seed { get; init; }

    /// <summary>For the benchmark's ablation only (<see cref="MethodAblation"/>); none by default.</summary>
    public MethodAblation Ablation { get; init; }

    /// <summary>Throws <see cref="SadgException"/> (InvalidBits) for bit widths outside 2–8.</summary>
    public void Validate()
    {
        void Check(string what, int bits)
        {
            if (bits is < 2 or > 8)
                throw new SadgException(SadgErrorCode.InvalidBits, $"{what} must be between 2 and 8 bits; got {bits}.");
        }
        Check("Weight bits", WeightBits);
        if (ActivationBits is { } a) Check("Activation bits", a);
        Check("The first layer's weight bits", Policy.FirstWeightBits);
        Check("The second layer's input bits", Policy.SecondInputBits);
        Check("The last layer's bits", Policy.LastBits);
        if (Iterations < 0) throw new ArgumentOutOfRangeException(nameof(Iterations), "Iterations must be ≥ 0.");
        if (BatchSize < 1) throw new ArgumentOutOfRangeException(nameof(BatchSize), "The batch size must be ≥ 1.");
    }
}
