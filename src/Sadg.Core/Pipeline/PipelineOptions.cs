using System.Globalization;
using System.Security.Cryptography;
using System.Text;
using Sadg.Generation;
using Sadg.Quantization;
using static TorchSharp.torch;

namespace Sadg.Pipeline;

/// <summary>Where the calibration images come from.</summary>
public enum CalibrationMethod
{
    /// <summary>Genie-D warm-up, warm-up quantized model Q₀, SADAG refinement against Q₀ (the paper).</summary>
    Sadag,

    /// <summary>Genie-D warm-up only.</summary>
    Genie,

    /// <summary>Images of N(0, 1) noise (a baseline).</summary>
    Gaussian,

    /// <summary>Real images given by the caller.</summary>
    Real,
}

/// <summary>Where the input prior of generation (the per-image mean and std the images are pulled towards) comes from.</summary>
public enum InputPriorMode
{
    /// <summary>
    /// The user's --input-range or --input-mean/--input-std, else the model's sadg.input_mean/std metadata, else a fit
    /// to the model's first BatchNormalization node (see <see cref="Generation.InputPrior"/>).
    /// </summary>
    Auto,

    /// <summary>No input prior term.</summary>
    Off,

    /// <summary>Mean 0 and std 1 whatever the model expects (standardized inputs assumed).</summary>
    Standardized,
}

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

    /// <summary>"quick", "default" or "paper": generation budgets and reconstruction steps.</summary>
    public string Profile { get; init; } = "default";

    /// <summary>Number of calibration images; null = the profile's (all real images for <see cref="CalibrationMethod.Real"/>).</summary>
    public int? Samples { get; init; }

    public int Seed { get; init; }

    /// <summary>
    /// Overrides the profile's reconstruction steps per block. Internal: for tests and experiments (the tool's
    /// hidden <c>--reconstruction-steps</c>).
    /// </summary>
    public int? ReconstructionSteps { get; init; }

    /// <summary>How the scales' learning rates are measured (relative to each initial scale by default). For experiments.</summary>
    public ScaleSteps ScaleSteps { get; init; } = ScaleSteps.Relative;

    /// <summary>Overrides the profile's warm-up and refinement steps per batch. Internal, like <see cref="ReconstructionSteps"/>.</summary>
    public int? GenerationSteps { get; init; }

    /// <summary>How the rounding variables' learning rate follows the step budget (step-relative by default). For experiments.</summary>
    public RoundingRate RoundingRate { get; init; } = RoundingRate.StepRelative;

    /// <summary>How SADAG picks its neighbour (random by default: what the paper's formula does in effect).</summary>
    public NeighbourMode Neighbour { get; init; } = NeighbourMode.Random;

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
    public static int ProfileReconstructionSteps(string profile) => profile switch
    {
        "quick" => 100,
        "default" => 500,
        "paper" => 20000,
        _ => throw new SadgException(SadgErrorCode.InvalidOptionValue, $"Unknown profile '{profile}'; use quick, default or paper."),
    };

    public int ResolvedReconstructionSteps => ReconstructionSteps ?? ProfileReconstructionSteps(Profile);

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
        return g;
    }

    public QuantizationOptions Quantization() => new()
    {
        WeightBits = WeightBits,
        ActivationBits = ActivationBits,
        Iterations = ResolvedReconstructionSteps,
        BatchSize = 32,
        Seed = Seed,
        ScaleSteps = ScaleSteps,
        RoundingRate = RoundingRate,
        Ablation = Ablation,
    };

    /// <summary>The number of calibration images this run uses.</summary>
    public int ResolvedSamples => Method == CalibrationMethod.Real
        ? (int)Math.Min(Samples ?? int.MaxValue, CalibrationImages?.shape[0] ?? 0)
        : Samples ?? GenerationOptions.Profile(Profile).Images;

    public static string MethodName(CalibrationMethod method) => method.ToString().ToLowerInvariant();

    /// <summary>
    /// Every option that changes the result, as sorted key=value lines (invariant culture). With the model's bytes
    /// and the tool version it is the cache key; its hash goes into the model's metadata.
    /// </summary>
    public string Canonical()
    {
        var values = new SortedDictionary<string, string>(StringComparer.Ordinal)
        {
            ["activation_bits"] = ActivationBits?.ToString(CultureInfo.InvariantCulture) ?? "none",
            ["bits"] = WeightBits.ToString(CultureInfo.InvariantCulture),
            ["device"] = (Device ?? CPU).type.ToString().ToLowerInvariant(),
            ["generation_steps"] = GenerationSteps?.ToString(CultureInfo.InvariantCulture) ?? "profile",
            ["input"] = Input?.Canonical() ?? "model",
            ["input_prior"] = InputPrior.ToString().ToLowerInvariant(),
            ["neighbour"] = Neighbour.ToString().ToLowerInvariant(),
            ["rounding_rate"] = RoundingRate.ToString().ToLowerInvariant(),
            ["method"] = MethodName(Method),
            ["profile"] = Profile,
            ["reconstruction_steps"] = ResolvedReconstructionSteps.ToString(CultureInfo.InvariantCulture),
            ["samples"] = Samples?.ToString(CultureInfo.InvariantCulture) ?? "profile",
            ["scale_steps"] = ScaleSteps.ToString().ToLowerInvariant(),
            ["seed"] = Seed.ToString(CultureInfo.InvariantCulture),
        };
        if (Ablation != MethodAblation.None) values["ablation"] = Ablation.ToString();
        if (Method == CalibrationMethod.Real) values["calibration_sha256"] = CalibrationDataHash ?? "none";
        if (InputShape is not null) values["input_shape"] = Onnx.InputShapes.Format(InputShape);
        return string.Join("\n", values.Select(kv => $"{kv.Key}={kv.Value}"));
    }

    /// <summary>The first 16 hex digits of SHA-256 over <see cref="Canonical"/>.</summary>
    public string OptionsHash() => Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(Canonical())))[..16];
}
