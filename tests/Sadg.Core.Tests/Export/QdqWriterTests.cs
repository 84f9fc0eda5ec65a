using Microsoft.ML.OnnxRuntime;
using Onnx;
using Sadg.Export;
using Sadg.Onnx;
using Sadg.Quantization;
using Sadg.Tests.Support;
using Xunit.Abstractions;
using static TorchSharp.torch;
using DataType = Onnx.TensorProto.Types.DataType;
using Tensor = TorchSharp.torch.Tensor;

namespace Sadg.Tests.Export;

public class QdqWriterTests(ITestOutputHelper output)
{
    static readonly string[] ModelNames = ["resnet", "mobilenetv2", "vgg", "decoder"];
    // "-symmetric": activations with negatives on the symmetric signed grid (INT containers, zero point 0); the
    // others put them below 8 bits on the asymmetric grid (UINT containers with a zero point), at 8 bits on the signed one.
    static readonly string[] Policies = ["W4A4", "W8A8", "W3A3", "mixed", "W4", "W4A4-symmetric", "W3A3-symmetric"];

    public static TheoryData<string, string, QdqWriter.ActivationStorage> Cases
    {
        get
        {
            var data = new TheoryData<string, string, QdqWriter.ActivationStorage>();
            foreach (var m in ModelNames)
                foreach (var p in Policies)
                    foreach (var storage in Enum.GetValues<QdqWriter.ActivationStorage>()) data.Add(m, p, storage);
            return data;
        }
    }

    static OnnxModel Folded(string name, int width = 16) => OnnxModel.FromProto(TestBatchNormRemoval.Fold(name switch
    {
        "resnet" => TestModels.ResNet(width: width),
        "mobilenetv2" => TestModels.MobileNetV2(),
        "vgg" => TestModels.Vgg(),
        "decoder" => TestModels.Decoder(batchNorm: false), // the test's own folding knows Conv only
        _ => throw new ArgumentException(name),
    }));

    static RtnSpecBuilder.BitPolicy Policy(string name) => name.Replace("-symmetric", "") switch
    {
        "W4A4" => RtnSpecBuilder.Uniform(4, 4),
        "W8A8" => RtnSpecBuilder.Uniform(8, 8),
        "W3A3" => RtnSpecBuilder.Uniform(3, 3),
        "mixed" => RtnSpecBuilder.FirstLayer8Bit,
        "W4" => RtnSpecBuilder.Uniform(4, 0), // weights only, activations float
        _ => throw new ArgumentException(name),
    };

    static QuantizationSpec Spec(OnnxModel folded, string policy)
    {
        using var scope = NewDisposeScope();
        return RtnSpecBuilder.Build(folded, TestModels.Input(64, seed: 7), Policy(policy), symmetricActivations: policy.EndsWith("-symmetric"));
    }

    /// <summary>
    /// ONNX Runtime (graph optimizations off: the model's own Q/DQ semantics) runs every written model, in both
    /// activation storages, and on 512 random images its logits agree with <see cref="FakeQuantSimulation"/>.
    /// Why they are not bit-identical: ORT's 8-bit QuantizeLinear (MLAS) and TorchSharp compute x / scale slightly
    /// differently, and ORT's convolutions accumulate in another order; an element whose x / scale lies within a few
    /// ulps of k + 0.5 then rounds to the neighbouring level. Such flips must be rare and exactly one level: that is
    /// checked on every quantized activation below (at most 1e-3 of the elements, each off by one step). One flipped
    /// element moves the next layer's pre-activations by one step times a weight, so logits move by a small fraction
    /// of their range: the tolerance is 5% of max |logit| (measured: ≤ 0.4% for W8A8, ~1e-6 absolute for 2–4 bits,
    /// where ORT's reference kernels divide as TorchSharp does), and top-1 must agree on ≥ 99.5% of the images.
    /// </summary>
    [Theory]
    [MemberData(nameof(Cases))]
    public void OnnxRuntimeAgreesWithSimulation(string modelName, string policy, QdqWriter.ActivationStorage storage)
    {
        var folded = Folded(modelName);
        var spec = Spec(folded, policy);
        using var folder = new TempFolder();
        string path = folder.File("model.qdq.onnx");
        var written = QdqWriter.Write(folded, spec, path, storage);
        const GraphOptimizationLevel level = GraphOptimizationLevel.ORT_DISABLE_ALL;
        using var simulation = FakeQuantSimulation.Create(folded, spec);

        long agree = 0, total = 0;
        double maxDiff = 0, scale = 0;
        for (int batch = 0; batch < 4; batch++)
        {
            using var scope = NewDisposeScope();
            var x = TestModels.Input(128, seed: 1000 + batch);
            var ours = simulation.forward(x).detach();
            var ort = OrtReference.Run(path, new Dictionary<string, Tensor> { [TestModels.InputName] = x }, level)[0];
            agree += ours.argmax(1).eq(ort.argmax(1)).sum().item<long>();
            total += x.shape[0];
            maxDiff = Math.Max(maxDiff, (ours - ort).abs().max().item<float>());
            scale = Math.Max(scale, ort.abs().max().item<float>());
        }

        // Every quantized activation, element by element: equal, or (rarely) one quantization step apart.
        long flipped = 0, elements = 0;
        double worstSteps = 0;
        using (NewDisposeScope())
        {
            var probe = written.Clone();
            foreach (var a in spec.Activations) probe.Graph.Output.Add(new ValueInfoProto { Name = $"{a.Value}_dequantized" });
            var x = TestModels.Input(64, seed: 999);
            var ort = OrtReference.Run(probe, new Dictionary<string, Tensor> { [TestModels.InputName] = x }, level);
            using var capture = simulation.Capture(spec.Activations.Select(a => a.Value));
            simulation.forward(x);
            for (int i = 0; i < spec.Activations.Count; i++)
            {
                var a = spec.Activations[i];
                var steps = (capture[a.Value] - ort[1 + i]).abs() / a.Scale;
                flipped += steps.gt(0.5).sum().item<long>();
                elements += steps.numel();
                worstSteps = Math.Max(worstSteps, steps.max().item<float>());
            }
        }
        output.WriteLine($"{modelName} {policy} {storage}: top-1 agreement {agree}/{total}, max |logit diff| {maxDiff:G4} " +
            $"(max |logit| {scale:G4}); activation elements one level apart: {flipped}/{elements}, worst {worstSteps:G4} steps");
        Assert.True(agree >= 0.995 * total, $"top-1 agreement {agree}/{total}");
        Assert.True(maxDiff <= 0.05 * scale, $"max |logit diff| {maxDiff} > 5% of {scale}");
        Assert.True(flipped <= 1e-3 * elements, $"{flipped}/{elements} activation elements differ");
        Assert.True(worstSteps < 1.01, $"an activation differs by {worstSteps} quantization steps");
    }

    public static TheoryData<string, string> DefaultStorageCases
    {
        get
        {
            var data = new TheoryData<string, string>();
            foreach (var m in ModelNames)
                foreach (var p in Policies) data.Add(m, p);
            return data;
        }
    }

    /// <summary>
    /// With the default storage, ONNX Runtime with its default graph optimizations (as a deployed app runs the
    /// model) loads and runs every written model and agrees on top-1 for ≥ 99% of 512 images. Logits are not
    /// compared tightly here: where weights and activations are both 8-bit, ONNX Runtime fuses Q/DQ into integer
    /// kernels (QLinearConv) that requantize in fixed point, which legitimately moves activations by a few steps.
    /// </summary>
    [Theory]
    [MemberData(nameof(DefaultStorageCases))]
    public void OnnxRuntimeWithDefaultOptimizationsRunsEveryModel(string modelName, string policy)
    {
        var folded = Folded(modelName);
        var spec = Spec(folded, policy);
        using var folder = new TempFolder();
        string path = folder.File("model.qdq.onnx");
        QdqWriter.Write(folded, spec, path);
        using var simulation = FakeQuantSimulation.Create(folded, spec);
        using var scope = NewDisposeScope();
        var x = TestModels.Input(512, seed: 5);
        var ours = simulation.forward(x).detach();
        var ort = OrtReference.Run(path, new Dictionary<string, Tensor> { [TestModels.InputName] = x }, GraphOptimizationLevel.ORT_ENABLE_ALL)[0];
        long agree = ours.argmax(1).eq(ort.argmax(1)).sum().item<long>();
        output.WriteLine($"{modelName} {policy} (ORT_ENABLE_ALL): top-1 agreement {agree}/512, max |logit diff| {(ours - ort).abs().max().item<float>():G4}");
        Assert.True(agree >= 0.99 * 512, $"top-1 agreement {agree}/512");
    }

    [Fact]
    public void W4FileIsSmallAndReadsBackAsUint4AtOpset21()
    {
        var folded = Folded("resnet", width: 32);
        var spec = Spec(folded, "W4A4");
        spec.Metadata["sadg.seed"] = "7";
        using var folder = new TempFolder();
        string fp32 = folder.File("model.onnx"), q4 = folder.File("model.q4.onnx");
        OnnxModel.Save(folded.Proto, fp32);
        QdqWriter.Write(folded, spec, q4);
        double ratio = (double)new FileInfo(q4).Length / new FileInfo(fp32).Length;
        output.WriteLine($"FP32 {new FileInfo(fp32).Length} B, W4A4 {new FileInfo(q4).Length} B, ratio {ratio:F3}");
        Assert.True(ratio <= 0.2, $"W4 file is {ratio:P1} of the FP32 file");

        var back = OnnxModel.Load(q4);
        Assert.Equal(21, back.Opset);
        Assert.Equal(10, back.Proto.IrVersion);
        var initializers = back.Graph.Initializer.ToDictionary(t => t.Name);
        foreach (var w in spec.Weights)
        {
            Assert.False(initializers.ContainsKey(w.Weight), $"float weight '{w.Weight}' is still there");
            Assert.Equal(DataType.Uint4, (DataType)initializers[$"{w.Weight}_quantized"].DataType);
            Assert.Equal(DataType.Uint4, (DataType)initializers[$"{w.Weight}_zero_point"].DataType);
            Assert.Equal(DataType.Float, (DataType)initializers[$"{w.Weight}_scale"].DataType);
            var dq = back.Graph.Node.Single(n => n.Output.Contains($"{w.Weight}_dequantized"));
            Assert.Equal("DequantizeLinear", dq.OpType);
            Assert.Contains(back.Graph.Node, n => n.Name == w.Node && n.Input.Contains($"{w.Weight}_dequantized"));
            using var scope = NewDisposeScope();
            Assert.True(OnnxTensors.ToTorch(initializers[$"{w.Weight}_quantized"]).to_type(ScalarType.Int64).eq(w.Integers).all().item<bool>());
        }
        // The image input has negatives: its grid is the asymmetric one, whose zero point the file must carry.
        Assert.Contains(spec.Activations, a => a.ZeroPoint > 0);
        long ZeroPointOf(TensorProto t)
        {
            using var scope = NewDisposeScope();
            return OnnxTensors.ToTorch(t).to_type(ScalarType.Int64).item<long>();
        }
        foreach (var a in spec.Activations)
        {
            Assert.Equal(a.Signed ? DataType.Int8 : DataType.Uint8, (DataType)initializers[$"{a.Value}_zero_point"].DataType);
            Assert.Equal(a.ZeroPoint, ZeroPointOf(initializers[$"{a.Value}_zero_point"]));
            Assert.Equal("Clip", back.Graph.Node.Single(n => n.Output.Contains($"{a.Value}_dequantized")).OpType);
        }
        var exact = QdqWriter.Write(folded, spec, QdqWriter.ActivationStorage.Exact);
        foreach (var a in spec.Activations)
        {
            var zeroPoint = exact.Graph.Initializer.Single(t => t.Name == $"{a.Value}_zero_point");
            Assert.Equal(a.Signed ? DataType.Int4 : DataType.Uint4, (DataType)zeroPoint.DataType);
            Assert.Equal(a.ZeroPoint, ZeroPointOf(zeroPoint));
        }
        var metadata = back.Proto.MetadataProps.ToDictionary(p => p.Key, p => p.Value);
        Assert.Equal("qdq", metadata["sadg.format"]);
        Assert.Equal("7", metadata["sadg.seed"]);
        Assert.Equal("rtn-test", metadata["sadg.method"]);
        Assert.Equal("sadg", metadata[SadgMetadata.SourceProducer]);
        Assert.Equal("13", metadata[SadgMetadata.SourceOpset]);
        // Every original node keeps its name; names are unique.
        Assert.All(folded.Graph.Node, n => Assert.Contains(back.Graph.Node, m => m.Name == n.Name));
        Assert.Equal(back.Graph.Node.Count, back.Graph.Node.Select(n => n.Name).Distinct().Count());
    }

    [Fact]
    public void W8WeightsAreUint8AndOtherWidthsUseTheirContainer()
    {
        var folded = Folded("vgg");
        var spec = Spec(folded, "W3A3");
        var w8 = Spec(folded, "W8A8");
        spec.Weights[0] = w8.Weights[0];
        var model = QdqWriter.Write(folded, spec);
        var initializers = model.Graph.Initializer.ToDictionary(t => t.Name);
        Assert.Equal(DataType.Uint8, (DataType)initializers[$"{spec.Weights[0].Weight}_quantized"].DataType);
        Assert.Equal(DataType.Uint4, (DataType)initializers[$"{spec.Weights[1].Weight}_quantized"].DataType);
        // 3-bit activations: INT4/UINT4 container plus a Clip to the 3-bit range.
        Assert.Contains(model.Graph.Node, n => n.OpType == "Clip" && n.Name == $"{spec.Activations[1].Value}_Clip");
    }

    /// <summary>
    /// A float weight read by a quantized Gemm and by one that is not, and a quantized activation that is also a graph
    /// output: the writer keeps the float weight for the other reader and the float output; the simulation agrees.
    /// </summary>
    [Fact]
    public void SharedWeightAndQuantizedGraphOutputKeepTheirFloatUses()
    {
        using var scope = NewDisposeScope();
        var b = new OnnxGraphBuilder();
        var x = b.AddInput("input", DataType.Float, -1, 16);
        var w = b.AddInitializer("w", randn(16, 16, generator: new Generator(0).manual_seed(3)) * 0.3f);
        var h = b.AddNode("Relu", [b.AddNode("Gemm", [x, w], ["h"], new Dictionary<string, object> { ["transB"] = 1L }, "gemm_q")], ["hr"], name: "relu");
        var y = b.AddNode("Gemm", [h, w], ["y"], new Dictionary<string, object> { ["transB"] = 1L }, "gemm_float");
        b.AddOutput(y);
        b.AddOutput(h);
        var folded = OnnxModel.FromProto(b.Build(opset: 13));
        var spec = RtnSpecBuilder.Build(folded, randn(32, 16), (i, _) => (4, 4));
        spec.Weights.RemoveAt(1);
        spec.Activations.Clear();
        spec.Activations.Add(new ActivationQuantization("hr", 0.1f, 4, false));

        var model = QdqWriter.Write(folded, spec);
        Assert.Contains(model.Graph.Initializer, t => t.Name == "w" && t.DataType == (int)DataType.Float);
        Assert.Equal(["hr_dequantized", "w"], model.Graph.Node.Single(n => n.Name == "gemm_float").Input.ToArray());
        using var simulation = FakeQuantSimulation.Create(folded, spec);
        var input = randn(64, 16, generator: new Generator(0).manual_seed(4));
        var ort = OrtReference.Run(model, new Dictionary<string, Tensor> { ["input"] = input });
        var ours = simulation.Run(new Dictionary<string, Tensor> { ["input"] = input }, ["y", "hr"]);
        Assert.True((ours["y"] - ort[0]).abs().max().item<float>() < 1e-4f);
        Assert.True((ours["hr"] - ort[1]).abs().max().item<float>() < 1e-6f, "the graph output must stay float");
        Assert.True(ours["hr"].ne(ours["hr"].div(0.1f).round().clamp(0, 15).mul(0.1f)).any().item<bool>(), "the test needs values the quantizer changes");
    }

    [Fact]
    public void SpecThatDoesNotMatchTheModelIsRefusedNamingTheNode()
    {
        var folded = Folded("vgg");
        var spec = Spec(folded, "W4A4");
        var bad = spec.Weights[1];
        spec.Weights[1] = bad with { Node = "no_such_node" };
        var e = Assert.Throws<SadgException>(() => QdqWriter.Write(folded, spec));
        Assert.Equal("no_such_node", e.Node);

        spec = Spec(folded, "W4A4");
        using var scope = NewDisposeScope();
        spec.Weights[0] = spec.Weights[0] with { Integers = spec.Weights[0].Integers + 16 };
        e = Assert.Throws<SadgException>(() => QdqWriter.Write(folded, spec));
        Assert.Equal(SadgErrorCode.InvalidNode, e.Code);
        Assert.Equal(spec.Weights[0].Node, e.Node);
        Assert.Contains("outside [0, 15]", e.Message);

        spec = Spec(folded, "W4A4");
        spec.Activations.Add(new ActivationQuantization("missing_value", 0.1f, 4, true));
        e = Assert.Throws<SadgException>(() => FakeQuantSimulation.Create(folded, spec));
        Assert.Equal("missing_value", e.Node);
    }

    [Fact]
    public void SimulationDisposesItsDequantizedWeightsWithTheModule()
    {
        var folded = Folded("vgg");
        var spec = Spec(folded, "W4A4");
        var simulation = FakeQuantSimulation.Create(folded, spec);
        var buffers = simulation.named_buffers().Where(b => b.name.StartsWith("sadg_dequantized_weight_")).Select(b => b.buffer).ToList();
        Assert.Equal(spec.Weights.Count, buffers.Count);
        simulation.Dispose();
        Assert.All(buffers, t => Assert.True(t.IsInvalid));
    }
}
