using System.CommandLine;
using Sadg.Cli.Data;
using Sadg.Cli.Pipeline;
using Sadg.Pipeline;

namespace Sadg.Cli.Commands;

/// <summary>
/// <c>sadg generate model.onnx -o DIR [--format tensors|npy]</c>: synthesizes calibration images from the model alone
/// and writes them, labelled with the model's own top-1 class, as a tensor folder (docs/cli.md; the folder is written
/// atomically) or as NumPy files (<see cref="ImagesNpy"/>, <see cref="LabelsNpy"/>, each written atomically). The
/// generation itself is the <see cref="IDataGenerationPipeline"/> seam.
/// </summary>
public static class GenerateCommand
{
    /// <summary>The methods that generate (all but real).</summary>
    public static readonly string[] Methods = QuantizeSchema.Names<CalibrationMethod>().Where(m => m != QuantizeSchema.Name(CalibrationMethod.Real)).ToArray();

    /// <summary>The PNG grid of the images, written into the tensor folder beside them.</summary>
    public const string SyntheticPng = "synthetic.png";

    /// <summary>With <c>--format npy</c>: the images, float32 [N, C, H, W].</summary>
    public const string ImagesNpy = "images.npy";

    /// <summary>With <c>--format npy</c>: the labels (the model's top-1 class), int64 [N].</summary>
    public const string LabelsNpy = "labels.npy";

    /// <summary>The forms <c>--format</c> accepts.</summary>
    public static readonly string[] Formats = ["tensors", "npy"];

    public static Command Create(CliServices services)
    {
        var model = SharedOptions.Model();
        var output = new Option<string>("--output", "-o")
        {
            Description = "Folder to write the images into (must not exist or be empty); a tensor folder that 'evaluate --data' and 'quantize --calibration-data' read.",
            Required = true,
            HelpName = "dir",
        };
        var format = new Option<string>("--format")
        {
            Description = $"tensors: a tensor folder (sadg-data.json, images.f32, labels.i32); npy: NumPy files {ImagesNpy} " +
                $"(float32 [N,C,H,W]) and {LabelsNpy} (int64 [N]), for other toolchains. Both also hold {SyntheticPng}.",
            DefaultValueFactory = _ => Formats[0],
            HelpName = string.Join("|", Formats),
        };
        var settings = new SettingOptions(QuantizeSchema.Generation);
        var command = new Command("generate", "Synthesize calibration images from a model's own statistics, without quantizing.")
        {
            model, output, format,
        };
        foreach (var option in settings.All) command.Options.Add(option);
        command.SetAction(CliApp.Guard(services, async (console, parse, cancellationToken) =>
        {
            string modelPath = parse.GetValue(model)!;
            var chosen = settings.Read(parse);
            if (chosen.Method == CalibrationMethod.Real)
                throw new SadgException(SadgErrorCode.InvalidOptionValue,
                    $"{QuantizeSchema.Method.Label} real has nothing to generate; use {string.Join(", ", Methods)}.");
            string form = parse.GetValue(format)!.ToLowerInvariant();
            if (!Formats.Contains(form))
                throw new SadgException(SadgErrorCode.InvalidOptionValue, $"--format '{parse.GetValue(format)}' is not known; use {string.Join(" or ", Formats)}.");
            string outputPath = parse.GetValue(output)!;
            if (File.Exists(outputPath))
                throw new SadgException(SadgErrorCode.OutputInvalid, $"-o '{outputPath}' is a file; give a folder.", outputPath);
            if (Directory.Exists(outputPath) && Directory.EnumerateFileSystemEntries(outputPath).Any())
                throw new SadgException(SadgErrorCode.OutputInvalid, $"-o '{outputPath}' exists and is not empty; give a new or empty folder.", outputPath);

            // Before any generation: the folder -o is made in must take files.
            AtomicFile.CheckWritable(Path.GetDirectoryName(Path.GetFullPath(outputPath).TrimEnd(Path.DirectorySeparatorChar))!, "the folder of -o");

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
            if (form == "npy") SaveNpy(images, outputPath, png, cancellationToken);
            else images.Save(outputPath, cancellationToken, new Dictionary<string, byte[]> { [SyntheticPng] = png });
            console.Out.WriteLine($"wrote {images.Count} images to {outputPath}{(form == "npy" ? $" ({ImagesNpy}, {LabelsNpy})" : "")}");
            return ExitCodes.Ok;
        }));
        return command;
    }

    /// <summary>Writes <see cref="ImagesNpy"/>, <see cref="LabelsNpy"/> and the PNG grid into <paramref name="folder"/>, as one folder: all or nothing.</summary>
    static void SaveNpy(ImageSet images, string folder, byte[] png, CancellationToken cancellationToken) =>
        AtomicFile.WriteFolder(folder, tmp =>
        {
            using (var labels = File.Create(Path.Combine(tmp, LabelsNpy)))
                Npy.WriteInt64(labels, images.Labels.Select(l => (long)l).ToArray(), [images.Count]);
            cancellationToken.ThrowIfCancellationRequested();
            using (var pixels = File.Create(Path.Combine(tmp, ImagesNpy)))
                Npy.WriteFloat32(pixels, images.Images, images.Shape);
            File.WriteAllBytes(Path.Combine(tmp, SyntheticPng), png);
        });
}
