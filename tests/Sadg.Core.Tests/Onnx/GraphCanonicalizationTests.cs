using Onnx;
using Sadg.Graph;
using Sadg.Onnx;
using static TorchSharp.torch;
using DataType = Onnx.TensorProto.Types.DataType;

namespace Sadg.Tests.Onnx;

/// <summary>The graph form the quantizer relies on: weights as initializers, every node named once; the same values.</summary>
public class GraphCanonicalizationTests
{
    /// <summary>
    /// Conv (weight in a Constant node, unnamed) → Relu (named "act") → Conv (weight shared through an Identity, also
    /// named "act") → Conv (the same shared weight, unnamed).
    /// </summary>
    static ModelProto Exported()
    {
        var b = new OnnxGraphBuilder("exported");
        var x = b.AddInput("image", DataType.Float, -1, 3, 6, 6);
        var w0 = OnnxTensors.FromTorch("w0", randn([4, 3, 1, 1], generator: new Generator(1)));
        b.AddNode("Constant", [], ["w0"], new Dictionary<string, object> { ["value"] = w0 }, name: "");
        var k = new Dictionary<string, object> { ["kernel_shape"] = new long[] { 1, 1 } };
        x = b.AddNode("Conv", [x, "w0"], ["conv0_out"], attributes: k, name: "");
        x = b.AddNode("Relu", [x], name: "act");
        b.AddInitializer("w1", randn([4, 4, 1, 1], generator: new Generator(2)));
        b.AddNode("Identity", ["w1"], ["w1_shared"], name: "w1_identity");
        x = b.AddNode("Conv", [x, "w1_shared"], ["conv1_out"], attributes: k, name: "act");
        x = b.AddNode("Conv", [x, "w1_shared"], ["conv2_out"], attributes: k, name: "");
        b.AddOutput(x);
        var proto = b.Build(13, irVersion: 8);
        foreach (var n in proto.Graph.Node.Where(n => n.Name.Length == 0 || n.OpType == "Constant")) n.Name = "";
        return proto;
    }

    [Fact]
    public void The_canonical_copy_has_initializer_weights_and_distinct_names_and_computes_the_same()
    {
        var source = OnnxModel.FromProto(Exported(), "m.onnx");
        var canonical = GraphCanonicalization.Canonical(source);
        Assert.NotSame(source, canonical);
        var graph = canonical.Graph;
        Assert.DoesNotContain(graph.Node, n => n.OpType is "Constant" or "Identity");
        Assert.All(graph.Node, n => Assert.NotEmpty(n.Name));
        Assert.Equal(graph.Node.Count, graph.Node.Select(n => n.Name).Distinct().Count());
        // The shared weight is read through its Identity, and the second layer that reads it gets a copy of its own.
        var weights = graph.Node.Where(n => n.OpType == "Conv").Select(n => n.Input[1]).ToList();
        Assert.Equal(["w0", "w1"], weights.Take(2));
        Assert.StartsWith("w1_", weights[2]);
        Assert.Equal(graph.Initializer.Single(t => t.Name == "w1").RawData, graph.Initializer.Single(t => t.Name == weights[2]).RawData);
        Assert.Contains(graph.Node, n => n.Name == "act" && n.OpType == "Relu");
        Assert.Same(canonical, GraphCanonicalization.Canonical(canonical));

        using var images = randn([2, 3, 6, 6], generator: new Generator(3));
        using var a = new GraphModule(source);
        using var c = new GraphModule(canonical);
        using var ya = a.forward(images);
        using var yc = c.forward(images);
        Assert.True(ya.allclose(yc, rtol: 0, atol: 0), "the canonical copy computes other values");
    }
    /// <summary>
    /// An ImageScaler (opsets 1 to 9, experimental) becomes a Mul and an Add by constants that compute what ONNX Runtime
    /// computes for it; the Mul keeps its name.
    /// </summary>
    [Fact]
    public void An_image_scaler_becomes_a_mul_and_an_add_with_onnx_runtimes_values()
    {
        var b = new OnnxGraphBuilder("scaled");
        var x = b.AddInput("image", DataType.Float, -1, 3, 5, 4);
        x = b.AddNode("ImageScaler", [x], attributes: new Dictionary<string, object> { ["scale"] = 0.02f, ["bias"] = new[] { -2f, -1.5f, 0.5f } }, name: "scaler");
        b.AddOutput(b.AddNode("Relu", [x], name: "relu"));
        var source = b.Build(8, irVersion: 4);
        var canonical = GraphCanonicalization.Canonical(OnnxModel.FromProto(source, "m.onnx"));
        Assert.DoesNotContain(canonical.Graph.Node, n => n.OpType == "ImageScaler");
        Assert.Contains(canonical.Graph.Node, n => n.Name == "scaler" && n.OpType == "Mul");
        Assert.Contains(canonical.Graph.Node, n => n.OpType == "Add");

        using var images = rand([2, 3, 5, 4], generator: new Generator(4)) * 255;
        var expected = Sadg.Tests.Support.OrtReference.Run(source, new Dictionary<string, Tensor> { ["image"] = images })[0];
        using var graph = new GraphModule(canonical);
        using var y = graph.forward(images);
        Assert.True(y.allclose(expected, rtol: 1e-6, atol: 1e-6), $"max |diff| {(y - expected).abs().max().item<float>()}");
    }

    /// <summary>The exported form quantizes end to end (a weight shared by two layers included).</summary>
    [Fact]
    public void The_exported_form_quantizes()
    {
        var options = new Sadg.Pipeline.PipelineOptions
        {
            Method = Sadg.Options.CalibrationMethod.Gaussian, Samples = 8, ReconstructionSteps = 4, MeasureSensitivity = false, Device = CPU,
        };
        using var result = Sadg.Pipeline.QuantizationPipeline.Quantize(OnnxModel.FromProto(Exported(), "m.onnx"), options);
        Assert.Equal(3, result.Report.Layers.Count);
        var producers = result.Model.Graph.Node.SelectMany(n => n.Output.Select(o => (o, n))).ToDictionary(p => p.o, p => p.n);
        Assert.All(result.Model.Graph.Node.Where(n => n.OpType == "Conv"), conv => Assert.Equal("DequantizeLinear", producers[conv.Input[1]].OpType));
    }
}
