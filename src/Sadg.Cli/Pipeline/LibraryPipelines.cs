using System.Security.Cryptography;
using System.Text;
using Google.Protobuf;
using Microsoft.ML.OnnxRuntime;
using Sadg.Cli.Data;
using Sadg.Cli.Output;
using Sadg.Pipeline;
using TorchSharp;

namespace Sadg.Cli.Pipeline;

/// <summary>
/// Shows the library's stages on the tool's console (progress with ETA, information lines) and its warnings as
/// diagnostics against <paramref name="model"/> (<c>model.onnx(0,0): warning SADG2001: …</c>, whatever the verbosity).
/// </summary>
public sealed class ConsoleReporter(CliConsole console, string? model) : IPipelineReporter
{
    public IPipelineStage Stage(string name, long total) => new StageAdapter(console.Stage(name, total));

    public void Info(string message) => console.Log.Information("{Message}", message);

    public void Warning(SadgWarning warning) => console.Diagnostic(warning.ToDiagnostic(model));

    sealed class StageAdapter(ProgressStage stage) : IPipelineStage
    {
        public void Report(long done) => stage.Report(done);

        public void Dispose() => stage.Dispose();
    }
}

/// <summary>
/// The ONNX Runtime check: CPU provider, default graph optimizations, the model's own batch size when fixed (a
/// model declared with batch 1, as CNTK exports, is run one image at a time: its graph may hold that 1 in shapes).
/// </summary>
public static class OrtCheck
{
    public static float[] Outputs(byte[] model, float[] images, long[] shape, CancellationToken cancellationToken)
    {
        using var options = DeviceChoice.NewSessionOptions();
        InferenceSession session;
        try { session = new InferenceSession(model, options); }
        catch (OnnxRuntimeException e)
        {
            throw new SadgException(SadgErrorCode.InvalidGraph, $"ONNX Runtime cannot load the model: {e.Message.Split('\n')[0]}", inner: e);
        }
        using (session)
        {
            long declared = session.InputMetadata[session.InputNames[0]].Dimensions is { Length: > 0 } dims && dims[0] > 0 ? dims[0] : 0;
            int[] chw = [(int)shape[1], (int)shape[2], (int)shape[3]];
            return OrtPredictions.Outputs(session, session.InputNames[0], session.OutputNames[0], images, (int)shape[0], chw,
                declared > 0 ? (int)declared : Batch(chw), declared > 0, path: null, cancellationToken);
        }
    }

    /// <summary>
    /// Images per run for a model with a free batch: up to 64, but at most 2²⁰ input values a run (6 images at
    /// 3×224²), so that ONNX Runtime's activations for the check stay small next to the quantization's own peak.
    /// </summary>
    public static int Batch(IReadOnlyList<int> chw) => (int)Math.Clamp((1L << 20) / ((long)chw[0] * chw[1] * chw[2]), 1, 64);
}

/// <summary>The real <see cref="IQuantizationPipeline"/>: <see cref="QuantizationPipeline"/> with the ONNX Runtime check.</summary>
public sealed class LibraryQuantizationPipeline : IQuantizationPipeline
{
    public const string ReportJson = "report.json";
    public const string ReportMarkdown = "report.md";
    public const string SyntheticPng = "synthetic.png";

    /// <summary>The library's options for a request (also what the cache key is computed from).</summary>
    public static PipelineOptions Options(QuantizationRequest r)
    {
        torch.Tensor? calibration = null;
        string? calibrationHash = null;
        if (r.CalibrationData is { } set)
        {
            calibration = torch.tensor(set.Images, [set.Shape[0], set.Shape[1], set.Shape[2], set.Shape[3]]);
            calibrationHash = Hash(set);
        }
        torch.Tensor? validation = null;
        string? validationHash = null;
        if (r.ValidationData is { } held)
        {
            validation = torch.tensor(held.Images, [held.Shape[0], held.Shape[1], held.Shape[2], held.Shape[3]]);
            validationHash = Hash(held);
        }
        return PipelineOptions.From(r.Settings, r.Input.Channels) with
        {
            ValidationImages = validation,
            ValidationDataHash = validationHash,
            Input = r.Standardization,
            Device = r.Device,
            CalibrationImages = calibration,
            CalibrationDataHash = calibrationHash,
            ToolVersion = CliApp.Version,
            Runtime = OrtCheck.Outputs,
        };
    }

    /// <summary>SHA-256 (hex) of a data set's shape and images: what the cache key holds for --calibration-data and --validation-data.</summary>
    static string Hash(ImageSet set)
    {
        using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        hash.AppendData(Encoding.UTF8.GetBytes(string.Join(",", set.Shape) + "\n"));
        hash.AppendData(System.Runtime.InteropServices.MemoryMarshal.AsBytes(set.Images.AsSpan()));
        return Convert.ToHexStringLower(hash.GetHashAndReset());
    }

    public Task<QuantizationResult> RunAsync(QuantizationRequest request, CliConsole console, CancellationToken cancellationToken)
    {
        var options = Options(request);
        try
        {
            using var result = QuantizationPipeline.Quantize(request.Model, options, new ConsoleReporter(console, request.ModelPath), cancellationToken, request.ModelBytes);
            cancellationToken.ThrowIfCancellationRequested();
            var report = result.Report with { Model = Path.GetFileName(request.ModelPath) };
            var files = new SortedDictionary<string, byte[]>(StringComparer.Ordinal)
            {
                [ReportJson] = Encoding.UTF8.GetBytes(report.ToJson()),
                [ReportMarkdown] = Encoding.UTF8.GetBytes(report.ToMarkdown()),
                [SyntheticPng] = result.Images.GridPng(),
            };
            return Task.FromResult(new QuantizationResult(result.Model, Summary(report)) { ReportFiles = files });
        }
        finally
        {
            options.CalibrationImages?.Dispose();
            options.ValidationImages?.Dispose();
        }
    }

    public static IReadOnlyList<string> Summary(QuantizationReport report)
    {
        var lines = new List<string>();
        if (report.Check is { } check)
            lines.Add($"{check.Describe()} against the FP32 model on {check.Images} calibration images (ONNX Runtime)");
        if (report.Validation is { } validation)
            lines.Add($"{validation.Describe()} against the FP32 model on {report.ValidationData} (ONNX Runtime)");
        lines.Add($"size: {Sizes.Format(report.InputBytes)} -> {Sizes.Format(report.OutputBytes)}");
        if (report.SizeBudget is { } budget)
            lines.Add($"size budget {budget.Budget}: quantized weights {budget.WeightBytes} of {budget.BudgetBytes} nominal bytes ({budget.FileBytes} in the file); weight bits " +
                string.Join(", ", budget.Layers.Select(l => $"{l.Node}={l.WeightBits}{(l.Chosen ? "" : " (fixed)")}")));
        lines.Add($"time: {report.TotalSeconds:0.0} s ({string.Join(", ", report.Timings.Select(t => $"{t.Stage} {t.Seconds:0.0} s"))})");
        return lines;
    }
}

/// <summary>The real <see cref="IDataGenerationPipeline"/>: the images in the model's pixel units, labelled with its top-1 class.</summary>
public sealed class LibraryDataGenerationPipeline : IDataGenerationPipeline
{
    public Task<ImageSet> GenerateAsync(GenerationRequest request, CliConsole console, CancellationToken cancellationToken)
    {
        var options = PipelineOptions.From(request.Settings, request.Input.Channels) with
        {
            Input = request.Standardization,
            Device = request.Device,
            ToolVersion = CliApp.Version,
        };
        using var set = QuantizationPipeline.Generate(request.Model, options, new ConsoleReporter(console, request.ModelPath), cancellationToken);
        if (set.Warning is not null) console.Log.Debug("{Warning}", set.Warning);
        using var scope = torch.NewDisposeScope();
        var pixels = InputStandardization.ForRun(request.Model, options).Destandardize(set.Images).contiguous();
        var shape = set.Images.shape.Select(d => (int)d).ToArray();
        return Task.FromResult(new ImageSet(pixels.data<float>().ToArray(), shape, set.Labels.Select(l => (int)l).ToArray(),
            $"generated from {Path.GetFileName(request.ModelPath)} ({QuantizeSchema.Name(request.Settings.Method)}, seed {request.Settings.Seed})"));
    }
}
