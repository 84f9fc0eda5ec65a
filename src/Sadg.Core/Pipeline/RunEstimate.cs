using System.Diagnostics;
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
/// Measured cost of one step of each of the pipeline's loops on one model and machine (<see cref="ProfileCost.Measure"/>),
/// what <see cref="ProfileCost.Estimate"/> multiplies by the steps a run makes.
/// </summary>
public sealed record StepTimes
{
    /// <summary>Images per generation step when <see cref="GenieStepSeconds"/> and <see cref="RefinementStepSeconds"/> were measured.</summary>
    public required int GenerationBatch { get; init; }

    /// <summary>One Genie-D warm-up step of a batch of <see cref="GenerationBatch"/> images.</summary>
    public required double GenieStepSeconds { get; init; }

    /// <summary>One SADAG refinement step of a batch of <see cref="GenerationBatch"/> images.</summary>
    public required double RefinementStepSeconds { get; init; }

    /// <summary>One reconstruction step (a batch of 32) of each block, in block order.</summary>
    public required IReadOnlyList<double> BlockStepSeconds { get; init; }

    /// <summary>
    /// A calibration pass without its reconstruction steps (BN folding, the quantized graph, activation calibration, each
    /// block's outputs), per image of the activation calibration (at most
    /// <see cref="Quantization.QuantizationOptions.ActivationCalibrationSamples"/> images, which its scale search is linear in).
    /// </summary>
    public required double CalibrationSecondsPerImage { get; init; }

    /// <summary>
    /// One forward pass of the FP model without gradients, per image; the layer sensitivity pass makes one per quantized
    /// layer and one for the reference over at most <see cref="SensitivityAnalysis.MaxImages"/> images. 0 when not measured.
    /// </summary>
    public double ForwardSecondsPerImage { get; init; }

    /// <summary>The quantized layers (the sensitivity pass measures each once).</summary>
    public int QuantizedLayers { get; init; }

    /// <summary>The ONNX Runtime check (FP and quantized model, session creation included) per calibration image; 0 when not measured.</summary>
    public double RuntimeSecondsPerImage { get; init; }

    /// <summary>How long the measurement itself took.</summary>
    public double MeasurementSeconds { get; init; }

    /// <summary>One reconstruction step of every block, one after the other.</summary>
    public double ReconstructionStepSeconds => BlockStepSeconds.Sum();
}

/// <summary>
/// One stage of a run: <see cref="Steps"/> steps per batch or per block, <see cref="Repeats"/> batches or blocks
/// (1 for a stage without steps), and the estimated seconds.
/// </summary>
public sealed record StageEstimate(string Stage, int Steps, int Repeats, double Seconds);

/// <summary>The estimated wall time of a run with one profile and method, stage by stage (the report's stage names).</summary>
public sealed record RunEstimate(StepProfile Profile, CalibrationMethod Method, IReadOnlyList<StageEstimate> Stages)
{
    /// <summary>The sum of the stages.</summary>
    public double TotalSeconds => Stages.Sum(s => s.Seconds);
}

/// <summary>
/// What a run costs: the steps each profile and method makes (taken from <see cref="PipelineOptions"/> and
/// <see cref="GenerationOptions"/>, the numbers the pipeline runs with) times the measured cost of one step.
/// </summary>
public static class ProfileCost
{
    /// <summary>The methods an estimate covers: those that need no data of the user's.</summary>
    public static IReadOnlyList<CalibrationMethod> Methods { get; } = [CalibrationMethod.Gaussian, CalibrationMethod.Genie, CalibrationMethod.Sadag];

    /// <summary>
    /// The estimated stages of a run with <paramref name="options"/>:
    /// warm-up (Genie-D and SADAG) = warm-up steps × images ÷ measured batch × Genie-D step;
    /// reconstruction (Q₀) (SADAG) = Q₀ steps × Σ blocks' step + calibration pass (per image × min(images, activation
    /// calibration images));
    /// refinement (SADAG) = refinement steps × images ÷ measured batch × refinement step;
    /// reconstruction = steps × Σ blocks' step + calibration pass + output tuning steps × Σ blocks' step (Q₀'s too);
    /// layer sensitivity (when <see cref="PipelineOptions.MeasureSensitivity"/>) = with m = min(images,
    /// <see cref="SensitivityAnalysis.MaxImages"/>), m × calibration pass per image (each layer's quantizers calibrate)
    /// + (quantized layers + 1) × m × forward time per image;
    /// ONNX Runtime check = images × measured time per image (0 when not measured).
    /// A generation step's cost is taken as proportional to its batch.
    /// </summary>
    public static RunEstimate Estimate(PipelineOptions options, StepTimes times)
    {
        if (options.Method == CalibrationMethod.Real)
            throw new ArgumentException("The estimate covers generated and noise calibration only.", nameof(options));
        int samples = options.ResolvedSamples;
        int blocks = times.BlockStepSeconds.Count;
        var stages = new List<StageEstimate>();
        double calibration = Math.Min(samples, options.Quantization().ActivationCalibrationSamples) * times.CalibrationSecondsPerImage;
        // The output tuning after each reconstruction: a step runs the whole model forward and back, about one step of every block.
        double tuning = options.ResolvedOutputTuningSteps * times.ReconstructionStepSeconds;
        StageEstimate Reconstruction(string stage, int steps) =>
            new(stage, steps, blocks, steps * times.ReconstructionStepSeconds + calibration + tuning);

        if (options.Method == CalibrationMethod.Gaussian)
            stages.Add(new StageEstimate("gaussian noise", 0, 1, 0));
        else
        {
            var generation = GeneratedCalibration.GenerationFor(options);
            double batches = generation.Images / (double)times.GenerationBatch;
            stages.Add(new StageEstimate("warm-up (Genie-D)", generation.WarmupSteps, generation.Batches,
                generation.WarmupSteps * batches * times.GenieStepSeconds));
            if (options.Method == CalibrationMethod.Sadag)
            {
                stages.Add(Reconstruction("reconstruction (Q0)", options.ResolvedWarmUpReconstructionSteps));
                stages.Add(new StageEstimate("refinement (SADAG)", generation.RefinementSteps, generation.Batches,
                    generation.RefinementSteps * batches * times.RefinementStepSeconds));
            }
        }
        stages.Add(Reconstruction("reconstruction", options.ResolvedReconstructionSteps));
        if (options.MeasureSensitivity)
        {
            // Each layer's quantizers calibrate as the calibration pass does, then one forward pass per layer and the reference.
            int images = Math.Min(samples, SensitivityAnalysis.MaxImages);
            stages.Add(new StageEstimate("layer sensitivity", 0, times.QuantizedLayers + 1,
                images * times.CalibrationSecondsPerImage + (times.QuantizedLayers + 1) * images * times.ForwardSecondsPerImage));
        }
        stages.Add(new StageEstimate("ONNX Runtime check", 0, 1, samples * times.RuntimeSecondsPerImage));
        return new RunEstimate(options.Profile, options.Method, stages);
    }

    /// <summary>
    /// <see cref="Estimate"/> for every <see cref="StepProfile"/> and every method of <see cref="Methods"/>, profile by
    /// profile, with <paramref name="options"/>' other settings (the defaults when null).
    /// </summary>
    public static IReadOnlyList<RunEstimate> EveryProfile(StepTimes times, PipelineOptions? options = null)
    {
        options ??= new PipelineOptions();
        return [.. Enum.GetValues<StepProfile>().SelectMany(profile => Methods.Select(method =>
            Estimate(options with { Profile = profile, Method = method }, times)))];
    }

    /// <summary>
    /// Times each loop on <paramref name="model"/> as <paramref name="options"/> would run it (device, bits, input,
    /// seed; the quick profile's generation batch and generator): a Genie-D warm-up of one batch, every block's
    /// reconstruction on its images (the rest of that pass, timed whole, is the calibration pass), SADAG's refinement
    /// against the result, and, when <paramref name="runtime"/> is given, the ONNX Runtime check on that batch. Each loop
    /// runs <paramref name="warmup"/> untimed steps, then <paramref name="timed"/> steps whose median is kept.
    /// </summary>
    public static StepTimes Measure(OnnxModel model, PipelineOptions options, RuntimeOutputs? runtime = null, int warmup = 4, int timed = 3,
        CancellationToken cancellationToken = default)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(warmup, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(timed, 1);
        var total = Stopwatch.StartNew();
        manual_seed(options.Seed);
        byte[] modelBytes = model.Proto.ToByteArray();
        var source = model;
        runtime = RuntimeValidation.AsDeclared(runtime, source);
        (model, var standardization) = QuantizationPipeline.Prepare(source, options);
        var device = options.Device ?? CPU;
        int steps = warmup + timed;
        // The first step has no report before it: warmup − 1 intervals are skipped.
        int skip = warmup - 1;
        using var fp = new GraphModule(model, device);
        Preflight.Check(model, fp, options);
        var prior = GeneratedCalibration.ResolvePrior(model, fp, options, standardization, null);
        var quick = GeneratedCalibration.GenerationFor(options with { Profile = StepProfile.Quick, Samples = null, GenerationSteps = null }, prior);
        var generation = quick with { Images = quick.BatchSize, WarmupSteps = steps, RefinementSteps = steps };

        var genie = new StepTicks<GenerationProgress>();
        using var warm = SyntheticData.WarmUp(fp, generation, genie, cancellationToken);
        using var images = warm.Images();
        int count = (int)images.shape[0];

        var reconstruction = new StepTicks<ReconstructionProgress>();
        var clock = Stopwatch.StartNew();
        using var calibrated = ModelCalibration.Calibrate(model, images, options.Quantization() with { Iterations = steps, OutputTuningSteps = 0 }, device, reconstruction,
            cancellationToken);
        double pass = clock.Elapsed.TotalSeconds;
        int blocks = calibrated.Blocks.Count;
        var blockSteps = Enumerable.Range(1, blocks).Select(b => reconstruction.Median(skip, p => p.Block == b).Seconds).ToArray();
        double calibration = Math.Max(0, pass - steps * blockSteps.Sum());

        var refinement = new StepTicks<GenerationProgress>();
        GeneratedCalibration.Refine(warm, fp, calibrated.Quantized, generation, refinement, cancellationToken);

        double forwardSeconds;
        using (no_grad())
        {
            fp.forward(images); // untimed: the first pass allocates
            clock.Restart();
            fp.forward(images);
            forwardSeconds = clock.Elapsed.TotalSeconds;
        }

        double runtimeSeconds = 0;
        if (runtime is not null)
        {
            var outcome = ModelQuantizer.Write(calibrated);
            outcome.Spec.Dispose();
            if (!ReferenceEquals(model, source)) InputShapes.RestoreInput(outcome.QdqModel, source);
            byte[] quantized = outcome.QdqModel.ToByteArray();
            float[] pixels;
            using (var onCpu = images.cpu().contiguous()) pixels = onCpu.data<float>().ToArray();
            clock.Restart();
            runtime(modelBytes, pixels, images.shape, cancellationToken);
            runtime(quantized, pixels, images.shape, cancellationToken);
            runtimeSeconds = clock.Elapsed.TotalSeconds;
        }

        return new StepTimes
        {
            GenerationBatch = count,
            GenieStepSeconds = genie.Median(skip, _ => true).Seconds,
            RefinementStepSeconds = refinement.Median(skip, _ => true).Seconds,
            BlockStepSeconds = blockSteps,
            CalibrationSecondsPerImage = calibration / count,
            RuntimeSecondsPerImage = runtimeSeconds / count,
            ForwardSecondsPerImage = forwardSeconds / count,
            QuantizedLayers = calibrated.Quantized.QuantizedNodes.Count,
            MeasurementSeconds = total.Elapsed.TotalSeconds,
        };
    }
}
