using Onnx;
using Sadg.Onnx;
using Sadg.Tests.Support;
using static TorchSharp.torch;
using DataType = Onnx.TensorProto.Types.DataType;

namespace Sadg.Cli.Tests;

/// <summary>Small models written to files for the tool.</summary>
public static class Models
{
    public static string Save(ModelProto proto, TempFolder folder, string name)
    {
        string path = folder.File(name);
        OnnxModel.Save(proto, path);
        return path;
    }

    /// <summary>A classifier of 1x8x8 images: Conv 3x3 (4 channels) - Relu - Flatten - Gemm to 10 classes.</summary>
    public static ModelProto Tiny(long seed)
    {
        var generator = new Generator(0).manual_seed(seed);
        var b = new OnnxGraphBuilder("tiny");
        var x = b.AddInput("image", DataType.Float, -1, 1, 8, 8);
        var w = b.AddInitializer("conv_w", randn([4, 1, 3, 3], generator: generator));
        x = b.AddNode("Conv", [x, w], attributes: new Dictionary<string, object>
        {
            ["kernel_shape"] = new long[] { 3, 3 },
            ["pads"] = new long[] { 1, 1, 1, 1 },
        });
        x = b.AddNode("Relu", [x]);
        x = b.AddNode("Flatten", [x], attributes: new Dictionary<string, object> { ["axis"] = 1L });
        var fc = b.AddInitializer("fc_w", randn([10, 256], generator: generator) * 0.1f);
        var bias = b.AddInitializer("fc_b", randn([10], generator: generator) * 0.1f);
        x = b.AddNode("Gemm", [x, fc, bias], attributes: new Dictionary<string, object> { ["transB"] = 1L });
        b.AddOutput(x);
        return b.Build(13, irVersion: 8);
    }

    /// <summary>A model with an operator the executor does not run.</summary>
    public static ModelProto UnsupportedOp()
    {
        var b = new OnnxGraphBuilder("unsupported");
        var x = b.AddInput("image", DataType.Float, -1, 1, 8, 8);
        var w = b.AddInitializer("conv_w", ones(2, 1, 3, 3));
        x = b.AddNode("Conv", [x, w], attributes: new Dictionary<string, object> { ["kernel_shape"] = new long[] { 3, 3 } });
        x = b.AddNode("FrobnicateImage", [x]);
        b.AddOutput(x, DataType.Float, -1, 2, 6, 6);
        return b.Build(13, irVersion: 8);
    }
    /// <summary>
    /// Models of the kinds real exports have, each with BatchNormalization kept, on 1-channel 8x8 images:
    /// a stem Conv-BN-Relu (4 channels) and a strided Conv-BN-Relu (8 channels), then a tail that makes the kind.
    /// </summary>
    public enum Kind
    {
        /// <summary>GlobalAveragePool, a 1x1 Conv to 10 classes over the 1x1 map, Reshape [N, 10], Softmax (as Keras writes a classifier).</summary>
        ConvHead,

        /// <summary>
        /// As SqueezeNet writes a classifier: a 1x1 Conv to 10 classes over the 4x4 map, Relu, GlobalAveragePool,
        /// Flatten: class scores pooled over the positions.
        /// </summary>
        PooledConvHead,

        /// <summary>GlobalAveragePool, Flatten: the output is the pooled 8-d features (a backbone, no classifier).</summary>
        Features,

        /// <summary>GlobalAveragePool, Flatten, Gemm to 10 classes, ArgMax: the output is the class index (int64).</summary>
        ArgMax,

        /// <summary>The input is [N, 1, 8, W] (free width); GlobalAveragePool, Flatten, Gemm to 10 classes.</summary>
        FreeWidth,

        /// <summary>The input is [1, 1, 8, 8] (batch fixed to 1, as CNTK exports); Reshape [1, 128], Gemm to 10 classes.</summary>
        BatchOne,

        /// <summary>
        /// 3-channel images [N, 3, 8, 8], standardized by Sub and Div with [3, 1, 1] constants; GlobalAveragePool,
        /// Flatten, Gemm to 10 classes. The channels-first twin of <see cref="ChannelsLast"/> (the same weights).
        /// </summary>
        Rgb,

        /// <summary>
        /// As tf2onnx writes a Keras model: the input is [N, 8, 8, 3], standardized by Sub and Div with [3] constants,
        /// then a Transpose (perm 0,3,1,2) into the graph of <see cref="Rgb"/>.
        /// </summary>
        ChannelsLast,

        /// <summary>
        /// Written at opset 26 and IR 13 (as ONNX 1.21 writes them; the newest opset Sadg reads): the second block's activation is HardSwish instead of
        /// Relu; GlobalAveragePool, Flatten, Gemm to 10 classes.
        /// </summary>
        Opset26,

        /// <summary>
        /// A segmenter at opset 18: GroupNormalization (4 groups, scale and bias per group as opset 18 has them) after
        /// the second block, a grouped ConvTranspose (8 → 4 channels, 2 groups, stride 2) with BatchNormalization and
        /// Relu back to 8x8, bilinear upsampling to 16x16 (Resize linear, pytorch_half_pixel, as PyTorch exports
        /// interpolate), a 1x1 Conv to 3 classes per pixel: the output is [N, 3, 16, 16].
        /// </summary>
        Segmenter,

        /// <summary>
        /// As older converters (Caffe, CoreML) wrote a model at opset 8: 3-channel pixels [N, 3, 8, 8] in 0 … 255,
        /// standardized by an ImageScaler (scale 1/58, bias −mean/58 per channel) in front of the graph of
        /// <see cref="Rgb"/>; GlobalAveragePool, Flatten, Gemm to 10 classes.
        /// </summary>
        Scaled,
    }

    /// <summary>The model with its BatchNormalization nodes dropped (not folded): a model without BN statistics.</summary>
    public static ModelProto WithoutBatchNorm(ModelProto proto)
    {
        foreach (var bn in proto.Graph.Node.Where(n => n.OpType == "BatchNormalization").ToList())
        {
            foreach (var reader in proto.Graph.Node) for (int i = 0; i < reader.Input.Count; i++) if (reader.Input[i] == bn.Output[0]) reader.Input[i] = bn.Input[0];
            proto.Graph.Node.Remove(bn);
        }
        return proto;
    }

    /// <summary>
    /// <paramref name="proto"/> fed uint8 pixels that it casts to float itself: its input declared uint8 and read by a
    /// Cast to float (named "to_float", output "INPUT_float") that every former reader of the input now reads.
    /// </summary>
    public static ModelProto WithBytePixels(ModelProto proto)
    {
        var graph = proto.Graph;
        string input = graph.Input[0].Name, cast = input + "_float";
        graph.Input[0].Type.TensorType.ElemType = (int)DataType.Uint8;
        foreach (var node in graph.Node) for (int i = 0; i < node.Input.Count; i++) if (node.Input[i] == input) node.Input[i] = cast;
        var to = new NodeProto { OpType = "Cast", Name = "to_float", Input = { input }, Output = { cast } };
        to.Attribute.Add(new AttributeProto { Name = "to", Type = AttributeProto.Types.AttributeType.Int, I = (long)DataType.Float });
        graph.Node.Insert(0, to);
        return proto;
    }

    public static ModelProto Of(Kind kind, long seed = 1)
    {
        var generator = new Generator(0).manual_seed(seed);
        var b = new OnnxGraphBuilder(kind.ToString());
        Tensor Randn(params long[] shape) => randn(shape, generator: generator);
        string ConvBnRelu(string x, int cin, int cout, int stride, string activation = "Relu")
        {
            var w = b.AddInitializer(b.Fresh("w"), Randn(cout, cin, 3, 3) * MathF.Sqrt(2f / (cin * 9)));
            x = b.AddNode("Conv", [x, w], attributes: new Dictionary<string, object>
            {
                ["kernel_shape"] = new long[] { 3, 3 },
                ["pads"] = new long[] { 1, 1, 1, 1 },
                ["strides"] = new long[] { stride, stride },
            });
            x = b.AddNode("BatchNormalization", [x, b.AddInitializer(b.Fresh("s"), rand([cout], generator: generator) + 0.5f),
                b.AddInitializer(b.Fresh("b"), Randn(cout) * 0.1f), b.AddInitializer(b.Fresh("m"), Randn(cout) * 0.1f),
                b.AddInitializer(b.Fresh("v"), rand([cout], generator: generator) + 0.5f)]);
            return b.AddNode(activation, [x]);
        }
        string Gemm(string x, int features) => b.AddNode("Gemm", [x, b.AddInitializer(b.Fresh("fc_w"), Randn(10, features) * MathF.Sqrt(1f / features)),
            b.AddInitializer(b.Fresh("fc_b"), Randn(10) * 0.1f)], attributes: new Dictionary<string, object> { ["transB"] = 1L });
        string Flatten(string x) => b.AddNode("Flatten", [x], attributes: new Dictionary<string, object> { ["axis"] = 1L });

        var x = b.AddInput("image", DataType.Float, kind switch
        {
            Kind.FreeWidth => [-1, 1, 8, -1], Kind.BatchOne => [1, 1, 8, 8], Kind.Rgb or Kind.Scaled => [-1, 3, 8, 8], Kind.ChannelsLast => [-1, 8, 8, 3],
            _ => [-1, 1, 8, 8],
        });
        if (kind == Kind.FreeWidth) b.Graph.Input[0].Type.TensorType.Shape.Dim[3].DimParam = "W";
        int channels = 1;
        if (kind is Kind.Rgb or Kind.ChannelsLast)
        {
            long[] constant = kind == Kind.Rgb ? [3, 1, 1] : [3];
            x = b.AddNode("Sub", [x, b.AddInitializer("mean", tensor(new[] { 0.485f, 0.456f, 0.406f }).reshape(constant))]);
            x = b.AddNode("Div", [x, b.AddInitializer("std", tensor(new[] { 0.229f, 0.224f, 0.225f }).reshape(constant))]);
            if (kind == Kind.ChannelsLast) x = b.AddNode("Transpose", [x], attributes: new Dictionary<string, object> { ["perm"] = new long[] { 0, 3, 1, 2 } });
            channels = 3;
        }
        if (kind == Kind.Scaled)
        {
            x = b.AddNode("ImageScaler", [x], attributes: new Dictionary<string, object>
            {
                ["scale"] = 1f / 58, ["bias"] = new[] { -123.7f / 58, -116.3f / 58, -103.5f / 58 },
            });
            channels = 3;
        }
        x = ConvBnRelu(x, channels, 4, 1);
        x = ConvBnRelu(x, 4, 8, 2, kind == Kind.Opset26 ? "HardSwish" : "Relu");
        switch (kind)
        {
            case Kind.ConvHead:
                x = b.AddNode("GlobalAveragePool", [x]);
                x = b.AddNode("Conv", [x, b.AddInitializer("head_w", Randn(10, 8, 1, 1) * 0.3f), b.AddInitializer("head_b", Randn(10) * 0.1f)],
                    attributes: new Dictionary<string, object> { ["kernel_shape"] = new long[] { 1, 1 } });
                x = b.AddNode("Reshape", [x, b.AddInt64s("shape", -1, 10)]);
                x = b.AddNode("Softmax", [x], attributes: new Dictionary<string, object> { ["axis"] = 1L });
                break;
            case Kind.PooledConvHead:
                x = b.AddNode("Conv", [x, b.AddInitializer("head_w", Randn(10, 8, 1, 1) * 0.3f), b.AddInitializer("head_b", Randn(10) * 0.1f)],
                    attributes: new Dictionary<string, object> { ["kernel_shape"] = new long[] { 1, 1 } });
                x = Flatten(b.AddNode("GlobalAveragePool", [b.AddNode("Relu", [x])]));
                break;
            case Kind.Features:
                x = Flatten(b.AddNode("GlobalAveragePool", [x]));
                break;
            case Kind.ArgMax:
                x = Gemm(Flatten(b.AddNode("GlobalAveragePool", [x])), 8);
                x = b.AddNode("ArgMax", [x], attributes: new Dictionary<string, object> { ["axis"] = 1L, ["keepdims"] = 0L });
                b.AddOutput(x, DataType.Int64, -1);
                return b.Build(13, irVersion: 8);
            case Kind.FreeWidth or Kind.Rgb or Kind.ChannelsLast or Kind.Opset26 or Kind.Scaled:
                x = Gemm(Flatten(b.AddNode("GlobalAveragePool", [x])), 8);
                break;
            case Kind.Segmenter:
                x = b.AddNode("GroupNormalization", [x, b.AddInitializer("gn_s", rand([4], generator: generator) + 0.5f),
                    b.AddInitializer("gn_b", Randn(4) * 0.1f)], attributes: new Dictionary<string, object> { ["num_groups"] = 4L });
                x = b.AddNode("ConvTranspose", [x, b.AddInitializer("up_w", Randn(8, 2, 2, 2) * 0.5f)], attributes: new Dictionary<string, object>
                {
                    ["kernel_shape"] = new long[] { 2, 2 }, ["strides"] = new long[] { 2, 2 }, ["group"] = 2L,
                });
                x = b.AddNode("BatchNormalization", [x, b.AddInitializer(b.Fresh("s"), rand([4], generator: generator) + 0.5f),
                    b.AddInitializer(b.Fresh("b"), Randn(4) * 0.1f), b.AddInitializer(b.Fresh("m"), Randn(4) * 0.1f),
                    b.AddInitializer(b.Fresh("v"), rand([4], generator: generator) + 0.5f)]);
                x = b.AddNode("Relu", [x]);
                x = b.AddNode("Resize", [x, b.AddInitializer("roi", zeros(0)), b.AddInitializer("scales", tensor(new float[] { 1, 1, 2, 2 }))],
                    attributes: new Dictionary<string, object> { ["mode"] = "linear", ["coordinate_transformation_mode"] = "pytorch_half_pixel" });
                x = b.AddNode("Conv", [x, b.AddInitializer("head_w", Randn(3, 4, 1, 1) * 0.3f), b.AddInitializer("head_b", Randn(3) * 0.1f)],
                    attributes: new Dictionary<string, object> { ["kernel_shape"] = new long[] { 1, 1 } });
                b.AddOutput(x);
                return b.Build(18, irVersion: 8);
            case Kind.BatchOne:
                x = Gemm(b.AddNode("Reshape", [x, b.AddInt64s("shape", 1, 128)]), 128);
                break;
        }
        b.AddOutput(x);
        return kind switch
        {
            Kind.Opset26 => b.Build(26, irVersion: 13),
            Kind.Scaled => b.Build(8, irVersion: 4),
            _ => b.Build(13, irVersion: 8),
        };
    }
}
