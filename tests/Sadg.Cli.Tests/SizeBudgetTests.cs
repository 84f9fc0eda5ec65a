using Onnx;
using Sadg.Onnx;
using Sadg.Pipeline;
using Sadg.Tests.Support;

namespace Sadg.Cli.Tests;

/// <summary><c>--size-budget</c> through the tool: the chosen weights fit, the report and the output say what was chosen and what the file holds, a too small budget fails early.</summary>
public class SizeBudgetTests
{
    static readonly string[] Tiny = ["--device", "cpu", "--no-cache", "--method", "gaussian", "--samples", "8", "--reconstruction-steps", "0"];

    [Fact]
    public async Task The_chosen_bits_are_written_and_reported_and_a_too_small_budget_is_SADG1407()
    {
        using var folder = new TempFolder();
        string model = Models.Save(TestModels.ResNet(seed: 3, width: 4, channels: 1, size: 8), folder, "m.onnx");
        string output = folder.File("q.onnx"), report = folder.File("report");

        var small = await CliRunner.RunAsync(["quantize", model, "-o", output, .. Tiny, "--size-budget", "0.01"]);
        Assert.Equal(1, small.ExitCode);
        Assert.Contains("SADG1407", small.Err);
        Assert.Contains("smallest feasible size", small.Err);
        Assert.False(File.Exists(output));

        var r = await CliRunner.RunAsync(["quantize", model, "-o", output, .. Tiny, "--report", report, "--size-budget", "0.3"]);
        Assert.True(r.ExitCode == 0, r.Err);
        // Both measurements of every layer show their progress: four candidate bit widths, then the report's sensitivity.
        Assert.Matches(@"searching the size budget \(layer sensitivities\): 0% \(0/\d+\)", r.Err);
        Assert.Contains("searching the size budget (layer sensitivities): done", r.Err);
        Assert.Contains("measuring layer sensitivity: done", r.Err);
        var json = QuantizationReport.FromJson(File.ReadAllText(Path.Combine(report, "report.json")));
        var budget = json.SizeBudget!;
        Assert.Equal("0.3", json.Options["size_budget"]);
        Assert.Equal((long)Math.Floor(0.3 * budget.Fp32Bytes), budget.BudgetBytes);
        Assert.Contains($"size budget 0.3: quantized weights {budget.WeightBytes} of {budget.BudgetBytes} nominal bytes ({budget.FileBytes} in the file)", r.Out);
        Assert.Contains("## Size budget", File.ReadAllText(Path.Combine(report, "report.md")));
        Assert.Contains("outcome: m.onnx: mixed W (size budget 0.3) A4 gaussian", r.Out);

        // The written file: each quantized weight's integers, scale and zero point, at the reported bits.
        var written = OnnxModel.Load(output).Proto;
        var initializers = written.Graph.Initializer.ToDictionary(t => t.Name);
        var dequantized = written.Graph.Node.Where(n => n.OpType == "DequantizeLinear" && initializers.ContainsKey(n.Input[0])).ToList();
        long bytes = dequantized.Sum(n => n.Input.Take(3).Sum(i => (long)initializers[i].RawData.Length));
        Assert.Equal(budget.FileBytes, bytes);
        Assert.True(budget.WeightBytes <= budget.BudgetBytes);
        var bits = json.Layers.ToDictionary(l => l.Node, l => l.WeightBits);
        Assert.All(budget.Layers, l => Assert.Equal(l.WeightBits, bits[l.Node]));
    }
}
