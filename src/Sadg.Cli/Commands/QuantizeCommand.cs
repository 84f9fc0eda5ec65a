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
    public static Command Create(CliServices services)
    {
        var model = SharedOptions.Model();
        var output = new Option<string?>("--output", "-o")
        {
            Description = "Where to write the quantized model (default: beside the input, <name>.q<bits>.onnx). Written atomically.",
            HelpName = "out.onnx",
        };
        var settings = new SettingOptions(QuantizeSchema.All);
        var cacheDir = new Option<string?>(RunSchema.CacheDir.Flag) { Description = RunSchema.CacheDir.Description, HelpName = RunSchema.CacheDir.HelpName };
        var noCache = new Option<bool>(RunSchema.NoCache.Flag) { Description = RunSchema.NoCache.Description };
        var report = new Option<string?>(RunSchema.Report.Flag) { Description = RunSchema.Report.Description, HelpName = RunSchema.Report.HelpName };
        var command = new Command("quantize", "Quantize an FP32 ONNX image model to b-bit weights (and activations) without real data.")
        {
            model, output,
        };
        foreach (var option in settings.All) command.Options.Add(option);
        foreach (var option in new Option[] { cacheDir, noCache, report }) command.Options.Add(option);
        // One of them would be ignored: say so at parse time (a usage error, exit 2).
        command.Validators.Add(result =>
        {
            if (result.GetValue(noCache) && result.GetResult(cacheDir) is { Implicit: false })
                result.AddError($"{RunSchema.NoCache.Flag} turns the cache off and {RunSchema.CacheDir.Flag} names its folder; give one of them.");
        });
        command.SetAction(CliApp.Guard(services, async (console, parse, cancellationToken) =>
        {
            string modelPath = parse.GetValue(model)!;
            var chosen = settings.Read(parse);
            var (onnx, input) = SharedOptions.LoadClassifier(modelPath, chosen.InputShape);
            // External data is read into the model now: what is quantized, written, checked and cached is one whole model.
            byte[] modelBytes;
            if (onnx.HasExternalData)
            {
                onnx = onnx.WithExternalDataInlined();
                modelBytes = onnx.Proto.ToByteArray();
            }
            else modelBytes = File.ReadAllBytes(modelPath);
            var standardization = InputStandardization.FromSettings(chosen, input.Channels);
            string outputPath = ResolveOutput(modelPath, parse.GetValue(output), chosen.Bits);

            ImageSet? calibrationSet = null;
            if (chosen.CalibrationData is { } calibrationPath)
            {
                try { calibrationSet = ImageSet.Load(calibrationPath, limit: chosen.Samples, channels: input.Channels,
                    height: input.Height, width: input.Width, resize: chosen.Resize, crop: chosen.Crop, channelOrder: chosen.ChannelOrder); }
                catch (SadgException e) when (e.Code is SadgErrorCode.DataNotFound or SadgErrorCode.DataInvalid)
                {
                    throw new SadgException(SadgErrorCode.CalibrationDataInvalid, e.Message, e.File, inner: e);
                }
                CheckFits(calibrationSet, input, SadgErrorCode.CalibrationDataInvalid, "The calibration images", calibrationPath);
            }

            ImageSet? validationSet = null;
            if (chosen.ValidationData is { } validationPath)
            {
                validationSet = ImageSet.Load(validationPath, channels: input.Channels,
                    height: input.Height, width: input.Width, resize: chosen.Resize, crop: chosen.Crop, channelOrder: chosen.ChannelOrder);
                CheckFits(validationSet, input, SadgErrorCode.DataInvalid, $"The validation images ({QuantizeSchema.ValidationData.Label})", validationPath);
            }

            var torchDevice = DeviceChoice.ResolveTorch(chosen.Device, console);
            string? cache = parse.GetValue(noCache) ? null : ResolveCache(parse.GetValue(cacheDir), modelPath, services, console);
            string? reportPath = parse.GetValue(report);
            if (reportPath is not null) CheckOutputBesideReport(outputPath, reportPath);
            // Every check that does not need the pipeline is made before it runs: the output's folder first, so that a
            // failure there leaves no report folder behind. A run that does not finish removes the folders it made.
            string outputFolder = Path.GetDirectoryName(Path.GetFullPath(outputPath))!;
            var createdFolders = new List<string>(); // the folders of -o's path this run makes, deepest first
            for (string? dir = outputFolder; dir is not null && !Directory.Exists(dir); dir = Path.GetDirectoryName(dir)) createdFolders.Add(dir);
            bool outputFolderCreated = createdFolders.Count > 0;
            AtomicFile.CheckWritable(outputFolder, "the folder of -o");
            bool reportCreated = reportPath is not null && !Directory.Exists(reportPath);
            void RemoveCreatedFolders()
            {
                if (reportCreated && reportPath is not null) AtomicFile.TryDelete(reportPath);
                // Each only when empty: it may hold what this run did not make.
                try { foreach (string dir in createdFolders) Directory.Delete(dir); }
                catch (IOException) { }
                catch (UnauthorizedAccessException) { }
            }
            try { if (reportPath is not null) AtomicFile.CheckWritable(reportPath, "the --report folder"); }
            catch
            {
                RemoveCreatedFolders();
                throw;
            }

            var request = new QuantizationRequest(modelPath, onnx, input, chosen, calibrationSet, torchDevice, cache, reportPath)
            { Standardization = standardization, ValidationData = validationSet, ModelBytes = modelBytes };
            console.Log.Information("Quantizing {Model}: W{Bits}A{Act}, method {Method}, profile {Profile}, seed {Seed} -> {Output}",
                modelPath, chosen.Bits, chosen.ActivationBits?.ToString() ?? "float", QuantizeSchema.Name(chosen.Method),
                QuantizeSchema.Name(chosen.Profile), chosen.Seed, outputPath);
            try
            {
                ModelCache? store = cache is null ? null : new ModelCache(cache);
                string? key = store is null ? null
                    : ModelCache.Key(modelBytes, LibraryQuantizationPipeline.Options(request).Canonical(), CliApp.Version);
                if (store is not null && FindInCache(store, key!, modelPath, console) is { } entry)
                {
                    // The run that made the entry warned: so does the hit (NoWarn and WarningsAsErrors act alike on both).
                    foreach (var warning in RecordedWarnings(entry.Files)) console.Diagnostic(warning.ToDiagnostic(modelPath));
                    // The gate holds for a cached model too: it is checked against the agreement the model records.
                    string? cachedGate = AccuracyGate.Check(entry.Model, chosen, modelPath);
                    // The bytes written are the ones just verified.
                    WriteOutputs(outputPath, entry.Model, reportPath, entry.Files, cachedIn: null);
                    console.Out.WriteLine($"cache hit: {key} ({entry.Path})");
                    if (cachedGate is not null) console.Out.WriteLine(cachedGate);
                    console.Out.WriteLine($"wrote {outputPath} ({Sizes.Format(entry.Model.LongLength)})");
                    console.Out.WriteLine(Outcome(modelPath, chosen, entry.Model.LongLength, entry.Files, cacheHit: true));
                    return ExitCodes.Ok;
                }
                var result = await RunPipelineAsync(services.Quantization, request, console, cancellationToken);
                cancellationToken.ThrowIfCancellationRequested();
                byte[] bytes = result.Model.ToByteArray();
                // The gate before anything is stored: a model below it is neither cached nor written.
                string? gate = AccuracyGate.Check(bytes, chosen, modelPath);
                // Cache first: when writing -o fails now, the finished result is not lost.
                string? cachedIn = store is null ? null : StoreInCache(store, key!, bytes, result.ReportFiles, modelPath, console);
                WriteOutputs(outputPath, bytes, reportPath, result.ReportFiles, cachedIn);
                foreach (var line in result.Summary) console.Out.WriteLine(line);
                if (gate is not null) console.Out.WriteLine(gate);
                console.Out.WriteLine($"wrote {outputPath} ({Sizes.Format(bytes.LongLength)})");
                console.Out.WriteLine(Outcome(modelPath, chosen, bytes.LongLength, result.ReportFiles, cacheHit: false));
                return ExitCodes.Ok;
            }
            catch when (reportCreated || outputFolderCreated)
            {
                // Leave no trace of a run that did not finish: remove the folders this run created.
                RemoveCreatedFolders();
                throw;
            }
        }));
        return command;
    }

    /// <summary>Refuses images (calibration or validation data) that are not the size the model takes, before any work.</summary>
    static void CheckFits(ImageSet set, ImageInput input, SadgErrorCode code, string what, string path)
    {
        if (set.Shape[1] != input.Channels || set.Shape[2] != input.Height || set.Shape[3] != input.Width)
            throw new SadgException(code,
                $"{what} are {set.Shape[1]}x{set.Shape[2]}x{set.Shape[3]}; the model takes {input.Channels}x{input.Height}x{input.Width}.", path);
    }

    /// <summary>The first word of the outcome line (<see cref="Outcome"/>).</summary>
    public const string OutcomePrefix = "outcome: ";

    /// <summary>
    /// The run's outcome in one line, last on stdout (the build shows it at minimal verbosity):
    /// <c>outcome: model.onnx: W4A8 sadag, 1.1 MB -> 150 KB (7.5x smaller), top-1 agreement 97.50%, cache hit</c>.
    /// The agreement comes from the run's report.json (the cached one on a hit): the validation measurement when the run
    /// made one (held-out images), else the check on the calibration images, said which; left out when there is none.
    /// </summary>
    public static string Outcome(string modelPath, QuantizeSettings settings, long outputBytes, IReadOnlyDictionary<string, byte[]> reportFiles, bool cacheHit)
    {
        long inputBytes = new FileInfo(modelPath).Length;
        var parts = new List<string>
        {
            $"{(settings.SizeBudget is { } budget ? $"mixed W (size budget {budget}) " : $"W{settings.Bits}")}A{settings.ActivationBits?.ToString(System.Globalization.CultureInfo.InvariantCulture) ?? "-"} {QuantizeSchema.Name(settings.Method)}",
            $"{Sizes.Format(inputBytes)} -> {Sizes.Format(outputBytes)}" +
                (outputBytes > 0 ? $" ({((double)inputBytes / outputBytes).ToString("0.0", System.Globalization.CultureInfo.InvariantCulture)}x smaller)" : ""),
        };
        if (reportFiles.TryGetValue(LibraryQuantizationPipeline.ReportJson, out var json))
        {
            try
            {
                var report = QuantizationReport.FromJson(System.Text.Encoding.UTF8.GetString(json));
                // The held-out measurement when there is one: the calibration images flatter the model.
                if (report.Validation?.Describe() is { Length: > 0 } validation) parts.Add($"{validation} on {report.ValidationData}");
                else if (report.Check?.Describe() is { Length: > 0 } check) parts.Add($"{check} on the calibration images");
            }
            catch (System.Text.Json.JsonException) { }
        }
        parts.Add(cacheHit ? "cache hit" : "quantized");
        return OutcomePrefix + Path.GetFileName(modelPath) + ": " + string.Join(", ", parts);
    }

    /// <summary>The coded warnings the run that made a cache entry reported, from its report.json (none when it has none).</summary>
    static IEnumerable<SadgWarning> RecordedWarnings(IReadOnlyDictionary<string, byte[]> reportFiles)
    {
        if (!reportFiles.TryGetValue(LibraryQuantizationPipeline.ReportJson, out var json)) return [];
        try
        {
            return QuantizationReport.FromJson(System.Text.Encoding.UTF8.GetString(json)).Warnings
                .Select(w => w.ToWarning()).OfType<SadgWarning>().ToList();
        }
        catch (System.Text.Json.JsonException) { return []; }
    }

    /// <summary>
    /// The seam between the tool and the quantization library: everything is checked before, and the model is
    /// written after (tests put a pipeline of their own here).
    /// </summary>
    public static Task<QuantizationResult> RunPipelineAsync(IQuantizationPipeline pipeline, QuantizationRequest request, CliConsole console, CancellationToken cancellationToken) =>
        pipeline.RunAsync(request, console, cancellationToken);

    /// <summary>
    /// The verified entry of <paramref name="key"/>, or null. An entry that fails verification is a warning
    /// (SADG1202), is removed, and the model is computed again.
    /// </summary>
    static CacheEntry? FindInCache(ModelCache store, string key, string modelPath, CliConsole console)
    {
        var found = store.Lookup(key);
        if (found.Problem is null) return found.Entry;
        string entry = store.EntryPath(key);
        console.Diagnostic(new SadgWarning(SadgErrorCode.CacheEntryInvalid,
            $"The cache entry '{entry}' is not used: {found.Problem}. It is removed and the model is quantized again.").ToDiagnostic(modelPath));
        try { store.Remove(key); }
        catch (SadgException e) { console.Diagnostic(new SadgWarning(e.Code, e.Message).ToDiagnostic(modelPath)); }
        return null;
    }

    /// <summary>Stores a finished result; returns the entry's folder, or null (with a warning, SADG1203) when it could not be stored.</summary>
    static string? StoreInCache(ModelCache store, string key, byte[] model, IReadOnlyDictionary<string, byte[]> files, string modelPath, CliConsole console)
    {
        string entry = store.EntryPath(key);
        try
        {
            var outcome = store.Put(key, model, files);
            if (outcome == CachePutOutcome.Stored) console.Log.Information("Stored in the cache: {Entry}", entry);
            else console.Log.Information("Already in the cache (stored by another run): {Entry}", entry);
            return entry;
        }
        catch (SadgException e)
        {
            console.Diagnostic(new SadgWarning(SadgErrorCode.CacheUnavailable,
                $"{e.Message} The model is written, but not cached.").ToDiagnostic(modelPath));
            return null;
        }
    }

    /// <summary>
    /// Writes the report files and then -o, each atomically, so that a run that fails writing leaves no model behind
    /// (a build would embed it); a failure says where the cached result is.
    /// </summary>
    static void WriteOutputs(string outputPath, byte[] model, string? reportPath, IReadOnlyDictionary<string, byte[]> reportFiles, string? cachedIn)
    {
        try
        {
            if (reportPath is not null)
                foreach (var (name, content) in reportFiles) AtomicFile.Write(Path.Combine(reportPath, name), content);
            AtomicFile.Write(outputPath, model);
        }
        catch (SadgException e) when (cachedIn is not null && e.Code == SadgErrorCode.WriteFailed)
        {
            throw new SadgException(e.Code, $"{e.Message} The finished model is in the cache ('{cachedIn}'): run the same command " +
                "again once the path is writable and it is copied from there.", e.File, inner: e);
        }
    }

    /// <summary>
    /// --cache-dir (created and written to; error SADG1203 when it cannot be), else the default folder (when it
    /// cannot be used: warning SADG1203 and no cache).
    /// </summary>
    static string? ResolveCache(string? option, string modelPath, CliServices services, CliConsole console)
    {
        string folder = option ?? services.CacheDirectory ?? ModelCache.DefaultDirectory();
        try
        {
            AtomicFile.CheckWritable(folder, "the cache");
            return folder;
        }
        catch (SadgException e) when (e.Code == SadgErrorCode.WriteFailed)
        {
            string fix = option is not null ? "Give a writable --cache-dir, or --no-cache." : "Running without a cache; set --cache-dir or $SADG_CACHE_DIR to a writable folder, or pass --no-cache.";
            string message = $"The cache folder '{folder}' cannot be used: {e.InnerException?.Message ?? e.Message} {fix}";
            if (option is not null) throw new SadgException(SadgErrorCode.CacheUnavailable, message, folder, inner: e);
            console.Diagnostic(new SadgWarning(SadgErrorCode.CacheUnavailable, message).ToDiagnostic(modelPath));
            return null;
        }
    }

    /// <summary>Refuses an -o that is the report folder or one of the files the report writes there (the report would replace the model).</summary>
    static void CheckOutputBesideReport(string outputPath, string reportPath)
    {
        string output = Path.GetFullPath(outputPath), folder = Path.GetFullPath(reportPath).TrimEnd(Path.DirectorySeparatorChar);
        string[] reportFiles = [LibraryQuantizationPipeline.ReportJson, LibraryQuantizationPipeline.ReportMarkdown, LibraryQuantizationPipeline.SyntheticPng];
        if (output == folder || (Path.GetDirectoryName(output) == folder && reportFiles.Contains(Path.GetFileName(output))))
            throw new SadgException(SadgErrorCode.OutputInvalid,
                $"-o '{outputPath}' is {(output == folder ? "the --report folder" : "a file the report writes")} ('{reportPath}' holds " +
                $"{string.Join(", ", reportFiles)}); write the model elsewhere.", outputPath);
    }

    static string ResolveOutput(string modelPath, string? output, int bits)
    {
        string path = output ?? Path.Combine(Path.GetDirectoryName(Path.GetFullPath(modelPath))!, $"{Path.GetFileNameWithoutExtension(modelPath)}.q{bits}.onnx");
        if (Directory.Exists(path) || path.EndsWith(Path.DirectorySeparatorChar) || path.EndsWith(Path.AltDirectorySeparatorChar))
            throw new SadgException(SadgErrorCode.OutputInvalid, $"-o '{path}' is a folder; give the path of the .onnx file to write.", path);
        if (FilePaths.SameFile(path, modelPath))
            throw new SadgException(SadgErrorCode.OutputInvalid,
                $"-o '{path}' is the input model '{modelPath}' (the same file once links are resolved: '{FilePaths.RealPath(path)}'); write the quantized model to another file.", path);
        return path;
    }
}
