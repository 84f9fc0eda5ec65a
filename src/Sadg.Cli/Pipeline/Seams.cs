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
    string? ReportDirectory);

/// <summary>The pipeline's product: the quantized model (the tool writes it atomically) and summary lines to print.</summary>
public sealed record QuantizationResult(global::Onnx.ModelProto Model, IReadOnlyList<string> Summary);

/// <summary>
/// THE SEAM for <c>sadg quantize</c>: data generation (or the real calibration set), BN folding, block
/// reconstruction, the QDQ writer and the ONNX Runtime check. The tool validates everything before calling it and
/// writes <see cref="QuantizationResult.Model"/> atomically afterwards. Long stages report through
/// <see cref="CliConsole.Stage"/>; the pipeline writes its report files into <see cref="QuantizationRequest.ReportDirectory"/>
/// (already created) and must honour the cancellation token.
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
    torch.Device Device);

/// <summary>
/// THE SEAM for <c>sadg generate</c>: synthesizes calibration images (Genie-D, SADAG, or Gaussian noise), labelled
/// with the FP32 model's top-1 class. The tool writes the returned set as a tensor folder (docs/cli.md), atomically.
/// </summary>
public interface IDataGenerationPipeline
{
    Task<ImageSet> GenerateAsync(GenerationRequest request, CliConsole console, CancellationToken cancellationToken);
}

/// <summary>Stands in until the quantization library is wired in: the command fails with an internal error (exit 3).</summary>
public sealed class UnwiredQuantizationPipeline : IQuantizationPipeline
{
    public Task<QuantizationResult> RunAsync(QuantizationRequest request, CliConsole console, CancellationToken cancellationToken) =>
        throw new NotImplementedException("quantization pipeline not wired yet");
}

/// <summary>Stands in until the data-generation library is wired in: the command fails with an internal error (exit 3).</summary>
public sealed class UnwiredDataGenerationPipeline : IDataGenerationPipeline
{
    public Task<ImageSet> GenerateAsync(GenerationRequest request, CliConsole console, CancellationToken cancellationToken) =>
        throw new NotImplementedException("data generation pipeline not wired yet");
}
