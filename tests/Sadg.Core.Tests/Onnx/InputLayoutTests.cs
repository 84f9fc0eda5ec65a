using Onnx;
using Sadg.Graph;
using Sadg.Onnx;
using static TorchSharp.torch;
using DataType = Onnx.TensorProto.Types.DataType;

namespace Sadg.Tests.Onnx;

/// <summary>Channels-last image inputs: which graphs read their input as NHWC, the channels-first copy and its undoing.</summary>
public class InputLayoutTests
{
    static Dictionary<string, object> Perm(params long[] perm) => new() { ["perm"] = perm };

    /// <summary>An [N, 8, 8, 3] input, then <paramref name="front"/>'s nodes, a Conv 3→4 (1x1) and a Relu.</summary>
    static ModelProto Model(Func<OnnxGraphBuilder, string, string> front, long[]? dims = null)
    {
        var b = new OnnxGraphBuilder("layout");
        var x = b.AddInput("image", DataType.Float, dims ?? [-1, 8, 8, 3]);
        x = front(b, x);
        x = b.AddNode("Conv", [x, b.AddInitializer("w", randn([4, 3, 1, 1], generator: new Generator(2)))],
            attributes: new Dictionary<string, object> { ["kernel_shape"] = new long[] { 1, 1 } });
        b.AddOutput(b.AddNode("Relu", [x]));
        return b.Build(13, irVersion: 8);
    }

    static string Mean(OnnxGraphBuilder b) => b.AddInitializer(b.Fresh("mean"), tensor(new[] { 0.5f, 0.4f, 0.3f }));

    public static TheoryData<string, bool> Fronts => new()
    {
        { "transpose", true },
        { "sub-mul-transpose", true },
        { "cast-identity-transpose", true },
        { "nchw", false },
        { "other-perm", false },
        { "transpose-and-shape", true },
        { "transpose-and-reshape", false },
        { "sub-by-a-computed-tensor", false },
    };

    static string Front(string kind, OnnxGraphBuilder b, string x)
    {
        string ToNchw(string t) => b.AddNode("Transpose", [t], attributes: Perm(0, 3, 1, 2));
        switch (kind)
        {
            case "transpose": return ToNchw(x);
            case "sub-mul-transpose": return ToNchw(b.AddNode("Mul", [b.AddNode("Sub", [x, Mean(b)]), Mean(b)]));
            case "cast-identity-transpose":
                return ToNchw(b.AddNode("Identity", [b.AddNode("Cast", [x], attributes: new Dictionary<string, object> { ["to"] = 1L })]));
            case "nchw": return x; // declared [N, 8, 8, 3] and read as it is: 8 channels would be wrong, but it is not NHWC
            case "other-perm": return b.AddNode("Transpose", [b.AddNode("Transpose", [x], attributes: Perm(0, 2, 1, 3))], attributes: Perm(0, 3, 1, 2));
            case "transpose-and-shape":
                b.AddNode("Shape", [x]);
                return ToNchw(x);
            case "transpose-and-reshape":
                b.AddNode("Reshape", [x, b.AddInt64s("flat", 0, -1)]);
                return ToNchw(x);
            case "sub-by-a-computed-tensor": return ToNchw(b.AddNode("Sub", [x, b.AddNode("Relu", [x])]));
            default: throw new ArgumentException(kind);
        }
    }

    [Theory]
    [MemberData(nameof(Fronts))]
    public void Only_a_path_of_preprocessing_to_a_transpose_to_channels_first_marks_the_input_channels_last(string kind, bool channelsLast)
    {
        var proto = Model((b, x) => Front(kind, b, x));
        Assert.Equal(channelsLast, InputLayout.IsChannelsLast(proto.Graph, "image"));
        var model = OnnxModel.FromProto(proto, "m.onnx");
        var view = InputLayout.ChannelsFirst(model);
        Assert.Equal(channelsLast, !ReferenceEquals(model, view));
        if (channelsLast)
        {
            Assert.Equal(new ImageInput("image", 3, 8, 8, 0, ChannelsLast: true), model.GetImageInput());
            Assert.Equal(new ImageInput("image", 3, 8, 8, 0), view.GetImageInput());
        }
    }

    /// <summary>The channels-first copy computes what the source does on the same images, and restoring it gives the source back.</summary>
    [Fact]
    public void The_channels_first_copy_computes_the_same_and_restores_to_the_source()
    {
        var source = OnnxModel.FromProto(Model((b, x) => Front("sub-mul-transpose", b, x)), "m.onnx");
        var view = InputLayout.ChannelsFirst(source);
        Assert.Equal([-1L, 3, 8, 8], view.RuntimeInputs[0].Type.TensorType.Shape.Dim.Select(d => d.DimValue > 0 ? d.DimValue : -1));

        using var nchw = randn([5, 3, 8, 8], generator: new Generator(3));
        using var nhwc = nchw.permute(0, 2, 3, 1).contiguous();
        using (var a = new GraphModule(view))
        using (var b = new GraphModule(source))
        using (var ya = a.forward(nchw))
        using (var yb = b.forward(nhwc))
        {
            // The same arithmetic; only the memory order the Conv reads its input in may differ (rounding).
            float difference = (ya - yb).abs().max().item<float>();
            Assert.True(difference < 1e-5f, $"the copy's outputs differ from the source's by up to {difference}");
        }

        var restored = view.Proto.Clone();
        InputShapes.RestoreInput(restored, source);
        Assert.Equal(source.Proto, restored);
    }

    [Fact]
    public void Images_are_copied_channels_last_as_a_permute_orders_them()
    {
        using var nchw = randn([2, 3, 4, 5], generator: new Generator(1));
        using var expected = nchw.permute(0, 2, 3, 1).contiguous();
        var to = new float[120];
        InputLayout.ToChannelsLast(nchw.data<float>().ToArray(), to, 2, 3, 4, 5);
        Assert.Equal(expected.data<float>().ToArray(), to);
        Assert.Throws<ArgumentException>(() => InputLayout.ToChannelsLast(new float[119], to, 2, 3, 4, 5));
    }
    /// <summary>Code that feeds the graph [N, C, H, W] images itself refuses a channels-last graph, naming the copy to use.</summary>
    [Fact]
    public void Generation_on_a_channels_last_graph_names_the_channels_first_copy()
    {
        var source = OnnxModel.FromProto(Model((b, x) => Front("transpose", b, x)), "m.onnx");
        using var graph = new GraphModule(source);
        var e = Assert.Throws<InvalidOperationException>(() =>
            Sadg.Generation.SyntheticData.WarmUp(graph, Sadg.Generation.GenerationOptions.Quick with { Images = 2, BatchSize = 2, WarmupSteps = 1 }));
        Assert.Contains("InputShapes.ForPipeline", e.Message);
        using var copy = new GraphModule(InputShapes.ForPipeline(source, null));
        using var warm = Sadg.Generation.SyntheticData.WarmUp(copy, Sadg.Generation.GenerationOptions.Quick with { Images = 2, BatchSize = 2, WarmupSteps = 1 });
        using var images = warm.Images();
        Assert.Equal([2L, 3, 8, 8], images.shape);
    }
}
