using System.Text.Json;
using Sadg.Onnx;
using Sadg.Pipeline;
using Sadg.Tests.Support;
using DataType = Onnx.TensorProto.Types.DataType;

namespace Sadg.Cli.Tests;

/// <summary><c>--exclude</c>, <c>--layer-bits</c>, <c>--first-last-bits</c> through the tool, and <c>inspect --sensitivity</c>.</summary>
public class LayerControlTests
{
    /// <summary>A ResNet-style classifier of 1x8x8 images with BatchNormalization kept (7 quantizable layers).</summary>
    static string SmallModel(TempFolder folder) =>
        Models.Save(TestModels.ResNet(seed: 3, width: 4, channels: 1, size: 8), folder, "m.onnx");

    static readonly string[] Tiny = ["--device", "cpu", "--no-cache", "--method", "gaussian", "--samples", "8", "--reconstruction-steps", "0"];

    static string[] LayerNames(string model)
    {
        using var graph = new Sadg.Graph.GraphModule(OnnxModel.Load(model));
        return graph.Nodes.Where(graph.IsQuantizable).Select(n => n.Name).ToArray();
    }

    [Fact]
    public async Task An_unknown_layer_is_a_coded_error_that_lists_the_layers_inspect_prints()
    {
        using var folder = new TempFolder();
        string model = SmallModel(folder);
        var inspect = await CliRunner.RunAsync("inspect", model, "--json");
        using var json = JsonDocument.Parse(inspect.Out);
        var names = json.RootElement.GetProperty("quantizableLayers").EnumerateArray().Select(l => l.GetProperty("name").GetString()!).ToList();
        Assert.Equal(LayerNames(model), names);

        foreach (var args in new[] { new[] { "--exclude", "nope" }, ["--layer-bits", "nope=3"] })
        {
            var r = await CliRunner.RunAsync(["quantize", model, "-o", folder.File("q.onnx"), .. Tiny, .. args]);
            Assert.Equal(1, r.ExitCode);
            Assert.Contains("SADG1406", r.Err);
            Assert.Contains("'nope'", r.Err);
            Assert.All(names, n => Assert.Contains(n, r.Err));
            Assert.False(File.Exists(folder.File("q.onnx")));
        }
        var bad = await CliRunner.RunAsync(["quantize", model, "-o", folder.File("q.onnx"), .. Tiny, "--layer-bits", names[1] + "=9"]);
        Assert.Equal(1, bad.ExitCode);
        Assert.Contains("SADG1402", bad.Err);
        bad = await CliRunner.RunAsync(["quantize", model, "-o", folder.File("q.onnx"), .. Tiny, "--first-last-bits", "4"]);
        Assert.Equal(1, bad.ExitCode);
        Assert.Contains("SADG1502", bad.Err);
    }

    [Fact]
    public async Task Excluded_and_layer_bits_layers_are_written_so_and_the_report_lists_each_layers_sensitivity()
    {
        using var folder = new TempFolder();
        string model = SmallModel(folder);
        var names = LayerNames(model);
        string output = folder.File("q.onnx"), report = folder.File("report");
        var r = await CliRunner.RunAsync(["quantize", model, "-o", output, .. Tiny, "--report", report,
            "--exclude", names[2], "--layer-bits", $"{names[3]}=2", "--first-last-bits", "same"]);
        Assert.True(r.ExitCode == 0, r.Err);

        var written = OnnxModel.Load(output).Proto;
        var initializers = written.Graph.Initializer.ToDictionary(t => t.Name);
        var producers = written.Graph.Node.SelectMany(n => n.Output.Select(o => (o, n))).ToDictionary(x => x.o, x => x.n);
        var excluded = written.Graph.Node.Single(n => n.Name == names[2]);
        Assert.Equal(DataType.Float, (DataType)initializers[excluded.Input[1]].DataType);
        Assert.False(producers.ContainsKey(excluded.Input[0]) && producers[excluded.Input[0]].OpType is "DequantizeLinear" or "Clip");
        var twoBit = written.Graph.Node.Single(n => n.Name == names[3]);
        var integers = initializers[producers[twoBit.Input[1]].Input[0]];
        using (var values = OnnxTensors.ToTorch(integers).to_type(TorchSharp.torch.ScalarType.Int64))
            Assert.True(values.max().item<long>() <= 3);

        var json = QuantizationReport.FromJson(File.ReadAllText(Path.Combine(report, "report.json")));
        Assert.Equal(names.Where(n => n != names[2]), json.Layers.Select(l => l.Node));
        Assert.Equal(json.Layers.Select(l => (l.Node, l.WeightBits, l.InputBits)), json.Sensitivity.Select(s => (s.Node, s.WeightBits, s.InputBits)));
        Assert.Equal(4, json.Layers[0].WeightBits); // --first-last-bits same: the first layer at the run's 4 bits
        Assert.Equal((4, (int?)4), (json.Layers[^1].WeightBits, json.Layers[^1].InputBits));
        Assert.Equal(8, json.SensitivityImages);
        Assert.All(json.Sensitivity, s => Assert.True(s.SqnrDb is > 0 and < 200, s.ToString()));
        Assert.Equal(names[2], json.Options["exclude"]);
        Assert.Equal($"{names[3]}=2", json.Options["layer_bits"]);
        Assert.Equal("same", json.Options["first_last_bits"]);
        string markdown = File.ReadAllText(Path.Combine(report, "report.md"));
        Assert.Contains("SQNR alone (dB)", markdown);
        Assert.Contains("on the first 8 calibration images", markdown);
        Assert.Equal([names[2]], json.FloatLayers);
        Assert.Contains($"Left in float (excluded): {names[2]}.", markdown);
    }

    [Fact]
    public async Task Inspect_sensitivity_ranks_the_layers_most_sensitive_first()
    {
        using var folder = new TempFolder();
        string model = SmallModel(folder);
        var names = LayerNames(model);
        var r = await CliRunner.RunAsync("inspect", model, "--sensitivity", "--bits", "3", "--json");
        Assert.True(r.ExitCode == 0, r.Err);
        using var json = JsonDocument.Parse(r.Out);
        var sensitivity = json.RootElement.GetProperty("sensitivity");
        Assert.Equal(3, sensitivity.GetProperty("bits").GetInt32());
        var layers = sensitivity.GetProperty("layers").EnumerateArray()
            .Select(l => (Name: l.GetProperty("name").GetString()!, Db: l.GetProperty("sqnrDb").GetDouble(), Bits: l.GetProperty("weightBits").GetInt32())).ToList();
        Assert.Equal(names.Order(), layers.Select(l => l.Name).Order());
        Assert.Equal(layers.Select(l => l.Db).Order(), layers.Select(l => l.Db));
        Assert.Equal(3, layers.Single(l => l.Name == names[2]).Bits);
        Assert.Equal(8, layers.Single(l => l.Name == names[0]).Bits);

        var text = await CliRunner.RunAsync("inspect", model, "--sensitivity", "--bits", "3");
        Assert.True(text.ExitCode == 0, text.Err);
        Assert.Contains("sensitivity at 3 bits (most sensitive first)", text.Out);
        Assert.Contains("16 Genie-D images", text.Out);
        var rows = text.Out.Split('\n').SkipWhile(l => !l.StartsWith("sensitivity at")).Skip(2).Where(l => l.Trim().Length > 0)
            .Select(l => l.Split(' ', StringSplitOptions.RemoveEmptyEntries)).ToList();
        Assert.Equal(layers.Select(l => l.Name), rows.Select(row => row[1]));
        Assert.Equal(Enumerable.Range(1, layers.Count).Select(i => i.ToString()), rows.Select(row => row[0]));
    }
}
