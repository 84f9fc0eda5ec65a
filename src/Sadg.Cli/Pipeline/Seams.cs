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
    QuantizeSettings Settings,
    ImageSet? CalibrationData,
    torch.Device Device,
    string? CacheDirectory,
    string? ReportDirectory)
{
    /// <summary>What the settings state the model is fed (<see cref="Sadg.Pipeline.InputStandardization.FromSettings"/>); null: not stated.</summary>
    public Sadg.Pipeline.InputStandardization? Standardization { get; init; }

    /// <summary>The images of --validation-data, checked against the model's input; null: held-out synthetic images (when validating).</summary>
    public ImageSet? ValidationData { get; init; }

    /// <summary>
    /// The FP32 model's bytes: the file's, or for a model with external data the serialization of <see cref="Model"/>
    /// with that data inlined (<see cref="OnnxModel.WithExternalDataInlined"/>). The cache key hashes them and the
    /// ONNX Runtime check runs them.
    /// </summary>
    public required byte[] ModelBytes { get; init; }
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
    QuantizeSettings Settings,
    torch.Device Device)
{
    /// <summary>As <see cref="QuantizationRequest.Standardization"/>.</summary>
    public Sadg.Pipeline.InputStandardization? Standardization { get; init; }
}

/// <summary>
/// THE SEAM for <c>sadg generate</c>: synthesizes calibration images (Genie-D, SADAG, or Gaussian noise), labelled
/// with the FP32 model's top-1 class. The tool writes the returned set as a tensor folder (docs/cli.md), atomically.
/// </summary>
public interface IDataGenerationPipeline
{
    Task<ImageSet> GenerateAsync(GenerationRequest request, CliConsole console, CancellationToken cancellationToken);
}
