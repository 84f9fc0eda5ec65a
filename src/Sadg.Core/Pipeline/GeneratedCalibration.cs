using Sadg.Generation;
using Sadg.Graph;
using Sadg.Onnx;
using Sadg.Quantization;
using Sadg.Reconstruction;
using static TorchSharp.torch;

namespace Sadg.Pipeline;

/// <summary>
/// Images generated from the model (DESIGN §2): the Genie-D warm-up, and for SADAG the warm-up model Q₀
/// reconstructed on them and the sharpness-aware refinement against Q₀. A shared warm-up (made once by
/// <see cref="QuantizationPipeline.WarmUp"/>) is copied instead of generated again.
/// </summary>
internal sealed class GeneratedCalibration(SyntheticImages? sharedWarmUp) : CalibrationSource
{
    /// <summary>
    /// SADAG's refinement of <paramref name="warm"/> against Q₀, which is frozen first (<see cref="QuantizedGraph.Freeze"/>):
    /// from here on it is only run. The pipeline and the run estimate both refine through this.
    /// </summary>
    internal static void Refine(SyntheticImages warm, GraphModule fp, QuantizedGraph q0, GenerationOptions generation,
        IProgress<GenerationProgress>? progress, CancellationToken cancellationToken)
    {
        q0.Freeze();
        SyntheticData.Refine(warm, fp, q0.Graph, generation, progress, cancellationToken);
    }

    protected override Tensor MakeImages(CalibrationContext context, CalibrationRecord record)
    {
        var (model, fp, options) = (context.Model, context.Fp, context.Options);
        var clock = StageClock.Start();
        record.Prior = ResolvePrior(model, fp, options, context.Standardization, context.Reporter);
        var generation = GenerationFor(options, record.Prior);
        if (sharedWarmUp is not null && (sharedWarmUp.Refined || sharedWarmUp.Batches.Sum(b => b.Images.shape[0]) != generation.Images))
            throw new ArgumentException($"The shared warm-up must be an unrefined Genie-D warm-up of {generation.Images} images.", nameof(sharedWarmUp));
        var recorder = new GenerationRecorder(context.Reporter);
        using var warm = sharedWarmUp?.Copy() ?? SyntheticData.WarmUp(fp, generation, recorder, context.Cancellation);
        if (sharedWarmUp is null)
        {
            recorder.Finish(record.Losses);
            record.Timings.Add(clock.Finish("warm-up (Genie-D)"));
        }
        record.Warning = warm.Warning;
        record.UsedBatchNormStatistics = warm.UsedBatchNormStatistics;
        if (options.Method == CalibrationMethod.Sadag)
        {
            clock.Restart();
            var q0Recorder = new ReconstructionRecorder(context.Reporter, "reconstructing the warm-up model Q0");
            var q0Tuning = new TuningRecorder(context.Reporter, "tuning the warm-up model's scales on its output");
            var q0Options = options.Quantization() with { Iterations = options.ResolvedWarmUpReconstructionSteps };
            CalibratedModel q0;
            using (var warmImages = warm.Images())
                q0 = ModelCalibration.Calibrate(model, warmImages, q0Options, context.Device, q0Recorder, context.Cancellation, q0Tuning);
            using (q0)
            {
                q0Recorder.Finish(record.Losses, "reconstruction (Q0)");
                q0Tuning.Finish(record.Losses, "output tuning (Q0)");
                record.Timings.Add(clock.Finish("reconstruction (Q0)"));
                clock.Restart();
                var refine = new GenerationRecorder(context.Reporter);
                Refine(warm, fp, q0.Quantized, generation, refine, context.Cancellation);
                refine.Finish(record.Losses);
                record.Timings.Add(clock.Finish("refinement (SADAG)"));
            }
        }
        return warm.Images();
    }

    /// <summary>
    /// Runs the Genie-D warm-up alone (shared by several runs, or for held-out validation images); the generator's
    /// seed is <paramref name="generationSeed"/> when given (the input prior is the run's, fitted with its seed).
    /// </summary>
    public static SyntheticImages WarmUp(OnnxModel model, GraphModule fp, PipelineOptions options, InputStandardization standardization,
        IPipelineReporter reporter, string? stageName, CancellationToken cancellationToken, int? generationSeed = null)
    {
        // Held-out images (another seed) share the run's prior; the run has already warned about it.
        var prior = ResolvePrior(model, fp, options, standardization, generationSeed is null ? reporter : null);
        var recorder = new GenerationRecorder(reporter, stageName);
        var generation = GenerationFor(generationSeed is { } seed ? options with { Seed = seed } : options, prior);
        var warm = SyntheticData.WarmUp(fp, generation, recorder, cancellationToken);
        recorder.Finish([]);
        return warm;
    }

    /// <summary>
    /// The generation's input prior, chosen in <see cref="InputPriorChoice"/>'s order; a BatchNorm prior is fitted here
    /// with the run's seed.
    /// </summary>
    /// <remarks>
    /// A prior read from the graph's input normalization is said to <paramref name="reporter"/>; when nothing states the
    /// input's range and nothing lets Sadg infer it, the prior is assumed standardized and <paramref name="reporter"/>
    /// gets warning SADG2002.
    /// </remarks>
    internal static InputPrior? ResolvePrior(OnnxModel model, GraphModule fp, PipelineOptions options, InputStandardization standardization,
        IPipelineReporter? reporter)
    {
        var input = model.GetChannelsFirstImageInput();
        var mode = options.Ablation.HasFlag(MethodAblation.StandardizedPrior) ? InputPriorMode.Standardized : options.InputPrior;
        var (origin, prior) = InputPriorChoice.Choose(fp, mode, standardization, input);
        switch (origin)
        {
            case InputPriorOrigin.FirstBatchNorm:
                return InputPrior.FitToFirstBatchNorm(fp, input.Channels, input.Height, input.Width, options.Seed);
            case InputPriorOrigin.InputNormalization:
                // One of two conventions, read from the graph: said, so that a user who feeds the model otherwise sees it.
                reporter?.Info($"Input prior {prior!.Source}; if the model is fed otherwise, state it with {QuantizeSchema.InputRange.Label}.");
                break;
            case InputPriorOrigin.Assumed:
                reporter?.Warning(new SadgWarning(SadgErrorCode.InputRangeAssumed,
                    "Nothing states the model's input range and it has neither BatchNormalization nor an input normalization to infer it from, so the generated " +
                    $"images assume a standardized input (mean 0, std 1 per channel). State it: {QuantizeSchema.InputRange.Label}, or " +
                    $"{QuantizeSchema.InputMean.Label} and {QuantizeSchema.InputStd.Label}."));
                break;
        }
        return prior;
    }

    /// <summary>The generation options of a run, with batches evened out so that no batch holds a single image.</summary>
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
}
