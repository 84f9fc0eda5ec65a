using System.CommandLine;
using Sadg.Cli.Pipeline;

namespace Sadg.Cli.Commands;

/// <summary>
/// <c>sadg generate model.onnx -o DIR</c>: synthesizes calibration images from the model alone and writes them as a
/// tensor folder (docs/cli.md), labelled with the model's own top-1 class, atomically. The generation itself is the
/// <see cref="IDataGenerationPipeline"/> seam.
/// </summary>
public static class GenerateCommand
{
    public static readonly string[] Methods = ["sadag", "genie", "gaussian"];

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
        var method = new Option<string>("--method", "-m")
        {
            Description = "sadag (sharpness-aware, the paper), genie (Genie-D only), or gaussian (noise).",
            DefaultValueFactory = _ => "sadag",
            HelpName = string.Join("|", Methods),
        };
        var samples = SharedOptions.Samples();
        var profile = SharedOptions.Profile();
        var seed = SharedOptions.Seed();
        var device = SharedOptions.Device();
        var inputOptions = new InputOptions();
        var reconstructionSteps = new Option<int?>("--reconstruction-steps") { Hidden = true, Description = "Internal: reconstruction steps per block of Q0." };
        var generationSteps = new Option<int?>("--generation-steps") { Hidden = true, Description = "Internal: warm-up and refinement steps per batch." };
        var inputShape = SharedOptions.InputShape();
        var command = new Command("generate", "Synthesize calibration images from a model's own statistics, without quantizing.")
        {
            model, output, method, samples, profile, seed, device, inputShape, reconstructionSteps, generationSteps,
        };
        foreach (var option in inputOptions.All) command.Options.Add(option);
        command.SetAction(CliApp.Guard(services, async (console, parse, cancellationToken) =>
        {
            string modelPath = parse.GetValue(model)!;
            string methodName = SharedOptions.CheckMethod(parse.GetValue(method)!, Methods);
            string profileName = SharedOptions.CheckProfile(parse.GetValue(profile)!);
            int? sampleCount = SharedOptions.CheckSamples(parse.GetValue(samples));
            var deviceOption = DeviceChoice.Parse(parse.GetValue(device)!);
            string outputPath = parse.GetValue(output)!;
            if (File.Exists(outputPath))
                throw new SadgException(SadgErrorCode.OutputInvalid, $"-o '{outputPath}' is a file; give a folder.", outputPath);
            if (Directory.Exists(outputPath) && Directory.EnumerateFileSystemEntries(outputPath).Any())
                throw new SadgException(SadgErrorCode.OutputInvalid, $"-o '{outputPath}' exists and is not empty; give a new or empty folder.", outputPath);

            int[]? shape = SharedOptions.ParseInputShape(parse.GetValue(inputShape));
            var (onnx, input) = SharedOptions.LoadClassifier(modelPath, shape);
            var torchDevice = DeviceChoice.ResolveTorch(deviceOption, console);
            var request = new GenerationRequest(modelPath, onnx, input, methodName, sampleCount, profileName, parse.GetValue(seed), torchDevice)
            {
                GenerationSteps = parse.GetValue(generationSteps),
                ReconstructionSteps = parse.GetValue(reconstructionSteps),
                Choices = inputOptions.Parse(parse, input.Channels),
                InputShape = shape,
            };
            var images = await services.Generation.GenerateAsync(request, console, cancellationToken);
            cancellationToken.ThrowIfCancellationRequested();
            byte[] png;
            using (var tensor = TorchSharp.torch.tensor(images.Images, images.Shape.Select(d => (long)d).ToArray()))
                png = Sadg.Pipeline.QuantizationPipeline.GridPng(tensor, images.Labels.Select(l => (long)l).ToArray());
            images.Save(outputPath, cancellationToken, new Dictionary<string, byte[]> { [SyntheticPng] = png });
            console.Out.WriteLine($"wrote {images.Count} images to {outputPath}");
            return ExitCodes.Ok;
        }));
        return command;
    }
}
