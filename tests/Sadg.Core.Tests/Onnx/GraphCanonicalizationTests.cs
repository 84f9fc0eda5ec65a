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

    /// <summary>
    /// Weights computed from constants, as exports without constant folding write them: a Transpose of an HWIO tensor
    /// (TensorFlow's layout) and a weight standardization ((w − mean) / std per output channel, BiT's StdConv). Both
    /// become initializers, their nodes and the source tensors go, the values are ONNX Runtime's, and every layer is
    /// quantized.
    /// </summary>
    [Fact]
    public void Weights_computed_from_constants_become_initializers_and_are_quantized()
    {
        var g = new Generator(5);
        var b = new OnnxGraphBuilder("computed");
        var x = b.AddInput("image", DataType.Float, -1, 3, 6, 6);
        var k = new Dictionary<string, object> { ["kernel_shape"] = new long[] { 3, 3 }, ["pads"] = new long[] { 1, 1, 1, 1 } };
        var hwio = b.AddInitializer("w0_hwio", randn([3, 3, 3, 4], generator: g) * 0.3f);
        var w0 = b.AddNode("Transpose", [hwio], ["w0"], new Dictionary<string, object> { ["perm"] = new long[] { 3, 2, 0, 1 } }, "w0_transpose");
        x = b.AddNode("Relu", [b.AddNode("Conv", [x, w0], attributes: k, name: "conv0")], name: "relu0");
        var raw = b.AddInitializer("w1_raw", randn([5, 4, 3, 3], generator: g));
        var axes = b.AddInt64s("axes", 1, 2, 3);
        var mean = b.AddNode("ReduceMean", [raw], ["w1_mean"], new Dictionary<string, object> { ["axes"] = new long[] { 1, 2, 3 } }, "w1_mean");
        var centered = b.AddNode("Sub", [raw, mean], ["w1_centered"], name: "w1_center");
        var variance = b.AddNode("ReduceMean", [b.AddNode("Mul", [centered, centered], ["w1_sq"], name: "w1_square")], ["w1_var"],
            new Dictionary<string, object> { ["axes"] = new long[] { 1, 2, 3 } }, "w1_variance");
        var std = b.AddNode("Sqrt", [b.AddNode("Add", [variance, b.AddInitializer("eps", tensor(1e-5f))], ["w1_var_eps"], name: "w1_eps")], ["w1_std"], name: "w1_sqrt");
        var w1 = b.AddNode("Div", [centered, std], ["w1"], name: "w1_standardize");
        x = b.AddNode("Conv", [x, w1], attributes: k, name: "conv1");
        b.AddOutput(x);
        var source = b.Build(13, irVersion: 8);
        source.Graph.Initializer.Remove(source.Graph.Initializer.Single(t => t.Name == axes)); // not read: the opset-13 ReduceMean takes axes as an attribute

        var canonical = ComputedWeights.Fold(OnnxModel.FromProto(source, "m.onnx"));
        Assert.Equal(["conv0", "relu0", "conv1"], canonical.Graph.Node.Select(n => n.Name));
        Assert.Equal(["w0", "w1"], canonical.Graph.Initializer.Select(t => t.Name).Where(n => n is "w0" or "w1").Order());
        Assert.DoesNotContain(canonical.Graph.Initializer, t => t.Name is "w0_hwio" or "w1_raw" or "eps");
        Assert.Same(canonical, ComputedWeights.Fold(canonical));

        using var images = randn([2, 3, 6, 6], generator: new Generator(6));
        var expected = Sadg.Tests.Support.OrtReference.Run(source, new Dictionary<string, Tensor> { ["image"] = images })[0];
        using var graph = new GraphModule(canonical);
        using var y = graph.forward(images);
        Assert.True(y.allclose(expected, rtol: 1e-5, atol: 1e-5), $"max |diff| {(y - expected).abs().max().item<float>()}");

        var options = new Sadg.Pipeline.PipelineOptions
        {
            Method = Sadg.Options.CalibrationMethod.Gaussian, Samples = 8, ReconstructionSteps = 4, MeasureSensitivity = false, Device = CPU,
        };
        using var result = Sadg.Pipeline.QuantizationPipeline.Quantize(OnnxModel.FromProto(source, "m.onnx"), options);
        Assert.Equal(2, result.Report.Layers.Count);
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
