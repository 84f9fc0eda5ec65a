using System.CommandLine;
using System.Globalization;
using System.Text.Json;
using Microsoft.ML.OnnxRuntime;
using Sadg.Cli.Data;
using Sadg.Cli.Output;
using Sadg.Cli.Pipeline;
using Sadg.Export;
using Sadg.Onnx;
using Sadg.Pipeline;

namespace Sadg.Cli.Commands;

/// <summary>One model's evaluation: its top-1 class for every image.</summary>
public sealed record ModelEvaluation(string Path, long FileBytes, int[] Predictions, double Accuracy, string Standardization);

/// <summary>
/// <c>sadg evaluate a.onnx b.onnx … --data DIR</c>: top-1 accuracy of each model with ONNX Runtime on labelled
/// data, side by side, and how often each pair of models predicts the same class.
/// </summary>
public static class EvaluateCommand
{
    public static Command Create(CliServices services)
    {
        var models = new Argument<string[]>("models")
        {
            Description = "One or more ONNX classifiers with the same input shape.",
            Arity = ArgumentArity.OneOrMore,
        };
        var data = new Option<string>("--data")
        {
            Description = "Labelled images: a folder with IDX files (t10k-/train-images-idx3-ubyte[.gz] + -labels-idx1-ubyte[.gz]) " +
                          "or a tensor folder with sadg-data.json (docs/cli.md).",
            Required = true,
            HelpName = "path",
        };
        var split = new Option<string?>("--split") { Description = "For IDX folders: test (t10k-*, the default when present) or train.", HelpName = "test|train" };
        var limit = new Option<int?>("--limit") { Description = "Evaluate on the first N images only.", HelpName = "N" };
        var mean = new Option<string?>("--mean")
        {
            Description = $"Per-channel mean subtracted from pixels, e.g. 0.2860 or 0.485,0.456,0.406. Overrides the model's '{SadgMetadata.InputMean}' metadata; default none.",
            HelpName = "m[,m...]",
        };
        var std = new Option<string?>("--std")
        {
            Description = $"Per-channel std pixels are divided by. Overrides the model's '{SadgMetadata.InputStd}' metadata; default none (pixels in [0, 1]).",
            HelpName = "s[,s...]",
        };
        var batchSize = new Option<int>("--batch-size") { Description = "Images per ONNX Runtime run (models with a fixed batch use theirs).", DefaultValueFactory = _ => 64, HelpName = "N" };
        var device = new SettingOptions([QuantizeSchema.Device]);
        var images = new SettingOptions([QuantizeSchema.Resize, QuantizeSchema.Crop, QuantizeSchema.ChannelOrder]);
        var json = new Option<bool>("--json") { Description = "Print the results as JSON on stdout." };
        var command = new Command("evaluate", "Top-1 accuracy of one or more models on labelled data with ONNX Runtime, and their pairwise agreement.")
        {
            models, data, split, limit, mean, std, batchSize, json,
        };
        foreach (var option in device.All.Concat(images.All)) command.Options.Add(option);
        command.SetAction(CliApp.Guard(services, (console, parse, cancellationToken) =>
        {
            int? n = parse.GetValue(limit);
            if (n is < 1) throw new SadgException(SadgErrorCode.InvalidOptionValue, $"--limit {n}: give at least 1.");
            int batch = parse.GetValue(batchSize);
            if (batch < 1) throw new SadgException(SadgErrorCode.InvalidOptionValue, $"--batch-size {batch}: give at least 1.");
            var deviceOption = device.Read(parse).Device;
            var sizing = images.Read(parse);
            var paths = parse.GetValue(models)!;
            float[]? meanOverride = ParseChannels(parse.GetValue(mean), "--mean");
            float[]? stdOverride = ParseChannels(parse.GetValue(std), "--std");

            // Check every model before the long part, so a bad path fails at once.
            var loaded = paths.Select(p => SharedOptions.LoadClassifier(p)).ToList();
            var first = loaded[0].Input;
            var set = ImageSet.Load(parse.GetValue(data)!, parse.GetValue(split), n, first.Channels, first.Height, first.Width, sizing.Resize, sizing.Crop, sizing.ChannelOrder);
            if (!set.Labelled)
                throw new SadgException(SadgErrorCode.DataInvalid,
                    $"'{set.Source}' has images but no class subfolders, so there are no labels to score against. Put each class's images in a subfolder of its own.", set.Source);
            console.Log.Information("Data: {Count} images {Shape} from {Source}.", set.Count, $"{set.Shape[1]}x{set.Shape[2]}x{set.Shape[3]}", set.Source);
            // Every model must take these images: known now, before the first model's evaluation.
            for (int m = 0; m < paths.Length; m++) CheckTakes(paths[m], loaded[m].Input, set);

            var results = new List<ModelEvaluation>();
            for (int m = 0; m < paths.Length; m++)
            {
                var (model, input) = loaded[m];
                results.Add(Evaluate(paths[m], model, input, set, meanOverride, stdOverride, batch, deviceOption, console, announce: m == 0, cancellationToken));
            }
            var agreement = Agreement(results);
            if (parse.GetValue(json)) WriteJson(console.Out, set, results, agreement);
            else WriteTable(console.Out, set, results, agreement);
            return Task.FromResult(ExitCodes.Ok);
        }));
        return command;
    }

    /// <summary>"0.5" or "0.485,0.456,0.406" (invariant culture).</summary>
    static float[]? ParseChannels(string? text, string what)
    {
        if (string.IsNullOrWhiteSpace(text)) return null;
        return NumberLists.TryParse(text, out var values) ? values
            : throw new SadgException(SadgErrorCode.InvalidOptionValue, $"{what} '{text}' is not a number or a comma-separated list of numbers.");
    }

    /// <summary>Refuses a model whose input is not the size of the data's images (SADG1302).</summary>
    static void CheckTakes(string path, ImageInput input, ImageSet set)
    {
        int c = set.Shape[1], h = set.Shape[2], w = set.Shape[3];
        if (input.Channels != c || input.Height != h || input.Width != w)
            throw new SadgException(SadgErrorCode.DataInvalid,
                $"The data holds {c}x{h}x{w} images ({set.Source}); '{path}' takes {input.Channels}x{input.Height}x{input.Width}.", path);
    }

    public static ModelEvaluation Evaluate(string path, OnnxModel model, ImageInput input, ImageSet set, float[]? meanOverride, float[]? stdOverride,
        int batchSize, DeviceKind device, CliConsole console, bool announce, CancellationToken cancellationToken)
    {
        int c = set.Shape[1], h = set.Shape[2], w = set.Shape[3];
        CheckTakes(path, input, set);

        // The model's metadata, or the options over it: the same rule the quantizer reads real images with.
        var fromModel = InputStandardization.FromMetadata(model);
        var standardization = meanOverride is null && stdOverride is null ? fromModel
            : InputStandardization.FromNormalization(meanOverride ?? fromModel.Mean ?? [0f], stdOverride ?? fromModel.Std ?? [1f], c, "--mean", "--std");
        console.Log.Debug("{Model}: standardization {Standardization}.", path, standardization);
        var (mean, std) = (standardization.Mean, standardization.Std);

        using var session = DeviceChoice.CreateOrtSession(path, device, console, announce);
        string outputName = model.Graph.Output[0].Name;
        int batch = input.DeclaredBatch > 0 ? (int)input.DeclaredBatch : batchSize;
        int plane = h * w;
        Action<Span<float>>? standardize = mean is null && std is null ? null : span =>
        {
            for (int i = 0; i < span.Length; i++)
            {
                int ch = i / plane % c;
                span[i] = (span[i] - (mean?[ch] ?? 0f)) / (std?[ch] ?? 1f);
            }
        };
        int[] predictions;
        using (var stage = console.Stage($"evaluating {Path.GetFileName(path)}", set.Count))
            predictions = OrtPredictions.Top1(session, input.Name, outputName, set.Images, set.Count, [c, h, w], batch, input.DeclaredBatch > 0,
                standardize, done => stage.Report(done), path, cancellationToken, input.ChannelsLast);
        int correct = predictions.Where((p, i) => p == set.Labels[i]).Count();
        return new ModelEvaluation(path, new FileInfo(path).Length, predictions, (double)correct / set.Count, standardization.ToString());
    }

    /// <summary>For every pair of models, the fraction of images on which their top-1 classes agree.</summary>
    public static List<(int A, int B, double Agreement)> Agreement(IReadOnlyList<ModelEvaluation> results)
    {
        var pairs = new List<(int, int, double)>();
        for (int a = 0; a < results.Count; a++)
            for (int b = a + 1; b < results.Count; b++)
            {
                var pa = results[a].Predictions;
                var pb = results[b].Predictions;
                pairs.Add((a, b, (double)pa.Where((p, i) => p == pb[i]).Count() / pa.Length));
            }
        return pairs;
    }

    static string Percent(double value) => (value * 100).ToString("0.00", CultureInfo.InvariantCulture) + "%";

    static void WriteTable(TextWriter w, ImageSet set, IReadOnlyList<ModelEvaluation> results, List<(int A, int B, double Agreement)> agreement)
    {
        int width = Math.Max(5, results.Max(r => r.Path.Length));
        w.WriteLine($"{set.Count} images from {set.Source}");
        w.WriteLine($"{"model".PadRight(width)}  {"top-1",8}  {"size",10}  standardization");
        foreach (var r in results)
            w.WriteLine($"{r.Path.PadRight(width)}  {Percent(r.Accuracy),8}  {Sizes.Format(r.FileBytes),10}  {r.Standardization}");
        if (agreement.Count > 0)
        {
            w.WriteLine();
            w.WriteLine("top-1 agreement:");
            foreach (var (a, b, value) in agreement)
                w.WriteLine($"  {results[a].Path} vs {results[b].Path}: {Percent(value)}");
        }
        w.Flush();
    }

    static void WriteJson(TextWriter w, ImageSet set, IReadOnlyList<ModelEvaluation> results, List<(int A, int B, double Agreement)> agreement)
    {
        var document = new
        {
            data = set.Source,
            images = set.Count,
            models = results.Select(r => new { path = r.Path, top1 = r.Accuracy, fileBytes = r.FileBytes, standardization = r.Standardization }),
            agreement = agreement.Select(p => new { a = results[p.A].Path, b = results[p.B].Path, top1Agreement = p.Agreement }),
        };
        w.WriteLine(JsonSerializer.Serialize(document, new JsonSerializerOptions { WriteIndented = true }));
        w.Flush();
    }
}
