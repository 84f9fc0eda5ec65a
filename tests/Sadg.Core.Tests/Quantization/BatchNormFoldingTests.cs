using Google.Protobuf;
using Onnx;
using Sadg.Graph;
using Sadg.Onnx;
using Sadg.Quantization;
using Sadg.Tests.Support;
using Xunit.Abstractions;
using static TorchSharp.torch;
using DataType = Onnx.TensorProto.Types.DataType;

namespace Sadg.Tests.Quantization;

/// <summary>
/// BatchNormalization folding: the folded model has no foldable BN left, computes the same outputs as the original
/// in the executor (to 1e-4 of the output's scale, batch 3) and in ONNX Runtime, and leaves the input model untouched.
/// </summary>
public class BatchNormFoldingTests(ITestOutputHelper output)
{
    const double RelativeTolerance = 1e-4;

    [Fact]
    public void ResNetFoldsEveryBatchNorm() => CheckFoldsAll(TestModels.ResNet(), TestModels.Input(3), expectedFolded: 6);

    [Fact]
    public void MobileNetV2FoldsEveryBatchNorm() => CheckFoldsAll(TestModels.MobileNetV2(), TestModels.Input(3), expectedFolded: 7);

    [Fact]
    public void ConvTrunkFoldsEveryBatchNorm() => CheckFoldsAll(TestModels.ConvTrunk(), TestModels.Input(3), expectedFolded: 6);

    [Fact]
    public void VggHasNothingToFoldAndIsUnchanged()
    {
        var model = TestModels.Vgg();
        var result = BatchNormFolding.FoldWithReport(OnnxModel.FromProto(model));
        Assert.Equal(0, result.Folded);
        Assert.Equal(0, result.Kept);
        Assert.Equal(model.ToByteArray(), result.Model.Proto.ToByteArray());
    }

    [Fact]
    public void BatchNormAfterAddIsKeptAndTheModelStillMatches()
    {
        var b = new OnnxGraphBuilder();
        var x = b.AddInput("input", DataType.Float, -1, 3, 8, 8);
        var c1 = Conv(b, x, 3, 4, bias: true, seed: 1);
        var c2 = Conv(b, x, 3, 4, bias: false, seed: 2);
        var sum = b.AddNode("Add", [c1, c2]);
        var y = BatchNorm(b, sum, 4, seed: 3);
        b.AddOutput(b.AddNode("Relu", [y]));
        var result = Check(b.Build(opset: 13, irVersion: 8), TestModels.Input(3, 5, 3, 8, 8));
        Assert.Equal(0, result.Folded);
        Assert.Equal(1, result.Kept);
    }

    [Fact]
    public void BatchNormOnTheInputOrOnASharedConvOutputIsKept()
    {
        var b = new OnnxGraphBuilder();
        var x = b.AddInput("input", DataType.Float, -1, 3, 8, 8);
        var normalized = BatchNorm(b, x, 3, seed: 1);
        var c = Conv(b, normalized, 3, 4, bias: true, seed: 2);
        var y = BatchNorm(b, c, 4, seed: 3);
        var other = b.AddNode("Relu", [c]);
        b.AddOutput(b.AddNode("Add", [y, other]));
        var result = Check(b.Build(opset: 13, irVersion: 8), TestModels.Input(3, 5, 3, 8, 8));
        Assert.Equal(0, result.Folded);
        Assert.Equal(2, result.Kept);
    }

    /// <summary>Two Convs read one weight; each is folded with its own BN, so the shared weight must not change in place.</summary>
    [Fact]
    public void SharedWeightsGetNewInitializersAndTheInputModelIsUntouched()
    {
        var b = new OnnxGraphBuilder();
        var x = b.AddInput("input", DataType.Float, -1, 3, 8, 8);
        using var w = randn([4, 3, 3, 3], generator: new Generator(0).manual_seed(7)) * 0.3f;
        b.AddInitializer("shared_w", w);
        var attrs = new Dictionary<string, object> { ["pads"] = new long[] { 1, 1, 1, 1 } };
        var c1 = b.AddNode("Conv", [x, "shared_w"], attributes: attrs);
        var c2 = b.AddNode("Conv", [x, "shared_w"], attributes: attrs);
        var y = b.AddNode("Add", [BatchNorm(b, c1, 4, seed: 1), BatchNorm(b, c2, 4, seed: 2)]);
        b.AddOutput(y);
        var model = b.Build(opset: 13, irVersion: 8);
        byte[] before = model.ToByteArray();

        var result = Check(model, TestModels.Input(3, 5, 3, 8, 8));
        Assert.Equal(2, result.Folded);
        Assert.Equal(before, model.ToByteArray());
        var convs = result.Model.Graph.Node.Where(n => n.OpType == "Conv").ToList();
        Assert.Equal(2, convs.Count);
        Assert.NotEqual(convs[0].Input[1], convs[1].Input[1]);
        // The first fold made a new initializer; the second Conv was then the weight's only reader and reuses its name.
        Assert.Equal("shared_w", convs[1].Input[1]);
        Assert.Single(result.Model.Graph.Initializer, t => t.Name == "shared_w");
        Assert.All(convs, c => Assert.Equal(3, c.Input.Count));
    }

    /// <summary>BatchNormalization's attribute forms across opsets (spatial in 7–8, training_mode from 14).</summary>
    [Theory]
    [InlineData(7)]
    [InlineData(9)]
    [InlineData(14)]
    [InlineData(15)]
    [InlineData(21)]
    public void FoldsAcrossOpsets(long opset)
    {
        var b = new OnnxGraphBuilder();
        var x = b.AddInput("input", DataType.Float, -1, 3, 8, 8);
        var c = Conv(b, x, 3, 5, bias: opset % 2 == 1, seed: 1);
        var extra = new Dictionary<string, object>();
        if (opset < 9) extra["spatial"] = 1L;
        if (opset >= 14) extra["training_mode"] = 0L;
        extra["momentum"] = 0.9f;
        var y = BatchNorm(b, c, 5, seed: 2, extra);
        b.AddOutput(b.AddNode("Relu", [y]));
        var result = Check(b.Build(opset: opset, irVersion: opset < 9 ? 3 : 8), TestModels.Input(3, 5, 3, 8, 8));
        Assert.Equal(1, result.Folded);
        Assert.Equal(0, result.Kept);
    }

    [Fact]
    public void SpatialZeroIsKept()
    {
        var b = new OnnxGraphBuilder();
        var x = b.AddInput("input", DataType.Float, -1, 3, 8, 8);
        var c = Conv(b, x, 3, 5, bias: true, seed: 1);
        b.AddOutput(BatchNorm(b, c, 5, seed: 2, new Dictionary<string, object> { ["spatial"] = 0L }));
        var result = BatchNormFolding.FoldWithReport(OnnxModel.FromProto(b.Build(opset: 7, irVersion: 3)));
        Assert.Equal(0, result.Folded);
        Assert.Equal(1, result.Kept);
    }

    /// <summary>Gemm with transB = 0 and no C, then Gemm with transB = 1, C and beta ≠ 1, each followed by a BN.</summary>
    [Fact]
    public void FoldsIntoGemmRespectingTransBAndBeta()
    {
        var b = new OnnxGraphBuilder();
        var g = new Generator(0).manual_seed(11);
        var x = b.AddInput("input", DataType.Float, -1, 6);
        b.AddInitializer("w1", randn([6, 5], generator: g));
        var h = b.AddNode("Gemm", [x, "w1"], attributes: new Dictionary<string, object> { ["alpha"] = 0.7f });
        h = b.AddNode("Relu", [BatchNorm(b, h, 5, seed: 1)]);
        b.AddInitializer("w2", randn([4, 5], generator: g));
        b.AddInitializer("c2", randn([4], generator: g));
        var y = b.AddNode("Gemm", [h, "w2", "c2"], attributes: new Dictionary<string, object> { ["transB"] = 1L, ["beta"] = 0.5f });
        b.AddOutput(BatchNorm(b, y, 4, seed: 2));
        var result = Check(b.Build(opset: 13, irVersion: 8), randn([3, 6], generator: g));
        Assert.Equal(2, result.Folded);
        Assert.Equal(0, result.Kept);
    }

    [Fact]
    public void FoldsIntoGroupedConvTranspose()
    {
        var b = new OnnxGraphBuilder();
        var g = new Generator(0).manual_seed(12);
        var x = b.AddInput("input", DataType.Float, -1, 4, 5, 5);
        b.AddInitializer("wt", randn([4, 3, 3, 3], generator: g) * 0.3f);
        var y = b.AddNode("ConvTranspose", [x, "wt"], attributes: new Dictionary<string, object>
        {
            ["group"] = 2L,
            ["strides"] = new long[] { 2, 2 },
        });
        b.AddOutput(BatchNorm(b, y, 6, seed: 3));
        var result = Check(b.Build(opset: 13, irVersion: 8), randn([3, 4, 5, 5], generator: g));
        Assert.Equal(1, result.Folded);
    }

    /// <summary>
    /// Folds, then checks: executor outputs of folded and original agree, ONNX Runtime runs the folded model and
    /// agrees too, and the number of BN nodes left equals <see cref="FoldResult.Kept"/>.
    /// </summary>
    FoldResult Check(ModelProto model, Tensor input)
    {
        using var scope = NewDisposeScope();
        var result = BatchNormFolding.FoldWithReport(OnnxModel.FromProto(model));
        Assert.Equal(result.Kept, result.Model.Graph.Node.Count(n => n.OpType == "BatchNormalization"));
        Assert.Equal(model.Graph.Node.Count - result.Folded, result.Model.Graph.Node.Count);

        using var original = new GraphModule(OnnxModel.FromProto(model));
        using var folded = new GraphModule(result.Model);
        var expected = original.forward(input).detach();
        var actual = folded.forward(input).detach();
        Assert.Equal(expected.shape, actual.shape);
        double magnitude = expected.abs().max().item<float>();
        double diff = (actual - expected).abs().max().item<float>();
        output.WriteLine($"folded {result.Folded}, kept {result.Kept}: max |folded - original| = {diff:G4}, max |original| = {magnitude:G4}");
        Assert.True(magnitude > 0, "the original output is all zero; the model is degenerate");
        Assert.True(diff <= RelativeTolerance * magnitude, $"max |folded - original| = {diff:G4} > {RelativeTolerance} x {magnitude:G4}");

        var ort = OrtReference.Run(result.Model.Proto, new Dictionary<string, Tensor> { [original.InputNames[0]] = input })[0];
        double ortDiff = (ort - expected).abs().max().item<float>();
        Assert.True(ortDiff <= RelativeTolerance * magnitude, $"max |ORT(folded) - original| = {ortDiff:G4} > {RelativeTolerance} x {magnitude:G4}");
        return result;
    }

    void CheckFoldsAll(ModelProto model, Tensor input, int expectedFolded)
    {
        int before = model.Graph.Node.Count(n => n.OpType == "BatchNormalization");
        Assert.Equal(expectedFolded, before);
        var result = Check(model, input);
        Assert.Equal(expectedFolded, result.Folded);
        Assert.Equal(0, result.Kept);
        Assert.Equal(before, model.Graph.Node.Count(n => n.OpType == "BatchNormalization"));
        // Every folded producer now has a bias, and no initializer is left unread.
        var read = result.Model.Graph.Node.SelectMany(n => n.Input).ToHashSet();
        Assert.All(result.Model.Graph.Initializer, t => Assert.Contains(t.Name, read));
        Assert.All(result.Model.Graph.Node.Where(n => n.OpType == "Conv"), n => Assert.True(n.Input.Count == 3 && n.Input[2].Length > 0));
    }

    static string Conv(OnnxGraphBuilder b, string x, int cin, int cout, bool bias, long seed)
    {
        var g = new Generator(0).manual_seed(seed);
        var inputs = new List<string> { x, b.AddInitializer(b.Fresh("w"), randn([cout, cin, 3, 3], generator: g) * 0.3f) };
        if (bias) inputs.Add(b.AddInitializer(b.Fresh("b"), randn([cout], generator: g) * 0.1f));
        return b.AddNode("Conv", inputs, attributes: new Dictionary<string, object> { ["pads"] = new long[] { 1, 1, 1, 1 } });
    }

    static string BatchNorm(OnnxGraphBuilder b, string x, int c, long seed, Dictionary<string, object>? extra = null)
    {
        var g = new Generator(0).manual_seed(100 + seed);
        var attributes = new Dictionary<string, object>(extra ?? []) { ["epsilon"] = 1e-3f };
        return b.AddNode("BatchNormalization",
        [
            x,
            b.AddInitializer(b.Fresh("gamma"), rand([c], generator: g) + 0.5f),
            b.AddInitializer(b.Fresh("beta"), randn([c], generator: g) * 0.1f),
            b.AddInitializer(b.Fresh("mean"), randn([c], generator: g) * 0.1f),
            b.AddInitializer(b.Fresh("var"), rand([c], generator: g) + 0.5f),
        ], attributes: attributes);
    }
}
