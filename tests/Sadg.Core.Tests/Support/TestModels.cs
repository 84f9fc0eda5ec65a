using Onnx;
using Sadg.Onnx;
using static TorchSharp.torch;
using DataType = Onnx.TensorProto.Types.DataType;

namespace Sadg.Tests.Support;

/// <summary>
/// Small image classifiers built in code with <see cref="OnnxGraphBuilder"/>, with seeded random weights and
/// BatchNormalization nodes kept (random running statistics, variance > 0). Input "input" [N, 3, 32, 32] with a
/// symbolic batch; one output (the last node's). Shared by the parity tests and the benchmark (linked into both).
/// </summary>
public static class TestModels
{
    public const string InputName = "input";

    /// <summary>
    /// ResNet-style: Conv-BN-Relu stem, a basic residual block (identity shortcut), a basic block with stride 2
    /// and a 1x1 strided projection shortcut, GlobalAveragePool, Flatten, Gemm. Inputs are
    /// <paramref name="channels"/> × <paramref name="size"/> × <paramref name="size"/>; with <paramref name="batchNorm"/>
    /// false there are no BatchNormalization nodes (convolutions carry biases instead, as after folding BN at export).
    /// </summary>
    public static ModelProto ResNet(long seed = 1, int width = 16, int classes = 10, long opset = 13,
        int channels = 3, int size = 32, bool batchNorm = true)
    {
        var m = new Maker(seed) { UseBatchNorm = batchNorm };
        var x = m.Input(channels, size, size);
        x = m.Relu(m.BatchNorm(m.Conv(x, channels, width, 3, 1, 1), width));
        x = m.BasicBlock(x, width, width, 1);
        x = m.BasicBlock(x, width, 2 * width, 2);
        x = m.B.AddNode("GlobalAveragePool", [x]);
        x = m.B.AddNode("Flatten", [x], attributes: new Dictionary<string, object> { ["axis"] = 1L });
        x = m.Gemm(x, 2 * width, classes);
        return m.Finish(x, opset);
    }

    /// <summary>
    /// ResNet-20 (He et al., CIFAR variant) shaped: Conv-BN-Relu stem with 16 channels, three stages of three basic
    /// blocks (16, 32, 64 channels; the first block of stages 2 and 3 strided, with a 1x1 projection),
    /// GlobalAveragePool, Flatten, Gemm. About 270k parameters, seeded random weights (no training).
    /// </summary>
    public static ModelProto ResNet20(long seed = 20, int channels = 1, int size = 28, int classes = 10, long opset = 13)
    {
        var m = new Maker(seed);
        var x = m.Input(channels, size, size);
        x = m.Relu(m.BatchNorm(m.Conv(x, channels, 16, 3, 1, 1), 16));
        int width = 16;
        foreach (int stage in new[] { 16, 32, 64 })
            for (int block = 0; block < 3; block++)
            {
                x = m.BasicBlock(x, width, stage, block == 0 && stage != 16 ? 2 : 1);
                width = stage;
            }
        x = m.B.AddNode("GlobalAveragePool", [x]);
        x = m.B.AddNode("Flatten", [x], attributes: new Dictionary<string, object> { ["axis"] = 1L });
        x = m.Gemm(x, 64, classes);
        return m.Finish(x, opset);
    }

    /// <summary>
    /// MobileNetV2-style: Conv-BN-Clip stem, two inverted residual blocks (1x1 expand Conv-BN-Clip(0, 6),
    /// depthwise 3x3 Conv-BN-Clip, 1x1 project Conv-BN; the first with a residual Add, the second strided),
    /// GlobalAveragePool, Flatten, Gemm.
    /// </summary>
    public static ModelProto MobileNetV2(long seed = 2, int classes = 10, long opset = 13)
    {
        var m = new Maker(seed);
        var x = m.Input(3, 32, 32);
        x = m.Clip6(m.BatchNorm(m.Conv(x, 3, 16, 3, 2, 1), 16));
        x = m.InvertedResidual(x, 16, 16, expand: 4, stride: 1);
        x = m.InvertedResidual(x, 16, 24, expand: 4, stride: 2);
        x = m.B.AddNode("GlobalAveragePool", [x]);
        x = m.B.AddNode("Flatten", [x], attributes: new Dictionary<string, object> { ["axis"] = 1L });
        x = m.Gemm(x, 24, classes);
        return m.Finish(x, opset);
    }

    /// <summary>
    /// MobileNetV1 (Keras layout) with width multiplier <paramref name="alpha"/>: Conv 3x3/2-BN-Clip(0, 6) stem, 13
    /// depthwise-separable blocks (depthwise 3x3 Conv with group = channels -BN-Clip, pointwise 1x1 Conv-BN-Clip; strides
    /// 1, 2, 1, 2, 1, 2, 1×5, 2, 1), GlobalAveragePool, Flatten, Gemm. 27 BatchNormalization nodes; pads are symmetric
    /// (PyTorch's k/2), not TensorFlow's "same". At α = 0.25 and 224×224 it is the ImageNet-size model of the step
    /// benchmark.
    /// </summary>
    public static ModelProto MobileNetV1(long seed = 6, double alpha = 0.25, int size = 224, int classes = 1000, long opset = 13)
    {
        var m = new Maker(seed);
        int C(int n) => (int)(n * alpha);
        var x = m.Input(3, size, size);
        int cin = C(32);
        x = m.Clip6(m.BatchNorm(m.Conv(x, 3, cin, 3, 2, 1), cin));
        (int Out, int Stride)[] blocks = [(64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2), (512, 1), (512, 1), (512, 1), (512, 1), (512, 1), (1024, 2), (1024, 1)];
        foreach (var (outChannels, stride) in blocks)
        {
            x = m.Clip6(m.BatchNorm(m.Conv(x, cin, cin, 3, stride, 1, group: cin), cin));
            x = m.Clip6(m.BatchNorm(m.Conv(x, cin, C(outChannels), 1, 1, 0), C(outChannels)));
            cin = C(outChannels);
        }
        x = m.B.AddNode("GlobalAveragePool", [x]);
        x = m.B.AddNode("Flatten", [x], attributes: new Dictionary<string, object> { ["axis"] = 1L });
        x = m.Gemm(x, cin, classes);
        return m.Finish(x, opset);
    }

    /// <summary>VGG-style: (Conv-Relu-MaxPool) x 2, Flatten, Gemm-Relu-Gemm.</summary>
    public static ModelProto Vgg(long seed = 3, int classes = 10, long opset = 13)
    {
        var m = new Maker(seed);
        var x = m.Input(3, 32, 32);
        x = m.MaxPool(m.Relu(m.Conv(x, 3, 8, 3, 1, 1, bias: true)), 2, 2, 0);
        x = m.MaxPool(m.Relu(m.Conv(x, 8, 16, 3, 1, 1, bias: true)), 2, 2, 0);
        x = m.B.AddNode("Flatten", [x], attributes: new Dictionary<string, object> { ["axis"] = 1L });
        x = m.Relu(m.Gemm(x, 16 * 8 * 8, 64));
        x = m.Gemm(x, 64, classes);
        return m.Finish(x, opset);
    }

    /// <summary>
    /// An encoder-decoder classifier on 3x32x32: Conv-BN-Relu down to 16x16, a grouped ConvTranspose (2 groups, stride 2)
    /// with BN and Relu back to 32x32, Conv-BN-Relu, GlobalAveragePool, Flatten, Gemm to the classes (without BN: biases).
    /// </summary>
    public static ModelProto Decoder(long seed = 7, int classes = 10, long opset = 13, bool batchNorm = true)
    {
        var m = new Maker(seed) { UseBatchNorm = batchNorm };
        var x = m.Input(3, 32, 32);
        x = m.Relu(m.BatchNorm(m.Conv(x, 3, 8, 3, 2, 1), 8));
        x = m.Relu(m.BatchNorm(m.ConvTranspose(x, 8, 8, 2, 2, group: 2), 8));
        x = m.Relu(m.BatchNorm(m.Conv(x, 8, 16, 3, 1, 1), 16));
        x = m.B.AddNode("Flatten", [m.B.AddNode("GlobalAveragePool", [x])], attributes: new Dictionary<string, object> { ["axis"] = 1L });
        return m.Finish(m.Gemm(x, 16, classes), opset);
    }

    /// <summary>
    /// A convolutional trunk with only Conv, BatchNormalization, Relu, Add and pooling: stem Conv-BN-Relu,
    /// MaxPool 3x3/2 (pads 1), a basic block, a strided projection block, an AveragePool with asymmetric pads
    /// and ceil_mode; the output is the 4-D feature map.
    /// </summary>
    public static ModelProto ConvTrunk(long seed = 4, int width = 16, long opset = 13)
    {
        var m = new Maker(seed);
        var x = m.Input(3, 32, 32);
        x = m.Relu(m.BatchNorm(m.Conv(x, 3, width, 3, 1, 1), width));
        x = m.MaxPool(x, 3, 2, 1);
        x = m.BasicBlock(x, width, width, 1);
        x = m.BasicBlock(x, width, 2 * width, 2);
        x = m.B.AddNode("AveragePool", [x], attributes: new Dictionary<string, object>
        {
            ["kernel_shape"] = new long[] { 3, 3 },
            ["strides"] = new long[] { 2, 2 },
            ["pads"] = new long[] { 0, 1, 1, 0 },
            ["ceil_mode"] = 1L,
        });
        return m.Finish(x, opset);
    }

    /// <summary>A two-layer perceptron on [N, 64] inputs: Gemm(transB)-Relu-Gemm, and a MatMul head.</summary>
    public static ModelProto Mlp(long seed = 5, long opset = 13)
    {
        var m = new Maker(seed);
        var x = m.B.AddInput(InputName, DataType.Float, -1, 64);
        x = m.Relu(m.Gemm(x, 64, 32));
        var w = m.B.AddInitializer(m.B.Fresh("w"), m.Randn(32, 10).Mul(0.2f));
        x = m.B.AddNode("MatMul", [x, w]);
        return m.Finish(x, opset);
    }

    /// <summary>A random input batch for these models (seeded).</summary>
    public static Tensor Input(long batch, long seed = 42, params long[] shape)
    {
        var generator = new Generator(0).manual_seed(seed);
        long[] dims = shape.Length == 0 ? [batch, 3, 32, 32] : [batch, .. shape];
        return randn(dims, generator: generator);
    }

    sealed class Maker(long seed)
    {
        readonly Generator generator = new Generator(0).manual_seed(seed);

        public OnnxGraphBuilder B { get; } = new("sadg_test_model");

        /// <summary>False: <see cref="BatchNorm"/> adds nothing and convolutions carry biases (BN folded).</summary>
        public bool UseBatchNorm { get; init; } = true;

        public Tensor Randn(params long[] shape) => randn(shape, generator: generator);

        Tensor Uniform(float low, float high, params long[] shape) => rand(shape, generator: generator).Mul(high - low).Add(low);

        public string Input(params long[] chw) => B.AddInput(InputName, DataType.Float, [-1, .. chw]);

        public ModelProto Finish(string last, long opset)
        {
            B.AddOutput(last);
            return B.Build(opset, irVersion: 8);
        }

        public string Conv(string x, int cin, int cout, int k, int stride, int pad, int group = 1, bool bias = false)
        {
            long fanIn = cin / group * k * k;
            var w = B.AddInitializer(B.Fresh("conv_w"), Randn(cout, cin / group, k, k).Mul(MathF.Sqrt(2f / fanIn)));
            var inputs = new List<string> { x, w };
            if (bias || !UseBatchNorm) inputs.Add(B.AddInitializer(B.Fresh("conv_b"), Randn(cout).Mul(0.1f)));
            return B.AddNode("Conv", inputs, attributes: new Dictionary<string, object>
            {
                ["kernel_shape"] = new long[] { k, k },
                ["strides"] = new long[] { stride, stride },
                ["pads"] = new long[] { pad, pad, pad, pad },
                ["group"] = (long)group,
            });
        }

        /// <summary>ConvTranspose with a [cin, cout / group, k, k] weight, no padding.</summary>
        public string ConvTranspose(string x, int cin, int cout, int k, int stride, int group = 1)
        {
            var w = B.AddInitializer(B.Fresh("deconv_w"), Randn(cin, cout / group, k, k).Mul(MathF.Sqrt(2f / (cin / group))));
            var inputs = new List<string> { x, w };
            if (!UseBatchNorm) inputs.Add(B.AddInitializer(B.Fresh("deconv_b"), Randn(cout).Mul(0.1f)));
            return B.AddNode("ConvTranspose", inputs, attributes: new Dictionary<string, object>
            {
                ["kernel_shape"] = new long[] { k, k },
                ["strides"] = new long[] { stride, stride },
                ["group"] = (long)group,
            });
        }

        public string BatchNorm(string x, int c) => !UseBatchNorm ? x : B.AddNode("BatchNormalization",
        [
            x,
            B.AddInitializer(B.Fresh("bn_scale"), Uniform(0.5f, 1.5f, c)),
            B.AddInitializer(B.Fresh("bn_bias"), Randn(c).Mul(0.1f)),
            B.AddInitializer(B.Fresh("bn_mean"), Randn(c).Mul(0.1f)),
            B.AddInitializer(B.Fresh("bn_var"), Uniform(0.5f, 1.5f, c)),
        ], attributes: new Dictionary<string, object> { ["epsilon"] = 1e-5f });

        public string Relu(string x) => B.AddNode("Relu", [x]);

        public string Add(string a, string b) => B.AddNode("Add", [a, b]);

        public string Clip6(string x)
        {
            var low = B.AddInitializer(B.Fresh("clip_min"), tensor(0f));
            var high = B.AddInitializer(B.Fresh("clip_max"), tensor(6f));
            return B.AddNode("Clip", [x, low, high]);
        }

        public string MaxPool(string x, int k, int stride, int pad) => B.AddNode("MaxPool", [x], attributes: new Dictionary<string, object>
        {
            ["kernel_shape"] = new long[] { k, k },
            ["strides"] = new long[] { stride, stride },
            ["pads"] = new long[] { pad, pad, pad, pad },
        });

        public string Gemm(string x, int inFeatures, int outFeatures)
        {
            var w = B.AddInitializer(B.Fresh("fc_w"), Randn(outFeatures, inFeatures).Mul(MathF.Sqrt(1f / inFeatures)));
            var b = B.AddInitializer(B.Fresh("fc_b"), Randn(outFeatures).Mul(0.1f));
            return B.AddNode("Gemm", [x, w, b], attributes: new Dictionary<string, object> { ["transB"] = 1L });
        }

        public string BasicBlock(string x, int cin, int cout, int stride)
        {
            var y = Relu(BatchNorm(Conv(x, cin, cout, 3, stride, 1), cout));
            y = BatchNorm(Conv(y, cout, cout, 3, 1, 1), cout);
            var shortcut = stride == 1 && cin == cout ? x : BatchNorm(Conv(x, cin, cout, 1, stride, 0), cout);
            return Relu(Add(y, shortcut));
        }

        public string InvertedResidual(string x, int cin, int cout, int expand, int stride)
        {
            int hidden = cin * expand;
            var y = Clip6(BatchNorm(Conv(x, cin, hidden, 1, 1, 0), hidden));
            y = Clip6(BatchNorm(Conv(y, hidden, hidden, 3, stride, 1, group: hidden), hidden));
            y = BatchNorm(Conv(y, hidden, cout, 1, 1, 0), cout);
            return stride == 1 && cin == cout ? Add(x, y) : y;
        }
    }
}
