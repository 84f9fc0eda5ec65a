using Sadg.Graph;

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

    /// <summary>Input bits of the last quantized operator when they differ from <see cref="LastBits"/>; null: <see cref="LastBits"/>.</summary>
    public int? LastInputBits { get; init; }

    /// <summary>
    /// The first and last operators at the model's bit widths (<c>--first-last-bits same</c>): the first operator's
    /// weights at <paramref name="weightBits"/> with a float input (the image), the second operator's input and the
    /// last operator's input at <paramref name="activationBits"/>, the last operator's weights at <paramref name="weightBits"/>.
    /// </summary>
    public static BitPolicy Same(int weightBits, int? activationBits) => new()
    {
        FirstWeightBits = weightBits,
        SecondInputBits = activationBits ?? weightBits,
        LastBits = weightBits,
        LastInputBits = activationBits ?? weightBits,
    };

    /// <summary>Every operator at the model's bit widths, the first input included.</summary>
    public static BitPolicy Uniform(int weightBits, int? activationBits) => new()
    {
        FirstWeightBits = weightBits,
        QuantizeFirstInput = activationBits is not null,
        SecondInputBits = activationBits ?? weightBits,
        LastBits = Math.Max(weightBits, activationBits ?? weightBits),
    };
}

/// <summary>
/// Which quantizable operators stay float and which get weight bits of their own (<c>--exclude</c>,
/// <c>--layer-bits</c>). Operators are named by their node name (<see cref="GraphNode.Name"/>); an entry of
/// <see cref="Exclude"/> may also be an op type (any case), which excludes every quantizable operator of that type.
/// </summary>
public sealed record LayerChoices
{
    /// <summary>Node names or op types of the operators left in float: weights and inputs.</summary>
    public IReadOnlyList<string> Exclude { get; init; } = [];

    /// <summary>Weight bits (2–8) by node name; they replace the bits the policy gives the operator's position.</summary>
    public IReadOnlyDictionary<string, int> WeightBits { get; init; } = new Dictionary<string, int>();

    /// <summary>True when nothing is chosen (every quantizable operator follows the policy).</summary>
    public bool IsEmpty => Exclude.Count == 0 && WeightBits.Count == 0;

    /// <summary>Whether <paramref name="node"/> is excluded by its name or its op type.</summary>
    public bool IsExcluded(GraphNode node) =>
        Exclude.Any(e => e == node.Name || string.Equals(e, node.OpType, StringComparison.OrdinalIgnoreCase));

    /// <summary>
    /// Checks the choices against <paramref name="graph"/>'s quantizable operators: every name must be one of them
    /// (an exclusion may be an op type some of them have), a layer is not both excluded and given bits, and at least
    /// one operator stays quantized. Throws <see cref="SadgException"/> (LayerNotFound, InvalidOptionValue) naming
    /// the candidates; <paramref name="excludeLabel"/> and <paramref name="bitsLabel"/> name the settings.
    /// </summary>
    public void Check(GraphModule graph, string excludeLabel, string bitsLabel, string? file = null)
    {
        if (IsEmpty) return;
        var layers = graph.Nodes.Where(graph.IsQuantizable).ToList();
        // A node without a name in the file has a name only by its index, which BatchNorm folding shifts.
        var named = layers.Where(n => !string.IsNullOrEmpty(n.Proto.Name)).ToList();
        var names = named.Select(n => n.Name).ToHashSet(StringComparer.Ordinal);
        var ops = layers.Select(n => n.OpType).ToHashSet(StringComparer.OrdinalIgnoreCase);
        string Candidates() =>
            $"The quantizable layers (as `sadg inspect` lists them) are: {string.Join(", ", named.Take(100).Select(n => n.Name))}" +
            (named.Count > 100 ? $", … ({named.Count} in all)" : "") + $"; op types: {string.Join(", ", ops.Order(StringComparer.Ordinal))}." +
            (named.Count < layers.Count ? $" {layers.Count - named.Count} layers have no name in the file and can only be chosen by op type." : "");
        var unknownExcluded = Exclude.Where(e => !names.Contains(e) && !ops.Contains(e)).ToList();
        if (unknownExcluded.Count > 0)
            throw new SadgException(SadgErrorCode.LayerNotFound,
                $"{excludeLabel} names {Quote(unknownExcluded)}, which {(unknownExcluded.Count == 1 ? "is" : "are")} neither a quantizable layer nor the op type of one. {Candidates()}", file);
        var unknownBits = WeightBits.Keys.Where(n => !names.Contains(n)).ToList();
        if (unknownBits.Count > 0)
            throw new SadgException(SadgErrorCode.LayerNotFound,
                $"{bitsLabel} names {Quote(unknownBits)}, which {(unknownBits.Count == 1 ? "is" : "are")} not a quantizable layer. {Candidates()}", file);
        var both = layers.Where(n => IsExcluded(n) && WeightBits.ContainsKey(n.Name)).Select(n => n.Name).ToList();
        if (both.Count > 0)
            throw new SadgException(SadgErrorCode.InvalidOptionValue,
                $"{Quote(both)} {(both.Count == 1 ? "is" : "are")} excluded by {excludeLabel} and given bits by {bitsLabel}; give each layer one of them.", file);
        if (layers.All(IsExcluded))
            throw new SadgException(SadgErrorCode.NothingToQuantize,
                $"{excludeLabel} excludes every quantizable layer ({layers.Count}), so there is nothing to quantize.", file);
    }

    static string Quote(IEnumerable<string> names) => string.Join(", ", names.Select(n => $"'{n}'"));
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

    /// <summary>
    /// <see cref="Relative"/>, with the rate multiplied by max(1, 20000 / steps) as <see cref="RoundingRate.StepRelative"/>
    /// does for the rounding variables: the paper's total movement of a scale within any budget.
    /// </summary>
    BudgetRelative,

    /// <summary>
    /// <see cref="BudgetRelative"/> for the weight scales, <see cref="Relative"/> for the activation scales: activation
    /// scales are learned on the calibration images' activations, weight scales on the weights they quantize.
    /// </summary>
    BudgetRelativeWeights,
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

    /// <summary>Operators left in float and operators with weight bits of their own (none by default).</summary>
    public LayerChoices Layers { get; init; } = new();

    /// <summary>Reconstruction steps per block (paper: 20000). 0 = round to nearest, no reconstruction.</summary>
    public int Iterations { get; init; } = PaperIterations;

    /// <summary>Reconstruction batch size (paper: 32).</summary>
    public int BatchSize { get; init; } = 32;

    /// <summary>The paper's reconstruction steps per block, the reference of <see cref="RoundingRate.StepRelative"/>.</summary>
    public const int PaperIterations = 20000;

    /// <summary>Adam learning rate of the rounding variables V at the paper's budget (paper: 1e-3).</summary>
    public double RoundingLearningRate { get; init; } = 1e-3;

    /// <summary>How the rounding variables' learning rate follows <see cref="Iterations"/> (default: step-relative).</summary>
    public RoundingRate RoundingRate { get; init; } = RoundingRate.StepRelative;

    /// <summary>The rounding variables' learning rate used for <see cref="Iterations"/> steps.</summary>
    public double EffectiveRoundingLearningRate => RoundingRate == RoundingRate.StepRelative
        && !Ablation.HasFlag(MethodAblation.FixedRoundingRate)
        ? RoundingLearningRate * BudgetFactor
        : RoundingLearningRate;

    /// <summary>max(1, 20000 / <see cref="Iterations"/>): how much larger a step must be to move as far as the paper's budget does (1 without reconstruction).</summary>
    public double BudgetFactor => Iterations > 0 ? Math.Max(1.0, (double)PaperIterations / Iterations) : 1;

    /// <summary>The weight scales' learning rate used for <see cref="Iterations"/> steps.</summary>
    public double EffectiveWeightScaleLearningRate => WeightScaleLearningRate
        * (ScaleSteps is ScaleSteps.BudgetRelative or ScaleSteps.BudgetRelativeWeights ? BudgetFactor : 1);

    /// <summary>The activation scales' learning rate used for <see cref="Iterations"/> steps.</summary>
    public double EffectiveActivationScaleLearningRate => ActivationScaleLearningRate
        * (ScaleSteps is ScaleSteps.BudgetRelative ? BudgetFactor : 1);

    /// <summary>
    /// Adam learning rate of the weight scales, with cosine decay (paper: 1e-4). With
    /// <see cref="ScaleSteps.Relative"/> it is a fraction of each scale's initial value per step.
    /// </summary>
    public double WeightScaleLearningRate { get; init; } = 1e-4;

    /// <summary>Adam learning rate of the activation scales, LSQ, with cosine decay (paper: 4e-5); relative like <see cref="WeightScaleLearningRate"/>.</summary>
    public double ActivationScaleLearningRate { get; init; } = 4e-5;

    /// <summary>The default of <see cref="ScaleSteps"/>, here and in <c>PipelineOptions</c> and the benchmark.</summary>
    public const ScaleSteps DefaultScaleSteps = ScaleSteps.Relative;

    /// <summary>Whether the scale learning rates are absolute or relative to each scale's initial value (default: <see cref="DefaultScaleSteps"/>).</summary>
    public ScaleSteps ScaleSteps { get; init; } = DefaultScaleSteps;

    /// <summary>The default of <see cref="RoundingLossWeight"/>: Genie's 1 (BRECQ and QDrop: 0.01).</summary>
    public const double DefaultRoundingLossWeight = 1.0;

    /// <summary>λ, the weight of the rounding regularizer (default: <see cref="DefaultRoundingLossWeight"/>).</summary>
    public double RoundingLossWeight { get; init; } = DefaultRoundingLossWeight;

    /// <summary>p, the QDrop probability of an element keeping its float value (paper: 0.5).</summary>
    public double DropProbability { get; init; } = 0.5;

    /// <summary>Steps of <see cref="Sadg.Reconstruction.OutputTuning"/> after the block reconstruction (0: none).</summary>
    public int OutputTuningSteps { get; init; }

    /// <summary>Which biases the reconstruction corrects after each block (<see cref="Sadg.Reconstruction.BlockReconstruction"/>).</summary>
    public BiasCorrectionMode BiasCorrection { get; init; } = BiasCorrectionMode.Depthwise;

    /// <summary>Calibration images used to set each activation quantizer's initial scale.</summary>
    public int ActivationCalibrationSamples { get; init; } = 256;

    public int Seed { get; init; }

    /// <summary>For the benchmark's ablation only (<see cref="MethodAblation"/>); none by default.</summary>
    public MethodAblation Ablation { get; init; }

    /// <summary>
    /// A weight quantizer as these options make them (round to nearest until the reconstruction sets its mode; the
    /// AdaRound floor fixed at the initial scale unless <see cref="MethodAblation.FloorFollowsScale"/>).
    /// </summary>
    internal WeightQuantizer NewWeightQuantizer(TorchSharp.torch.Tensor weight, int bits, int axis) => new(weight, bits, axis)
    {
        Mode = WeightRoundingMode.Nearest,
        FixedFloor = !Ablation.HasFlag(MethodAblation.FloorFollowsScale),
    };

    /// <summary>
    /// An activation quantizer as these options make them (QDrop's probability, unless only the block input drops;
    /// the asymmetric grid below 8 bits unless <see cref="MethodAblation.SymmetricActivations"/>).
    /// </summary>
    internal ActivationQuantizer NewActivationQuantizer(int bits) => new(bits)
    {
        DropProbability = Ablation.HasFlag(MethodAblation.BlockInputDropOnly) ? 0 : DropProbability,
        Symmetric = Ablation.HasFlag(MethodAblation.SymmetricActivations),
    };

    /// <summary>Throws <see cref="SadgException"/> (InvalidBits) for bit widths outside 2–8.</summary>
    public void Validate()
    {
        void Check(string what, int bits)
        {
            if (!QuantizeSchema.IsBits(bits))
                throw new SadgException(SadgErrorCode.InvalidBits, $"{what} must be between 2 and 8 bits; got {bits}.");
        }
        Check("Weight bits", WeightBits);
        if (ActivationBits is { } a) Check("Activation bits", a);
        Check("The first layer's weight bits", Policy.FirstWeightBits);
        Check("The second layer's input bits", Policy.SecondInputBits);
        Check("The last layer's bits", Policy.LastBits);
        if (Policy.LastInputBits is { } lastInput) Check("The last layer's input bits", lastInput);
        foreach (var (node, bits) in Layers.WeightBits) Check($"The weight bits of '{node}'", bits);
        if (Iterations < 0) throw new ArgumentOutOfRangeException(nameof(Iterations), "Iterations must be ≥ 0.");
        if (BatchSize < 1) throw new ArgumentOutOfRangeException(nameof(BatchSize), "The batch size must be ≥ 1.");
        if (!(RoundingLossWeight >= 0) || double.IsPositiveInfinity(RoundingLossWeight))
            throw new ArgumentOutOfRangeException(nameof(RoundingLossWeight), RoundingLossWeight, "The rounding loss weight must be finite and ≥ 0.");
    }
}
