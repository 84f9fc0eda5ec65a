using Onnx;
using Sadg.Graph;
using Sadg.Onnx;
using Sadg.Tests.Support;
using static TorchSharp.torch;
using DataType = Onnx.TensorProto.Types.DataType;

namespace Sadg.Tests.Graph;

/// <summary>
/// Shape, reduction, padding and resize operators in the forms newer than the ONNX conformance data
/// (opsets 18–21) and older attribute forms, compared with ONNX Runtime; plus the shape-cache behaviour.
/// </summary>
public class ShapeOpTests
{
    static long ShapeOpSupportProduct(long[] s) => s.Aggregate(1L, (a, b) => a * b);

    static bool Same(Tensor a, Tensor b) => a.shape.SequenceEqual(b.shape) && a.eq(b).all().item<bool>();

    static Dictionary<string, object> Attrs(params (string Key, object Value)[] values) => values.ToDictionary(v => v.Key, v => v.Value);

    /// <summary>Builds a one-node model on input "x" (shape as given) and checks every output against ONNX Runtime.</summary>
    static void MatchesOrt(long opset, string opType, long[] inputShape, string[] extraInputs, Action<OnnxGraphBuilder>? initializers = null,
        Dictionary<string, object>? attributes = null, int outputs = 1, Tensor? input = null)
    {
        var b = new OnnxGraphBuilder();
        b.AddInput("x", DataType.Float, inputShape);
        initializers?.Invoke(b);
        var names = Enumerable.Range(0, outputs).Select(i => $"y{i}").ToArray();
        b.AddNode(opType, new[] { "x" }.Concat(extraInputs), names, attributes);
        foreach (var n in names) b.AddOutput(n);
        var model = b.Build(opset);

        using var scope = NewDisposeScope();
        var x = input ?? arange(ShapeOpSupportProduct(inputShape), dtype: ScalarType.Float32).reshape(inputShape);
        var reference = OrtReference.Run(model, new Dictionary<string, Tensor> { ["x"] = x });
        using var graph = new GraphModule(OnnxModel.FromProto(model));
        var ours = graph.Run(new Dictionary<string, Tensor> { ["x"] = x }, names);
        Assert.Equal(outputs, reference.Length);
        for (int i = 0; i < outputs; i++)
        {
            string? diff = ConformanceTests.Compare(reference[i], ours[names[i]]);
            Assert.True(diff is null, $"{opType} opset {opset} output {i}: {diff}\n{reference[i].ToString(TorchSharp.TensorStringStyle.Julia)}\n{ours[names[i]].ToString(TorchSharp.TensorStringStyle.Julia)}");
        }
    }

    [Theory]
    [InlineData(new long[] { 1 }, 1L, 0L)]
    [InlineData(new long[] { -1, 0 }, 0L, 0L)]
    [InlineData(new long[0], 1L, 0L)]
    [InlineData(new long[0], 1L, 1L)]
    public void ReduceMeanTakesAxesAsInputFromOpset18(long[] axes, long keepdims, long noop)
    {
        MatchesOrt(18, "ReduceMean", [2, 3, 4], axes.Length > 0 ? ["axes"] : [],
            b => { if (axes.Length > 0) b.AddInt64s("axes", axes); },
            Attrs(("keepdims", keepdims), ("noop_with_empty_axes", noop)));
    }

    [Theory]
    [InlineData("ReduceSum", 13)]
    [InlineData("ReduceMax", 18)]
    [InlineData("ReduceMin", 18)]
    [InlineData("ReduceProd", 18)]
    [InlineData("ReduceL2", 18)]
    [InlineData("ReduceLogSumExp", 18)]
    public void ReductionsTakeAxesInput(string op, long opset) =>
        MatchesOrt(opset, op, [2, 3, 4], ["axes"], b => b.AddInt64s("axes", 0, 2), Attrs(("keepdims", 0L)));

    [Theory]
    [InlineData("ReduceMean")]
    [InlineData("ReduceSum")]
    [InlineData("ReduceL2")]
    public void ReductionsTakeAxesAttributeBeforeInputs(string op) =>
        MatchesOrt(11, op, [2, 3, 4], [], null, Attrs(("axes", new long[] { -1, 1 }), ("keepdims", 1L)));

    [Theory]
    [InlineData("constant")]
    [InlineData("reflect")]
    [InlineData("edge")]
    public void PadTakesAxesInputFromOpset18(string mode) =>
        MatchesOrt(18, "Pad", [2, 3, 4, 5], ["pads", "value", "axes"], b =>
        {
            b.AddInt64s("pads", 1, 1, 2, -1);
            b.AddInitializer("value", tensor(1.5f));
            b.AddInt64s("axes", -1, 1);
        }, Attrs(("mode", mode)));

    [Fact]
    public void PadWrapsFromOpset19() =>
        MatchesOrt(19, "Pad", [2, 3, 4], ["pads"], b => b.AddInt64s("pads", 0, 1, 3, 0, 2, 1), Attrs(("mode", "wrap")));

    [Theory]
    [InlineData("constant")]
    [InlineData("reflect")]
    [InlineData("edge")]
    public void PadTakesAttributesBeforeOpset11(string mode) =>
        MatchesOrt(7, "Pad", [1, 2, 3, 4], [], null, Attrs(("mode", mode), ("pads", new long[] { 0, 0, 1, 2, 0, 1, 2, -1 }), ("value", 2.0f)));

    [Fact]
    public void SplitTakesNumOutputsFromOpset18() =>
        MatchesOrt(18, "Split", [2, 7], [], null, Attrs(("axis", 1L), ("num_outputs", 3L)), outputs: 3);

    [Fact]
    public void SplitTakesSplitAttributeBeforeOpset13() =>
        MatchesOrt(11, "Split", [5, 2], [], null, Attrs(("split", new long[] { 1, 4 })), outputs: 2);

    [Fact]
    public void SliceTakesAttributesBeforeOpset10() =>
        MatchesOrt(9, "Slice", [4, 5, 6], [], null, Attrs(("starts", new long[] { 1, -4 }), ("ends", new long[] { long.MaxValue, -1 }), ("axes", new long[] { 0, 2 })));

    [Fact]
    public void SliceWithNegativeStepsAndHugeBounds() =>
        MatchesOrt(13, "Slice", [4, 5, 6], ["starts", "ends", "axes", "steps"], b =>
        {
            b.AddInt64s("starts", long.MaxValue, 1, -1);
            b.AddInt64s("ends", long.MinValue, 5, -7);
            b.AddInt64s("axes", 0, 1, 2);
            b.AddInt64s("steps", -1, 2, -2);
        });

    [Fact]
    public void UnsqueezeAndSqueezeTakeAxesAttributeBeforeOpset13()
    {
        MatchesOrt(11, "Unsqueeze", [3, 4], [], null, Attrs(("axes", new long[] { 0, -1 })));
        MatchesOrt(11, "Squeeze", [1, 3, 1, 4], [], null, Attrs(("axes", new long[] { -2 })));
        MatchesOrt(13, "Squeeze", [1, 3, 1, 4], []);
    }

    [Fact]
    public void ShapeTakesStartAndEnd() =>
        MatchesOrtShape();

    static void MatchesOrtShape()
    {
        // Shape yields int64, which OrtReference does not read back; compare the start/end slice directly.
        var b = new OnnxGraphBuilder();
        b.AddInput("x", DataType.Float, 2, 3, 4, 5);
        var s = b.AddNode("Shape", ["x"], attributes: Attrs(("start", -3L), ("end", -1L)));
        b.AddOutput(s, DataType.Int64, 2);
        using var scope = NewDisposeScope();
        using var graph = new GraphModule(OnnxModel.FromProto(b.Build(15)));
        var y = graph.Run(new Dictionary<string, Tensor> { ["x"] = randn(2, 3, 4, 5) }, [s])[s];
        Assert.Equal([3L, 4L], y.data<long>().ToArray());
    }

    public static TheoryData<long, string, string, float[]?, long[]?> ResizeCases => new()
    {
        { 10, "asymmetric", "simple", [1, 1, 2, 3], null },
        { 10, "asymmetric", "simple", [1, 1, 0.5f, 0.6f], null },
        { 11, "half_pixel", "round_prefer_floor", [1, 1, 1.7f, 0.6f], null },
        { 11, "align_corners", "floor", null, [2, 3, 7, 3] },
        { 11, "asymmetric", "ceil", [1, 1, 2.5f, 1.5f], null },
        { 13, "pytorch_half_pixel", "round_prefer_ceil", null, [2, 3, 1, 9] },
        { 13, "tf_half_pixel_for_nn", "round_prefer_floor", [1, 1, 0.6f, 1.8f], null },
        { 13, "half_pixel", "ceil", null, [2, 3, 3, 13] },
        { 19, "half_pixel_symmetric", "round_prefer_floor", [1, 1, 1.7f, 0.6f], null },
        { 19, "half_pixel_symmetric", "floor", null, [2, 3, 7, 3] },
    };

    [Theory]
    [MemberData(nameof(ResizeCases))]
    public void ResizeNearestMatchesOrt(long opset, string transform, string nearest, float[]? scales, long[]? sizes)
    {
        var attributes = Attrs(("mode", "nearest"));
        if (opset >= 11)
        {
            attributes["coordinate_transformation_mode"] = transform;
            attributes["nearest_mode"] = nearest;
        }
        string[] extra = opset < 11 ? ["scales"] : sizes is null ? ["", "scales"] : ["", "", "sizes"];
        if (opset == 11) extra = sizes is null ? ["roi", "scales"] : ["roi", "scales", "sizes"];
        MatchesOrt(opset, "Resize", [2, 3, 5, 6], extra, b =>
        {
            if (opset == 11) { b.AddInitializer("roi", zeros(0)); if (sizes is not null) b.AddInitializer("scales", zeros(0)); }
            if (scales is not null) b.AddInitializer("scales", tensor(scales));
            if (sizes is not null) b.AddInt64s("sizes", sizes);
        }, attributes);
    }

    [Theory]
    [InlineData("not_larger")]
    [InlineData("not_smaller")]
    [InlineData("stretch")]
    public void ResizeTakesAxesAndAspectPolicyFromOpset18(string policy) =>
        MatchesOrt(18, "Resize", [2, 3, 5, 6], ["", "", "sizes"], b => b.AddInt64s("sizes", 8, 9),
            Attrs(("mode", "nearest"), ("axes", new long[] { 2, 3 }), ("keep_aspect_ratio_policy", policy),
                ("coordinate_transformation_mode", "asymmetric"), ("nearest_mode", "floor")));

    [Fact]
    public void ResizeRefusesCropAndResizeAndAntialiasedShrinking()
    {
        var b = new OnnxGraphBuilder();
        b.AddInput("x", DataType.Float, 1, 1, 2, 2);
        b.AddInitializer("scales", tensor(new float[] { 1, 1, 2, 2 }));
        b.AddOutput(b.AddNode("Resize", ["x", "", "scales"], attributes: Attrs(("mode", "nearest"), ("coordinate_transformation_mode", "tf_crop_and_resize"))));
        var e = Assert.Throws<SadgException>(() => new GraphModule(OnnxModel.FromProto(b.Build(13))));
        Assert.Equal(SadgErrorCode.UnsupportedAttribute, e.Code);

        b = new OnnxGraphBuilder();
        b.AddInput("x", DataType.Float, 1, 1, 4, 4);
        b.AddInitializer("scales", tensor(new float[] { 1, 1, 0.5f, 0.5f }));
        b.AddOutput(b.AddNode("Resize", ["x", "", "scales"], attributes: Attrs(("mode", "cubic"), ("antialias", 1L))));
        using var graph = new GraphModule(OnnxModel.FromProto(b.Build(18)));
        e = Assert.Throws<SadgException>(() => graph.forward(ones(1, 1, 4, 4)));
        Assert.Equal(SadgErrorCode.UnsupportedAttribute, e.Code);
    }

    [Fact]
    public void UpsampleTakesScalesAttributeAtOpset7AndInputAtOpset9()
    {
        MatchesOrt(7, "Upsample", [1, 2, 3, 4], [], null, Attrs(("mode", "nearest"), ("scales", new float[] { 1, 1, 2, 3 })));
        MatchesOrt(9, "Upsample", [1, 2, 3, 4], ["scales"], b => b.AddInitializer("scales", tensor(new float[] { 1, 1, 2.5f, 1.5f })),
            Attrs(("mode", "nearest")));
    }

    [Fact]
    public void NearestResizeAndPadAreDifferentiable()
    {
        var b = new OnnxGraphBuilder();
        b.AddInput("x", DataType.Float, 2, 3, 4, 4);
        b.AddInitializer("scales", tensor(new float[] { 1, 1, 2, 2 }));
        b.AddInt64s("pads", 0, 0, 1, 1, 0, 0, 1, 1);
        var r = b.AddNode("Resize", ["x", "", "scales"], attributes: Attrs(("mode", "nearest")));
        var p = b.AddNode("Pad", [r, "pads"], attributes: Attrs(("mode", "reflect")));
        b.AddOutput(p);
        using var scope = NewDisposeScope();
        using var graph = new GraphModule(OnnxModel.FromProto(b.Build(13)));
        var x = randn(2, 3, 4, 4).requires_grad_();
        graph.forward(x).sum().backward();
        Assert.NotNull(x.grad);
        Assert.True(x.grad!.sum().item<float>() > 4 * 2 * 3 * 4 * 4 - 1e-3);
    }

    /// <summary>
    /// PyTorch's x.size(0): Shape -> Gather(0) of <paramref name="value"/>, with the constants its idiom's Reshape
    /// targets use (zero, minus_one, axes = [0]) declared.
    /// </summary>
    static string BatchOf(OnnxGraphBuilder b, string value)
    {
        b.AddInitializer("zero", tensor(0L));
        b.AddInt64s("minus_one", -1);
        b.AddInt64s("axes", 0);
        return b.AddNode("Gather", [b.AddNode("Shape", [value]), "zero"], attributes: Attrs(("axis", 0L)));
    }

    [Fact]
    public void FlattenIdiomRunsAsShapeOnlyAndFollowsTheBatch()
    {
        // PyTorch's x.view(x.size(0), -1): Shape -> Gather(0) -> Unsqueeze -> Concat([-1]) -> Reshape.
        var b = new OnnxGraphBuilder();
        b.AddInput("x", DataType.Float, -1, 3, 4, 5);
        var batch = BatchOf(b, "x");
        var unsqueezed = b.AddNode("Unsqueeze", [batch, "axes"]);
        var target = b.AddNode("Concat", [unsqueezed, "minus_one"], attributes: Attrs(("axis", 0L)));
        var y = b.AddNode("Reshape", ["x", target]);
        b.AddOutput(y);

        using var graph = new GraphModule(OnnxModel.FromProto(b.Build(13)));
        foreach (var name in new[] { "Shape", "Gather", "Unsqueeze", "Concat" })
            Assert.Equal(NodeKind.ShapeOnly, graph.Nodes.Single(n => n.OpType == name).Kind);
        Assert.Equal(NodeKind.Dynamic, graph.Nodes.Single(n => n.OpType == "Reshape").Kind);

        foreach (long n in new long[] { 2, 5, 2 })
        {
            using var scope = NewDisposeScope();
            var x = randn(n, 3, 4, 5);
            var result = graph.forward(x);
            Assert.Equal([n, 60L], result.shape);
            Assert.True(Same(result, x.reshape(n, 60)));
        }
    }

    /// <summary>
    /// PyTorch's channel shuffle exported with a dynamic batch: the batch read from an intermediate value's shape
    /// builds two Reshape targets, the second after that value has been freed (its last reader, the first Reshape,
    /// has run). The shape-only nodes' cached results must still follow the batch from run to run: a cache keyed on
    /// the freed value's missing shape returned the previous run's batch (ShuffleNet failed with "cannot reshape
    /// [32, 24, 2, 7, 7] to [2, 48, 7, 7]").
    /// </summary>
    [Fact]
    public void A_batch_read_from_a_freed_intermediate_still_follows_the_batch()
    {
        var b = new OnnxGraphBuilder();
        b.AddInput("x", DataType.Float, -1, 3, 4, 5);
        b.AddInt64s("three_minus_one", 3, -1);
        var r = b.AddNode("Relu", ["x"]);
        var batch = BatchOf(b, r);
        var first = b.AddNode("Concat", [b.AddNode("Unsqueeze", [batch, "axes"]), "minus_one"], attributes: Attrs(("axis", 0L)));
        var flat = b.AddNode("Neg", [b.AddNode("Reshape", [r, first])]); // the last reader of r
        var second = b.AddNode("Concat", [b.AddNode("Unsqueeze", [batch, "axes"]), "three_minus_one"], attributes: Attrs(("axis", 0L)));
        b.AddOutput(b.AddNode("Reshape", [flat, second]));

        using var graph = new GraphModule(OnnxModel.FromProto(b.Build(13)));
        foreach (long n in new long[] { 2, 5, 2, 32 })
        {
            using var scope = NewDisposeScope();
            var x = randn(n, 3, 4, 5);
            var result = graph.forward(x);
            Assert.Equal([n, 3L, 20L], result.shape);
            Assert.True(Same(result, x.relu().neg().reshape(n, 3, 20)));
        }
    }

    [Fact]
    public void ReshapeReadsLeadingOneAsBatchWhenModelDeclaresBatchOne()
    {
        var b = new OnnxGraphBuilder();
        b.AddInput("x", DataType.Float, 1, 3, 4, 4);
        b.AddInt64s("target", 1, -1);
        b.AddInt64s("fixed", 1, 48);
        var flat = b.AddNode("Reshape", ["x", "target"]);
        var fixedFlat = b.AddNode("Reshape", ["x", "fixed"]);
        b.AddOutput(flat);
        b.AddOutput(fixedFlat);
        using var graph = new GraphModule(OnnxModel.FromProto(b.Build(13)));

        using var scope = NewDisposeScope();
        var x = randn(4, 3, 4, 4);
        var outputs = graph.Run(new Dictionary<string, Tensor> { ["x"] = x }, [flat, fixedFlat]);
        for (long i = 0; i < 4; i++)
        {
            var single = graph.Run(new Dictionary<string, Tensor> { ["x"] = x[i].unsqueeze(0) }, [flat, fixedFlat]);
            Assert.Equal([1L, 48L], single[flat].shape);
            Assert.True(Same(outputs[flat][i].unsqueeze(0), single[flat]));
            Assert.True(Same(outputs[fixedFlat][i].unsqueeze(0), single[fixedFlat]));
        }
        Assert.Equal([4L, 48L], outputs[flat].shape);
        Assert.Equal([4L, 48L], outputs[fixedFlat].shape);
    }

    [Fact]
    public void ReshapeKeepsLiteralTargetWithoutDeclaredBatchOne()
    {
        var b = new OnnxGraphBuilder();
        b.AddInput("x", DataType.Float, -1, 3, 4, 4);
        b.AddInt64s("target", 1, -1);
        b.AddOutput(b.AddNode("Reshape", ["x", "target"]));
        using var graph = new GraphModule(OnnxModel.FromProto(b.Build(13)));
        using var scope = NewDisposeScope();
        Assert.Equal([1L, 192L], graph.forward(randn(4, 3, 4, 4)).shape);
    }

    [Fact]
    public void ConstantForms()
    {
        var b = new OnnxGraphBuilder();
        b.AddInput("x", DataType.Float, 2, 3);
        var f = b.AddNode("Constant", [], attributes: Attrs(("value_floats", new float[] { 1, 2, 3 })));
        var s = b.AddNode("Constant", [], attributes: Attrs(("value_float", 0.5f)));
        var i = b.AddNode("Constant", [], attributes: Attrs(("value_ints", new long[] { 3, 2 })));
        var t = b.AddNode("Constant", [], attributes: Attrs(("value", OnnxTensors.FromTorch("v", tensor(new float[] { 1, -1 }).reshape(2, 1)))));
        var a = b.AddNode("Reshape", ["x", i]);
        b.AddOutput(a); b.AddOutput(f); b.AddOutput(s); b.AddOutput(t);
        using var graph = new GraphModule(OnnxModel.FromProto(b.Build(13)));
        using var scope = NewDisposeScope();
        var outputs = graph.Run(new Dictionary<string, Tensor> { ["x"] = randn(2, 3) }, [a, f, s, t]);
        Assert.Equal([3L, 2L], outputs[a].shape);
        Assert.Equal([1f, 2f, 3f], outputs[f].data<float>().ToArray());
        Assert.Empty(outputs[s].shape);
        Assert.Equal(0.5f, outputs[s].item<float>());
        Assert.Equal([2L, 1L], outputs[t].shape);
    }

    [Fact]
    public void GatherAndGatherElementsTakeNegativeAxesAndIndices()
    {
        MatchesOrt(13, "Gather", [3, 4, 5], ["idx"], b => b.AddInitializer("idx", tensor(new long[] { -1, 0, 2, -4 }).reshape(2, 2)), Attrs(("axis", -2L)));
        MatchesOrt(11, "Gather", [3, 4, 5], ["idx"], b => b.AddInitializer("idx", tensor(-1L)), Attrs(("axis", 2L)));
        MatchesOrt(13, "GatherElements", [3, 4], ["idx"], b => b.AddInitializer("idx", tensor(new long[] { -1, 0, 2, 1, 0, -3 }).reshape(3, 2)), Attrs(("axis", 1L)));
    }

    [Fact]
    public void ExpandTileTransposeFlattenConcat()
    {
        MatchesOrt(13, "Expand", [3, 1], ["shape"], b => b.AddInt64s("shape", 2, 1, 4));
        MatchesOrt(13, "Tile", [2, 3], ["reps"], b => b.AddInt64s("reps", 2, 3));
        MatchesOrt(13, "Transpose", [2, 3, 4], []);
        MatchesOrt(13, "Flatten", [2, 3, 4, 5], [], null, Attrs(("axis", -3L)));
        MatchesOrt(13, "Concat", [2, 3], ["c"], b => b.AddInitializer("c", randn(2, 1)), Attrs(("axis", -1L)));
    }

    [Fact]
    public void ConstantOfShapeFollowsAShapeComputation()
    {
        var b = new OnnxGraphBuilder();
        b.AddInput("x", DataType.Float, -1, 3);
        var shape = b.AddNode("Shape", ["x"]);
        var filled = b.AddNode("ConstantOfShape", [shape], attributes: Attrs(("value", OnnxTensors.FromTorch("v", tensor(new float[] { 2.5f })))));
        var y = b.AddNode("Concat", ["x", filled], attributes: Attrs(("axis", 1L)));
        b.AddOutput(y);
        var model = b.Build(13);
        using var graph = new GraphModule(OnnxModel.FromProto(model));
        Assert.Equal(NodeKind.ShapeOnly, graph.Nodes.Single(n => n.OpType == "ConstantOfShape").Kind);
        foreach (long n in new long[] { 2, 3 })
        {
            using var scope = NewDisposeScope();
            var x = randn(n, 3);
            var reference = OrtReference.Run(model, new Dictionary<string, Tensor> { ["x"] = x })[0];
            Assert.Null(ConformanceTests.Compare(reference, graph.forward(x)));
        }
    }
}
