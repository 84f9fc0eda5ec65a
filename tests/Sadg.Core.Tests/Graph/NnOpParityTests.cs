using Google.Protobuf;
using Microsoft.ML.OnnxRuntime;
using Onnx;
using Sadg.Graph;
using Sadg.Onnx;
using Sadg.Tests.Support;
using Xunit.Abstractions;
using static TorchSharp.torch;
using DataType = Onnx.TensorProto.Types.DataType;

namespace Sadg.Tests.Graph;

/// <summary>
/// Single-node forms of Conv, ConvTranspose, the pooling and normalization operators, Gemm and MatMul that
/// ONNX's conformance data does not cover (asymmetric pads with ceil mode, SAME_LOWER, dilated average pooling,
/// output_padding, MaxPool indices with pads and column-major order, linear and cubic Resize as exporters write them) and operators
/// it has no data for (GroupNormalization, LpNormalization, GlobalLpPool), checked against ONNX Runtime.
/// </summary>
public class NnOpParityTests(ITestOutputHelper output)
{
    public static TheoryData<string> Cases => new(Builders.Keys.Order(StringComparer.Ordinal));

    static Dictionary<string, object> A(params (string Key, object Value)[] items) => items.ToDictionary(i => i.Key, i => i.Value);

    static readonly Dictionary<string, Func<(ModelProto Model, Tensor Input)>> Builders = new()
    {
        ["conv2d_asymmetric_pads_dilated_grouped"] = () => One("Conv", [2, 4, 9, 10], [randn(6, 2, 3, 3), randn(6)],
            A(("pads", new long[] { 0, 1, 2, 1 }), ("strides", new long[] { 2, 1 }), ("dilations", new long[] { 1, 2 }), ("group", 2L))),
        ["conv2d_same_lower_even_kernel"] = () => One("Conv", [2, 3, 8, 7], [randn(4, 3, 4, 3)],
            A(("auto_pad", "SAME_LOWER"), ("strides", new long[] { 2, 2 }))),
        ["conv2d_same_upper_even_kernel"] = () => One("Conv", [2, 3, 8, 7], [randn(4, 3, 4, 3)],
            A(("auto_pad", "SAME_UPPER"), ("strides", new long[] { 2, 2 }))),
        ["conv1d_same_upper"] = () => One("Conv", [2, 3, 11], [randn(5, 3, 4)], A(("auto_pad", "SAME_UPPER"), ("strides", new long[] { 3 }))),
        ["conv3d_no_kernel_shape"] = () => One("Conv", [1, 2, 5, 6, 5], [randn([3L, 2, 3, 3, 2]), randn(3)], A(("pads", new long[] { 1, 0, 1, 1, 2, 1 }))),
        ["conv2d_depthwise_valid"] = () => One("Conv", [2, 4, 8, 8], [randn(4, 1, 3, 3)], A(("group", 4L), ("auto_pad", "VALID"))),
        ["maxpool2d_ceil_asymmetric_pads"] = () => One("MaxPool", [2, 3, 9, 8], [],
            A(("kernel_shape", new long[] { 3, 3 }), ("strides", new long[] { 2, 2 }), ("pads", new long[] { 1, 0, 0, 1 }), ("ceil_mode", 1L))),
        ["maxpool2d_dilated_ceil"] = () => One("MaxPool", [2, 3, 10, 9], [],
            A(("kernel_shape", new long[] { 3, 2 }), ("strides", new long[] { 2, 2 }), ("pads", new long[] { 1, 1, 1, 1 }), ("dilations", new long[] { 2, 2 }), ("ceil_mode", 1L))),
        ["maxpool1d_strided"] = () => One("MaxPool", [2, 3, 12], [], A(("kernel_shape", new long[] { 3 }), ("strides", new long[] { 2 }), ("pads", new long[] { 1, 1 }))),
        ["maxpool3d_same_lower"] = () => One("MaxPool", [1, 2, 5, 6, 7], [], A(("kernel_shape", new long[] { 2, 3, 2 }), ("strides", new long[] { 2, 2, 2 }), ("auto_pad", "SAME_LOWER"))),
        ["averagepool2d_ceil_asymmetric_count_include_pad"] = () => One("AveragePool", [2, 3, 9, 10], [],
            A(("kernel_shape", new long[] { 3, 3 }), ("strides", new long[] { 2, 2 }), ("pads", new long[] { 1, 0, 2, 1 }), ("ceil_mode", 1L), ("count_include_pad", 1L))),
        ["averagepool2d_ceil_asymmetric_exclude_pad"] = () => One("AveragePool", [2, 3, 9, 10], [],
            A(("kernel_shape", new long[] { 3, 3 }), ("strides", new long[] { 2, 2 }), ("pads", new long[] { 1, 0, 2, 1 }), ("ceil_mode", 1L))),
        ["averagepool2d_same_upper"] = () => One("AveragePool", [2, 3, 10, 11], [], A(("kernel_shape", new long[] { 4, 4 }), ("strides", new long[] { 3, 3 }), ("auto_pad", "SAME_UPPER"))),
        ["averagepool2d_dilated"] = () => One("AveragePool", [2, 3, 11, 10], [],
            A(("kernel_shape", new long[] { 3, 3 }), ("strides", new long[] { 2, 1 }), ("pads", new long[] { 1, 1, 1, 1 }), ("dilations", new long[] { 2, 2 }))),
        ["averagepool1d_count_include_pad"] = () => One("AveragePool", [2, 3, 12], [], A(("kernel_shape", new long[] { 4 }), ("strides", new long[] { 3 }), ("pads", new long[] { 2, 1 }), ("count_include_pad", 1L))),
        ["averagepool3d_pads"] = () => One("AveragePool", [1, 2, 5, 6, 7], [], A(("kernel_shape", new long[] { 2, 3, 3 }), ("pads", new long[] { 1, 1, 0, 0, 1, 1 }))),
        ["globalmaxpool3d"] = () => One("GlobalMaxPool", [2, 3, 4, 5, 6], [], A()),
        ["globalaveragepool1d"] = () => One("GlobalAveragePool", [2, 3, 7], [], A()),
        // ONNX Runtime's LRN takes odd sizes and 4-D inputs only.
        ["lrn_size5"] = () => One("LRN", [2, 7, 4, 5], [], A(("size", 5L), ("alpha", 0.01f), ("beta", 0.6f), ("bias", 2f))),
        ["convtranspose2d_pads_output_padding"] = () => One("ConvTranspose", [2, 4, 5, 6], [randn(4, 3, 3, 3), randn(6)],
            A(("strides", new long[] { 2, 3 }), ("pads", new long[] { 1, 0, 0, 1 }), ("output_padding", new long[] { 1, 2 }), ("dilations", new long[] { 1, 2 }), ("group", 2L))),
        ["convtranspose2d_same_upper"] = () => One("ConvTranspose", [2, 3, 5, 4], [randn(3, 2, 3, 3)], A(("strides", new long[] { 2, 2 }), ("auto_pad", "SAME_UPPER"))),
        ["convtranspose1d_output_shape"] = () => One("ConvTranspose", [2, 3, 5], [randn(3, 2, 3)], A(("strides", new long[] { 2 }), ("output_shape", new long[] { 12 }))),
        ["batchnorm_rank2"] = () => One("BatchNormalization", [5, 4], [rand(4) + 0.5f, randn(4), randn(4), rand(4) + 0.5f], A(("epsilon", 1e-3f))),
        ["batchnorm_rank5"] = () => One("BatchNormalization", [2, 3, 2, 3, 4], [rand(3) + 0.5f, randn(3), randn(3), rand(3) + 0.5f], A()),
        ["instancenorm_rank5"] = () => One("InstanceNormalization", [2, 3, 2, 3, 4], [randn(3), randn(3)], A(("epsilon", 1e-3f))),
        ["gemm_transA_alpha_beta_row_bias"] = () => One("Gemm", [6, 4], [randn(6, 5), randn(1, 5)], A(("transA", 1L), ("alpha", 0.5f), ("beta", 2f))),
        ["gemm_transB_scalar_bias"] = () => One("Gemm", [4, 6], [randn(5, 6), randn(1)], A(("transB", 1L))),
        ["gemm_no_bias"] = () => One("Gemm", [4, 6], [randn(6, 5)], A(("alpha", 3f))),
        ["matmul_vector_by_batch"] = () => One("MatMul", [4], [randn(3, 4, 2)], A()),
        ["matmul_batch_broadcast"] = () => One("MatMul", [2, 1, 3, 4], [randn(5, 4, 2)], A()),
        ["matmul_by_vector"] = () => One("MatMul", [2, 3, 4], [randn(4)], A()),
        // Not in the conformance data the executor is checked against (ONNX 1.12).
        ["groupnorm_opset18_per_group"] = () => One("GroupNormalization", [2, 6, 5, 4], [randn(3), randn(3)], A(("num_groups", 3L), ("epsilon", 1e-3f)), opset: 18),
        ["groupnorm_opset21_per_channel"] = () => One("GroupNormalization", [2, 6, 5, 4], [randn(6), randn(6)], A(("num_groups", 2L)), opset: 21),
        ["lpnormalization_p2_channels"] = () => One("LpNormalization", [2, 5, 3, 4], [], A(("axis", 1L))),
        ["lpnormalization_p1_last"] = () => One("LpNormalization", [3, 7], [], A(("p", 1L))),
        ["globallppool_p2"] = () => One("GlobalLpPool", [2, 3, 5, 4], [], A()),
        ["globallppool_p3"] = () => One("GlobalLpPool", [2, 3, 6], [], A(("p", 3L))),
        // Linear and cubic resizing as exporters write them: PyTorch's bilinear/trilinear interpolate (pytorch_half_pixel,
        // align_corners), TensorFlow's (half_pixel, asymmetric), sizes that are no multiple, shrinking, Upsample.
        ["resize_linear_pytorch_half_pixel_x2"] = () => One("Resize", [2, 3, 5, 7], [zeros(0), tensor(new float[] { 1, 1, 2, 2 })],
            A(("mode", "linear"), ("coordinate_transformation_mode", "pytorch_half_pixel"))),
        ["resize_linear_align_corners_sizes"] = () => One("Resize", [2, 3, 5, 7], [zeros(0), zeros(0), tensor(new long[] { 2, 3, 11, 9 })],
            A(("mode", "linear"), ("coordinate_transformation_mode", "align_corners"))),
        ["resize_linear_half_pixel_sizes_shrink"] = () => One("Resize", [2, 3, 9, 10], [zeros(0), zeros(0), tensor(new long[] { 2, 3, 4, 7 })],
            A(("mode", "linear"))),
        ["resize_linear_asymmetric_x3"] = () => One("Resize", [1, 2, 4, 3], [zeros(0), tensor(new float[] { 1, 1, 3, 3 })],
            A(("mode", "linear"), ("coordinate_transformation_mode", "asymmetric"))),
        ["resize_trilinear_5d"] = () => One("Resize", [1, 2, 3, 4, 5], [zeros(0), tensor(new float[] { 1, 1, 2, 1.5f, 2 })],
            A(("mode", "linear"), ("coordinate_transformation_mode", "pytorch_half_pixel"))),
        ["resize_cubic_pytorch_half_pixel_x2"] = () => One("Resize", [2, 3, 5, 7], [zeros(0), tensor(new float[] { 1, 1, 2, 2 })],
            A(("mode", "cubic"), ("coordinate_transformation_mode", "pytorch_half_pixel"))),
        ["resize_cubic_align_corners_sizes"] = () => One("Resize", [2, 3, 5, 7], [zeros(0), zeros(0), tensor(new long[] { 2, 3, 11, 9 })],
            A(("mode", "cubic"), ("coordinate_transformation_mode", "align_corners"))),
        ["resize_cubic_half_pixel_shrink_exclude_outside"] = () => One("Resize", [2, 3, 9, 10], [zeros(0), zeros(0), tensor(new long[] { 2, 3, 4, 7 })],
            A(("mode", "cubic"), ("cubic_coeff_a", -0.5f), ("exclude_outside", 1L))),
        ["gridsample_opset20_linear_reflection_align_corners"] = () => One("GridSample", [2, 3, 5, 6], [rand([2, 4, 7, 2]) * 2.4f - 1.2f],
            A(("mode", "linear"), ("padding_mode", "reflection"), ("align_corners", 1L)), opset: 20),
        ["gridsample_opset20_nearest_zeros_5d"] = () => One("GridSample", [1, 2, 3, 4, 5], [rand([1, 2, 3, 4, 3]) * 2.4f - 1.2f],
            A(("mode", "nearest")), opset: 20),
        ["upsample_linear_opset9"] = () => One("Upsample", [2, 3, 4, 5], [tensor(new float[] { 1, 1, 2, 2 })], A(("mode", "linear")), opset: 9),
    };

    static (ModelProto, Tensor) One(string op, long[] inputShape, Tensor[] weights, Dictionary<string, object> attributes, long opset = 19)
    {
        var b = new OnnxGraphBuilder();
        var x = b.AddInput("x", DataType.Float, inputShape);
        var inputs = new List<string> { x };
        foreach (var w in weights) inputs.Add(b.AddInitializer(b.Fresh("w"), w));
        b.AddOutput(b.AddNode(op, inputs, attributes: attributes));
        return (b.Build(opset: opset), randn(inputShape));
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void MatchesOrt(string name)
    {
        using var scope = NewDisposeScope();
        manual_seed(name.Length);
        var (model, input) = Builders[name]();
        var (diff, magnitude) = OrtReference.CompareWithExecutor(model, input);
        output.WriteLine($"{name}: max |executor - ORT| = {diff:G4}, max |ORT| = {magnitude:G4}");
        Assert.True(diff <= 1e-5 + 1e-5 * magnitude, $"{name}: max |executor - ORT| = {diff:G4}, scale {magnitude:G4}");
    }

    [Theory]
    [InlineData(0L)]
    [InlineData(1L)]
    public void MaxPoolIndicesMatchOrt(long storageOrder)
    {
        using var scope = NewDisposeScope();
        manual_seed(7);
        var b = new OnnxGraphBuilder();
        b.AddInput("x", DataType.Float, 2, 3, 7, 6);
        b.AddNode("MaxPool", ["x"], ["y", "i"], A(("kernel_shape", new long[] { 3, 2 }), ("strides", new long[] { 2, 2 }),
            ("pads", new long[] { 1, 0, 0, 1 }), ("ceil_mode", 1L), ("storage_order", storageOrder)));
        b.AddOutput("y");
        b.AddOutput("i", DataType.Int64, 2, 3, 4, 4);
        var model = b.Build(opset: 12);
        var x = randn(2, 3, 7, 6);

        using var graph = new GraphModule(OnnxModel.FromProto(model));
        var ours = graph.Run(new Dictionary<string, Tensor> { ["x"] = x }, ["y", "i"]);

        using var session = new InferenceSession(model.ToByteArray(), new SessionOptions { GraphOptimizationLevel = GraphOptimizationLevel.ORT_DISABLE_ALL });
        var feed = new List<NamedOnnxValue>
        {
            NamedOnnxValue.CreateFromTensor("x", new Microsoft.ML.OnnxRuntime.Tensors.DenseTensor<float>(x.data<float>().ToArray(), [2, 3, 7, 6])),
        };
        using var results = session.Run(feed);
        var values = results.First(r => r.Name == "y").AsTensor<float>();
        var indices = results.First(r => r.Name == "i").AsTensor<long>();
        Assert.Equal(values.Dimensions.ToArray().Select(d => (long)d), ours["y"].shape);
        Assert.Equal(values.ToArray(), ours["y"].contiguous().data<float>().ToArray());
        Assert.Equal(indices.ToArray(), ours["i"].contiguous().data<long>().ToArray());
    }
}
