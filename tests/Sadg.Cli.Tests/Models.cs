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
}
