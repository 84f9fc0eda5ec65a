using Onnx;
using Sadg.Onnx;
using Sadg.Pipeline;
using Sadg.Quantization;
using Sadg.Tests.Support;

namespace Sadg.Tests.Pipeline;

/// <summary>
/// Mixed precision under a size budget, end to end on a tiny ResNet: budgets count nominal bits (checked against the
/// written file's weights, read back), <c>W</c> budgets are the uniform sizes, a budget between uniform W4 and W8 mixes
/// bit widths, and an infeasible budget fails before any generation.
/// </summary>
[Collection(nameof(PipelineMemoryTests))]
public class SizeBudgetTests
{
    static OnnxModel Model() => OnnxModel.FromProto(TestModels.ResNet(seed: 5, width: 8, channels: 1, size: 8));

    static PipelineOptions Options(int bits = 4) => new()
    {
        Method = CalibrationMethod.Gaussian, Samples = 8, ReconstructionSteps = 0, MeasureSensitivity = false, WeightBits = bits,
    };

    /// <summary>
    /// The quantized weights in a written QDQ model, one per DequantizeLinear that reads an initializer: its bytes as
    /// stored (integers, scales, zero points), its elements, its channels (scales) and whether it is in 4-bit containers.
    /// </summary>
    static List<(long Bytes, long Elements, long Channels, bool Packed)> Weights(byte[] file)
    {
        var model = ModelProto.Parser.ParseFrom(file);
        var initializers = model.Graph.Initializer.ToDictionary(t => t.Name);
        var weights = new List<(long, long, long, bool)>();
        foreach (var node in model.Graph.Node.Where(n => n.OpType == "DequantizeLinear" && initializers.ContainsKey(n.Input[0])))
        {
            long bytes = 0;
            foreach (var input in node.Input.Take(3))
            {
                Assert.True(initializers[input].RawData.Length > 0, input);
                bytes += initializers[input].RawData.Length;
            }
            var integers = initializers[node.Input[0]];
            bool packed = integers.DataType is (int)TensorProto.Types.DataType.Int4 or (int)TensorProto.Types.DataType.Uint4;
            weights.Add((bytes, integers.Dims.Aggregate(1L, (a, d) => a * d), initializers[node.Input[1]].Dims.Aggregate(1L, (a, d) => a * d), packed));
        }
        return weights;
    }

    /// <summary>The quantized weights' bytes as stored and their FP32 bytes in a written QDQ model.</summary>
    static (long Bytes, long Fp32Bytes) WeightBytes(byte[] file)
    {
        var weights = Weights(file);
        return (weights.Sum(w => w.Bytes), weights.Sum(w => 4 * w.Elements));
    }

    [Fact]
    public void A_budget_counts_nominal_bits_and_W_budgets_are_the_uniform_sizes()
    {
        var model = Model();
        long w4, w8, fp32;
        byte[] w3File;
        using (var uniform = QuantizationPipeline.Quantize(model, Options()))
            (w4, fp32) = WeightBytes(uniform.ModelBytes);
        using (var uniform = QuantizationPipeline.Quantize(model, Options(8)))
            w8 = WeightBytes(uniform.ModelBytes).Bytes;
        using (var uniform = QuantizationPipeline.Quantize(model, Options(3)))
            w3File = uniform.ModelBytes;
        Assert.True(w8 > w4);
        // Uniform W3 is stored as W4 is (4-bit containers); counted at 3 bits, its free layers take 3/4 of the integer bytes.
        Assert.Equal(w4, WeightBytes(w3File).Bytes);
        long w3 = Weights(w3File).Sum(w => w.Packed ? (w.Elements * 3 + 7) / 8 + 4 * w.Channels + (w.Channels * 3 + 7) / 8 : w.Bytes);
        Assert.True(w3 < w4);

        // At 4 and 8 bits nominal and stored bytes agree, so W4 and W8 budgets are the uniform files' bytes.
        foreach (var (form, expected) in new[] { ("W4", w4), ("W8", w8), ("W3", w3) })
        {
            Assert.True(SizeBudget.TryParse(form, out var budget));
            using var run = QuantizationPipeline.Quantize(model, Options() with { SizeBudget = budget });
            var result = run.Report.SizeBudget!;
            Assert.Equal(form, result.Budget);
            Assert.Equal(expected, result.BudgetBytes);
            Assert.Equal(fp32, result.Fp32Bytes);
            Assert.True(result.WeightBytes <= expected, $"{form}: {result.WeightBytes} > {expected}");
            Assert.Equal(result.WeightBytes, result.Layers.Sum(l => l.Bytes));
            Assert.Equal(WeightBytes(run.ModelBytes).Bytes, result.FileBytes);
            if (form == "W3") Assert.Contains(result.Layers, l => l.Chosen && l.WeightBits != 4);
        }
    }

    [Fact]
    public void A_budget_between_uniform_W4_and_W8_mixes_bit_widths()
    {
        var model = Model();
        long w4, w8, fp32;
        using (var uniform = QuantizationPipeline.Quantize(model, Options()))
            (w4, fp32) = WeightBytes(uniform.ModelBytes);
        using (var uniform = QuantizationPipeline.Quantize(model, Options(8)))
            w8 = WeightBytes(uniform.ModelBytes).Bytes;

        long between = (w4 + w8) / 2;
        using var mixed = QuantizationPipeline.Quantize(model, Options() with { SizeBudget = new SizeBudget((between + 0.5) / fp32, null), MeasureSensitivity = true });
        var result = mixed.Report.SizeBudget!;
        Assert.Equal(between, result.BudgetBytes);
        Assert.True(result.WeightBytes <= between, $"{result.WeightBytes} > {between}");
        Assert.Equal(WeightBytes(mixed.ModelBytes).Bytes, result.FileBytes);
        var chosen = result.Layers.Where(l => l.Chosen).ToList();
        Assert.Equal(5, chosen.Count); // every layer but the first and the last (W8 by the policy)
        Assert.Contains(chosen, l => l.WeightBits == 8);
        Assert.Contains(chosen, l => l.WeightBits <= 4);
        Assert.All(chosen, l => Assert.Equal([2, 3, 4, 8], l.SqnrDb.Keys.Order()));
        // The report takes the chosen layers' sensitivity from the search; measured afresh at the chosen bits on the same
        // images, every layer gives the same SQNR.
        var alone = mixed.Report.Sensitivity.ToDictionary(l => l.Node);
        var quantization = Options().Quantization();
        var fresh = SensitivityAnalysis.Measure(BatchNormFolding.Fold(model), mixed.Images.Images, quantization with
        {
            Layers = quantization.Layers with { WeightBits = result.Layers.ToDictionary(l => l.Node, l => l.WeightBits) },
        }).ToDictionary(l => l.Node);
        Assert.Equal(fresh.Keys.Order(), alone.Keys.Order());
        Assert.All(fresh.Values, l => Assert.Equal(l.SqnrDb, alone[l.Node].SqnrDb, 6));
        Assert.All(chosen, l => Assert.Equal(alone[l.Node].SqnrDb, l.SqnrDb[l.WeightBits], 6));
        // The written layers have the chosen bits; the first and last keep 8.
        var written = mixed.Report.Layers.ToDictionary(l => l.Node, l => l.WeightBits);
        Assert.All(result.Layers, l => Assert.Equal(l.WeightBits, written[l.Node]));
        Assert.All(result.Layers.Where(l => !l.Chosen), l => Assert.Equal(8, l.WeightBits));
        Assert.Contains("size_budget=", string.Join("\n", mixed.Report.Options.Select(kv => $"{kv.Key}={kv.Value}")));
        Assert.Contains("## Size budget", mixed.Report.ToMarkdown());
        var read = QuantizationReport.FromJson(mixed.Report.ToJson()).SizeBudget!;
        Assert.Equal((result.WeightBytes, result.FileBytes), (read.WeightBytes, read.FileBytes));
    }

    [Fact]
    public void An_infeasible_budget_fails_before_generation_naming_the_smallest_size()
    {
        var options = Options() with { Method = CalibrationMethod.Genie, SizeBudget = new SizeBudget(0.01, null) };
        var e = Assert.Throws<SadgException>(() => QuantizationPipeline.Quantize(Model(), options, new NoStages()));
        Assert.Equal(SadgErrorCode.SizeBudgetTooSmall, e.Code);
        Assert.Contains("smallest feasible size is", e.Message);
        Assert.Contains("`--size-budget` / `SizeBudget` metadata", e.Message);
    }

    /// <summary>Fails any stage: the run must not get to generation.</summary>
    sealed class NoStages : IPipelineReporter
    {
        public IPipelineStage Stage(string name, long total) => throw new InvalidOperationException($"stage '{name}' started");
        public void Info(string message) { }
        public void Warning(SadgWarning warning) { }
    }
}
