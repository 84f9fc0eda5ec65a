using System.CommandLine;
using Sadg.Cli.Pipeline;
using Sadg.Pipeline;

namespace Sadg.Cli.Commands;

/// <summary>
/// <c>sadg generate model.onnx -o DIR</c>: synthesizes calibration images from the model alone and writes them as a
/// tensor folder (docs/cli.md), labelled with the model's own top-1 class, atomically. The generation itself is the
/// <see cref="IDataGenerationPipeline"/> seam.
/// </summary>
public static class GenerateCommand
{
    /// <summary>The methods that generate (all but real).</summary>
    public static readonly string[] Methods = QuantizeSchema.Names<CalibrationMethod>().Where(m => m != QuantizeSchema.Name(CalibrationMethod.Real)).ToArray();

    /// <summary>The PNG grid of the images, written into the tensor folder beside them.</summary>
    public const string SyntheticPng = "synthetic.png";

    public static Command Create(CliServices services)
    {
        var model = SharedOptions.Model();
        var output = new Option<string>("--output", "-o")
        {
            Description = "Folder to write the images into (must not exist or be empty); a tensor folder that 'evaluate --data' and 'quantize --calibration-data' read.",
            Required = true,
            HelpName = "dir",
        };
        var settings = new SettingOptions(QuantizeSchema.Generation);
        var command = new Command("generate", "Synthesize calibration images from a model's own statistics, without quantizing.")
        {
            model, output,
        };
        foreach (var option in settings.All) command.Options.Add(option);
        command.SetAction(CliApp.Guard(services, async (console, parse, cancellationToken) =>
        {
            string modelPath = parse.GetValue(model)!;
            var chosen = settings.Read(parse);
            if (chosen.Method == CalibrationMethod.Real)
                throw new SadgException(SadgErrorCode.InvalidOptionValue,
                    $"{QuantizeSchema.Method.Label} real has nothing to generate; use {string.Join(", ", Methods)}.");
            string outputPath = parse.GetValue(output)!;
            if (File.Exists(outputPath))
                throw new SadgException(SadgErrorCode.OutputInvalid, $"-o '{outputPath}' is a file; give a folder.", outputPath);
            if (Directory.Exists(outputPath) && Directory.EnumerateFileSystemEntries(outputPath).Any())
                throw new SadgException(SadgErrorCode.OutputInvalid, $"-o '{outputPath}' exists and is not empty; give a new or empty folder.", outputPath);

            var (onnx, input) = SharedOptions.LoadClassifier(modelPath, chosen.InputShape);
            var torchDevice = DeviceChoice.ResolveTorch(chosen.Device, console);
            var request = new GenerationRequest(modelPath, onnx, input, chosen, torchDevice)
            {
                Standardization = InputStandardization.FromSettings(chosen, input.Channels),
            };
            var images = await services.Generation.GenerateAsync(request, console, cancellationToken);
            cancellationToken.ThrowIfCancellationRequested();
            byte[] png;
            using (var tensor = TorchSharp.torch.tensor(images.Images, images.Shape.Select(d => (long)d).ToArray()))
                png = Sadg.Generation.ImageGrid.Png(tensor, images.Labels.Select(l => (long)l).ToArray());
            images.Save(outputPath, cancellationToken, new Dictionary<string, byte[]> { [SyntheticPng] = png });
            console.Out.WriteLine($"wrote {images.Count} images to {outputPath}");
            return ExitCodes.Ok;
        }));
        return command;
    }
}
