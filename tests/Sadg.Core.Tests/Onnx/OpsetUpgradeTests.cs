using Onnx;
using Sadg.Onnx;
using Sadg.Quantization;
using Sadg.Tests.Support;
using Xunit.Abstractions;
using static TorchSharp.torch;
using DataType = Onnx.TensorProto.Types.DataType;
using Tensor = TorchSharp.torch.Tensor;

namespace Sadg.Tests.Onnx;

public class OpsetUpgradeTests(ITestOutputHelper output)
{
    static Dictionary<string, object> Attrs(params (string, object)[] pairs) => pairs.ToDictionary(p => p.Item1, p => p.Item2);

    /// <summary>
    /// A small CNN written in the forms of <paramref name="opset"/>: Conv, BatchNormalization, Clip, Pad, Slice,
    /// Unsqueeze/Squeeze, Split, Upsample (9) or Resize (11, 13), MaxPool, Dropout, ReduceMean/ReduceSum/ReduceMax,
    /// Softmax on a 4-D tensor with axis 1 (flattening semantics before 13), Flatten, Gemm, LogSoftmax.
    /// </summary>
    static ModelProto Model(long opset)
    {
        var g = new Generator(0).manual_seed(opset);
        var b = new OnnxGraphBuilder($"opset{opset}");
        bool old11 = opset < 11, old13 = opset < 13;
        var x = b.AddInput("input", DataType.Float, -1, 3, 8, 8);
        var c = b.AddNode("Conv", [x, b.AddInitializer("conv_w", randn([4, 3, 3, 3], generator: g) * 0.4f)], ["c"],
            Attrs(("kernel_shape", new long[] { 3, 3 }), ("pads", new long[] { 1, 1, 1, 1 })), "conv");
        var bn = b.AddNode("BatchNormalization", [c, b.AddInitializer("bn_s", rand([4], generator: g) + 0.5f),
            b.AddInitializer("bn_b", randn([4], generator: g) * 0.1f), b.AddInitializer("bn_m", randn([4], generator: g) * 0.1f),
            b.AddInitializer("bn_v", rand([4], generator: g) + 0.5f)], ["bn"], Attrs(("epsilon", 1e-5f)), "bn");
        var clip = old11
            ? b.AddNode("Clip", [bn], ["clip"], Attrs(("min", 0f), ("max", 6f)), "clip")
            : b.AddNode("Clip", [bn, b.AddInitializer("lo", tensor(0f)), b.AddInitializer("hi", tensor(6f))], ["clip"], name: "clip");
        long[] pads = [0, 0, 1, 1, 0, 0, 1, 1];
        var pad = old11
            ? b.AddNode("Pad", [clip], ["pad"], Attrs(("pads", pads), ("value", 0.5f)), "pad")
            : b.AddNode("Pad", [clip, b.AddInt64s("pads", pads), b.AddInitializer("pad_value", tensor(0.5f))], ["pad"], name: "pad");
        var slice = old11 && opset < 10
            ? b.AddNode("Slice", [pad], ["slice"], Attrs(("starts", new long[] { 1, 1 }), ("ends", new long[] { 9, 9 }), ("axes", new long[] { 2, 3 })), "slice")
            : b.AddNode("Slice", [pad, b.AddInt64s("starts", 1, 1), b.AddInt64s("ends", 9, 9), b.AddInt64s("slice_axes", 2, 3)], ["slice"], name: "slice");
        var unsq = old13
            ? b.AddNode("Unsqueeze", [slice], ["unsq"], Attrs(("axes", new long[] { 1 })), "unsqueeze")
            : b.AddNode("Unsqueeze", [slice, b.AddInt64s("unsq_axes", 1)], ["unsq"], name: "unsqueeze");
        var sq = old13
            ? b.AddNode("Squeeze", [unsq], ["sq"], Attrs(("axes", new long[] { 1 })), "squeeze")
            : b.AddNode("Squeeze", [unsq, b.AddInt64s("sq_axes", 1)], ["sq"], name: "squeeze");
        if (old13) b.AddNode("Split", [sq], ["s1", "s3"], Attrs(("axis", 1L), ("split", new long[] { 1, 3 })), "split");
        else b.AddNode("Split", [sq, b.AddInt64s("split", 1, 3)], ["s1", "s3"], Attrs(("axis", 1L)), "split");
        b.AddNode("Split", ["s3"], ["h1", "h2"], Attrs(("axis", 2L)), "split_even");
        var scales = b.AddInitializer("scales", tensor(new float[] { 1, 1, 2, 2 }));
        var up = opset < 10
            ? b.AddNode("Upsample", ["s1", scales], ["up"], Attrs(("mode", "nearest")), "upsample")
            : b.AddNode("Resize", ["s1", b.AddInitializer("roi", zeros(0)), scales], ["up"],
                Attrs(("mode", "nearest"), ("coordinate_transformation_mode", "asymmetric"), ("nearest_mode", "floor")), "resize");
        var mp = b.AddNode("MaxPool", [up], ["mp"], Attrs(("kernel_shape", new long[] { 2, 2 }), ("strides", new long[] { 2, 2 })), "maxpool");
        var drop = b.AddNode("Dropout", [mp], ["drop", "mask"], name: "dropout");
        var mean = b.AddNode("ReduceMean", ["h1"], ["mean"], Attrs(("axes", new long[] { 1 }), ("keepdims", 1L)), "reducemean");
        var mean2 = b.AddNode("Concat", [mean, b.AddNode("ReduceMean", ["h2"], ["mean2"], Attrs(("axes", new long[] { 1 })), "reducemean2")], ["mean_cat"], Attrs(("axis", 2L)), "concat");
        var sum = b.AddNode("Add", [drop, mean2], ["sum"], name: "add");
        var sm = b.AddNode("Softmax", [sum], ["sm"], Attrs(("axis", 1L)), "softmax");
        var rs = old13
            ? b.AddNode("ReduceSum", [sm], ["rs"], Attrs(("axes", new long[] { 2, 3 }), ("keepdims", 0L)), "reducesum")
            : b.AddNode("ReduceSum", [sm, b.AddInt64s("rs_axes", 2, 3)], ["rs"], Attrs(("keepdims", 0L)), "reducesum");
        var flat = b.AddNode("Flatten", [sm], ["flat"], Attrs(("axis", 1L)), "flatten");
        var gemm = b.AddNode("Gemm", [flat, b.AddInitializer("fc_w", randn([10, 64], generator: g)), b.AddInitializer("fc_b", randn([10], generator: g))],
            ["logits"], Attrs(("transB", 1L), ("alpha", 30f)), "gemm");
        var ls = b.AddNode("LogSoftmax", [gemm], ["ls"], name: "logsoftmax");
        var max = b.AddNode("ReduceMax", [gemm], ["max"], Attrs(("axes", new long[] { 1 })), "reducemax");
        b.AddOutput(ls);
        b.AddOutput(rs);
        b.AddOutput(max);
        return b.Build(opset, irVersion: opset < 11 ? 4 : 7);
    }

    [Theory]
    [InlineData(9)]
    [InlineData(11)]
    [InlineData(13)]
    public void UpgradedModelComputesTheSameInOnnxRuntime(long opset)
    {
        using var scope = NewDisposeScope();
        var source = Model(opset);
        var upgraded = OpsetUpgrader.Upgrade(source);
        Assert.Equal(21, OnnxModel.OpsetOf(upgraded));
        Assert.Equal(10, upgraded.IrVersion);
        Assert.Equal(opset, OnnxModel.OpsetOf(source));
        if (opset < 11) Assert.Contains(upgraded.Graph.Node, n => n.Name == "clip" && n.Input.Count == 3 && n.Attribute.Count == 0);
        if (opset < 10) Assert.Contains(upgraded.Graph.Node, n => n.Name == "upsample" && n.OpType == "Resize");
        Assert.Contains(upgraded.Graph.Node, n => n.Name == "dropout" && n.OpType == "Identity");

        var x = TestModels.Input(16, seed: 3, 3, 8, 8);
        var feeds = new Dictionary<string, Tensor> { ["input"] = x };
        var before = OrtReference.Run(source, feeds);
        var after = OrtReference.Run(upgraded, feeds);
        Assert.Equal(before.Length, after.Length);
        for (int i = 0; i < before.Length; i++)
        {
            Assert.Equal(before[i].shape, after[i].shape);
            double diff = (before[i] - after[i]).abs().max().item<float>();
            output.WriteLine($"opset {opset}, output {i}: max |diff| {diff:G3}");
            Assert.True(diff <= 1e-5, $"output {i} differs by {diff}");
        }
        // Softmax(axis 1) of [N, 1, 8, 8]: before opset 13 it normalizes over C·H·W (sums over H, W to 1); from 13
        // over C alone (all ones, summing to 64). The upgraded model must keep the source opset's meaning.
        float expected = opset < 13 ? 1f : 64f;
        Assert.True(after[1].sub(expected).abs().max().item<float>() < 1e-4, $"softmax sums {after[1][0].item<float>()}, want {expected}");
    }

    /// <summary>
    /// A model of the newest opset Sadg reads (26) is written at opset 21 with the same outputs: Conv, HardSwish, the
    /// pools (versions 22), Reshape and Flatten (25), whose newer versions only accept more types, stay as they are.
    /// ONNX Runtime runs both; the executor runs the source as it is.
    /// </summary>
    [Fact]
    public void A_newer_opset_model_is_written_at_opset_21_with_the_same_outputs()
    {
        using var scope = NewDisposeScope();
        var g = new Generator(0).manual_seed(26);
        var b = new OnnxGraphBuilder("opset26");
        var x = b.AddInput("input", DataType.Float, -1, 3, 8, 8);
        var c = b.AddNode("Conv", [x, b.AddInitializer("conv_w", randn([4, 3, 3, 3], generator: g) * 0.4f)], ["c"],
            Attrs(("kernel_shape", new long[] { 3, 3 }), ("pads", new long[] { 1, 1, 1, 1 })), "conv");
        var act = b.AddNode("HardSwish", [c], ["act"], name: "hardswish");
        var offsets = b.AddNode("Reshape", [b.AddInitializer("steps", arange(4f)), b.AddInt64s("offset_shape", 1, 4, 1, 1)], ["offsets"], name: "reshape");
        var sum = b.AddNode("Add", [act, offsets], ["sum"], name: "add");
        var pooled = b.AddNode("GlobalAveragePool", [b.AddNode("MaxPool", [sum], ["mp"], Attrs(("kernel_shape", new long[] { 2, 2 })), "maxpool")], ["gap"], name: "gap");
        var flat = b.AddNode("Flatten", [pooled], ["flat"], name: "flatten");
        b.AddOutput(flat);
        var source = b.Build(OpsetUpgrader.NewestKnownOpset, irVersion: 10);

        var upgraded = OpsetUpgrader.Upgrade(source);
        Assert.Equal(21, OnnxModel.OpsetOf(upgraded));
        Assert.Equal(source.Graph.Node.Select(n => n.OpType), upgraded.Graph.Node.Select(n => n.OpType));

        var input = TestModels.Input(8, seed: 5, 3, 8, 8);
        var feeds = new Dictionary<string, Tensor> { ["input"] = input };
        var before = OrtReference.Run(source, feeds)[0];
        var after = OrtReference.Run(upgraded, feeds)[0];
        using var module = new Sadg.Graph.GraphModule(OnnxModel.FromProto(source));
        var executed = module.forward(input);
        foreach (var (name, other) in new[] { ("opset 21 in ONNX Runtime", after), ("the executor", executed) })
        {
            double diff = (before - other).abs().max().item<float>();
            output.WriteLine($"{name}: max |diff| {diff:G3}");
            Assert.True(diff <= 1e-5, $"{name} differs from the opset-26 model in ONNX Runtime by {diff}");
        }
    }

    [Fact]
    public void Opsets_newer_than_sadg_knows_and_operators_new_since_21_are_refused()
    {
        var b = new OnnxGraphBuilder();
        var x = b.AddInput("input", DataType.Float, -1, 3, 4, 4);
        b.AddNode("Relu", [x], ["y"], name: "relu");
        b.AddOutput("y");
        var e = Assert.Throws<SadgException>(() => OpsetUpgrader.Upgrade(b.Build(OpsetUpgrader.NewestKnownOpset + 1)));
        Assert.Contains($"newer than opset {OpsetUpgrader.NewestKnownOpset}, the newest Sadg reads", e.Message);

        b = new OnnxGraphBuilder();
        x = b.AddInput("input", DataType.Float, -1, 3, 4, 4);
        b.AddNode("Swish", [x], ["y"], name: "swish");
        b.AddOutput("y");
        e = Assert.Throws<SadgException>(() => OpsetUpgrader.Upgrade(b.Build(24)));
        Assert.Equal(SadgErrorCode.UnsupportedOperator, e.Code);
        Assert.Equal("swish", e.Node);
    }

    /// <summary>
    /// Every operator the executor runs is one the upgrader knows: a QDQ model of any opset that loads can also be
    /// written, instead of failing at the end of a long run. One node of each registered op type, at opset 20, is
    /// upgraded; it may be refused for its attributes or inputs, never as an operator the upgrader does not know.
    /// </summary>
    [Fact]
    public void EveryOperatorTheExecutorRunsIsKnownToTheUpgrader()
    {
        var unknown = new List<string>();
        foreach (string op in Sadg.Graph.Ops.OperatorRegistry.SupportedOpTypes)
        {
            var b = new OnnxGraphBuilder();
            var x = b.AddInput("input", DataType.Float, -1, 3, 4, 4);
            b.AddNode(op, [x], ["y"], name: "n");
            b.AddOutput("y");
            try
            {
                OpsetUpgrader.Upgrade(b.Build(20));
            }
            catch (SadgException e) when (e.Message.Contains("does not know how this operator changed", StringComparison.Ordinal))
            {
                unknown.Add(op);
            }
            catch (SadgException)
            {
                // Refused for this node's form (missing inputs or attributes), which the upgrader does know.
            }
        }
        Assert.True(unknown.Count == 0, $"Registered operators the opset upgrader does not know: {string.Join(", ", unknown)}. " +
            "Add each to OpsetUpgrader (unchanged since opset 7, or converted).");
    }

    /// <summary>
    /// GroupNormalization of opset 18 scales and shifts per group (opset 21 per channel): the upgraded model computes
    /// what the source computes in ONNX Runtime, and the executor runs the source alike.
    /// </summary>
    [Fact]
    public void A_per_group_GroupNormalization_is_written_at_opset_21_with_the_same_outputs()
    {
        using var scope = NewDisposeScope();
        var g = new Generator(0).manual_seed(18);
        var b = new OnnxGraphBuilder("groupnorm18");
        var x = b.AddInput("input", DataType.Float, -1, 6, 5, 4);
        var gn = b.AddNode("GroupNormalization", [x, b.AddInitializer("gn_s", randn([3], generator: g)), b.AddInitializer("gn_b", randn([3], generator: g))],
            ["gn"], Attrs(("num_groups", 3L), ("epsilon", 1e-3f)), "gn");
        b.AddOutput(b.AddNode("Relu", [gn], ["y"], name: "relu"));
        var source = b.Build(18);
        var upgraded = OpsetUpgrader.Upgrade(source);
        Assert.DoesNotContain(upgraded.Graph.Node, n => n.OpType == "GroupNormalization");
        Assert.Contains(upgraded.Graph.Node, n => n.Name == "gn" && n.OpType == "InstanceNormalization");

        SameOutputs(source, upgraded, randn([4, 6, 5, 4], generator: g) * 3 + 1);
    }

    /// <summary>
    /// ONNX Runtime computes the same output "y" for <paramref name="source"/> and <paramref name="upgraded"/> on
    /// <paramref name="input"/>, and the executor runs the source as ONNX Runtime does.
    /// </summary>
    void SameOutputs(ModelProto source, ModelProto upgraded, Tensor input)
    {
        var feeds = new Dictionary<string, Tensor> { ["input"] = input };
        var before = OrtReference.Run(source, feeds)[0];
        var after = OrtReference.Run(upgraded, feeds)[0];
        Assert.Equal(before.shape, after.shape);
        double diff = (before - after).abs().max().item<float>();
        output.WriteLine($"{source.Graph.Name}: max |diff| after the upgrade {diff:G3}");
        Assert.True(diff <= 1e-5, $"the upgraded model differs by {diff}");
        using var graph = new Sadg.Graph.GraphModule(OnnxModel.FromProto(source));
        double executor = (graph.Run(feeds, ["y"])["y"] - before).abs().max().item<float>();
        Assert.True(executor <= 1e-5, $"the executor differs from ONNX Runtime by {executor}");
    }

    /// <summary>
    /// GridSample of opset 16 names bilinear sampling "bilinear", opset 20 "linear": the model upgraded from 16 says
    /// "linear" and computes what the source computes in ONNX Runtime, as does the executor.
    /// </summary>
    [Fact]
    public void An_opset_16_GridSample_is_written_at_opset_21_with_the_new_mode_name_and_the_same_outputs()
    {
        using var scope = NewDisposeScope();
        var g = new Generator(0).manual_seed(16);
        var b = new OnnxGraphBuilder("gridsample16");
        var x = b.AddInput("input", DataType.Float, -1, 3, 5, 6);
        var grid = b.AddInitializer("grid", rand([2, 4, 7, 2], generator: g) * 2.4f - 1.2f);
        b.AddOutput(b.AddNode("GridSample", [x, grid], ["y"], Attrs(("mode", "bilinear"), ("padding_mode", "border")), "sample"));
        var source = b.Build(16);
        var upgraded = OpsetUpgrader.Upgrade(source);
        Assert.Equal("linear", upgraded.Graph.Node.Single(n => n.Name == "sample").Attribute.Single(a => a.Name == "mode").S.ToStringUtf8());

        SameOutputs(source, upgraded, randn([2, 3, 5, 6], generator: g));
    }

    [Fact]
    public void WhatCannotBeUpgradedIsRefusedNamingTheNode()
    {
        var b = new OnnxGraphBuilder();
        var x = b.AddInput("input", DataType.Float, -1, 3, 4, 4);
        b.AddNode("Resize", [x, b.AddInitializer("roi", zeros(0)), b.AddInitializer("scales", tensor(new float[] { 1, 1, 2, 2 }))], ["y"],
            Attrs(("coordinate_transformation_mode", "tf_half_pixel_for_nn")), "old_resize");
        b.AddOutput("y");
        var e = Assert.Throws<SadgException>(() => OpsetUpgrader.Upgrade(b.Build(11)));
        Assert.Equal(SadgErrorCode.UnsupportedAttribute, e.Code);
        Assert.Equal("old_resize", e.Node);

        b = new OnnxGraphBuilder();
        x = b.AddInput("input", DataType.Float, -1, 3, 4, 4);
        b.AddNode("ImageScaler", [x], ["y"], Attrs(("scale", 2f)), "scaler");
        b.AddOutput("y");
        e = Assert.Throws<SadgException>(() => OpsetUpgrader.Upgrade(b.Build(9)));
        Assert.Equal(SadgErrorCode.UnsupportedOperator, e.Code);
        Assert.Equal("scaler", e.Node);

        b = new OnnxGraphBuilder();
        x = b.AddInput("input", DataType.Float, -1, 3, 4, 4);
        b.AddNode("Dropout", [x], ["y", "mask"], name: "drop");
        b.AddOutput("y");
        b.AddOutput("mask");
        e = Assert.Throws<SadgException>(() => OpsetUpgrader.Upgrade(b.Build(9)));
        Assert.Equal("drop", e.Node);
    }
}
