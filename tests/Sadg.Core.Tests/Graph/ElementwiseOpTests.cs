using Onnx;
using Sadg.Graph;
using Sadg.Onnx;
using Sadg.Tests.Support;
using static TorchSharp.torch;
using DataType = Onnx.TensorProto.Types.DataType;

namespace Sadg.Tests.Graph;

/// <summary>
/// Elementwise, activation, softmax and cast operators in forms newer than the ONNX 1.12 conformance data
/// (Gelu, Mish, opset-13+ softmax, opset-21 Clip/Dropout), compared with ONNX Runtime; and gradients through them.
/// </summary>
public class ElementwiseOpTests
{
    static readonly long[] Shape = [2, 3, 4, 5];

    /// <summary>One float input "x" of <see cref="Shape"/> through one node (extra inputs are initializers or "").</summary>
    static ModelProto OneNode(string opType, long opset, IReadOnlyDictionary<string, object>? attributes = null,
        params (string Name, Tensor? Value)[] extra)
    {
        var b = new OnnxGraphBuilder();
        b.AddInput("x", DataType.Float, Shape);
        var inputs = new List<string> { "x" };
        foreach (var (name, value) in extra)
        {
            if (value is not null) b.AddInitializer(name, value);
            inputs.Add(value is null ? "" : name);
        }
        b.AddNode(opType, inputs, ["y"], attributes);
        b.AddOutput("y");
        return b.Build(opset);
    }

    static void AssertMatchesOrt(ModelProto model, double tolerance = 1e-5)
    {
        using var scope = NewDisposeScope();
        var x = randn(Shape, generator: new TorchSharp.torch.Generator(7)) * 3;
        var (diff, scale) = OrtReference.CompareWithExecutor(model, x);
        Assert.True(diff <= tolerance * Math.Max(1, scale), $"max |executor − ORT| = {diff} (scale {scale})");
    }

    [Theory]
    [InlineData("none")]
    [InlineData("tanh")]
    public void GeluOpset20MatchesOrt(string approximate) =>
        AssertMatchesOrt(OneNode("Gelu", 20, new Dictionary<string, object> { ["approximate"] = approximate }));

    [Theory]
    [InlineData("Mish", 18)]
    [InlineData("HardSwish", 14)]
    [InlineData("HardSigmoid", 21)]
    [InlineData("Elu", 21)]
    [InlineData("Selu", 21)]
    [InlineData("Softplus", 21)]
    [InlineData("Softsign", 21)]
    [InlineData("LeakyRelu", 21)]
    [InlineData("Sigmoid", 21)]
    [InlineData("Tanh", 21)]
    [InlineData("Erf", 21)]
    [InlineData("Round", 21)]
    [InlineData("Sign", 21)]
    [InlineData("Abs", 21)]
    [InlineData("Neg", 21)]
    [InlineData("Floor", 21)]
    [InlineData("Ceil", 21)]
    [InlineData("Identity", 21)]
    public void ActivationMatchesOrt(string opType, long opset) => AssertMatchesOrt(OneNode(opType, opset));

    [Fact]
    public void ActivationAttributesMatchOrt()
    {
        AssertMatchesOrt(OneNode("HardSigmoid", 21, new Dictionary<string, object> { ["alpha"] = 0.3f, ["beta"] = 0.4f }));
        AssertMatchesOrt(OneNode("LeakyRelu", 16, new Dictionary<string, object> { ["alpha"] = 0.2f }));
        AssertMatchesOrt(OneNode("Elu", 7, new Dictionary<string, object> { ["alpha"] = 0.5f }));
        AssertMatchesOrt(OneNode("Selu", 7, new Dictionary<string, object> { ["alpha"] = 1.5f, ["gamma"] = 2f }));
    }

    [Fact]
    public void RoundHalvesToEven()
    {
        using var scope = NewDisposeScope();
        var model = OneNode("Round", 21);
        using var graph = new GraphModule(OnnxModel.FromProto(model));
        var x = tensor(new[] { -2.5f, -1.5f, -0.5f, 0.5f, 1.5f, 2.5f, 2.4f, 2.6f });
        Assert.Equal(new[] { -2f, -2f, -0f, 0f, 2f, 2f, 2f, 3f },
            graph.Run(new Dictionary<string, Tensor> { ["x"] = x }, ["y"])["y"].data<float>().ToArray());
    }

    [Theory]
    [InlineData("Softmax", 11, 1)]
    [InlineData("Softmax", 11, -2)]
    [InlineData("Softmax", 11, null)]
    [InlineData("Softmax", 13, 1)]
    [InlineData("Softmax", 21, null)]
    [InlineData("LogSoftmax", 7, 0)]
    [InlineData("LogSoftmax", 12, 2)]
    [InlineData("LogSoftmax", 13, 1)]
    [InlineData("LogSoftmax", 21, -3)]
    public void SoftmaxOpsetRulesMatchOrt(string opType, long opset, int? axis) =>
        AssertMatchesOrt(OneNode(opType, opset, axis is { } a ? new Dictionary<string, object> { ["axis"] = a } : null));

    [Fact]
    public void SoftmaxBeforeOpset13NormalizesTrailingDimensionsTogether()
    {
        using var scope = NewDisposeScope();
        using var graph = new GraphModule(OnnxModel.FromProto(OneNode("Softmax", 11, new Dictionary<string, object> { ["axis"] = 1 })));
        var y = graph.forward(randn(Shape));
        Assert.True(y.sum([1, 2, 3]).allclose(ones(2), 1e-5, 1e-5));
    }

    [Fact]
    public void ClipFormsMatchOrt()
    {
        AssertMatchesOrt(OneNode("Clip", 6, new Dictionary<string, object> { ["min"] = -1f, ["max"] = 2f }));
        AssertMatchesOrt(OneNode("Clip", 10, new Dictionary<string, object> { ["min"] = -0.5f }));
        AssertMatchesOrt(OneNode("Clip", 10));
        using var scope = NewDisposeScope();
        AssertMatchesOrt(OneNode("Clip", 21, null, ("min", tensor(-1f)), ("max", tensor(1.5f))));
        AssertMatchesOrt(OneNode("Clip", 21, null, ("min", null), ("max", tensor(0.5f))));
        AssertMatchesOrt(OneNode("Clip", 11, null, ("min", tensor(-0.25f))));
        AssertMatchesOrt(OneNode("Clip", 13));
    }

    [Fact]
    public void PReluSlopeShapesMatchOrt()
    {
        using var scope = NewDisposeScope();
        var perChannel = tensor(new[] { 0.1f, 0.2f, 0.3f });
        AssertMatchesOrt(OneNode("PRelu", 16, null, ("slope", perChannel.reshape(3, 1, 1))));
        AssertMatchesOrt(OneNode("PRelu", 9, null, ("slope", tensor(new[] { 0.1f, 0.2f, 0.3f, 0.4f, 0.5f }))));
        AssertMatchesOrt(OneNode("PRelu", 7, null, ("slope", tensor(new[] { 0.25f }))));
    }

    [Fact]
    public void PReluTakesAOneDimensionalSlopeOfChannelLengthPerChannel()
    {
        using var scope = NewDisposeScope();
        var slope = tensor(new[] { 0.1f, 0.2f, 0.3f });
        using var graph = new GraphModule(OnnxModel.FromProto(OneNode("PRelu", 9, null, ("slope", slope))));
        var x = randn(Shape);
        var expected = where(x.lt(0), x * slope.reshape(3, 1, 1), x);
        Assert.True(graph.forward(x).allclose(expected));
    }

    [Fact]
    public void DropoutIsTheIdentityAtInference()
    {
        using var scope = NewDisposeScope();
        var b = new OnnxGraphBuilder();
        b.AddInput("x", DataType.Float, Shape);
        b.AddInitializer("ratio", tensor(0.3f));
        b.AddInitializer("training", tensor(false));
        b.AddNode("Dropout", ["x", "ratio", "training"], ["y", "mask"]);
        b.AddNode("Cast", ["mask"], ["mask_f"], new Dictionary<string, object> { ["to"] = (long)DataType.Float });
        b.AddOutput("y");
        b.AddOutput("mask_f");
        var model = b.Build(21);
        var x = randn(Shape);
        using var graph = new GraphModule(OnnxModel.FromProto(model));
        var ours = graph.Run(new Dictionary<string, Tensor> { ["x"] = x }, ["y", "mask_f"]);
        var reference = OrtReference.Run(model, new Dictionary<string, Tensor> { ["x"] = x });
        Assert.True(ours["y"].eq(x).all().item<bool>());
        Assert.True(ours["y"].allclose(reference[0]));
        Assert.True(ours["mask_f"].allclose(reference[1]));
        Assert.True(ours["mask_f"].eq(1).all().item<bool>());
    }

    [Fact]
    public void DropoutInTrainingModeIsRefused()
    {
        using var scope = NewDisposeScope();
        var model = OneNode("Dropout", 21, null, ("ratio", tensor(0.3f)), ("training", tensor(true)));
        var e = Assert.Throws<SadgException>(() =>
        {
            using var graph = new GraphModule(OnnxModel.FromProto(model));
            graph.forward(randn(Shape));
        });
        Assert.Equal(SadgErrorCode.UnsupportedAttribute, e.Code);
    }

    [Fact]
    public void CastToIntegerTruncatesLikeOrt()
    {
        var b = new OnnxGraphBuilder();
        b.AddInput("x", DataType.Float, Shape);
        b.AddNode("Cast", ["x"], ["i"], new Dictionary<string, object> { ["to"] = (long)DataType.Int32 });
        b.AddNode("Cast", ["i"], ["y"], new Dictionary<string, object> { ["to"] = (long)DataType.Float });
        b.AddOutput("y");
        AssertMatchesOrt(b.Build(21), 0);
    }

    [Fact]
    public void CastToStringIsRefused()
    {
        var model = OneNode("Cast", 21, new Dictionary<string, object> { ["to"] = (long)DataType.String });
        var e = Assert.Throws<SadgException>(() => new GraphModule(OnnxModel.FromProto(model)));
        Assert.Equal(SadgErrorCode.UnsupportedAttribute, e.Code);
    }

    [Fact]
    public void IntegerDivisionTruncatesTowardZero()
    {
        using var scope = NewDisposeScope();
        var b = new OnnxGraphBuilder();
        b.AddInput("a", DataType.Int64, 4);
        b.AddInitializer("b", tensor(new long[] { 2, -2, 2, -2 }));
        b.AddNode("Div", ["a", "b"], ["y"]);
        b.AddOutput("y", DataType.Int64, 4);
        using var graph = new GraphModule(OnnxModel.FromProto(b.Build(21)));
        var y = graph.Run(new Dictionary<string, Tensor> { ["a"] = tensor(new long[] { 7, 7, -7, -7 }) }, ["y"])["y"];
        Assert.Equal(new long[] { 3, -3, -3, 3 }, y.data<long>().ToArray());
    }

    [Fact]
    public void VariadicAndLogicOpsMatchOrt()
    {
        using var scope = NewDisposeScope();
        var b = new OnnxGraphBuilder();
        b.AddInput("x", DataType.Float, Shape);
        b.AddInitializer("c", randn(4, 1));
        b.AddInitializer("d", randn(5));
        string min = b.AddNode("Min", ["x", "c", "d"]);
        string max = b.AddNode("Max", ["x", "c", "d"]);
        string sum = b.AddNode("Sum", ["x", "c", "d"]);
        string mean = b.AddNode("Mean", [min, max, sum]);
        string pow = b.AddNode("Pow", [b.AddNode("Abs", ["x"]), "d"]);
        string gt = b.AddNode("Greater", ["x", "c"]);
        string le = b.AddNode("LessOrEqual", ["x", "d"]);
        string both = b.AddNode("Or", [b.AddNode("And", [gt, le]), b.AddNode("Not", [b.AddNode("Equal", [gt, le])])]);
        string picked = b.AddNode("Where", [both, mean, b.AddNode("Neg", [pow])]);
        string sq = b.AddNode("Sqrt", [b.AddNode("Exp", [b.AddNode("Log", [b.AddNode("Reciprocal", [b.AddNode("Abs", [picked])])])])]);
        b.AddNode("Sub", [b.AddNode("Mul", [sq, "c"]), b.AddNode("Div", [picked, "d"])], ["y"]);
        b.AddOutput("y");
        AssertMatchesOrt(b.Build(21), 1e-4);
    }

    [Fact]
    public void GradientFlowsThroughActivationChain()
    {
        using var scope = NewDisposeScope();
        var b = new OnnxGraphBuilder();
        b.AddInput("x", DataType.Float, Shape);
        string v = "x";
        foreach (var op in new[] { "LeakyRelu", "Sigmoid", "HardSwish", "Tanh", "Elu", "Selu", "Softplus", "Softsign", "Mish", "Gelu", "Identity", "Dropout" })
            v = b.AddNode(op, [v]);
        v = b.AddNode("Clip", [v, "", ""]);
        b.AddNode("Softmax", [v], ["y"]);
        b.AddOutput("y");
        using var graph = new GraphModule(OnnxModel.FromProto(b.Build(21)));
        var x = randn(Shape).requires_grad_(true);
        var weights = randn(Shape);
        (graph.forward(x) * weights).sum().backward();
        Assert.NotNull(x.grad);
        Assert.True(x.grad!.isfinite().all().item<bool>());
        Assert.True(x.grad.abs().sum().item<float>() > 0);
    }
}
