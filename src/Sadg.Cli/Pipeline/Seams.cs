using Sadg.Cli.Data;
using Sadg.Cli.Output;
using Sadg.Onnx;
using TorchSharp;

namespace Sadg.Cli.Pipeline;

/// <summary>Everything <c>sadg quantize</c> has checked and resolved before the pipeline runs.</summary>
public sealed record QuantizationRequest(
    string ModelPath,
    OnnxModel Model,
    ImageInput Input,
    int WeightBits,
    int? ActivationBits,
    string Method,
    ImageSet? CalibrationData,
    int? Samples,
    string Profile,
    int Seed,
    torch.Device Device,
    string? CacheDirectory,
    string? ReportDirectory)
{
    /// <summary>Internal (hidden <c>--reconstruction-steps</c>): overrides the profile's reconstruction steps per block.</summary>
    public int? ReconstructionSteps { get; init; }

    /// <summary>Internal (hidden <c>--generation-steps</c>): overrides the profile's warm-up and refinement steps per batch.</summary>
    public int? GenerationSteps { get; init; }

    /// <summary><c>--input-shape C,H,W</c>: the image size for a model whose input leaves some of it free; null: the model's.</summary>
    public int[]? InputShape { get; init; }

    /// <summary>What the model is fed, the input prior and SADAG's neighbour (<see cref="Commands.InputOptions"/>).</summary>
    public GenerationChoices Choices { get; init; } = GenerationChoices.Default;
}

/// <summary>
/// The generation settings <c>quantize</c> and <c>generate</c> share: the user's statement of what the model is fed
/// (null: the model's metadata or its first BatchNormalization node decides), the input prior's source, and SADAG's
/// neighbour.
/// </summary>
public sealed record GenerationChoices(Sadg.Pipeline.InputStandardization? Input, Sadg.Pipeline.InputPriorMode Prior, Sadg.Generation.NeighbourMode Neighbour)
{
    public static GenerationChoices Default { get; } = new(null, Sadg.Pipeline.InputPriorMode.Auto, Sadg.Generation.NeighbourMode.Random);

    /// <summary>These choices applied to library options.</summary>
    public Sadg.Pipeline.PipelineOptions ApplyTo(Sadg.Pipeline.PipelineOptions options) =>
        options with { Input = Input, InputPrior = Prior, Neighbour = Neighbour };
}

/// <summary>
/// The pipeline's product: the quantized model (the tool writes it atomically), summary lines to print, and the
/// report files (name → bytes: report.json, report.md, synthetic.png) that the tool writes into the report folder
/// and stores in the cache beside the model.
/// </summary>
public sealed record QuantizationResult(global::Onnx.ModelProto Model, IReadOnlyList<string> Summary)
{
    public IReadOnlyDictionary<string, byte[]> ReportFiles { get; init; } = new Dictionary<string, byte[]>();
}

/// <summary>
/// THE SEAM for <c>sadg quantize</c>: data generation (or the real calibration set), BN folding, block
/// reconstruction, the QDQ writer and the ONNX Runtime check. The tool validates everything before calling it and
/// writes <see cref="QuantizationResult.Model"/> atomically afterwards. Long stages report through
/// <see cref="CliConsole.Stage"/>; the pipeline returns its report files (<see cref="QuantizationResult.ReportFiles"/>),
/// which the tool writes into the report folder, and must honour the cancellation token. The cache sits outside
/// the seam: a cache hit never calls the pipeline.
/// </summary>
public interface IQuantizationPipeline
{
    Task<QuantizationResult> RunAsync(QuantizationRequest request, CliConsole console, CancellationToken cancellationToken);
}

/// <summary>Everything <c>sadg generate</c> has checked and resolved.</summary>
public sealed record GenerationRequest(
    string ModelPath,
    OnnxModel Model,
    ImageInput Input,
    string Method,
    int? Samples,
    string Profile,
    int Seed,
    torch.Device Device)
{
    /// <summary>Internal, as <see cref="QuantizationRequest.GenerationSteps"/>.</summary>
    public int? GenerationSteps { get; init; }

    /// <summary>Internal, as <see cref="QuantizationRequest.ReconstructionSteps"/> (SADAG's warm-up model Q₀).</summary>
    public int? ReconstructionSteps { get; init; }

    /// <summary>As <see cref="QuantizationRequest.Choices"/>.</summary>
    public GenerationChoices Choices { get; init; } = GenerationChoices.Default;

    /// <summary>As <see cref="QuantizationRequest.InputShape"/>.</summary>
    public int[]? InputShape { get; init; }
}

/// <summary>
/// THE SEAM for <c>sadg generate</c>: synthesizes calibration images (Genie-D, SADAG, or Gaussian noise), labelled
/// with the FP32 model's top-1 class. The tool writes the returned set as a tensor folder (docs/cli.md), atomically.
/// </summary>
public interface IDataGenerationPipeline
{
    Task<ImageSet> GenerateAsync(GenerationRequest request, CliConsole console, CancellationToken cancellationToken);
}
