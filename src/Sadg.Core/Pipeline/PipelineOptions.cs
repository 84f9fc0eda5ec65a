using System.Globalization;
using System.Security.Cryptography;
using System.Text;
using Sadg.Generation;
using Sadg.Quantization;
using static TorchSharp.torch;

namespace Sadg.Pipeline;

// The settings' enums (CalibrationMethod, StepProfile, DeviceKind, InputPriorMode, NeighbourMode) and their schema are
// in Sadg.Options, which the build tasks share.

/// <summary>
/// Runs a model with ONNX Runtime (default graph optimizations) and returns its first output for every image,
/// flattened per image: N rows of equal length, one after another. The library has no ONNX
/// Runtime of its own; the tool passes one (null: the check is skipped).
/// </summary>
/// <param name="model">The serialized ONNX model.</param>
/// <param name="images">Images [N, C, H, W] as fed to the model (already standardized), row-major.</param>
public delegate float[] RuntimeOutputs(byte[] model, float[] images, long[] shape, CancellationToken cancellationToken);

/// <summary>Everything that decides what <see cref="QuantizationPipeline"/> produces, plus how it runs.</summary>
public sealed record PipelineOptions
{
    public int WeightBits { get; init; } = 4;

    /// <summary>null = float activations.</summary>
    public int? ActivationBits { get; init; } = 4;

    public CalibrationMethod Method { get; init; } = CalibrationMethod.Sadag;

    /// <summary>Generation budgets and reconstruction steps.</summary>
    public StepProfile Profile { get; init; } = StepProfile.Default;

    /// <summary>Number of calibration images; null = the profile's (all real images for <see cref="CalibrationMethod.Real"/>).</summary>
    public int? Samples { get; init; }

    public int Seed { get; init; }

    /// <summary>
    /// Overrides the profile's reconstruction steps per block. Internal: for tests and experiments (the tool's
    /// hidden <c>--reconstruction-steps</c>).
    /// </summary>
    public int? ReconstructionSteps { get; init; }

    /// <summary>How the scales' learning rates are measured (<see cref="QuantizationOptions.DefaultScaleSteps"/> by default). For experiments.</summary>
    public ScaleSteps ScaleSteps { get; init; } = QuantizationOptions.DefaultScaleSteps;

    /// <summary>Overrides the profile's warm-up and refinement steps per batch. Internal, like <see cref="ReconstructionSteps"/>.</summary>
    public int? GenerationSteps { get; init; }

    /// <summary>Overrides the profile's warm-up steps per batch alone (after <see cref="GenerationSteps"/>). Internal: for the benchmark's budget comparisons.</summary>
    public int? WarmupSteps { get; init; }

    /// <summary>Overrides the profile's SADAG refinement steps per batch alone (after <see cref="GenerationSteps"/>). Internal: for the benchmark's budget comparisons.</summary>
    public int? RefinementSteps { get; init; }

    /// <summary>How the rounding variables' learning rate follows the step budget (step-relative by default). For experiments.</summary>
    public RoundingRate RoundingRate { get; init; } = RoundingRate.StepRelative;

    /// <summary>
    /// λ, the rounding regularizer's weight; null: <see cref="QuantizationOptions.DefaultRoundingLossWeight"/>. For
    /// experiments; in the canonical options only when set.
    /// </summary>
    public double? RoundingLossWeight { get; init; }

    /// <summary>
    /// Overrides the steps of the output tuning (<see cref="Sadg.Reconstruction.OutputTuning"/>) after the block
    /// reconstruction; null: <see cref="ProfileOutputTuningSteps"/>. For experiments; in the canonical options only when set.
    /// </summary>
    public int? OutputTuningSteps { get; init; }

    /// <summary>How SADAG picks its neighbour (random by default: what the paper's formula does in effect).</summary>
    public NeighbourMode Neighbour { get; init; } = NeighbourMode.Random;

    /// <summary>Which biases the reconstruction corrects after each block (depthwise blocks by default). In the canonical options only when off.</summary>
    public BiasCorrectionMode BiasCorrection { get; init; } = BiasCorrectionMode.Depthwise;

    /// <summary>
    /// SADAG's loss settings for experiments: ρ (the neighbour's radius), ζ (the diversity margin) and λ_div (the
    /// diversity weight); null: the method's (<see cref="GenerationOptions"/>). In the canonical options only when set.
    /// </summary>
    public SadagLossSettings? SadagLoss { get; init; }

    /// <summary>Where the generation's input prior comes from (auto by default).</summary>
    public InputPriorMode InputPrior { get; init; } = InputPriorMode.Auto;

    /// <summary>
    /// The user's statement of what the model is fed (--input-range, --input-mean/--input-std); null: not stated
    /// (the model's metadata, else the first BatchNormalization node, decides).
    /// </summary>
    public InputStandardization? Input { get; init; }

    /// <summary>For the benchmark's ablation only: puts back one earlier behaviour (<see cref="MethodAblation"/>).</summary>
    public MethodAblation Ablation { get; init; }

    public Device? Device { get; init; }

    /// <summary>Real calibration images [N, C, H, W] in the model's pixel units (standardized here as the model's metadata says).</summary>
    public Tensor? CalibrationImages { get; init; }

    /// <summary>SHA-256 (hex) of the real calibration data, part of the canonical options.</summary>
    public string? CalibrationDataHash { get; init; }

    /// <summary>
    /// Measure the quantized model's agreement with the FP model on validation images (<see cref="ValidationImages"/>,
    /// else held-out synthetic images) and record it in the metadata and the report. Needs <see cref="Runtime"/>.
    /// </summary>
    public bool Validate { get; init; }

    /// <summary>The user's validation images [N, C, H, W] in the model's pixel units (standardized like calibration images); null: synthetic.</summary>
    public Tensor? ValidationImages { get; init; }

    /// <summary>SHA-256 (hex) of the user's validation data, part of the canonical options.</summary>
    public string? ValidationDataHash { get; init; }

    /// <summary>How image-folder data was resized as it was read (part of the canonical options when set).</summary>
    public ImageResize? Resize { get; init; }

    /// <summary>How image-folder data was cropped as it was read (part of the canonical options when not none).</summary>
    public CropMode Crop { get; init; }

    /// <summary>The colour order image-folder data was decoded to (part of the canonical options when not rgb).</summary>
    public ChannelOrder ChannelOrder { get; init; }

    /// <summary>Layers left in float: node names or op types (<c>--exclude</c>); empty: none. Part of the canonical options when set.</summary>
    public IReadOnlyList<string> Exclude { get; init; } = [];

    /// <summary>Weight bits of single layers by node name (<c>--layer-bits</c>); empty: none. Part of the canonical options when set.</summary>
    public IReadOnlyDictionary<string, int> LayerBits { get; init; } = new SortedDictionary<string, int>(StringComparer.Ordinal);

    /// <summary>
    /// The first and last quantized layers at the run's bits (<c>--first-last-bits same</c>) instead of the 8-bit policy
    /// (<see cref="BitPolicy"/>). Part of the canonical options when set.
    /// </summary>
    public bool FirstLastSame { get; init; }

    /// <summary>
    /// Mixed precision (<c>--size-budget</c>): the weight bits of the layers neither the first/last policy nor
    /// <see cref="LayerBits"/> fixes are chosen from 2, 3, 4 and 8 to fit this budget (<see cref="SizeBudgetSearch"/>),
    /// and <see cref="WeightBits"/> is not used for them; null: none. Part of the canonical options when set.
    /// </summary>
    public SizeBudget? SizeBudget { get; init; }

    /// <summary>
    /// Measure each quantized layer's sensitivity for the report (<see cref="Quantization.SensitivityAnalysis"/>, one
    /// forward pass per layer over at most 64 calibration images; on by default). It changes only the report, so it
    /// is not in the canonical options.
    /// </summary>
    public bool MeasureSensitivity { get; init; } = true;

    /// <summary>
    /// The seed of the held-out synthetic validation images: derived from <see cref="Seed"/> so that they are never
    /// the calibration images (nor those of the neighbouring seeds a user is likely to try).
    /// </summary>
    public int ValidationSeed => unchecked(Seed + 1_000_003);

    /// <summary>Written into the model's metadata (sadg.tool_version).</summary>
    public string ToolVersion { get; init; } = "unknown";

    /// <summary>The ONNX Runtime check; null skips it.</summary>
    public RuntimeOutputs? Runtime { get; init; }

    /// <summary>
    /// The image size C, H, W to generate and calibrate at, for a model whose input leaves some of them free
    /// (<see cref="Onnx.InputShapes"/>); null: the model's own. Part of the canonical options when given.
    /// </summary>
    public int[]? InputShape { get; init; }

    /// <summary>Reconstruction steps per block of each profile: quick 100, default 500, paper 20000 (batch 32, the paper's learning rates, relative for scales).</summary>
    public static int ProfileReconstructionSteps(StepProfile profile) => profile switch
    {
        StepProfile.Quick => 100,
        StepProfile.Paper => QuantizationOptions.PaperIterations,
        _ => 500,
    };

    public int ResolvedReconstructionSteps => ReconstructionSteps ?? ProfileReconstructionSteps(Profile);

    /// <summary>
    /// Steps of the output tuning (<see cref="Sadg.Reconstruction.OutputTuning"/>) after a reconstruction of
    /// <paramref name="reconstructionSteps"/> steps per block: with real calibration images on the default profile two
    /// fifths of them (200 at its 500, where it was measured: docs/benchmarks/output-tuning.md); otherwise none. Not with
    /// generated images: the stage fits the model's output on the calibration images end to end, and on generated
    /// images it lost 7–9 pt (one seed 19) on a MobileNetV3-style network at W3A3 where the same stage on real images gained 3.8;
    /// not on the quick profile (measured there: it loses) nor on the paper profile (the paper's method).
    /// </summary>
    public static int ProfileOutputTuningSteps(StepProfile profile, CalibrationMethod method, int reconstructionSteps) =>
        profile == StepProfile.Default && method == CalibrationMethod.Real ? reconstructionSteps * 2 / 5 : 0;

    /// <summary>Steps of the output tuning after the final reconstruction (and Q₀'s); none without reconstruction.</summary>
    public int ResolvedOutputTuningSteps => ResolvedReconstructionSteps == 0 ? 0
        : OutputTuningSteps ?? ProfileOutputTuningSteps(Profile, Method, ResolvedReconstructionSteps);

    /// <summary>
    /// Reconstruction steps per block of SADAG's warm-up model Q₀: a fifth of the final reconstruction's, as in the
    /// paper (4000 against 20000).
    /// </summary>
    public int ResolvedWarmUpReconstructionSteps => ResolvedReconstructionSteps == 0 || Ablation.HasFlag(MethodAblation.FullBudgetQ0)
        ? ResolvedReconstructionSteps : Math.Max(1, ResolvedReconstructionSteps / 5);

    /// <summary>The generation options: the profile's, with the seed, the image count, the step override and the input prior applied.</summary>
    public GenerationOptions Generation(InputPrior? prior = null)
    {
        var g = GenerationOptions.Profile(Profile) with { Seed = Seed, InputPrior = prior, Neighbour = Neighbour, Ablation = Ablation };
        if (Samples is { } n) g = g with { Images = n };
        if (GenerationSteps is { } s) g = g with { WarmupSteps = s, RefinementSteps = s };
        if (WarmupSteps is { } w) g = g with { WarmupSteps = w };
        if (RefinementSteps is { } r) g = g with { RefinementSteps = r };
        if (SadagLoss is { } loss)
            g = g with { Rho = loss.Rho ?? g.Rho, Zeta = loss.Zeta ?? g.Zeta, LambdaDiv = loss.LambdaDiv ?? g.LambdaDiv, LambdaBn = loss.LambdaBn ?? g.LambdaBn };
        return g;
    }

    public QuantizationOptions Quantization() => new()
    {
        WeightBits = WeightBits,
        ActivationBits = ActivationBits,
        Iterations = ResolvedReconstructionSteps,
        Seed = Seed,
        ScaleSteps = ScaleSteps,
        RoundingRate = RoundingRate,
        RoundingLossWeight = RoundingLossWeight ?? QuantizationOptions.DefaultRoundingLossWeight,
        OutputTuningSteps = ResolvedOutputTuningSteps,
        BiasCorrection = BiasCorrection,
        Ablation = Ablation,
        Policy = FirstLastSame ? BitPolicy.Same(WeightBits, ActivationBits) : new BitPolicy(),
        Layers = new LayerChoices { Exclude = Exclude, WeightBits = LayerBits },
    };

    /// <summary>The number of calibration images this run uses.</summary>
    public int ResolvedSamples => Method == CalibrationMethod.Real
        ? (int)Math.Min(Samples ?? int.MaxValue, CalibrationImages?.shape[0] ?? 0)
        : Samples ?? GenerationOptions.Profile(Profile).Images;

    public static string MethodName(CalibrationMethod method) => QuantizeSchema.Name(method);

    /// <summary>
    /// Library options for checked settings (<see cref="QuantizeSettings"/>, from the tool's command line or a
    /// build's item metadata) and a model with <paramref name="channels"/> input channels. How it runs (device,
    /// calibration images, the runtime check) is the caller's.
    /// </summary>
    public static PipelineOptions From(QuantizeSettings settings, int channels) => new()
    {
        WeightBits = settings.Bits,
        ActivationBits = settings.ActivationBits,
        Method = settings.Method,
        Profile = settings.Profile,
        Samples = settings.Samples,
        Seed = settings.Seed,
        ReconstructionSteps = settings.ReconstructionSteps,
        GenerationSteps = settings.GenerationSteps,
        Neighbour = settings.Neighbour,
        BiasCorrection = settings.BiasCorrection,
        InputPrior = settings.InputPrior,
        Input = InputStandardization.FromSettings(settings, channels),
        InputShape = settings.InputShape,
        Validate = settings.MinAgreement is not null || settings.ValidationData is not null,
        Resize = settings.Resize,
        Crop = settings.Crop,
        ChannelOrder = settings.ChannelOrder,
        Exclude = settings.Exclude ?? [],
        LayerBits = settings.LayerBits ?? new SortedDictionary<string, int>(StringComparer.Ordinal),
        FirstLastSame = settings.FirstLastSame,
        SizeBudget = settings.SizeBudget,
    };

    /// <summary>
    /// These options as settings, resolved: the device that runs (cpu or cuda), the calibration data by its content
    /// (<c>sha256:…</c>), the input statement expanded to the model's channels. What <see cref="Canonical"/> encodes.
    /// </summary>
    public QuantizeSettings Settings => new()
    {
        Bits = WeightBits,
        ActivationBits = ActivationBits,
        Method = Method,
        CalibrationData = Method == CalibrationMethod.Real ? "sha256:" + (CalibrationDataHash ?? "none") : null,
        Samples = Samples,
        Profile = Profile,
        Seed = Seed,
        Device = (Device ?? CPU).type == TorchSharp.DeviceType.CUDA ? DeviceKind.Cuda : DeviceKind.Cpu,
        InputShape = InputShape,
        InputRange = Input?.Convention == InputConvention.Range ? Input.Range!.Select(v => (float)v).ToArray() : null,
        InputMean = Input?.Convention == InputConvention.Normalization ? Input.Mean : null,
        InputStd = Input?.Convention == InputConvention.Normalization ? Input.Std : null,
        InputPrior = InputPrior,
        Neighbour = Neighbour,
        BiasCorrection = BiasCorrection,
        ReconstructionSteps = ReconstructionSteps,
        GenerationSteps = GenerationSteps,
        ValidationData = ValidationDataHash is { } v ? "sha256:" + v : Validate ? SyntheticValidation : null,
        Resize = Resize,
        Crop = Crop,
        ChannelOrder = ChannelOrder,
        Exclude = Exclude.Count == 0 ? null : Exclude.Distinct(StringComparer.Ordinal).Order(StringComparer.Ordinal).ToArray(),
        LayerBits = LayerBits.Count == 0 ? null : new SortedDictionary<string, int>(LayerBits.ToDictionary(kv => kv.Key, kv => kv.Value), StringComparer.Ordinal),
        FirstLastSame = FirstLastSame,
        SizeBudget = SizeBudget,
    };

    /// <summary>The canonical <c>validation_data</c> of held-out synthetic validation images.</summary>
    public const string SyntheticValidation = "synthetic";

    /// <summary>
    /// Every option that changes the result, as sorted key=value lines (invariant culture): the settings in the
    /// schema's canonical encoding (<see cref="QuantizeSettings.Canonical"/>) and the library's experiment switches.
    /// With the model's bytes and the tool version it is the cache key; its hash goes into the model's metadata.
    /// The accuracy gate's threshold is not in it (it does not change the written bytes: the tool checks it against the
    /// agreement recorded in the model, also on a cache hit); the validation data is (the measurement on it is written
    /// into the model), and only when there is a validation, so that runs without one keep their keys. The image
    /// resize and crop, the excluded layers, the layer bits, <c>first_last_bits=same</c>, the size budget and
    /// <c>bias_correction=off</c> are in it only when set,
    /// for the same reason.
    /// </summary>
    public string Canonical()
    {
        var values = Settings.Canonical();
        values.Remove(QuantizeSchema.MinAgreement.CanonicalKey);
        if (ValidationDataHash is null && !Validate) values.Remove(QuantizeSchema.ValidationData.CanonicalKey);
        if (Resize is null) values.Remove(QuantizeSchema.Resize.CanonicalKey);
        if (Crop == CropMode.None) values.Remove(QuantizeSchema.Crop.CanonicalKey);
        if (ChannelOrder == ChannelOrder.Rgb) values.Remove(QuantizeSchema.ChannelOrder.CanonicalKey);
        if (Exclude.Count == 0) values.Remove(QuantizeSchema.Exclude.CanonicalKey);
        if (LayerBits.Count == 0) values.Remove(QuantizeSchema.LayerBits.CanonicalKey);
        if (!FirstLastSame) values.Remove(QuantizeSchema.FirstLastBits.CanonicalKey);
        if (SizeBudget is null) values.Remove(QuantizeSchema.SizeBudget.CanonicalKey);
        if (BiasCorrection == BiasCorrectionMode.Depthwise) values.Remove(QuantizeSchema.BiasCorrection.CanonicalKey);
        values["rounding_rate"] = RoundingRate.ToString().ToLowerInvariant();
        values["scale_steps"] = ScaleSteps.ToString().ToLowerInvariant();
        if (Ablation != MethodAblation.None) values["ablation"] = Ablation.ToString();
        if (RoundingLossWeight is { } lambdaRound) values["rounding_weight"] = lambdaRound.ToString("R", CultureInfo.InvariantCulture);
        if (OutputTuningSteps is { } tuning) values["output_tuning_steps"] = tuning.ToString(CultureInfo.InvariantCulture);
        if (SadagLoss is { } loss)
        {
            var culture = CultureInfo.InvariantCulture;
            if (loss.Rho is { } rho) values["sadag_rho"] = rho.ToString("R", culture);
            if (loss.Zeta is { } zeta) values["sadag_zeta"] = zeta.ToString("R", culture);
            if (loss.LambdaDiv is { } lambda) values["sadag_lambda_div"] = lambda.ToString("R", culture);
            if (loss.LambdaBn is { } lambdaBn) values["sadag_lambda_bn"] = lambdaBn.ToString("R", culture);
        }
        return string.Join("\n", values.Select(kv => $"{kv.Key}={kv.Value}"));
    }

    /// <summary>The first 16 hex digits of SHA-256 over <see cref="Canonical"/>.</summary>
    public string OptionsHash() => Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(Canonical())))[..16];
}

/// <summary>SADAG loss settings that replace the method's when set (<see cref="PipelineOptions.SadagLoss"/>).</summary>
public sealed record SadagLossSettings(double? Rho = null, double? Zeta = null, double? LambdaDiv = null, double? LambdaBn = null);
