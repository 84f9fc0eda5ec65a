using System.Diagnostics;
using System.Globalization;
using System.Runtime.InteropServices;
using System.Security.Cryptography;
using Google.Protobuf;
using Onnx;
using Sadg.Generation;
using Sadg.Graph;
using Sadg.Onnx;
using Sadg.Quantization;
using Sadg.Reconstruction;
using static TorchSharp.torch;

namespace Sadg.Pipeline;

/// <summary>Calibration images made by <see cref="QuantizationPipeline"/>, with how they were made.</summary>
public sealed class CalibrationSet : IDisposable
{
    internal CalibrationSet(Tensor images, long[] labels, string? warning, bool usedStatistics)
    {
        Images = images;
        Labels = labels;
        Warning = warning;
        UsedBatchNormStatistics = usedStatistics;
    }

    /// <summary>[N, C, H, W] on the CPU, as the model is fed (standardized when the model's metadata says so).</summary>
    public Tensor Images { get; }

    /// <summary>The FP32 model's top-1 class of each image.</summary>
    public long[] Labels { get; }

    /// <summary>The notice for BN-free models (the statistics-free objective was used), else null.</summary>
    public string? Warning { get; }

    public bool UsedBatchNormStatistics { get; }

    /// <summary>The input prior the generation used (null: none, or no generation).</summary>
    public InputPrior? Prior { get; init; }

    public List<StageTiming> Timings { get; } = [];

    public List<StageLosses> Losses { get; } = [];

    public float[] ImageData() => Images.contiguous().data<float>().ToArray();

    public void Dispose() => Images.Dispose();
}

/// <summary>The pipeline's product: the quantized model, its report and the calibration images.</summary>
public sealed class PipelineResult : IDisposable
{
    internal PipelineResult(ModelProto model, byte[] modelBytes, QuantizationReport report, CalibrationSet images)
    {
        Model = model;
        ModelBytes = modelBytes;
        Report = report;
        Images = images;
    }

    public ModelProto Model { get; }

    /// <summary>The serialized model, exactly the bytes of the file to write.</summary>
    public byte[] ModelBytes { get; }

    public QuantizationReport Report { get; }

    public CalibrationSet Images { get; }

    public void Dispose() => Images.Dispose();
}

/// <summary>
/// The whole of DESIGN §2 after loading: FP graph (BN kept, for generation) → calibration images (Gaussian noise,
/// Genie-D, SADAG = Genie-D → Q₀ → refinement, or real images) → BN folding, block reconstruction and the QDQ
/// writer → the ONNX Runtime check → metadata. Deterministic: the same model, options and seed give the same bytes
/// (timings go only into the report). No console: progress goes through <see cref="IPipelineReporter"/>.
/// </summary>
public static class QuantizationPipeline
{
    public const string ToolVersionKey = "sadg.tool_version";
    public const string MethodKey = "sadg.method";
    public const string SeedKey = "sadg.seed";
    public const string ProfileKey = "sadg.profile";
    public const string OptionsHashKey = "sadg.options_hash";
    public const string AgreementKey = "sadg.top1_agreement";
    public const string OutputCosineKey = "sadg.output_cosine";
    public const string OutputSqnrKey = "sadg.output_sqnr_db";
    public const string CalibrationImagesKey = "sadg.calibration_images";

    /// <summary>Top-1 agreement (a fraction, 4 decimals) with the FP model on the validation images (classifiers).</summary>
    public const string ValidationAgreementKey = "sadg.validation_top1_agreement";

    /// <summary>Mean output cosine similarity with the FP model on the validation images (models without class scores).</summary>
    public const string ValidationCosineKey = "sadg.validation_output_cosine";

    /// <summary>What the validation images were: held-out synthetic images (method, count, seed) or user data (content hash, count).</summary>
    public const string ValidationDataKey = "sadg.validation_data";

    public const string ValidationImagesKey = "sadg.validation_images";

    /// <summary>Makes the calibration images only (<c>sadg generate</c>; real images are refused).</summary>
    public static CalibrationSet Generate(OnnxModel model, PipelineOptions options, IPipelineReporter? reporter = null,
        CancellationToken cancellationToken = default)
    {
        if (options.Method == CalibrationMethod.Real)
            throw new SadgException(SadgErrorCode.InvalidOptionValue, $"Generation makes its own images; {QuantizeSchema.Method.Label} real has nothing to generate.");
        reporter ??= NullPipelineReporter.Instance;
        Seed(options.Seed);
        var device = options.Device ?? CPU;
        model = InputShapes.Apply(model, options.InputShape);
        using var fp = new GraphModule(model, device);
        Preflight.Check(model, fp, options);
        return MakeImages(model, fp, options, InputStandardization.Resolve(model, options.Input), reporter, cancellationToken);
    }

    /// <summary>
    /// Runs only the Genie-D warm-up that <see cref="Quantize"/> would run for Genie-D or SADAG with these options,
    /// to pass to several <see cref="Quantize"/> calls (bit widths, methods) that share the model, profile and seed.
    /// </summary>
    public static SyntheticImages WarmUp(OnnxModel model, PipelineOptions options, IPipelineReporter? reporter = null,
        CancellationToken cancellationToken = default)
    {
        reporter ??= NullPipelineReporter.Instance;
        Seed(options.Seed);
        model = InputShapes.Apply(model, options.InputShape);
        using var fp = new GraphModule(model, options.Device ?? CPU);
        Preflight.Check(model, fp, options);
        var recorder = new GenerationRecorder(reporter);
        var prior = ResolvePrior(model, fp, options, InputStandardization.Resolve(model, options.Input), reporter);
        var warm = SyntheticData.WarmUp(fp, GenerationFor(options, prior), recorder, cancellationToken);
        recorder.Finish([]);
        return warm;
    }

    /// <summary>Quantizes <paramref name="model"/>: calibration images, reconstruction, QDQ model, ONNX Runtime check.</summary>
    /// <param name="modelBytes">The model file's bytes (for the report's hash and the FP side of the check); null: serialized from the model.</param>
    /// <param name="warmUp">
    /// A Genie-D warm-up already made with this model and <see cref="PipelineOptions.Generation"/> (one warm-up can
    /// serve Genie-D and SADAG at several bit widths); it is copied, not changed, and its time is not in the report.
    /// null: the pipeline makes its own. The result is the same either way. Gaussian and real calibration ignore it.
    /// </param>
    public static PipelineResult Quantize(OnnxModel model, PipelineOptions options, IPipelineReporter? reporter = null,
        CancellationToken cancellationToken = default, byte[]? modelBytes = null, SyntheticImages? warmUp = null)
    {
        reporter ??= NullPipelineReporter.Instance;
        var total = Stopwatch.StartNew();
        Seed(options.Seed);
        modelBytes ??= model.Proto.ToByteArray();
        var source = model;
        model = InputShapes.Apply(model, options.InputShape);
        var standardization = InputStandardization.Resolve(model, options.Input);
        var device = options.Device ?? CPU;

        CalibrationSet images;
        OutputKind kind;
        using (var fp = new GraphModule(model, device))
        {
            kind = Preflight.Check(model, fp, options);
            images = MakeImages(model, fp, options, standardization, reporter, cancellationToken, warmUp);
        }
        try
        {
            var timings = images.Timings;
            var losses = images.Losses;
            cancellationToken.ThrowIfCancellationRequested();
            var clock = StageClock.Start();
            QuantizationOutcome outcome;
            var recorder = new ReconstructionRecorder(reporter, "reconstructing");
            {
                var (quantized, fold) = ModelQuantizer.Calibrate(model, images.Images, options.Quantization(), device, recorder, cancellationToken);
                using (quantized) outcome = ModelQuantizer.Write(quantized, fold);
                outcome.Spec.Dispose(); // written into the QDQ model; its tensors are not needed any more
            }
            recorder.Finish(losses);
            timings.Add(clock.Finish("reconstruction"));

            var qdq = outcome.QdqModel;
            if (!ReferenceEquals(model, source)) InputShapes.RestoreInput(qdq, source);
            SetMetadata(qdq, ToolVersionKey, options.ToolVersion);
            SetMetadata(qdq, MethodKey, PipelineOptions.MethodName(options.Method));
            SetMetadata(qdq, ProfileKey, QuantizeSchema.Name(options.Profile));
            SetMetadata(qdq, SeedKey, options.Seed.ToString(CultureInfo.InvariantCulture));
            SetMetadata(qdq, OptionsHashKey, options.OptionsHash());
            SetMetadata(qdq, CalibrationImagesKey, images.Images.shape[0].ToString(CultureInfo.InvariantCulture));

            RuntimeCheck? check = null;
            // The quantized model as ONNX Runtime runs it; the metadata added below does not change its outputs.
            byte[]? quantizedBytes = options.Runtime is null ? null : qdq.ToByteArray();
            if (options.Runtime is { } runtime)
            {
                clock.Restart();
                check = RunAndCompare(runtime, "checking with ONNX Runtime", modelBytes, quantizedBytes!, images.ImageData(), images.Images.shape,
                    kind, reporter, cancellationToken);
                if (check.Top1Agreement is { } agreement)
                    SetMetadata(qdq, AgreementKey, agreement.ToString("0.0000", CultureInfo.InvariantCulture));
                else
                {
                    SetMetadata(qdq, OutputCosineKey, check.CosineSimilarity!.Value.ToString("0.0000", CultureInfo.InvariantCulture));
                    SetMetadata(qdq, OutputSqnrKey, check.SqnrDb!.Value.ToString("0.00", CultureInfo.InvariantCulture));
                }
                timings.Add(clock.Finish("ONNX Runtime check"));
            }
            RuntimeCheck? validation = null;
            string? validationData = null;
            if (options.Validate)
            {
                var validationRuntime = options.Runtime
                    ?? throw new ArgumentException("Validation runs the models with ONNX Runtime: set PipelineOptions.Runtime.", nameof(options));
                clock.Restart();
                (validation, validationData) = Validate(model, quantizedBytes!, modelBytes, options, kind, standardization, validationRuntime, reporter, cancellationToken);
                if (validation.Top1Agreement is { } agreement)
                    SetMetadata(qdq, ValidationAgreementKey, agreement.ToString("0.0000", CultureInfo.InvariantCulture));
                else
                    SetMetadata(qdq, ValidationCosineKey, validation.CosineSimilarity!.Value.ToString("0.0000", CultureInfo.InvariantCulture));
                SetMetadata(qdq, ValidationDataKey, validationData);
                SetMetadata(qdq, ValidationImagesKey, validation.Images.ToString(CultureInfo.InvariantCulture));
                timings.Add(clock.Finish("validation"));
            }
            byte[] bytes = qdq.ToByteArray();

            var canonical = options.Canonical().Split('\n').Select(l => l.Split('=', 2)).ToDictionary(p => p[0], p => p[1]);
            var report = new QuantizationReport
            {
                ToolVersion = options.ToolVersion,
                Model = Path.GetFileName(model.Path ?? "model.onnx"),
                ModelSha256 = Convert.ToHexStringLower(SHA256.HashData(modelBytes)),
                Options = new SortedDictionary<string, string>(canonical, StringComparer.Ordinal),
                OptionsHash = options.OptionsHash(),
                CalibrationImages = (int)images.Images.shape[0],
                InputStandardization = standardization.ToString(),
                InputPrior = options.Method is CalibrationMethod.Sadag or CalibrationMethod.Genie
                    ? images.Prior?.ToString() ?? "none (--input-prior off)"
                    : "none (no generation)",
                UsedBatchNormStatistics = images.UsedBatchNormStatistics,
                Warning = images.Warning,
                Timings = timings,
                TotalSeconds = total.Elapsed.TotalSeconds,
                Losses = losses,
                FoldedBatchNorms = outcome.FoldedBatchNorms,
                Layers = outcome.Layers.Select(l => new LayerReport(l.Node, l.OpType, l.WeightBits, l.InputBits)).ToList(),
                Blocks = outcome.Blocks,
                InputBytes = modelBytes.LongLength,
                OutputBytes = bytes.LongLength,
                Check = check,
                Validation = validation,
                ValidationData = validationData,
                Notes = [QuantizationReport.RuntimeNote,
                    "Weights are stored packed (two 4-bit values per byte) with a float scale and zero point per output channel; " +
                    "activations are QuantizeLinear/DequantizeLinear pairs in 8-bit containers with a Clip to the narrower range."],
            };
            return new PipelineResult(qdq, bytes, report, images);
        }
        catch
        {
            images.Dispose();
            throw;
        }
    }

    static void Seed(int seed) => manual_seed(seed);

    /// <summary>
    /// Runs the FP and the quantized model with ONNX Runtime on the validation images and compares their outputs: the
    /// user's images (standardized as calibration images are), else held-out synthetic images, Genie-D generated with
    /// <see cref="PipelineOptions.ValidationSeed"/> (never the calibration images, whatever the calibration method).
    /// Returns the comparison and a description of the images (no paths: it goes into the model and the cached report).
    /// </summary>
    static (RuntimeCheck Check, string Data) Validate(OnnxModel model, byte[] quantized, byte[] modelBytes, PipelineOptions options,
        OutputKind kind, InputStandardization standardization, RuntimeOutputs runtime, IPipelineReporter reporter, CancellationToken cancellationToken)
    {
        var device = options.Device ?? CPU;
        float[] pixels;
        long[] shape;
        string data;
        if (options.ValidationImages is { } given)
        {
            using var scope = NewDisposeScope();
            var x = standardization.Standardize(given.to(ScalarType.Float32).to(device)).cpu().contiguous();
            pixels = x.data<float>().ToArray();
            shape = x.shape;
            string hash = options.ValidationDataHash is { } h ? $"sha256:{h[..Math.Min(16, h.Length)]}" : "unhashed";
            data = $"validation data {hash} ({shape[0]} images)";
        }
        else
        {
            Seed(options.ValidationSeed);
            using var fp = new GraphModule(model, device);
            var prior = ResolvePrior(model, fp, options, standardization);
            var generation = GenerationFor(options with { Seed = options.ValidationSeed }, prior);
            var recorder = new GenerationRecorder(reporter, "generating validation images (Genie-D, held-out seed)");
            using var warm = SyntheticData.WarmUp(fp, generation, recorder, cancellationToken);
            recorder.Finish([]);
            using var all = warm.Images();
            using var scope = NewDisposeScope();
            var x = all.cpu().contiguous();
            pixels = x.data<float>().ToArray();
            shape = x.shape;
            data = $"held-out synthetic images ({shape[0]} Genie-D images, seed {options.ValidationSeed.ToString(CultureInfo.InvariantCulture)})";
        }
        if (shape[0] < 1)
            throw new SadgException(SadgErrorCode.DataInvalid, "The validation data holds no images.");
        cancellationToken.ThrowIfCancellationRequested();
        return (RunAndCompare(runtime, "measuring the agreement on the validation images", modelBytes, quantized, pixels, shape, kind, reporter,
            cancellationToken), data);
    }

    /// <summary>Runs the FP and the quantized model with ONNX Runtime on the same images and compares their outputs.</summary>
    static RuntimeCheck RunAndCompare(RuntimeOutputs runtime, string stageName, byte[] fpModel, byte[] quantized, float[] pixels, long[] shape,
        OutputKind kind, IPipelineReporter reporter, CancellationToken cancellationToken)
    {
        using var stage = reporter.Stage(stageName, 2);
        float[] fpOutputs = runtime(fpModel, pixels, shape, cancellationToken);
        stage.Report(1);
        float[] qOutputs = runtime(quantized, pixels, shape, cancellationToken);
        stage.Report(2);
        return OutputComparison.Compare("ONNX Runtime (CPU, default graph optimizations)", kind, fpOutputs, qOutputs, (int)shape[0]);
    }

    static void SetMetadata(ModelProto model, string key, string value)
    {
        var existing = model.MetadataProps.FirstOrDefault(p => p.Key == key);
        if (existing is not null) existing.Value = value;
        else model.MetadataProps.Add(new StringStringEntryProto { Key = key, Value = value });
    }

    static CalibrationSet MakeImages(OnnxModel model, GraphModule fp, PipelineOptions options, InputStandardization standardization,
        IPipelineReporter reporter, CancellationToken cancellationToken, SyntheticImages? sharedWarmUp = null)
    {
        var timings = new List<StageTiming>();
        var losses = new List<StageLosses>();
        var clock = StageClock.Start();
        Tensor images;
        string? warning = null;
        bool usedStatistics = false;
        InputPrior? prior = null;
        var device = options.Device ?? CPU;
        switch (options.Method)
        {
            case CalibrationMethod.Gaussian:
            {
                using var stage = reporter.Stage("generating noise images", 1);
                images = SyntheticData.GaussianNoise(fp, options.ResolvedSamples, options.Seed);
                stage.Report(1);
                timings.Add(clock.Finish("gaussian noise"));
                break;
            }
            case CalibrationMethod.Real:
            {
                var given = options.CalibrationImages
                    ?? throw new SadgException(SadgErrorCode.CalibrationDataInvalid, $"{QuantizeSchema.Method.Label} real needs calibration images ({QuantizeSchema.CalibrationData.Label}).");
                using var scope = NewDisposeScope();
                var x = given.narrow(0, 0, options.ResolvedSamples).to(ScalarType.Float32).to(device);
                images = standardization.Standardize(x).detach().MoveToOuterDisposeScope();
                timings.Add(clock.Finish("real images"));
                break;
            }
            default:
            {
                prior = ResolvePrior(model, fp, options, standardization, reporter);
                var generation = GenerationFor(options, prior);
                if (sharedWarmUp is not null && (sharedWarmUp.Refined || sharedWarmUp.Batches.Sum(b => b.Images.shape[0]) != generation.Images))
                    throw new ArgumentException($"The shared warm-up must be an unrefined Genie-D warm-up of {generation.Images} images.", nameof(sharedWarmUp));
                var recorder = new GenerationRecorder(reporter);
                using var warm = sharedWarmUp?.Copy() ?? SyntheticData.WarmUp(fp, generation, recorder, cancellationToken);
                if (sharedWarmUp is null)
                {
                    recorder.Finish(losses);
                    timings.Add(clock.Finish("warm-up (Genie-D)"));
                }
                warning = warm.Warning;
                usedStatistics = warm.UsedBatchNormStatistics;
                if (options.Method == CalibrationMethod.Sadag)
                {
                    clock.Restart();
                    var q0Recorder = new ReconstructionRecorder(reporter, "reconstructing the warm-up model Q0");
                    QuantizedGraph q0;
                    var q0Options = options.Quantization() with { Iterations = options.ResolvedWarmUpReconstructionSteps };
                    using (var warmImages = warm.Images())
                        q0 = ModelQuantizer.Calibrate(model, warmImages, q0Options, device, q0Recorder, cancellationToken).Quantized;
                    using (q0)
                    {
                        q0Recorder.Finish(losses, "reconstruction (Q0)");
                        timings.Add(clock.Finish("reconstruction (Q0)"));
                        clock.Restart();
                        var refine = new GenerationRecorder(reporter);
                        SyntheticData.Refine(warm, fp, q0.Graph, generation, refine, cancellationToken);
                        refine.Finish(losses);
                        timings.Add(clock.Finish("refinement (SADAG)"));
                    }
                }
                images = warm.Images();
                break;
            }
        }
        try
        {
            cancellationToken.ThrowIfCancellationRequested();
            var labels = Top1(fp, images);
            // cpu() may hand back a new tensor object (even on the CPU), and detach() makes another: only the last is kept.
            Tensor cpuImages;
            using (var onCpu = images.cpu())
                cpuImages = onCpu.detach().DetachFromDisposeScope();
            images.Dispose();
            var set = new CalibrationSet(cpuImages, labels, warning, usedStatistics) { Prior = prior };
            set.Timings.AddRange(timings);
            set.Losses.AddRange(losses);
            return set;
        }
        catch
        {
            images.Dispose();
            throw;
        }
    }

    /// <summary>
    /// The generation's input prior (<see cref="InputPriorMode"/>): off; fixed standardized; or, by default, what the
    /// user or the model's metadata states, else a fit to the model's first BatchNormalization node, else standardized
    /// (a BN-free model gives nothing to infer it from).
    /// </summary>
    /// <remarks>
    /// When nothing states the input's range and no BatchNormalization lets Sadg infer it, the prior is assumed
    /// standardized and <paramref name="reporter"/> gets warning SADG2002.
    /// </remarks>
    public static InputPrior? ResolvePrior(OnnxModel model, GraphModule fp, PipelineOptions options, InputStandardization standardization,
        IPipelineReporter? reporter = null)
    {
        var input = model.GetImageInput();
        switch (options.Ablation.HasFlag(MethodAblation.StandardizedPrior) ? InputPriorMode.Standardized : options.InputPrior)
        {
            case InputPriorMode.Off: return null;
            case InputPriorMode.Standardized: return InputPrior.Standardized(input.Channels, "assumed standardized: --input-prior standardized");
        }
        var known = standardization.Prior(input.Channels) ?? InputPrior.FitToFirstBatchNorm(fp, input.Channels, input.Height, input.Width, options.Seed);
        if (known is not null) return known;
        reporter?.Warning(new SadgWarning(SadgErrorCode.InputRangeAssumed,
            "Nothing states the model's input range and it has no BatchNormalization to infer it from, so the generated " +
            $"images assume a standardized input (mean 0, std 1 per channel). State it: {QuantizeSchema.InputRange.Label}, or " +
            $"{QuantizeSchema.InputMean.Label} and {QuantizeSchema.InputStd.Label}."));
        return InputPrior.Standardized(input.Channels,
            "assumed standardized: the model has no BatchNormalization to infer it from; state --input-range or --input-mean/--input-std");
    }

    internal static GenerationOptions GenerationFor(PipelineOptions options, InputPrior? prior = null)
    {
        var g = options.Generation(prior);
        if (g.Images < 2)
            throw new SadgException(SadgErrorCode.InvalidOptionValue,
                $"{QuantizeSchema.Samples.Label} is {g.Images}: generation needs at least 2 images (the generator uses batch statistics).");
        if (g.BatchSize > g.Images) g = g with { BatchSize = g.Images };
        if (g.Images % g.BatchSize == 1)
        {
            // A last batch of one image has no batch statistics: spread the images evenly instead.
            int batches = g.Batches;
            g = g with { BatchSize = (g.Images + batches - 1) / batches };
        }
        return g;
    }

    /// <summary>The FP model's top-1 class of each image (batches of 128, no gradients).</summary>
    public static long[] Top1(GraphModule model, Tensor images)
    {
        using var noGrad = no_grad();
        var predictions = new List<long>();
        for (long start = 0; start < images.shape[0]; start += 128)
        {
            using var scope = NewDisposeScope();
            long count = Math.Min(128, images.shape[0] - start);
            predictions.AddRange(model.forward(images.narrow(0, start, count).to(model.Device)).flatten(1).argmax(1).cpu().data<long>().ToArray());
        }
        return predictions.ToArray();
    }

    /// <summary>Encodes the images as a PNG grid labelled with <paramref name="labels"/> (via a temporary file).</summary>
    public static byte[] GridPng(Tensor images, IReadOnlyList<long> labels)
    {
        string tmp = Path.Combine(Path.GetTempPath(), $"sadg-grid-{Environment.ProcessId}-{Guid.NewGuid():N}.png");
        try
        {
            ImageGrid.Save(images, labels, tmp);
            return File.ReadAllBytes(tmp);
        }
        finally
        {
            try { File.Delete(tmp); } catch (IOException) { }
        }
    }

    /// <summary>Bytes of a float array (little-endian on every platform .NET runs on here), for hashing.</summary>
    public static ReadOnlySpan<byte> Bytes(float[] values) => MemoryMarshal.AsBytes(values.AsSpan());

    /// <summary>Turns generation progress into stages (warm-up, refinement) with a total, and keeps the first and last losses.</summary>
    sealed class GenerationRecorder(IPipelineReporter reporter, string? name = null) : IProgress<GenerationProgress>
    {
        IPipelineStage? stage;
        GenerationStage kind;
        IReadOnlyDictionary<string, double>? first, last;

        public void Report(GenerationProgress value)
        {
            if (value.Warning is not null) reporter.Warning(value.Warning);
            if (stage is null)
            {
                kind = value.Stage;
                string title = name ?? (value.Stage == GenerationStage.Refinement ? "refining images (SADAG)" : "generating images (Genie-D warm-up)");
                stage = reporter.Stage(title, (long)Math.Max(1, value.Batches) * Math.Max(1, value.Steps));
            }
            if (value.Step > 0 && value.Losses.Count > 0)
            {
                var copy = new SortedDictionary<string, double>(value.Losses.ToDictionary(k => k.Key, k => k.Value), StringComparer.Ordinal);
                first ??= copy;
                last = copy;
            }
            stage.Report((long)value.Batch * Math.Max(1, value.Steps) + value.Step);
        }

        public void Finish(List<StageLosses> losses)
        {
            stage?.Dispose();
            if (first is not null && last is not null)
                losses.Add(new StageLosses(kind == GenerationStage.Refinement ? "refinement (SADAG)" : "warm-up (Genie-D)", first, last));
        }
    }

    /// <summary>Turns reconstruction progress into one stage over all blocks' steps, and keeps the first and last losses.</summary>
    sealed class ReconstructionRecorder(IPipelineReporter reporter, string name) : IProgress<ReconstructionProgress>
    {
        IPipelineStage? stage;
        IReadOnlyDictionary<string, double>? first, last;

        public void Report(ReconstructionProgress value)
        {
            stage ??= reporter.Stage(name, (long)value.Blocks * Math.Max(1, value.Steps));
            if (value.Steps > 0)
            {
                var losses = new SortedDictionary<string, double>(StringComparer.Ordinal)
                {
                    ["block"] = value.Block,
                    ["reconstruction"] = value.ReconstructionLoss,
                    ["rounding"] = value.RoundingLoss,
                };
                first ??= losses;
                last = losses;
            }
            stage.Report((long)(value.Block - 1) * Math.Max(1, value.Steps) + Math.Max(1, value.Step));
        }

        public void Finish(List<StageLosses> losses, string stageName = "reconstruction")
        {
            stage?.Dispose();
            if (first is not null && last is not null) losses.Add(new StageLosses(stageName, first, last));
        }
    }
}
