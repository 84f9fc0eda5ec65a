using System.CommandLine;
using Google.Protobuf;
using Sadg.Cli.Data;
using Sadg.Cli.Output;
using Sadg.Cli.Pipeline;
using Sadg.Onnx;
using Sadg.Pipeline;

namespace Sadg.Cli.Commands;

/// <summary>
/// <c>sadg quantize model.onnx -o out.onnx [options]</c>. Checks every option and the model, resolves the device,
/// creates the report and cache folders, then calls <see cref="IQuantizationPipeline"/> (the seam:
/// <see cref="RunPipelineAsync"/>) and writes its model atomically. Nothing is written when anything fails or is
/// cancelled.
/// </summary>
public static class QuantizeCommand
{
    public static readonly string[] Methods = ["sadag", "genie", "gaussian", "real"];

    public static Command Create(CliServices services)
    {
        var model = SharedOptions.Model();
        var output = new Option<string?>("--output", "-o")
        {
            Description = "Where to write the quantized model (default: beside the input, <name>.q<bits>.onnx). Written atomically.",
            HelpName = "out.onnx",
        };
        var bits = new Option<int>("--bits", "-b") { Description = "Weight bit width, 2-8.", DefaultValueFactory = _ => 4, HelpName = "2-8" };
        var activationBits = new Option<string?>("--activation-bits")
        {
            Description = "Activation bit width, 2-8, or 'none' to leave activations in float (default: the same as --bits).",
            HelpName = "N|none",
        };
        var method = new Option<string>("--method", "-m")
        {
            Description = "Calibration data: sadag (sharpness-aware generation, the paper), genie (Genie-D generation only), " +
                          "gaussian (noise; a baseline), or real (images from --calibration-data).",
            DefaultValueFactory = _ => "sadag",
            HelpName = string.Join("|", Methods),
        };
        var calibration = new Option<string?>("--calibration-data")
        {
            Description = "Labelled or unlabelled images for --method real: an IDX or tensor folder (docs/cli.md).",
            HelpName = "path",
        };
        var samples = SharedOptions.Samples();
        var profile = SharedOptions.Profile();
        var seed = SharedOptions.Seed();
        var device = SharedOptions.Device();
        var inputOptions = new InputOptions();
        var cacheDir = new Option<string?>("--cache-dir")
        {
            Description = "Content-addressed cache folder: an unchanged model with the same options is not quantized again " +
                          "(default: $SADG_CACHE_DIR, else $XDG_CACHE_HOME/sadg, else ~/.cache/sadg).",
            HelpName = "dir",
        };
        var noCache = new Option<bool>("--no-cache") { Description = "Neither read nor write the cache." };
        var reconstructionSteps = new Option<int?>("--reconstruction-steps") { Hidden = true, Description = "Internal: reconstruction steps per block." };
        var generationSteps = new Option<int?>("--generation-steps") { Hidden = true, Description = "Internal: warm-up and refinement steps per batch." };
        var report = new Option<string?>("--report")
        {
            Description = "Folder for the report (JSON, Markdown, plots); created if missing.",
            HelpName = "dir",
        };
        var inputShape = SharedOptions.InputShape();
        var command = new Command("quantize", "Quantize an FP32 ONNX image model to b-bit weights (and activations) without real data.")
        {
            model, output, bits, activationBits, method, calibration, samples, profile, seed, device, inputShape, cacheDir, noCache, report,
            reconstructionSteps, generationSteps,
        };
        foreach (var option in inputOptions.All) command.Options.Add(option);
        command.SetAction(CliApp.Guard(services, async (console, parse, cancellationToken) =>
        {
            string modelPath = parse.GetValue(model)!;
            int weightBits = CheckBits(parse.GetValue(bits), "--bits");
            int? actBits = ParseActivationBits(parse.GetValue(activationBits), weightBits);
            string methodName = SharedOptions.CheckMethod(parse.GetValue(method)!, Methods);
            string profileName = SharedOptions.CheckProfile(parse.GetValue(profile)!);
            int? sampleCount = SharedOptions.CheckSamples(parse.GetValue(samples));
            var deviceOption = DeviceChoice.Parse(parse.GetValue(device)!);
            string? calibrationPath = parse.GetValue(calibration);
            if (methodName == "real" && calibrationPath is null)
                throw new SadgException(SadgErrorCode.CalibrationDataInvalid, "--method real needs --calibration-data <path> (an IDX or tensor folder).");
            if (methodName != "real" && calibrationPath is not null)
                throw new SadgException(SadgErrorCode.InvalidOptionValue, $"--calibration-data is only read by --method real; --method {methodName} generates its own data.");

            int[]? shape = SharedOptions.ParseInputShape(parse.GetValue(inputShape));
            var (onnx, input) = SharedOptions.LoadClassifier(modelPath, shape);
            var choices = inputOptions.Parse(parse, input.Channels);
            string outputPath = ResolveOutput(modelPath, parse.GetValue(output), weightBits);

            ImageSet? calibrationSet = null;
            if (calibrationPath is not null)
            {
                try { calibrationSet = ImageSet.Load(calibrationPath, limit: sampleCount); }
                catch (SadgException e) when (e.Code is SadgErrorCode.DataNotFound or SadgErrorCode.DataInvalid)
                {
                    throw new SadgException(SadgErrorCode.CalibrationDataInvalid, e.Message, e.File, inner: e);
                }
                if (calibrationSet.Shape[1] != input.Channels || calibrationSet.Shape[2] != input.Height || calibrationSet.Shape[3] != input.Width)
                    throw new SadgException(SadgErrorCode.CalibrationDataInvalid,
                        $"The calibration images are {calibrationSet.Shape[1]}x{calibrationSet.Shape[2]}x{calibrationSet.Shape[3]}; the model takes {input.Channels}x{input.Height}x{input.Width}.", calibrationPath);
            }

            var torchDevice = DeviceChoice.ResolveTorch(deviceOption, console);
            string? cache = parse.GetValue(noCache) ? null : ResolveCache(parse.GetValue(cacheDir), services, console);
            int? recSteps = CheckSteps(parse.GetValue(reconstructionSteps), "--reconstruction-steps");
            int? genSteps = CheckSteps(parse.GetValue(generationSteps), "--generation-steps");
            string? reportPath = parse.GetValue(report);
            bool reportCreated = reportPath is not null && !Directory.Exists(reportPath);
            if (reportPath is not null) CreateFolder(reportPath);

            var request = new QuantizationRequest(modelPath, onnx, input, weightBits, actBits, methodName, calibrationSet, sampleCount,
                profileName, parse.GetValue(seed), torchDevice, cache, reportPath)
            { ReconstructionSteps = recSteps, GenerationSteps = genSteps, InputShape = shape, Choices = choices };
            console.Log.Information("Quantizing {Model}: W{Bits}A{Act}, method {Method}, profile {Profile}, seed {Seed} -> {Output}",
                modelPath, weightBits, actBits?.ToString() ?? "float", methodName, profileName, request.Seed, outputPath);
            try
            {
                ModelCache? store = cache is null ? null : new ModelCache(cache);
                string? key = store is null ? null
                    : ModelCache.Key(File.ReadAllBytes(modelPath), LibraryQuantizationPipeline.Options(request).Canonical(), CliApp.Version);
                if (store is not null && store.TryGet(key!) is { } entry)
                {
                    AtomicFile.Copy(Path.Combine(entry, ModelCache.ModelFile), outputPath);
                    if (reportPath is not null)
                        foreach (var file in Directory.GetFiles(entry).Where(f => Path.GetFileName(f) != ModelCache.ModelFile))
                            AtomicFile.Copy(file, Path.Combine(reportPath, Path.GetFileName(file)));
                    console.Out.WriteLine($"cache hit: {key} ({entry})");
                    console.Out.WriteLine($"wrote {outputPath} ({InspectCommand.FormatBytes(new FileInfo(outputPath).Length)})");
                    return ExitCodes.Ok;
                }
                var result = await RunPipelineAsync(services.Quantization, request, console, cancellationToken);
                cancellationToken.ThrowIfCancellationRequested();
                byte[] bytes = result.Model.ToByteArray();
                AtomicFile.Write(outputPath, bytes);
                if (reportPath is not null)
                    foreach (var (name, content) in result.ReportFiles) AtomicFile.Write(Path.Combine(reportPath, name), content);
                if (store is not null)
                {
                    try
                    {
                        store.Put(key!, bytes, result.ReportFiles);
                        console.Log.Information("Stored in the cache: {Entry}", store.EntryPath(key!));
                    }
                    catch (SadgException e)
                    {
                        console.Log.Warning("warning: {Message} (the model was written; it is just not cached)", e.Message);
                    }
                }
                foreach (var line in result.Summary) console.Out.WriteLine(line);
                console.Out.WriteLine($"wrote {outputPath} ({InspectCommand.FormatBytes(new FileInfo(outputPath).Length)})");
                return ExitCodes.Ok;
            }
            catch when (reportCreated && reportPath is not null)
            {
                // Leave no trace of a run that did not finish: remove the report folder this run created.
                try { Directory.Delete(reportPath, recursive: true); } catch (IOException) { } catch (UnauthorizedAccessException) { }
                throw;
            }
        }));
        return command;
    }

    /// <summary>
    /// The seam between the tool and the quantization library: everything is checked before, and the model is
    /// written after. Until the library is wired in, the pipeline throws <see cref="NotImplementedException"/> and the
    /// command exits 3 with an internal error.
    /// </summary>
    public static Task<QuantizationResult> RunPipelineAsync(IQuantizationPipeline pipeline, QuantizationRequest request, CliConsole console, CancellationToken cancellationToken) =>
        pipeline.RunAsync(request, console, cancellationToken);

    static int? CheckSteps(int? steps, string option)
    {
        if (steps is < 0) throw new SadgException(SadgErrorCode.InvalidOptionValue, $"{option} {steps}: give 0 or more.");
        return steps;
    }

    /// <summary>
    /// --cache-dir (created; an error when it cannot be), else the default folder (created; when it cannot be, a
    /// warning and no cache).
    /// </summary>
    static string? ResolveCache(string? option, CliServices services, CliConsole console)
    {
        if (option is not null)
        {
            CreateFolder(option);
            return option;
        }
        string folder = services.CacheDirectory ?? ModelCache.DefaultDirectory();
        try
        {
            Directory.CreateDirectory(folder);
            return folder;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            console.Log.Warning("warning: cannot use the cache folder '{Folder}' ({Message}); running without a cache.", folder, e.Message);
            return null;
        }
    }

    public static int CheckBits(int bits, string option)
    {
        if (bits is < 2 or > 8)
            throw new SadgException(SadgErrorCode.InvalidBits, $"{option} {bits}: Sadg quantizes to 2-8 bits.");
        return bits;
    }

    /// <summary>null = float activations ("none"); absent = the weight bit width.</summary>
    public static int? ParseActivationBits(string? text, int weightBits)
    {
        if (text is null) return weightBits;
        if (text.Equals("none", StringComparison.OrdinalIgnoreCase)) return null;
        if (!int.TryParse(text, out int bits))
            throw new SadgException(SadgErrorCode.InvalidBits, $"--activation-bits '{text}': give a bit width 2-8 or 'none'.");
        return CheckBits(bits, "--activation-bits");
    }

    static string ResolveOutput(string modelPath, string? output, int bits)
    {
        string path = output ?? Path.Combine(Path.GetDirectoryName(Path.GetFullPath(modelPath))!, $"{Path.GetFileNameWithoutExtension(modelPath)}.q{bits}.onnx");
        if (Directory.Exists(path))
            throw new SadgException(SadgErrorCode.OutputInvalid, $"-o '{path}' is a folder; give the path of the .onnx file to write.", path);
        if (string.Equals(Path.GetFullPath(path), Path.GetFullPath(modelPath), StringComparison.Ordinal))
            throw new SadgException(SadgErrorCode.OutputInvalid, $"-o '{path}' is the input model; write the quantized model to another file.", path);
        return path;
    }

    static void CreateFolder(string path)
    {
        try { Directory.CreateDirectory(path); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new SadgException(SadgErrorCode.WriteFailed, $"Could not create the folder '{path}': {e.Message}", path, inner: e);
        }
    }
}
