using Onnx;
using Sadg.Onnx;
using Sadg.Pipeline;
using Sadg.Tests.Support;

namespace Sadg.Tests.Pipeline;

/// <summary>
/// Mixed precision under a size budget, end to end on a tiny ResNet: the written file's weights (read back) fit the
/// budget, a budget between uniform W4 and W8 mixes bit widths, and an infeasible budget fails before any generation.
/// </summary>
[Collection(nameof(PipelineMemoryTests))]
public class SizeBudgetTests
{
    static OnnxModel Model() => OnnxModel.FromProto(TestModels.ResNet(seed: 5, width: 8, channels: 1, size: 8));

    static PipelineOptions Options(int bits = 4) => new()
    {
        Method = CalibrationMethod.Gaussian, Samples = 8, ReconstructionSteps = 0, MeasureSensitivity = false, WeightBits = bits,
    };

    /// <summary>The quantized weights' bytes and FP32 bytes in a written QDQ model: every DequantizeLinear that reads an initializer.</summary>
    static (long Bytes, long Fp32Bytes) WeightBytes(byte[] file)
    {
        var model = ModelProto.Parser.ParseFrom(file);
        var initializers = model.Graph.Initializer.ToDictionary(t => t.Name);
        long bytes = 0, fp32 = 0;
        foreach (var node in model.Graph.Node.Where(n => n.OpType == "DequantizeLinear" && initializers.ContainsKey(n.Input[0])))
        {
            foreach (var input in node.Input.Take(3))
            {
                Assert.True(initializers[input].RawData.Length > 0, input);
                bytes += initializers[input].RawData.Length;
            }
            fp32 += 4 * initializers[node.Input[0]].Dims.Aggregate(1L, (a, d) => a * d);
        }
        return (bytes, fp32);
    }

    [Fact]
    public void A_budget_of_the_uniform_W4_size_gives_a_file_within_it_and_a_larger_one_mixes_bit_widths()
    {
        var model = Model();
        long w4, w8, fp32;
        using (var uniform = QuantizationPipeline.Quantize(model, Options()))
            (w4, fp32) = WeightBytes(uniform.ModelBytes);
        using (var uniform = QuantizationPipeline.Quantize(model, Options(8)))
            w8 = WeightBytes(uniform.ModelBytes).Bytes;
        Assert.True(w8 > w4);

        using (var atW4 = QuantizationPipeline.Quantize(model, Options() with { SizeBudget = new SizeBudget((w4 + 0.5) / fp32, null) }))
        {
            var budget = atW4.Report.SizeBudget!;
            Assert.Equal(w4, budget.BudgetBytes);
            Assert.Equal(fp32, budget.Fp32Bytes);
            long file = WeightBytes(atW4.ModelBytes).Bytes;
            Assert.True(file <= w4, $"{file} > {w4}");
            Assert.Equal(file, budget.WeightBytes);
        }

        long between = (w4 + w8) / 2;
        using var mixed = QuantizationPipeline.Quantize(model, Options() with { SizeBudget = new SizeBudget((between + 0.5) / fp32, null), MeasureSensitivity = true });
        var result = mixed.Report.SizeBudget!;
        long bytes = WeightBytes(mixed.ModelBytes).Bytes;
        Assert.True(bytes <= between, $"{bytes} > {between}");
        Assert.Equal(bytes, result.WeightBytes);
        var chosen = result.Layers.Where(l => l.Chosen).ToList();
        Assert.Equal(5, chosen.Count); // every layer but the first and the last (W8 by the policy)
        Assert.Contains(chosen, l => l.WeightBits == 8);
        Assert.Contains(chosen, l => l.WeightBits <= 4);
        Assert.All(chosen, l => Assert.Equal([2, 3, 4, 8], l.SqnrDb.Keys.Order()));
        // The search measured each layer at its chosen bits as the report's sensitivity does (same images and quantizer).
        var alone = mixed.Report.Sensitivity.ToDictionary(l => l.Node);
        Assert.All(chosen, l => Assert.Equal(alone[l.Node].SqnrDb, l.SqnrDb[l.WeightBits], 6));
        // The written layers have the chosen bits; the first and last keep 8.
        var written = mixed.Report.Layers.ToDictionary(l => l.Node, l => l.WeightBits);
        Assert.All(result.Layers, l => Assert.Equal(l.WeightBits, written[l.Node]));
        Assert.All(result.Layers.Where(l => !l.Chosen), l => Assert.Equal(8, l.WeightBits));
        Assert.Contains("size_budget=", string.Join("\n", mixed.Report.Options.Select(kv => $"{kv.Key}={kv.Value}")));
        Assert.Contains("## Size budget", mixed.Report.ToMarkdown());
        Assert.Equal(result.WeightBytes, QuantizationReport.FromJson(mixed.Report.ToJson()).SizeBudget!.WeightBytes);
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
