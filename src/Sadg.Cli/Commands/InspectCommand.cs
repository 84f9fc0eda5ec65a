using System.CommandLine;
using System.Globalization;
using System.Text.Json;
using Sadg.Cli.Output;

namespace Sadg.Cli.Commands;

/// <summary>
/// <c>sadg inspect model.onnx [--json] [--estimate-time] [--sensitivity] [--bits b]</c>: what quantization would see
/// and what would stop it, without doing it; with --estimate-time, how long <c>sadg quantize</c> would take at
/// W<i>b</i>A<i>b</i> (<see cref="TimeEstimate"/>); with <c>--sensitivity</c>, each layer's sensitivity at <i>b</i> bits
/// (<see cref="SensitivityRanking"/>).
/// </summary>
public static class InspectCommand
{
    public static Command Create(CliServices services)
    {
        var model = SharedOptions.Model();
        var json = new Option<bool>("--json") { Description = "Print the report as JSON on stdout (diagnostics still go to stderr)." };
        var estimateTime = new Option<bool>("--estimate-time")
        {
            Description = "Time a few steps of each stage on the model (seconds on a tiny model, minutes on a larger one) and " +
                "print the estimated wall time of sadg quantize for every profile and method.",
        };
        var sensitivity = new Option<bool>("--sensitivity")
        {
            Description = $"Also rank the layers by the error each adds when quantized alone (output SQNR), measured on " +
                $"{SensitivityRanking.Images} quick Genie-D images (seconds on small models); nothing is written.",
        };
        var bits = new Option<int>("--bits", "-b") { Description = "The bits (weights and activations) of --estimate-time and --sensitivity.", DefaultValueFactory = _ => 4, HelpName = "2-8" };
        var command = new Command("inspect",
            "Show a model's input, opset, operators, BatchNorm nodes, quantizable layers, blocks, estimated size at 2-8 bits, " +
            "and anything that would stop quantization. Exit code 1 when something would.")
        {
            model,
            json,
            estimateTime,
            sensitivity,
            bits,
        };
        // --bits alone would be accepted and do nothing: say so at parse time (a usage error, exit 2).
        command.Validators.Add(result =>
        {
            if (result.GetResult(bits) is { Implicit: false } && result.GetValue(estimateTime) is false && result.GetValue(sensitivity) is false)
                result.AddError("--bits sets the bits of --estimate-time and --sensitivity; give one of them, or leave --bits out " +
                    "(the report always lists the estimated size at 2-8 bits).");
        });
        command.SetAction(CliApp.Guard(services, (console, parse, cancellationToken) =>
        {
            int b = parse.GetValue(bits);
            if ((parse.GetValue(estimateTime) || parse.GetValue(sensitivity)) && !QuantizeSchema.IsBits(b))
                throw new SadgException(SadgErrorCode.InvalidBits, $"{QuantizeSchema.Bits.Label} must be {QuantizeSchema.Bits.Requirement}, not {b}.");
            var analysis = ModelAnalysis.Analyze(parse.GetValue(model)!, cancellationToken);
            var estimate = parse.GetValue(estimateTime) && analysis.Blockers.Count == 0
                ? TimeEstimate.Measure(parse.GetValue(model)!, b, console, cancellationToken) : null;
            var ranking = parse.GetValue(sensitivity) && analysis.Blockers.Count == 0
                ? SensitivityRanking.Measure(analysis.Path, b, console, cancellationToken) : null;
            if (parse.GetValue(json)) WriteJson(console.Out, analysis, estimate, ranking is null ? null : SensitivityRanking.Json(ranking, b));
            else
            {
                WriteText(console.Out, analysis, estimate);
                if (ranking is not null) SensitivityRanking.Write(console.Out, ranking, b);
                console.Out.Flush();
            }
            foreach (var blocker in analysis.Blockers) console.Diagnostic(blocker.Diagnostic);
            return Task.FromResult(analysis.Blockers.Count > 0 ? ExitCodes.Failed : ExitCodes.Ok);
        }));
        return command;
    }

    static void WriteText(TextWriter w, ModelAnalysis a, TimeEstimate? estimate)
    {
        w.WriteLine($"model:      {a.Path} ({Sizes.Format(a.FileBytes)})");
        w.WriteLine($"format:     IR {a.IrVersion}, opset {a.Opset}{(a.Producer.Length > 0 ? ", produced by " + a.Producer : "")}");
        w.WriteLine($"inputs:     {(a.Inputs.Count == 0 ? "none" : string.Join("; ", a.Inputs))}");
        if (a.ImageInput is { } image)
            w.WriteLine($"image:      '{image.Name}' {image.Channels}x{image.Height}x{image.Width} (CxHxW, declared {image.Layout}{(image.BytePixels ? ", uint8 pixels cast to float by the graph" : "")}), batch {(image.DeclaredBatch > 0 ? image.DeclaredBatch.ToString() : "dynamic")}");
        foreach (var (key, value) in a.Metadata.Where(m => m.Key.StartsWith(Export.SadgMetadata.Prefix, StringComparison.Ordinal)))
            w.WriteLine($"metadata:   {key} = {value}");
        w.WriteLine();
        w.WriteLine($"operators ({a.OpTypes.Values.Sum()} nodes):");
        foreach (var (op, count) in a.OpTypes) w.WriteLine($"  {op,-28} {count,5}");
        w.WriteLine();
        w.WriteLine(a.BatchNormNodes > 0
            ? $"BatchNorm:  {a.BatchNormNodes} BatchNormalization nodes: their running statistics guide zero-shot data generation."
            : "BatchNorm:  none: the model has no BatchNormalization nodes (folded into the convolutions at export, or none in the " +
              "network). There are no statistics for zero-shot data to match, so generation falls back to a statistics-free " +
              "objective and is weaker. If the network has BatchNorm layers, " + Sadg.Generation.StatisticsFreeLoss.KeepBatchNormAdvice);
        if (a.InputExpectation is { } expectation) w.WriteLine($"input:      {expectation}");
        w.WriteLine();
        w.WriteLine($"quantizable layers ({a.Layers.Count}, {a.QuantizableParameters:N0} parameters; {a.OtherParameters:N0} other float parameters stay float32):");
        int nameWidth = Math.Clamp(a.Layers.Select(l => l.Name.Length).DefaultIfEmpty(4).Max(), 4, 40);
        int opWidth = a.Layers.Select(l => l.Op.Length).Append(6).Max();
        w.WriteLine($"  {"name".PadRight(nameWidth)}  {"op".PadRight(opWidth)}  {"weight shape",-18}  {"params",10}");
        foreach (var l in a.Layers)
            w.WriteLine($"  {l.Name.PadRight(nameWidth)}  {l.Op.PadRight(opWidth)}  {"[" + string.Join(", ", l.WeightShape) + "]",-18}  {l.Parameters,10:N0}");
        if (a.Layers.Count > 0) w.WriteLine("  (quantize --exclude and --layer-bits take these names, or an op type; a node without a name in the file is listed as OpType_index)");
        w.WriteLine();
        w.WriteLine($"blocks:     {(a.Blocks is { } b ? b.ToString() : "n/a (the graph does not partition; see the errors)")}");
        w.WriteLine();
        w.WriteLine("estimated size (weights packed at b bits + per-channel float32 scale and b-bit zero point; other parameters float32):");
        w.WriteLine($"  {"bits",4}  {"all layers at b",16}  {"first/last at 8 (default)",26}");
        foreach (var s in a.Sizes)
            w.WriteLine($"  {s.Bits,4}  {Sizes.Format(s.UniformBytes),16}  {Sizes.Format(s.DefaultPolicyBytes),26}");
        w.WriteLine($"  fp32  {Sizes.Format(a.FileBytes),16}  (this file)");
        w.WriteLine();
        if (estimate is not null)
        {
            estimate.WriteText(w);
            w.WriteLine();
        }
        if (a.Blockers.Count == 0) w.WriteLine("ready:      nothing stops quantization.");
        else
        {
            w.WriteLine($"blockers ({a.Blockers.Count}):");
            foreach (var blocker in a.Blockers) w.WriteLine($"  {blocker.Code}: {blocker.Message}");
        }
        w.Flush();
    }

    static void WriteJson(TextWriter w, ModelAnalysis a, TimeEstimate? estimate, object? sensitivity)
    {
        var document = new
        {
            path = a.Path,
            fileBytes = a.FileBytes,
            irVersion = a.IrVersion,
            opset = a.Opset,
            producer = a.Producer,
            inputs = a.Inputs,
            imageInput = a.ImageInput is { } i ? new { name = i.Name, channels = i.Channels, height = i.Height, width = i.Width, batch = i.DeclaredBatch > 0 ? (long?)i.DeclaredBatch : null, layout = i.Layout, elementType = i.BytePixels ? "uint8" : "float" } : null,
            opTypes = a.OpTypes,
            batchNormNodes = a.BatchNormNodes,
            batchNormFolded = a.BatchNormNodes == 0,
            inputExpectation = a.InputExpectation,
            quantizableLayers = a.Layers.Select(l => new { name = l.Name, op = l.Op, weight = l.Weight, weightShape = l.WeightShape, parameters = l.Parameters, channels = l.Channels }),
            quantizableParameters = a.QuantizableParameters,
            otherParameters = a.OtherParameters,
            blocks = a.Blocks,
            estimatedBytes = a.Sizes.Select(s => new { bits = s.Bits, allLayers = s.UniformBytes, defaultPolicy = s.DefaultPolicyBytes }),
            metadata = a.Metadata,
            blockers = a.Blockers.Select(b => new { code = b.Code, message = b.Message }),
            ready = a.Blockers.Count == 0,
            estimatedTime = estimate?.Json(),
            sensitivity,
        };
        w.WriteLine(JsonSerializer.Serialize(document, new JsonSerializerOptions { WriteIndented = true }));
        w.Flush();
    }
}
