using System.Diagnostics;
using System.Globalization;
using System.Security.Cryptography;
using Google.Protobuf;
using Sadg.Export;
using Sadg.Generation;
using Sadg.Graph;
using Sadg.Onnx;
using Sadg.Quantization;
using Sadg.Reconstruction;
using static TorchSharp.torch;

namespace Sadg.Pipeline;

/// <summary>
/// The whole of DESIGN §2 after loading: FP graph (BN kept, for generation) → calibration images (Gaussian noise,
/// Genie-D, SADAG = Genie-D → Q₀ → refinement, or real images) → BN folding, block reconstruction and the QDQ
/// writer → the ONNX Runtime check → metadata. Deterministic: the same model, options and seed give the same bytes
/// (timings go only into the report). No console: progress goes through <see cref="IPipelineReporter"/>.
/// </summary>
public static class QuantizationPipeline
{
    /// <summary>
    /// The model a run works on (<see cref="ComputedWeights.ForPipeline"/>) and the standardization its input is fed with
    /// (<see cref="InputStandardization.Resolve"/> on the model as its file declares it), both from
    /// <paramref name="source"/> sized once by <see cref="PipelineOptions.InputShape"/>.
    /// </summary>
    internal static (OnnxModel Model, InputStandardization Standardization) Prepare(OnnxModel source, PipelineOptions options)
    {
        var sized = InputShapes.Apply(source, options.InputShape);
        return (ComputedWeights.ForPipeline(sized, null), InputStandardization.Resolve(sized, options.Input));
    }

    /// <summary>
    /// SADG2003: the agreement would be measured on held-out synthetic images of a model without BatchNorm statistics,
    /// which do not rank calibrations by their accuracy on real images.
    /// </summary>
    static SadgWarning SyntheticValidationWarning() => new(SadgErrorCode.SyntheticValidation,
        "The agreement with the FP32 model will be measured on held-out synthetic images, but the model has no BatchNormalization " +
        "statistics to generate them from, and on such models the agreement on synthetic images does not follow the accuracy on real " +
        "images (a BN-folded MobileNetV3-style model calibrated to 64.3 % top-1 agreed more, 91.8 %, than one calibrated to 83.5 %, " +
        "89.8 %; docs/benchmarks/bn-free.md), so the measurement cannot tell a good result from a poor one. Give " +
        $"{QuantizeSchema.ValidationData.Label} with real images (labels are not needed).");

    /// <summary>Makes the calibration images only (<c>sadg generate</c>; real images are refused).</summary>
    public static CalibrationSet Generate(OnnxModel model, PipelineOptions options, IPipelineReporter? reporter = null,
        CancellationToken cancellationToken = default)
    {
        if (options.Method == CalibrationMethod.Real)
            throw new SadgException(SadgErrorCode.InvalidOptionValue, $"Generation makes its own images; {QuantizeSchema.Method.Label} real has nothing to generate.");
        reporter ??= NullPipelineReporter.Instance;
        Seed(options.Seed);
        var device = options.Device ?? CPU;
        (model, var standardization) = Prepare(model, options);
        using var fp = new GraphModule(model, device);
        Preflight.Check(model, fp, options);
        return CalibrationSource.For(options.Method).Make(new CalibrationContext(model, fp, options, standardization, reporter, cancellationToken));
    }

    /// <summary>
    /// The sensitivity of each layer <see cref="Quantize"/> would quantize with these options
    /// (<see cref="SensitivityAnalysis"/>), measured on images made as <see cref="Generate"/> makes them (so not with
    /// real images): no model is quantized or written.
    /// </summary>
    public static SensitivityMeasurement Sensitivity(OnnxModel model, PipelineOptions options, IPipelineReporter? reporter = null,
        CancellationToken cancellationToken = default)
    {
        using var images = Generate(model, options, reporter, cancellationToken);
        var folded = BatchNormFolding.Fold(ComputedWeights.ForPipeline(model, options.InputShape));
        var layers = SensitivityAnalysis.Measure(folded, images.Images, options.Quantization(), options.Device, cancellationToken);
        return new SensitivityMeasurement(layers, (int)Math.Min(images.Images.shape[0], SensitivityAnalysis.MaxImages));
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
        (model, var standardization) = Prepare(model, options);
        using var fp = new GraphModule(model, options.Device ?? CPU);
        Preflight.Check(model, fp, options);
        return GeneratedCalibration.WarmUp(model, fp, options, standardization, reporter, null, cancellationToken);
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
        var warnings = new WarningRecorder(reporter ?? NullPipelineReporter.Instance);
        reporter = warnings;
        var total = Stopwatch.StartNew();
        Seed(options.Seed);
        modelBytes ??= model.Proto.ToByteArray();
        var source = model;
        (model, var standardization) = Prepare(source, options);
        var device = options.Device ?? CPU;

        CalibrationSet images;
        OutputKind kind;
        using (var fp = new GraphModule(model, device))
        {
            kind = Preflight.Check(model, fp, options);
            if (options.Validate && options.ValidationImages is null && !BnStatisticsLoss.HasStatistics(fp))
                reporter.Warning(SyntheticValidationWarning());
            images = CalibrationSource.For(options.Method, warmUp).Make(new CalibrationContext(model, fp, options, standardization, reporter, cancellationToken));
        }
        try
        {
            var timings = images.Timings;
            var losses = images.Losses;
            cancellationToken.ThrowIfCancellationRequested();
            var clock = StageClock.Start();
            var quantization = options.Quantization();
            SizeBudgetResult? budget = null;
            IReadOnlyList<LayerSensitivity> measured = [];
            if (options.SizeBudget is not null)
            {
                using (var stage = new LazyStage(reporter, "searching the size budget (layer sensitivities)"))
                    (quantization, budget, measured) = SizeBudgetSearch.Run(model, images.Images, options, device, cancellationToken, (done, total) => stage.Report(done, total));
                timings.Add(clock.Finish("size budget search"));
                clock.Restart();
            }
            QuantizationOutcome outcome;
            var recorder = new ReconstructionRecorder(reporter, "reconstructing");
            var tuning = new TuningRecorder(reporter, "tuning the scales on the output");
            using (var calibrated = ModelCalibration.Calibrate(model, images.Images, quantization, device, recorder, cancellationToken, tuning))
                outcome = ModelQuantizer.Write(calibrated);
            outcome.Spec.Dispose(); // written into the QDQ model; its tensors are not needed any more
            recorder.Finish(losses);
            tuning.Finish(losses, "output tuning");
            timings.Add(clock.Finish("reconstruction"));
            IReadOnlyList<LayerSensitivity> sensitivity = [];
            if (options.MeasureSensitivity)
            {
                clock.Restart();
                using (var stage = new LazyStage(reporter, "measuring layer sensitivity"))
                    sensitivity = SensitivityAnalysis.Measure(outcome.FoldedModel, images.Images, quantization, device, cancellationToken, known: measured, (done, total) => stage.Report(done, total));
                timings.Add(clock.Finish("layer sensitivity"));
            }

            var qdq = outcome.QdqModel;
            if (!ReferenceEquals(model, source)) InputShapes.RestoreInput(qdq, source);
            SadgMetadata.Set(qdq, SadgMetadata.ToolVersion, options.ToolVersion);
            SadgMetadata.Set(qdq, SadgMetadata.Method, PipelineOptions.MethodName(options.Method));
            SadgMetadata.Set(qdq, SadgMetadata.Profile, QuantizeSchema.Name(options.Profile));
            SadgMetadata.Set(qdq, SadgMetadata.Seed, options.Seed.ToString(CultureInfo.InvariantCulture));
            SadgMetadata.Set(qdq, SadgMetadata.OptionsHash, options.OptionsHash());
            SadgMetadata.Set(qdq, SadgMetadata.CalibrationImages, images.Images.shape[0].ToString(CultureInfo.InvariantCulture));

            RuntimeCheck? check = null;
            // The quantized model as ONNX Runtime runs it; the metadata added below does not change its outputs.
            byte[]? quantizedBytes = options.Runtime is null ? null : qdq.ToByteArray();
            // Both files are fed as the source declares its input (channels-last stays channels-last).
            var declaredRuntime = RuntimeValidation.AsDeclared(options.Runtime, source);
            if (declaredRuntime is { } runtime)
            {
                clock.Restart();
                check = RuntimeValidation.RunAndCompare(runtime, "checking with ONNX Runtime", modelBytes, quantizedBytes!, images.ImageData(), images.Images.shape,
                    kind, reporter, cancellationToken);
                if (check.Top1Agreement is { } agreement)
                    SadgMetadata.Set(qdq, SadgMetadata.Top1Agreement, agreement.ToString("0.0000", CultureInfo.InvariantCulture));
                else
                {
                    SadgMetadata.Set(qdq, SadgMetadata.OutputCosine, check.CosineSimilarity!.Value.ToString("0.0000", CultureInfo.InvariantCulture));
                    SadgMetadata.Set(qdq, SadgMetadata.OutputSqnr, check.SqnrDb!.Value.ToString("0.00", CultureInfo.InvariantCulture));
                }
                timings.Add(clock.Finish("ONNX Runtime check"));
            }
            RuntimeCheck? validation = null;
            string? validationData = null;
            if (options.Validate)
            {
                var validationRuntime = declaredRuntime
                    ?? throw new ArgumentException("Validation runs the models with ONNX Runtime: set PipelineOptions.Runtime.", nameof(options));
                clock.Restart();
                (validation, validationData) = RuntimeValidation.Validate(model, quantizedBytes!, modelBytes, options, kind, standardization, validationRuntime, reporter, cancellationToken);
                if (validation.Top1Agreement is { } agreement)
                    SadgMetadata.Set(qdq, SadgMetadata.ValidationAgreement, agreement.ToString("0.0000", CultureInfo.InvariantCulture));
                else
                    SadgMetadata.Set(qdq, SadgMetadata.ValidationCosine, validation.CosineSimilarity!.Value.ToString("0.0000", CultureInfo.InvariantCulture));
                SadgMetadata.Set(qdq, SadgMetadata.ValidationData, validationData);
                SadgMetadata.Set(qdq, SadgMetadata.ValidationImages, validation.Images.ToString(CultureInfo.InvariantCulture));
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
                Warnings = warnings.Warnings.Select(ReportedWarning.From).ToList(),
                Timings = timings,
                TotalSeconds = total.Elapsed.TotalSeconds,
                Losses = losses,
                FoldedBatchNorms = outcome.FoldedBatchNorms,
                Layers = outcome.Layers,
                FloatLayers = outcome.FloatLayers,
                Sensitivity = sensitivity,
                SizeBudget = budget,
                SensitivityImages = sensitivity.Count == 0 ? 0 : (int)Math.Min(images.Images.shape[0], SensitivityAnalysis.MaxImages),
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
}

/// <summary>The sensitivity of each quantized layer (execution order) and the number of images it was measured on.</summary>
public sealed record SensitivityMeasurement(IReadOnlyList<LayerSensitivity> Layers, int Images);
