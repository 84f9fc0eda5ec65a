using Sadg.Graph;
using Sadg.Onnx;
using TorchSharp;
using static TorchSharp.torch;
using DataType = Onnx.TensorProto.Types.DataType;

namespace Sadg.Tests.Graph;

/// <summary>The executor's own mechanics: hooks, captures, node ranges, weights, and native memory.</summary>
public class GraphModuleTests
{
    /// <summary>y = relu(x * w + b) - x, with named intermediates.</summary>
    internal static OnnxModel SmallModel()
    {
        var g = new OnnxGraphBuilder();
        g.AddInput("x", DataType.Float, -1, 3, 4, 4);
        using var w = full(new long[] { 1, 3, 1, 1 }, 2.0f);
        using var b = full(new long[] { 1, 3, 1, 1 }, 0.5f);
        g.AddInitializer("w", w);
        g.AddInitializer("b", b);
        g.AddNode("Mul", ["x", "w"], ["scaled"]);
        g.AddNode("Add", ["scaled", "b"], ["shifted"]);
        g.AddNode("Relu", ["shifted"], ["activated"]);
        g.AddNode("Sub", ["activated", "x"], ["y"]);
        g.AddOutput("y", DataType.Float, -1, 3, 4, 4);
        return OnnxModel.FromProto(g.Build(opset: 13));
    }

    internal static Tensor Reference(Tensor x) => (x * 2 + 0.5).relu() - x;

    [Fact]
    public void ForwardMatchesTheFormulaAndIsDifferentiable()
    {
        using var scope = NewDisposeScope();
        using var graph = new GraphModule(SmallModel());
        var x = randn(5, 3, 4, 4, generator: new Generator(1)).requires_grad_();
        var y = graph.forward(x);
        Assert.True(y.allclose(Reference(x.detach())));
        y.sum().backward();
        Assert.NotNull(x.grad);
        var expected = (x.detach() * 2 + 0.5).gt(0).to_type(ScalarType.Float32) * 2 - 1;
        Assert.True(x.grad!.allclose(expected));
    }

    [Fact]
    public void CaptureRecordsIntermediateValues()
    {
        using var scope = NewDisposeScope();
        using var graph = new GraphModule(SmallModel());
        using var capture = graph.Capture(["shifted", "x"]);
        var x = randn(2, 3, 4, 4);
        graph.forward(x);
        Assert.True(capture["shifted"].allclose(x * 2 + 0.5));
        Assert.Same(x, capture["x"]);
        Assert.Throws<KeyNotFoundException>(() => capture["activated"]);
    }

    [Fact]
    public void HookReplacesAValueUntilRemoved()
    {
        using var scope = NewDisposeScope();
        using var graph = new GraphModule(SmallModel());
        var x = randn(2, 3, 4, 4);
        using (graph.AddHook("activated", t => zeros_like(t)))
            Assert.True(graph.forward(x).allclose(-x));
        Assert.True(graph.forward(x).allclose(Reference(x)));
    }

    [Fact]
    public void WeightsCanBeHookedAndReplaced()
    {
        using var scope = NewDisposeScope();
        using var graph = new GraphModule(SmallModel());
        Assert.Equal(new[] { "b", "w" }, graph.Weights.Keys.Order().ToArray());
        var x = randn(2, 3, 4, 4);
        using (graph.AddHook("w", t => t * 0))
            Assert.True(graph.forward(x).allclose(full_like(x, 0.5) - x));
        graph.SetWeight("w", full(new long[] { 1, 3, 1, 1 }, 3.0f));
        Assert.True(graph.forward(x).allclose((x * 3 + 0.5).relu() - x));
    }

    [Fact]
    public void RunsANodeRangeFromFedValues()
    {
        using var scope = NewDisposeScope();
        using var graph = new GraphModule(SmallModel());
        int relu = graph.Nodes.Single(n => n.OpType == "Relu").Index;
        var shifted = randn(2, 3, 4, 4);
        var x = randn(2, 3, 4, 4);
        var result = graph.Run(new Dictionary<string, Tensor> { ["shifted"] = shifted, ["x"] = x }, ["y"], relu, graph.Nodes.Count);
        Assert.True(result["y"].allclose(shifted.relu() - x));

        // A value produced before the range must be fed.
        var error = Assert.Throws<SadgException>(() =>
            graph.Run(new Dictionary<string, Tensor> { ["x"] = x }, ["y"], relu, graph.Nodes.Count));
        Assert.Contains("shifted", error.Message);
    }

    [Fact]
    public void UnknownValuesAreRefused()
    {
        using var graph = new GraphModule(SmallModel());
        Assert.Throws<ArgumentException>(() => graph.AddHook("nope", t => t));
        var error = Assert.Throws<SadgException>(() =>
            graph.Run(new Dictionary<string, Tensor> { ["x"] = zeros(1, 3, 4, 4) }, ["nope"]));
        Assert.Contains("nope", error.Message);
    }

    [Fact]
    public void LongLoopsDoNotGrowTheNumberOfLiveTensors()
    {
        using var graph = new GraphModule(SmallModel());
        using var capture = graph.Capture(["shifted"]);
        void Step()
        {
            using var scope = NewDisposeScope();
            var x = randn(4, 3, 4, 4).requires_grad_();
            var loss = graph.forward(x).square().mean() + capture["shifted"].mean();
            loss.backward();
        }
        for (int i = 0; i < 3; i++) Step();
        capture.Clear();
        long before = DisposeScopeManager.Statistics.TensorStatistics.ThreadTotalLiveCount;
        for (int i = 0; i < 300; i++) Step();
        capture.Clear();
        long after = DisposeScopeManager.Statistics.TensorStatistics.ThreadTotalLiveCount;
        Assert.Equal(before, after);
    }
}

public class InputHookTests
{
    [Fact]
    public void AnInputHookChangesWhatOneNodeSees()
    {
        var g = new OnnxGraphBuilder();
        g.AddInput("x", DataType.Float, -1, 4);
        g.AddNode("Relu", ["x"], ["a"], name: "relu");
        g.AddNode("Neg", ["x"], ["b"], name: "neg");
        g.AddNode("Add", ["a", "b"], ["y"], name: "add");
        g.AddOutput("y", DataType.Float, -1, 4);
        using var graph = new GraphModule(OnnxModel.FromProto(g.Build(opset: 13)));
        using var scope = NewDisposeScope();
        var x = randn(3, 4);
        var neg = graph.Nodes.Single(n => n.Name == "neg");
        using (graph.AddInputHook(neg, 0, t => t * 2))
            Assert.True(graph.forward(x).allclose(x.relu() - 2 * x));
        Assert.True(graph.forward(x).allclose(x.relu() - x));
        Assert.Throws<ArgumentOutOfRangeException>(() => graph.AddInputHook(neg, 1, t => t));
    }

    /// <summary>
    /// A run frees each intermediate after its last reader instead of leaving it to the caller's dispose scope: a value
    /// seen by an input hook is freed after the run, one that a capture keeps is not, and a run of the ResNet test
    /// model leaves at least one tensor fewer per operator live than a run that captures every value, with the same output.
    /// </summary>
    [Fact]
    public void ARunFreesIntermediatesAfterTheirLastReader()
    {
        using var scope = NewDisposeScope();
        using (var small = new GraphModule(GraphModuleTests.SmallModel()))
        {
            Tensor? seen = null;
            var sub = small.Nodes.Single(n => n.OpType == "Sub");
            using var hook = small.AddInputHook(sub, 0, t => seen = t);
            var x = randn(2, 3, 4, 4, generator: new Generator(1));
            var y = small.forward(x);
            Assert.True(seen!.IsInvalid, "the value read by the last node is still alive after the run");
            Assert.True(y.allclose(GraphModuleTests.Reference(x)));
            using var capture = small.Capture(["activated"]);
            small.forward(x);
            Assert.False(capture["activated"].IsInvalid);
            Assert.True(capture["activated"].allclose((x * 2 + 0.5).relu()));
        }

        using var graph = new GraphModule(OnnxModel.FromProto(Sadg.Tests.Support.TestModels.ResNet(width: 8)));
        var stats = DisposeScopeManager.Statistics.TensorStatistics;
        var names = graph.Nodes.Where(n => n.Kind == NodeKind.Dynamic).SelectMany(n => n.Outputs).Where(o => o.Length > 0).ToList();
        var input = randn(4, 3, 32, 32, generator: new Generator(2));
        using (no_grad())
        {
            graph.forward(input); // plans and shape caches are made on the first run
            long before = stats.ThreadTotalLiveCount;
            var freed = graph.forward(input);
            long leftFreeing = stats.ThreadTotalLiveCount - before;
            using var everything = graph.Capture(names);
            before = stats.ThreadTotalLiveCount;
            var kept = graph.forward(input);
            long leftKeeping = stats.ThreadTotalLiveCount - before;
            Assert.True(kept.allclose(freed, rtol: 0, atol: 0));
            Assert.True(leftKeeping - leftFreeing >= names.Count - 1,
                $"{leftFreeing} tensors live after a run, {leftKeeping} when all {names.Count} values are captured");
        }
    }

    [Fact]
    public void AValueAnOperatorPassesThroughStaysValid()
    {
        var g = new OnnxGraphBuilder();
        g.AddInput("x", DataType.Float, 2, 3);
        g.AddNode("Relu", ["x"], ["r"]);
        g.AddNode("Identity", ["r"], ["i"]);
        g.AddNode("Neg", ["r"], ["n"]);
        g.AddNode("Identity", ["i"], ["j"]);
        g.AddNode("Add", ["j", "n"], ["y"]);
        g.AddOutput("y", DataType.Float, 2, 3);
        g.AddOutput("i", DataType.Float, 2, 3);
        using var graph = new GraphModule(OnnxModel.FromProto(g.Build(opset: 13)));
        using var scope = NewDisposeScope();
        var x = randn(2, 3, generator: new Generator(3));
        for (int run = 0; run < 2; run++)
        {
            var result = graph.Run(new Dictionary<string, Tensor> { ["x"] = x }, ["y", "i"]);
            Assert.True(result["y"].eq(zeros(2, 3)).all().item<bool>());
            Assert.True(result["i"].eq(x.relu()).all().item<bool>());
            Assert.True(!x.IsInvalid, "the fed value was freed");
        }
    }
}
