using System.Globalization;
using Sadg.Cli.Output;
using Sadg.Cli.Pipeline;
using Sadg.Onnx;
using Sadg.Pipeline;
using Sadg.Quantization;

namespace Sadg.Cli.Commands;

/// <summary>
/// <c>sadg inspect --sensitivity [--bits b]</c>: each quantizable layer's output SQNR when it alone is quantized
/// (<see cref="SensitivityAnalysis"/>), most sensitive first, measured on a few quick Genie-D images; nothing is
/// quantized or written.
/// </summary>
public static class SensitivityRanking
{
    /// <summary>The Genie-D images the ranking is measured on.</summary>
    public const int Images = 16;

    /// <summary>The Genie-D warm-up steps per batch (quick: the ranking, not the images, is the point).</summary>
    public const int Steps = 10;

    /// <summary>Measures the sensitivity of <paramref name="path"/>'s layers at <paramref name="bits"/> (weights and activations; the default bit policy;
    /// <c>inspect</c> has checked the bits).</summary>
    public static SensitivityMeasurement Measure(string path, int bits, CliConsole console, CancellationToken cancellationToken)
    {
        var model = OnnxModel.Load(path);
        var options = new PipelineOptions
        {
            WeightBits = bits,
            ActivationBits = bits,
            Method = CalibrationMethod.Genie,
            Profile = StepProfile.Quick,
            Samples = Images,
            GenerationSteps = Steps,
            Device = DeviceChoice.ResolveTorch(DeviceKind.Auto, console),
        };
        return QuantizationPipeline.Sensitivity(model, options, new ConsoleReporter(console, path), cancellationToken);
    }

    /// <summary>The layers, most sensitive (lowest SQNR) first; ties keep the execution order.</summary>
    public static IReadOnlyList<LayerSensitivity> Ranked(SensitivityMeasurement m) => m.Layers.OrderBy(l => l.SqnrDb).ToList();

    /// <summary>The ranking as text.</summary>
    public static void Write(TextWriter w, SensitivityMeasurement m, int bits)
    {
        w.WriteLine($"sensitivity at {bits} bits (most sensitive first): output SQNR against the FP32 model when only that layer is " +
            $"quantized (round to nearest; first layer W8 with float input, second layer's input 8-bit, last layer W8A8), on {m.Images} " +
            $"Genie-D images ({Steps} quick steps; a full run's report measures it on the calibration images):");
        var ranked = Ranked(m);
        int nameWidth = Math.Clamp(ranked.Select(l => l.Node.Length).DefaultIfEmpty(4).Max(), 4, 40);
        w.WriteLine($"  {"rank",4}  {"name".PadRight(nameWidth)}  {"op",-6}  {"bits",-5}  {"SQNR (dB)",9}");
        for (int i = 0; i < ranked.Count; i++)
        {
            var l = ranked[i];
            string bitsText = $"W{l.WeightBits}" + (l.InputBits is { } a ? $"A{a}" : "");
            w.WriteLine($"  {i + 1,4}  {l.Node.PadRight(nameWidth)}  {l.OpType,-6}  {bitsText,-5}  {QuantizationReport.Db(l.SqnrDb),9}");
        }
    }

    /// <summary>The ranking as a JSON-ready object.</summary>
    public static object Json(SensitivityMeasurement m, int bits) => new
    {
        bits,
        images = m.Images,
        source = $"Genie-D, {Steps} steps",
        layers = Ranked(m).Select(l => new
        {
            name = l.Node,
            op = l.OpType,
            weightBits = l.WeightBits,
            inputBits = l.InputBits,
            sqnrDb = double.IsPositiveInfinity(l.SqnrDb) ? (double?)null : Math.Round(l.SqnrDb, 3),
        }),
    };
}
