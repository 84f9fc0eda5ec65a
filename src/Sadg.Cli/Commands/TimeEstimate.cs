using System.Globalization;
using Sadg.Cli.Output;
using Sadg.Onnx;
using Sadg.Pipeline;

namespace Sadg.Cli.Commands;

/// <summary>
/// <c>sadg inspect --estimate-time</c>: a few steps of each stage timed on the model (<see cref="ProfileCost.Measure"/>),
/// and the estimated wall time of <c>sadg quantize</c> for every profile and method (<see cref="ProfileCost.EveryProfile"/>).
/// </summary>
public sealed record TimeEstimate(StepTimes Steps, IReadOnlyList<RunEstimate> Runs, string Device, int Bits)
{
    /// <summary>The columns of the table: the stages of a run, as the quantization report names them.</summary>
    static readonly (string Stage, string Header)[] Columns =
    [
        ("warm-up (Genie-D)", "warm-up"), ("reconstruction (Q0)", "Q0 recon"), ("refinement (SADAG)", "refinement"),
        ("reconstruction", "reconstruction"), ("layer sensitivity", "sensitivity"), ("ONNX Runtime check", "check"),
    ];

    /// <summary>Measures on the model at <paramref name="path"/> with quantize's defaults (device auto) at
    /// <paramref name="bits"/> bits for weights and activations.</summary>
    public static TimeEstimate Measure(string path, int bits, CliConsole console, CancellationToken cancellationToken)
    {
        var device = DeviceChoice.ResolveTorch(DeviceKind.Auto, console);
        var options = new PipelineOptions { Device = device, WeightBits = bits, ActivationBits = bits };
        console.Log.Information("Timing a few steps of each stage on the model for the time estimate.");
        var steps = ProfileCost.Measure(OnnxModel.Load(path), options, Pipeline.OrtCheck.Outputs, cancellationToken: cancellationToken);
        return new TimeEstimate(steps, ProfileCost.EveryProfile(steps, options),
            device.type == TorchSharp.DeviceType.CUDA ? "cuda" : "cpu", bits);
    }

    /// <summary>One line per profile and method, stage by stage, after a line saying what was measured.</summary>
    public void WriteText(TextWriter w)
    {
        var s = Steps;
        w.WriteLine($"estimated time of sadg quantize on this machine (W{Bits}A{Bits}, {Device}; from steps timed in {Format(s.MeasurementSeconds)}: " +
            $"Genie-D {Format(s.GenieStepSeconds)} and SADAG {Format(s.RefinementStepSeconds)} per step of {s.GenerationBatch} images, " +
            $"reconstruction {Format(s.ReconstructionStepSeconds)} per step of all {s.BlockStepSeconds.Count} blocks):");
        w.WriteLine($"  {"profile",-8} {"method",-9}" + string.Concat(Columns.Select(c => $" {c.Header,14}")) + $" {"total",10}");
        foreach (var run in Runs)
        {
            w.Write($"  {QuantizeSchema.Name(run.Profile),-8} {PipelineOptions.MethodName(run.Method),-9}");
            foreach (var (stage, _) in Columns)
                w.Write($" {(run.Stages.FirstOrDefault(x => x.Stage == stage) is { } e ? Format(e.Seconds) : "-"),14}");
            w.WriteLine($" {Format(run.TotalSeconds),10}");
        }
    }

    /// <summary>The measured step times and the estimates, for <c>--json</c>.</summary>
    public object Json() => new
    {
        device = Device,
        bits = Bits,
        measurementSeconds = Steps.MeasurementSeconds,
        generationBatch = Steps.GenerationBatch,
        genieStepSeconds = Steps.GenieStepSeconds,
        refinementStepSeconds = Steps.RefinementStepSeconds,
        blockStepSeconds = Steps.BlockStepSeconds,
        calibrationSecondsPerImage = Steps.CalibrationSecondsPerImage,
        runtimeSecondsPerImage = Steps.RuntimeSecondsPerImage,
        forwardSecondsPerImage = Steps.ForwardSecondsPerImage,
        quantizedLayers = Steps.QuantizedLayers,
        runs = Runs.Select(r => new
        {
            profile = QuantizeSchema.Name(r.Profile),
            method = PipelineOptions.MethodName(r.Method),
            totalSeconds = r.TotalSeconds,
            stages = r.Stages.Select(x => new { stage = x.Stage, steps = x.Steps, repeats = x.Repeats, seconds = x.Seconds }),
        }),
    };

    /// <summary>Seconds as "0.42 s", "12 s", "3.5 min" or "2.1 h".</summary>
    public static string Format(double seconds) => seconds switch
    {
        < 10 => seconds.ToString("0.00", CultureInfo.InvariantCulture) + " s",
        < 90 => seconds.ToString("0", CultureInfo.InvariantCulture) + " s",
        < 90 * 60 => (seconds / 60).ToString("0.0", CultureInfo.InvariantCulture) + " min",
        _ => (seconds / 3600).ToString("0.0", CultureInfo.InvariantCulture) + " h",
    };
}
