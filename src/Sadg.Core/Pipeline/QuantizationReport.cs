using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.Json.Serialization;

namespace Sadg.Pipeline;

/// <summary>
/// How long one stage took, the process's peak resident memory during it and the minor page faults it caused (null
/// where unknown; many faults mean native memory mapped afresh every step, see <see cref="NativeHeap"/>).
/// </summary>
public sealed record StageTiming(string Stage, double Seconds, long? PeakResidentBytes = null, long? MinorFaults = null);

/// <summary>The loss terms of a stage's first and last reported step.</summary>
public sealed record StageLosses(string Stage, IReadOnlyDictionary<string, double> First, IReadOnlyDictionary<string, double> Last);

/// <summary>
/// The ONNX Runtime check of the quantized model against the FP model on the calibration set: top-1 agreement for
/// classifiers, cosine similarity (with SQNR) of the outputs for other models; <see cref="Metric"/> says which is the result.
/// </summary>
public sealed record RuntimeCheck(string Runtime, int Images, double? Top1Agreement)
{
    /// <summary><c>top1_agreement</c> or <c>cosine_similarity</c> (see <see cref="OutputComparison"/>).</summary>
    public string Metric { get; init; } = OutputComparison.Top1Agreement;

    /// <summary>Mean per-image cosine similarity of the flattened outputs.</summary>
    public double? CosineSimilarity { get; init; }

    /// <summary>Signal-to-quantization-noise ratio of the outputs in dB.</summary>
    public double? SqnrDb { get; init; }

    /// <summary>One line: the metric's value, and the other numbers measured.</summary>
    public string Describe()
    {
        static string F(double v, string format) => v.ToString(format, CultureInfo.InvariantCulture);
        var parts = new List<string>();
        if (Top1Agreement is { } top1) parts.Add($"top-1 agreement {F(top1 * 100, "0.00")}%");
        if (CosineSimilarity is { } cosine) parts.Add($"output cosine similarity {F(cosine, "0.0000")}");
        if (SqnrDb is { } sqnr) parts.Add($"output SQNR {F(sqnr, "0.0")} dB");
        return string.Join(", ", parts);
    }
}

/// <summary>A coded warning as report.json keeps it: <c>{"code": "SADG2001", "message": "…"}</c>.</summary>
public sealed record ReportedWarning(string Code, string Message)
{
    public static ReportedWarning From(SadgWarning warning) => new(Sadg.Options.DiagnosticFormat.Code((int)warning.Code), warning.Message);

    /// <summary>The warning again; null for a code this version does not know.</summary>
    public SadgWarning? ToWarning() =>
        Code.StartsWith("SADG", StringComparison.Ordinal) && int.TryParse(Code.AsSpan(4), NumberStyles.None, CultureInfo.InvariantCulture, out int code)
            && Enum.IsDefined(typeof(SadgErrorCode), code)
            ? new SadgWarning((SadgErrorCode)code, Message) : null;
}

/// <summary>Everything the pipeline did, for report.json and report.md.</summary>
public sealed record QuantizationReport
{
    public string Tool { get; init; } = "sadg";
    public string ToolVersion { get; init; } = "";
    public string Model { get; init; } = "";
    public string ModelSha256 { get; init; } = "";
    public IReadOnlyDictionary<string, string> Options { get; init; } = new SortedDictionary<string, string>();
    public string OptionsHash { get; init; } = "";
    public int CalibrationImages { get; init; }
    public string InputStandardization { get; init; } = "";
    public string InputPrior { get; init; } = "";
    public bool UsedBatchNormStatistics { get; init; }
    public string? Warning { get; init; }

    /// <summary>
    /// Every coded warning the run reported (SADG2xxx), in order. A cache hit reports them again, so that a build that
    /// treats one as an error fails on the cached model as it did on the run that made it.
    /// </summary>
    public IReadOnlyList<ReportedWarning> Warnings { get; init; } = [];
    public IReadOnlyList<StageTiming> Timings { get; init; } = [];

    /// <summary>How the process's native heap was set up (<see cref="Sadg.NativeHeap.Mode"/>): jemalloc, reused or system.</summary>
    public string NativeHeap { get; init; } = Sadg.NativeHeap.Mode;
    public double TotalSeconds { get; init; }
    public IReadOnlyList<StageLosses> Losses { get; init; } = [];
    public int FoldedBatchNorms { get; init; }
    public IReadOnlyList<Export.LayerBits> Layers { get; init; } = [];

    /// <summary>
    /// Per quantized layer, the output SQNR against the FP32 model when that layer alone is quantized (round to
    /// nearest at its bits, everything else float; <see cref="Quantization.SensitivityAnalysis"/>), on the first
    /// <see cref="SensitivityImages"/> calibration images. Lower is more sensitive.
    /// </summary>
    public IReadOnlyList<Quantization.LayerSensitivity> Sensitivity { get; init; } = [];

    /// <summary>The number of calibration images <see cref="Sensitivity"/> was measured on.</summary>
    public int SensitivityImages { get; init; }

    /// <summary>What the size budget search chose (<c>--size-budget</c>): the budget, the weight bytes and each layer's bits; null: no budget.</summary>
    public SizeBudgetResult? SizeBudget { get; init; }

    /// <summary>The quantizable layers left in float (<c>--exclude</c>), in execution order.</summary>
    public IReadOnlyList<string> FloatLayers { get; init; } = [];

    /// <summary>How each block's final reconstruction ended: last losses and the share of binarized rounding offsets.</summary>
    public IReadOnlyList<Reconstruction.BlockOutcome> Blocks { get; init; } = [];
    public long InputBytes { get; init; }
    public long OutputBytes { get; init; }
    public RuntimeCheck? Check { get; init; }

    /// <summary>
    /// The agreement with the FP32 model on the validation images (held-out synthetic images or the user's
    /// --validation-data), the accuracy gate's measurement; null when none was asked for.
    /// </summary>
    public RuntimeCheck? Validation { get; init; }

    /// <summary>What <see cref="Validation"/> was measured on (as the model's sadg.validation_data says).</summary>
    public string? ValidationData { get; init; }
    public IReadOnlyList<string> Notes { get; init; } = [];

    /// <summary>What ONNX Runtime does with the written model, stated in every report.</summary>
    public const string RuntimeNote =
        "ONNX Runtime 1.31 (CPU) fuses 8-bit QuantizeLinear/DequantizeLinear around Conv into integer kernels (QLinearConv), " +
        "but leaves 4-bit (and 2-3-bit) weights as DequantizeLinear -> float Conv: below 8 bits the model is smaller, not faster on a CPU.";

    static readonly JsonSerializerOptions Json = new()
    {
        WriteIndented = true,
        PropertyNamingPolicy = JsonNamingPolicy.CamelCase,
        DefaultIgnoreCondition = JsonIgnoreCondition.Never,
        NumberHandling = JsonNumberHandling.AllowNamedFloatingPointLiterals,
    };

    public string ToJson() => JsonSerializer.Serialize(this, Json);

    public static QuantizationReport FromJson(string json) =>
        JsonSerializer.Deserialize<QuantizationReport>(json, Json) ?? throw new JsonException("empty report");

    /// <summary>An SQNR in dB as the report and <c>sadg inspect</c> print it (∞ for no error).</summary>
    public static string Db(double db) => double.IsPositiveInfinity(db) ? "∞" : db.ToString("0.0", CultureInfo.InvariantCulture);

    public string ToMarkdown()
    {
        static string F(double v, string format = "0.###") => v.ToString(format, CultureInfo.InvariantCulture);
        static string Bytes(long b) => b >= 1 << 20 ? F(b / 1048576.0, "0.0") + " MiB" : b >= 1 << 10 ? F(b / 1024.0, "0.0") + " KiB" : b + " B";
        var s = new StringBuilder();
        s.AppendLine($"# Quantization report: {Model}");
        s.AppendLine();
        s.AppendLine($"{Tool} {ToolVersion}; options hash `{OptionsHash}`; model SHA-256 `{ModelSha256}`.");
        s.AppendLine();
        foreach (var w in Warnings) { s.AppendLine($"> **Warning {w.Code}:** {w.Message}"); s.AppendLine(); }
        if (Warning is not null && Warnings.All(w => w.Message != Warning)) { s.AppendLine($"> **Warning:** {Warning}"); s.AppendLine(); }
        s.AppendLine("## Options");
        s.AppendLine();
        s.AppendLine("| option | value |");
        s.AppendLine("|---|---|");
        foreach (var (k, v) in Options) s.AppendLine($"| {k} | {v} |");
        s.AppendLine($"| calibration images | {CalibrationImages} |");
        s.AppendLine($"| input standardization | {InputStandardization} |");
        s.AppendLine($"| input prior (generation) | {InputPrior} |");
        s.AppendLine($"| BN statistics used | {(UsedBatchNormStatistics ? "yes" : "no")} |");
        s.AppendLine();
        s.AppendLine("## Result");
        s.AppendLine();
        s.AppendLine($"- Size: {Bytes(InputBytes)} → {Bytes(OutputBytes)} ({F(InputBytes == 0 ? 0 : (double)OutputBytes / InputBytes * 100, "0.0")}% of the FP32 model).");
        if (Check is not null)
            s.AppendLine($"- Check against the FP32 model on the {Check.Images} calibration images, both run by {Check.Runtime} (metric: {Check.Metric}): {Check.Describe()}.");
        else s.AppendLine("- ONNX Runtime check: not run.");
        if (Validation is not null)
            s.AppendLine($"- Validation (the accuracy gate's measurement) against the FP32 model on {ValidationData}, both run by {Validation.Runtime} (metric: {Validation.Metric}): {Validation.Describe()}.");
        s.AppendLine($"- BatchNormalization nodes folded: {FoldedBatchNorms}.");
        s.AppendLine();
        s.AppendLine("## Timings");
        s.AppendLine();
        s.AppendLine($"Native heap: {NativeHeap} (docs/cli.md, `SADG_NATIVE_HEAP`).");
        s.AppendLine();
        s.AppendLine("| stage | seconds | peak resident memory | minor page faults |");
        s.AppendLine("|---|---:|---:|---:|");
        foreach (var t in Timings)
            s.AppendLine($"| {t.Stage} | {F(t.Seconds, "0.0")} | {(t.PeakResidentBytes is { } b ? Bytes(b) : "")} | {(t.MinorFaults is { } f ? f.ToString("N0", CultureInfo.InvariantCulture) : "")} |");
        s.AppendLine($"| **total** | {F(TotalSeconds, "0.0")} | {(Timings.Max(t => t.PeakResidentBytes) is { } peak ? Bytes(peak) : "")} | {(Timings.Sum(t => t.MinorFaults ?? 0) is > 0 and var all ? all.ToString("N0", CultureInfo.InvariantCulture) : "")} |");
        s.AppendLine();
        if (Losses.Count > 0)
        {
            s.AppendLine("## Losses (first → last reported step)");
            s.AppendLine();
            s.AppendLine("| stage | term | first | last |");
            s.AppendLine("|---|---|---:|---:|");
            foreach (var l in Losses)
                foreach (var key in l.First.Keys.Union(l.Last.Keys).Order(StringComparer.Ordinal))
                    s.AppendLine($"| {l.Stage} | {key} | {(l.First.TryGetValue(key, out var a) ? F(a, "0.####") : "")} | {(l.Last.TryGetValue(key, out var b) ? F(b, "0.####") : "")} |");
            s.AppendLine();
        }
        s.AppendLine("## Layers");
        s.AppendLine();
        if (Sensitivity.Count > 0)
        {
            s.AppendLine($"SQNR alone: the output SQNR against the FP32 model when only that layer is quantized (round to nearest at its bits, " +
                $"everything else float), on the first {SensitivityImages} calibration images; the lower, the more sensitive the layer.");
            s.AppendLine();
        }
        var sqnr = Sensitivity.GroupBy(l => l.Node).ToDictionary(g => g.Key, g => g.First().SqnrDb, StringComparer.Ordinal);
        s.AppendLine("| node | op | weight bits | input bits | SQNR alone (dB) |");
        s.AppendLine("|---|---|---:|---:|---:|");
        foreach (var l in Layers)
            s.AppendLine($"| {l.Node} | {l.OpType} | {l.WeightBits} | {l.InputBits?.ToString(CultureInfo.InvariantCulture) ?? "float"} | " +
                $"{(sqnr.TryGetValue(l.Node, out double db) ? Db(db) : "")} |");
        s.AppendLine();
        if (FloatLayers.Count > 0)
        {
            s.AppendLine($"Left in float (excluded): {string.Join(", ", FloatLayers)}.");
            s.AppendLine();
        }
        if (SizeBudget is { } budget)
        {
            s.AppendLine("## Size budget");
            s.AppendLine();
            s.AppendLine($"Budget {budget.Budget}: {budget.BudgetBytes} bytes of quantized weights at their nominal bits (b bits a weight, " +
                $"a float32 scale and a b-bit zero point per channel); chosen: {budget.WeightBytes} bytes ({F(100.0 * budget.WeightBytes / budget.Fp32Bytes, "0.##")}% " +
                $"of the FP32 weights' {budget.Fp32Bytes} bytes; smallest feasible: {budget.MinimumBytes} bytes), {budget.FileBytes} bytes in the " +
                "written file (2- and 3-bit weights are stored in 4-bit containers). Chosen layers minimize the summed noise 10^(-SQNR/10) of each " +
                "layer quantized alone (round to nearest, on the calibration images); fixed layers keep their bits.");
            s.AppendLine();
            var candidates = budget.Layers.SelectMany(l => l.SqnrDb.Keys).Distinct().Order().ToList();
            s.AppendLine("| node | weight bits | nominal bytes | chosen |" + string.Concat(candidates.Select(b => $" SQNR at W{b} (dB) |")));
            s.AppendLine("|---|---:|---:|---|" + string.Concat(candidates.Select(_ => "---:|")));
            foreach (var l in budget.Layers)
                s.AppendLine($"| {l.Node} | {l.WeightBits} | {l.Bytes} | {(l.Chosen ? "yes" : "fixed")} |" +
                    string.Concat(candidates.Select(b => $" {(l.SqnrDb.TryGetValue(b, out double db) ? Db(db) : "")} |")));
            s.AppendLine();
        }
        if (Blocks.Count > 0)
        {
            s.AppendLine("## Reconstruction (last step of each block)");
            s.AppendLine();
            s.AppendLine("| block | output | steps | reconstruction loss | rounding loss | h(V) binarized | biases corrected |");
            s.AppendLine("|---:|---|---:|---:|---:|---:|---:|");
            foreach (var b in Blocks)
                s.AppendLine($"| {b.Block} | {b.Output} | {b.Steps} | {F(b.ReconstructionLoss, "0.####")} | {F(b.RoundingLoss, "0.##")} | {F(b.BinarizedShare * 100, "0.0")}% | {b.CorrectedBiases} |");
            s.AppendLine();
        }
        s.AppendLine("## Notes");
        s.AppendLine();
        foreach (var n in Notes) s.AppendLine($"- {n}");
        return s.ToString();
    }
}
