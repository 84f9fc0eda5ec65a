using Sadg.Generation;
using Sadg.Graph;
using Sadg.Onnx;
using static TorchSharp.torch;

namespace Sadg.Pipeline;

/// <summary>What a calibration source works with: the FP model (BN kept), the options, and where progress goes.</summary>
internal sealed record CalibrationContext(OnnxModel Model, GraphModule Fp, PipelineOptions Options, InputStandardization Standardization,
    IPipelineReporter Reporter, CancellationToken Cancellation)
{
    public Device Device => Options.Device ?? CPU;
}

/// <summary>What a source records about the images it made, for the report.</summary>
internal sealed class CalibrationRecord
{
    public List<StageTiming> Timings { get; } = [];

    public List<StageLosses> Losses { get; } = [];

    public string? Warning { get; set; }

    public bool UsedBatchNormStatistics { get; set; }

    public InputPrior? Prior { get; set; }
}

/// <summary>
/// Where calibration images come from, one class per <see cref="CalibrationMethod"/>: Gaussian noise
/// (<see cref="NoiseCalibration"/>), the user's images (<see cref="RealCalibration"/>), or images generated from the
/// model (<see cref="GeneratedCalibration"/>: Genie-D, and SADAG's Q₀ and refinement on top).
/// </summary>
internal abstract class CalibrationSource
{
    public static CalibrationSource For(CalibrationMethod method, SyntheticImages? sharedWarmUp = null) => method switch
    {
        CalibrationMethod.Gaussian => new NoiseCalibration(),
        CalibrationMethod.Real => new RealCalibration(),
        _ => new GeneratedCalibration(sharedWarmUp),
    };

    /// <summary>Makes the images [N, C, H, W] as the model is fed, on the context's device.</summary>
    protected abstract Tensor MakeImages(CalibrationContext context, CalibrationRecord record);

    /// <summary>The images on the CPU, labelled with the FP model's top-1 class, with what was recorded making them.</summary>
    public CalibrationSet Make(CalibrationContext context)
    {
        var record = new CalibrationRecord();
        var images = MakeImages(context, record);
        try
        {
            context.Cancellation.ThrowIfCancellationRequested();
            var labels = Top1(context.Fp, images);
            // cpu() may hand back a new tensor object (even on the CPU), and detach() makes another: only the last is kept.
            Tensor cpuImages;
            using (var onCpu = images.cpu())
                cpuImages = onCpu.detach().DetachFromDisposeScope();
            images.Dispose();
            var set = new CalibrationSet(cpuImages, labels, record.Warning, record.UsedBatchNormStatistics) { Prior = record.Prior };
            set.Timings.AddRange(record.Timings);
            set.Losses.AddRange(record.Losses);
            return set;
        }
        catch
        {
            images.Dispose();
            throw;
        }
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
}

/// <summary>Gaussian noise, calibrated by round-to-nearest statistics only: a baseline.</summary>
internal sealed class NoiseCalibration : CalibrationSource
{
    protected override Tensor MakeImages(CalibrationContext context, CalibrationRecord record)
    {
        var clock = StageClock.Start();
        using var stage = context.Reporter.Stage("generating noise images", 1);
        var images = SyntheticData.GaussianNoise(context.Fp, context.Options.ResolvedSamples, context.Options.Seed);
        stage.Report(1);
        record.Timings.Add(clock.Finish("gaussian noise"));
        return images;
    }
}

/// <summary>The user's images (pixels), standardized as the model is fed.</summary>
internal sealed class RealCalibration : CalibrationSource
{
    protected override Tensor MakeImages(CalibrationContext context, CalibrationRecord record)
    {
        var clock = StageClock.Start();
        var options = context.Options;
        var given = options.CalibrationImages
            ?? throw new SadgException(SadgErrorCode.CalibrationDataInvalid, $"{QuantizeSchema.Method.Label} real needs calibration images ({QuantizeSchema.CalibrationData.Label}).");
        using var scope = NewDisposeScope();
        var x = given.narrow(0, 0, options.ResolvedSamples).to(ScalarType.Float32).to(context.Device);
        var images = context.Standardization.Standardize(x).detach().MoveToOuterDisposeScope();
        record.Timings.Add(clock.Finish("real images"));
        return images;
    }
}
