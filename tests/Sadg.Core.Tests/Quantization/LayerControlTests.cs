using Onnx;
using Sadg.Export;
using Sadg.Graph;
using Sadg.Onnx;
using Sadg.Pipeline;
using Sadg.Quantization;
using Sadg.Tests.Support;
using static TorchSharp.torch;
using DataType = Onnx.TensorProto.Types.DataType;

namespace Sadg.Tests.Quantization;

/// <summary>
/// Layer control (<c>--exclude</c>, <c>--layer-bits</c>, <c>--first-last-bits</c>) and per-layer sensitivity: checked
/// on the written files, with ONNX Runtime, and against a direct computation.
/// </summary>
[Collection(nameof(QuantizerMemoryTests))]
public class LayerControlTests
{
    static OnnxModel ResNet() => OnnxModel.FromProto(TestModels.ResNet(width: 8));

    /// <summary>The quantizable layers of the BN-folded ResNet test model, in execution order: 5 Conv, 1 shortcut Conv, 1 Gemm.</summary>
    static List<GraphNode> Layers(OnnxModel model, out GraphModule graph)
    {
        graph = new GraphModule(BatchNormFolding.Fold(model));
        var g = graph;
        return g.Nodes.Where(g.IsQuantizable).ToList();
    }

    static QuantizationOutcome Quantize(OnnxModel model, Tensor images, QuantizationOptions options) =>
        ModelQuantizer.Quantize(model, images, options with { Iterations = 0 });

    static Dictionary<string, TensorProto> Initializers(ModelProto m) => m.Graph.Initializer.ToDictionary(t => t.Name);

    [Fact]
    public void The_default_plan_is_the_policy_and_nothing_new_enters_the_cache_key()
    {
        var layers = Layers(ResNet(), out var graph);
        using (graph)
        {
            var plan = QuantizedGraph.Plan(graph, new QuantizationOptions());
            Assert.Equal(layers, plan.Select(p => p.Node));
            var expected = layers.Select((n, k) => k == 0 ? (8, null) : k == layers.Count - 1 ? (8, 8) : k == 1 ? (4, 8) : ((int, int?))(4, 4));
            Assert.Equal(expected, plan.Select(p => (p.WeightBits, p.InputBits)));
        }
        // The canonical options of a default run are what they were before layer control: the same options hash, the same bytes.
        Assert.Equal(string.Join("\n",
            "activation_bits=4", "bits=4", "calibration_data=none", "device=cpu", "generation_steps=profile", "input_mean=none",
            "input_prior=auto", "input_range=none", "input_shape=model", "input_std=none", "method=sadag", "neighbour=random",
            "profile=default", "reconstruction_steps=profile", "rounding_rate=steprelative", "samples=profile", "scale_steps=relative", "seed=0"),
            new PipelineOptions().Canonical());
        Assert.Contains("first_last_bits=same", new PipelineOptions { FirstLastSame = true }.Canonical());
        Assert.Contains("exclude=Gemm", new PipelineOptions { Exclude = ["Gemm"] }.Canonical());
    }

    [Fact]
    public void First_last_bits_same_puts_the_first_and_last_layers_at_the_runs_bits()
    {
        var layers = Layers(ResNet(), out var graph);
        using (graph)
        {
            var options = new PipelineOptions { WeightBits = 3, ActivationBits = 5, FirstLastSame = true }.Quantization();
            var plan = QuantizedGraph.Plan(graph, options);
            Assert.Equal((3, (int?)null), (plan[0].WeightBits, plan[0].InputBits));
            Assert.Equal((3, (int?)5), (plan[1].WeightBits, plan[1].InputBits));
            Assert.Equal((3, (int?)5), (plan[^1].WeightBits, plan[^1].InputBits));
            Assert.Equal(layers.Count, plan.Count);
        }
    }

    [Fact]
    public void An_excluded_layer_keeps_float_weights_and_input_and_ONNX_Runtime_runs_the_model()
    {
        var model = ResNet();
        var layers = Layers(model, out var graph);
        graph.Dispose();
        // The shortcut Conv reads the block input that the block's first Conv also reads: that Conv's input is quantized, the shortcut's is not.
        var shortcut = layers[5];
        Assert.Equal(layers[3].Inputs[0], shortcut.Inputs[0]);
        using var images = TestModels.Input(16, seed: 3);
        var outcome = Quantize(model, images, new QuantizationOptions { Layers = new LayerChoices { Exclude = [shortcut.Name, "gemm"] } });
        var qdq = outcome.QdqModel;
        Assert.DoesNotContain(outcome.Layers, l => l.Node == shortcut.Name || l.OpType == "Gemm");
        Assert.Equal(layers.Count - 2, outcome.Layers.Count);
        Assert.Equal([shortcut.Name, layers[^1].Name], outcome.FloatLayers);

        var initializers = Initializers(qdq);
        var nodes = qdq.Graph.Node.ToDictionary(n => n.Name);
        var producers = qdq.Graph.Node.SelectMany(n => n.Output.Select(o => (o, n))).ToDictionary(x => x.o, x => x.n);
        foreach (var excluded in new[] { shortcut.Name, layers[^1].Name })
        {
            var node = nodes[excluded];
            Assert.Equal(DataType.Float, (DataType)initializers[node.Input[1]].DataType);
            Assert.False(producers.ContainsKey(node.Input[1]));
            Assert.True(!producers.TryGetValue(node.Input[0], out var p) || p.OpType is not ("DequantizeLinear" or "Clip"), $"{excluded} reads a quantized input");
        }
        // The quantized Conv beside the shortcut reads the quantized block input.
        var first = nodes[layers[3].Name];
        Assert.Contains(producers[first.Input[0]].OpType, new[] { "DequantizeLinear", "Clip" });
        Assert.Equal("DequantizeLinear", producers[first.Input[1]].OpType);

        // ONNX Runtime runs it and computes what Q computes.
        using var scope = NewDisposeScope();
        var ort = OrtReference.Run(qdq, new Dictionary<string, Tensor> { [TestModels.InputName] = images })[0];
        using var simulation = FakeQuantSimulation.Create(outcome.FoldedModel, outcome.Spec);
        Tensor ours;
        using (no_grad()) ours = simulation.forward(images);
        Assert.True((ort - ours).abs().max().item<float>() <= 1e-3f * ort.abs().max().item<float>());
        using var fp = new GraphModule(model);
        Tensor reference;
        using (no_grad()) reference = fp.forward(images);
        Assert.False((ort - reference).abs().max().item<float>() < 1e-6f, "the model is not quantized at all");
    }

    /// <summary>conv0 → Relu → h; conv_a and conv_b both read h and the same weight; their sum → Flatten → Gemm.</summary>
    static OnnxModel SharedModel()
    {
        var generator = new TorchSharp.torch.Generator(0).manual_seed(11);
        var b = new OnnxGraphBuilder("shared");
        var x = b.AddInput("image", DataType.Float, -1, 1, 8, 8);
        var conv = new Dictionary<string, object> { ["kernel_shape"] = new long[] { 3, 3 }, ["pads"] = new long[] { 1, 1, 1, 1 } };
        var h = b.AddNode("Relu", [b.AddNode("Conv", [x, b.AddInitializer("w0", randn([4, 1, 3, 3], generator: generator))], attributes: conv, name: "conv0")]);
        var w = b.AddInitializer("w_shared", randn([4, 4, 3, 3], generator: generator) * 0.3f);
        var y = b.AddNode("Add", [b.AddNode("Conv", [h, w], attributes: conv, name: "conv_a"), b.AddNode("Conv", [h, w], attributes: conv, name: "conv_b")]);
        y = b.AddNode("Flatten", [b.AddNode("Relu", [y])], attributes: new Dictionary<string, object> { ["axis"] = 1L });
        y = b.AddNode("Gemm", [y, b.AddInitializer("fc", randn([10, 256], generator: generator) * 0.1f)],
            attributes: new Dictionary<string, object> { ["transB"] = 1L }, name: "fc");
        b.AddOutput(y);
        return OnnxModel.FromProto(b.Build(13, irVersion: 8));
    }

    /// <summary>ONNX Runtime runs the written model as Q (the graph reconstruction optimized) computes, within 1e-4 of the output's scale.</summary>
    static void AssertTheWrittenModelComputesQ(Sadg.Reconstruction.CalibratedModel calibrated, QuantizationOutcome outcome, Tensor images)
    {
        using var scope = NewDisposeScope();
        calibrated.Quantized.SetTraining(false);
        Tensor q;
        using (no_grad()) q = calibrated.Quantized.Graph.forward(images);
        var ort = OrtReference.Run(outcome.QdqModel, new Dictionary<string, Tensor> { ["image"] = images })[0];
        Assert.True((ort - q).abs().max().item<float>() <= 1e-4f * ort.abs().max().item<float>(), "Q and the written model differ");
        outcome.Spec.Dispose();
    }

    /// <summary>
    /// An excluded layer that shares its input and its weight with a quantized one reads both in float, in Q (the
    /// graph reconstruction optimizes) as in the written model.
    /// </summary>
    [Fact]
    public void An_excluded_layer_sharing_input_and_weight_with_a_quantized_one_reads_them_in_float()
    {
        var model = SharedModel();
        using var images = randn(16, 1, 8, 8, generator: new TorchSharp.torch.Generator(0).manual_seed(2));
        var options = new QuantizationOptions { Iterations = 0, Layers = new LayerChoices { Exclude = ["conv_b"] } };
        using var calibrated = Sadg.Reconstruction.ModelCalibration.Calibrate(model, images, options);
        var outcome = ModelQuantizer.Write(calibrated);
        Assert.Equal(["conv0", "conv_a", "fc"], outcome.Layers.Select(l => l.Node));
        Assert.Equal(8, outcome.Layers[1].InputBits);

        var nodes = outcome.QdqModel.Graph.Node.ToDictionary(n => n.Name);
        Assert.Equal(DataType.Float, (DataType)Initializers(outcome.QdqModel)[nodes["conv_b"].Input[1]].DataType);
        Assert.NotEqual(nodes["conv_a"].Input[0], nodes["conv_b"].Input[0]);
        Assert.NotEqual("w_shared", nodes["conv_a"].Input[1]);

        AssertTheWrittenModelComputesQ(calibrated, outcome, images);
    }

    /// <summary>
    /// Two quantized layers that share one weight, calibrated and written through the library's own entry points (not
    /// the pipeline, which canonicalizes first): both are quantized in the file, as in Q, each with its own scales.
    /// </summary>
    [Fact]
    public void Two_quantized_layers_sharing_a_weight_are_both_quantized_in_the_written_model()
    {
        var model = SharedModel();
        using var images = randn(16, 1, 8, 8, generator: new TorchSharp.torch.Generator(0).manual_seed(2));
        using var calibrated = Sadg.Reconstruction.ModelCalibration.Calibrate(model, images, new QuantizationOptions { Iterations = 0 });
        var outcome = ModelQuantizer.Write(calibrated);
        Assert.Equal(["conv0", "conv_a", "conv_b", "fc"], outcome.Layers.Select(l => l.Node));
        var nodes = outcome.QdqModel.Graph.Node.ToDictionary(n => n.Name);
        var initializers = Initializers(outcome.QdqModel);
        foreach (string conv in new[] { "conv_a", "conv_b" })
            Assert.False(initializers.TryGetValue(nodes[conv].Input[1], out var w) && (DataType)w.DataType == DataType.Float, conv + " reads a float weight");

        AssertTheWrittenModelComputesQ(calibrated, outcome, images);
    }

    [Fact]
    public void Layer_bits_two_gives_two_bit_integers_in_that_layers_weights()
    {
        var model = ResNet();
        var layers = Layers(model, out var graph);
        graph.Dispose();
        string conv = layers[2].Name;
        using var images = TestModels.Input(8, seed: 4);
        var outcome = Quantize(model, images, new QuantizationOptions { Layers = new LayerChoices { WeightBits = new Dictionary<string, int> { [conv] = 2 } } });
        Assert.Equal(2, outcome.Layers.Single(l => l.Node == conv).WeightBits);
        Assert.Equal(4, outcome.Layers.Single(l => l.Node == conv).InputBits);
        Assert.Equal(4, outcome.Layers.Single(l => l.Node == layers[3].Name).WeightBits);

        string path = Path.Combine(Path.GetTempPath(), $"sadg-layer-bits-{Guid.NewGuid():N}.onnx");
        try
        {
            OnnxModel.Save(outcome.QdqModel, path);
            var written = OnnxModel.Load(path).Proto;
            var node = written.Graph.Node.Single(n => n.Name == conv);
            var dq = written.Graph.Node.Single(n => n.Output.Contains(node.Input[1]));
            Assert.Equal("DequantizeLinear", dq.OpType);
            var integers = Initializers(written)[dq.Input[0]];
            Assert.Equal(DataType.Uint4, (DataType)integers.DataType);
            using var values = OnnxTensors.ToTorch(integers).to_type(ScalarType.Int64);
            var distinct = values.unique().Item1.data<long>().ToArray();
            Assert.True(distinct.All(v => v is >= 0 and <= 3), string.Join(",", distinct));
            Assert.True(distinct.Length >= 3, "2-bit weights use more than two levels");
            var zeroPoints = OnnxTensors.ToTorch(Initializers(written)[dq.Input[2]]).to_type(ScalarType.Int64);
            Assert.True(zeroPoints.data<long>().ToArray().All(z => z is >= 0 and <= 3));
            // A 4-bit layer uses levels above 3.
            var other = written.Graph.Node.Single(n => n.Name == layers[3].Name);
            var otherDq = written.Graph.Node.Single(n => n.Output.Contains(other.Input[1]));
            using var otherValues = OnnxTensors.ToTorch(Initializers(written)[otherDq.Input[0]]).to_type(ScalarType.Int64);
            Assert.True(otherValues.max().item<long>() > 3);
        }
        finally
        {
            File.Delete(path);
        }
    }

    [Fact]
    public void Unknown_layers_are_refused_before_any_work_listing_the_candidates()
    {
        var model = ResNet();
        var layers = Layers(model, out var graph);
        graph.Dispose();
        var options = new PipelineOptions { Method = CalibrationMethod.Gaussian, Samples = 2, Exclude = ["conv_does_not_exist"] };
        var e = Assert.Throws<SadgException>(() => QuantizationPipeline.Quantize(model, options));
        Assert.Equal(SadgErrorCode.LayerNotFound, e.Code);
        Assert.Contains("'conv_does_not_exist'", e.Message);
        Assert.Contains("`--exclude` / `Exclude` metadata", e.Message);
        Assert.All(layers, l => Assert.Contains(l.Name, e.Message));

        e = Assert.Throws<SadgException>(() => QuantizationPipeline.Quantize(model,
            options with { Exclude = [], LayerBits = new Dictionary<string, int> { ["Gemm"] = 3 } }));
        Assert.Equal(SadgErrorCode.LayerNotFound, e.Code);
        Assert.Contains("`--layer-bits` / `LayerBits` metadata", e.Message);

        e = Assert.Throws<SadgException>(() => QuantizationPipeline.Quantize(model, options with { Exclude = ["Conv", "Gemm"] }));
        Assert.Equal(SadgErrorCode.NothingToQuantize, e.Code);
    }

    /// <summary>
    /// Each layer's sensitivity equals the SQNR of the QDQ model in which only that layer is quantized (every other
    /// layer excluded, round to nearest, calibrated on the same images) as ONNX Runtime runs it.
    /// </summary>
    [Fact]
    public void Sensitivity_is_the_SQNR_of_the_model_with_only_that_layer_quantized()
    {
        var model = ResNet();
        var layers = Layers(model, out var graph);
        graph.Dispose();
        using var images = TestModels.Input(12, seed: 5);
        var options = new QuantizationOptions { WeightBits = 3, ActivationBits = 3 };
        var sensitivity = SensitivityAnalysis.Measure(BatchNormFolding.Fold(model), images, options);
        Assert.Equal(layers.Select(l => l.Name), sensitivity.Select(s => s.Node));

        using var scope = NewDisposeScope();
        var feeds = new Dictionary<string, Tensor> { [TestModels.InputName] = images };
        var reference = OrtReference.Run(model.Proto, feeds)[0].to_type(ScalarType.Float64);
        foreach (var layer in sensitivity)
        {
            var alone = options with { Layers = new LayerChoices { Exclude = layers.Where(l => l.Name != layer.Node).Select(l => l.Name).ToList() } };
            var outcome = Quantize(model, images, alone);
            Assert.Equal((layer.WeightBits, layer.InputBits), (outcome.Layers.Single().WeightBits, outcome.Layers.Single().InputBits));
            var output = OrtReference.Run(outcome.QdqModel, feeds)[0].to_type(ScalarType.Float64);
            double expected = 10 * Math.Log10(reference.Square().sum().item<double>() / (output - reference).Square().sum().item<double>());
            Assert.True(Math.Abs(expected - layer.SqnrDb) < 0.05, $"{layer.Node}: measured {layer.SqnrDb:0.000} dB, ONNX Runtime {expected:0.000} dB");
            outcome.Spec.Dispose();
        }
        Assert.True(sensitivity.Select(s => s.SqnrDb).Distinct().Count() > 1);
    }
}
