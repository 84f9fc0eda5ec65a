using Sadg.Onnx;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using DataType = Onnx.TensorProto.Types.DataType;

namespace Sadg.Samples;

/// <summary>
/// A MobileNetV2-style network (Sandler et al. 2018) sized for 28x28 input: a 3x3 Conv-BN-ReLU6 stem with 16
/// channels, then inverted residual blocks (1x1 expansion, 3x3 depthwise, 1x1 linear projection, each with
/// BatchNorm; ReLU6 after the first two; an identity shortcut when the shape is kept) with (expansion, channels,
/// repeats, stride) = (1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 2, 1), a 1x1 Conv-BN-ReLU6 to 256
/// channels, global average pooling and a classifier written as a 1x1 convolution on the pooled 1x1 map (as Keras
/// writes MobileNets). For 1x28x28 input: 28 -> 14 -> 7.
/// </summary>
public sealed class MobileNetV2 : nn.Module<Tensor, Tensor>, ISampleNetwork
{
    static readonly (int Expansion, int Channels, int Repeats, int Stride)[] Stages = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 2, 1)];
    const int StemChannels = 16, HeadChannels = 256;

    readonly Conv2d stem, head, classifier;
    readonly BatchNorm2d stemBn, headBn;
    readonly ModuleList<InvertedResidual> blocks = new();

    public MobileNetV2(int inChannels = 1, int classes = 10) : base(nameof(MobileNetV2))
    {
        stem = nn.Conv2d(inChannels, StemChannels, 3, padding: 1, bias: false);
        stemBn = nn.BatchNorm2d(StemChannels);
        int channels = StemChannels;
        foreach (var (expansion, width, repeats, stride) in Stages)
            for (int i = 0; i < repeats; i++)
            {
                blocks.Add(new InvertedResidual(channels, width, i == 0 ? stride : 1, expansion));
                channels = width;
            }
        head = nn.Conv2d(channels, HeadChannels, 1, bias: false);
        headBn = nn.BatchNorm2d(HeadChannels);
        classifier = nn.Conv2d(HeadChannels, classes, 1);
        RegisterComponents();
        ResNet20.InitializeConvolutions(this);
    }

    public override Tensor forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        var h = nn.functional.relu6(stemBn.forward(stem.forward(x)));
        foreach (var block in blocks) h = block.forward(h);
        h = nn.functional.relu6(headBn.forward(head.forward(h)));
        h = nn.functional.adaptive_avg_pool2d(h, 1);
        return classifier.forward(h).flatten(1).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// The ONNX graph (eval mode, BatchNorm kept, ReLU6 as Clip(0, 6)) for input [N, C, H, W] named "image",
    /// output [N, classes] logits named "logits".
    /// </summary>
    public global::Onnx.ModelProto ToOnnx(int height, int width, long opset = 17)
    {
        var g = new OnnxGraphBuilder("mobilenetv2");
        string x = g.AddInput("image", DataType.Float, -1, stem.in_channels, height, width);
        x = Relu6(g, "stem.relu6", ResNet20.ConvBn(g, "stem", stem, stemBn, x));
        for (int i = 0; i < blocks.Count; i++) x = blocks[i].ToOnnx(g, $"block{i}", x);
        x = Relu6(g, "head.relu6", ResNet20.ConvBn(g, "head", head, headBn, x));
        x = g.AddNode("GlobalAveragePool", [x], name: "pool");
        x = ModuleExport.Conv(g, "classifier", classifier, x);
        x = g.AddNode("Flatten", [x], ["logits"], name: "flatten", attributes: new Dictionary<string, object> { ["axis"] = 1L });
        g.AddOutput("logits", DataType.Float, -1, classifier.out_channels);
        return g.Build(opset, irVersion: 8);
    }

    /// <summary>ReLU6 as ONNX writes it from opset 11 on: Clip with scalar min 0 and max 6 inputs.</summary>
    internal static string Relu6(OnnxGraphBuilder g, string name, string input) =>
        g.AddNode("Clip", [input, g.AddInitializer($"{name}.min", tensor(0f)), g.AddInitializer($"{name}.max", tensor(6f))], name: name);
}

/// <summary>
/// 1x1 expansion Conv-BN-ReLU6 (left out when the expansion is 1), 3x3 depthwise Conv-BN-ReLU6, 1x1 projection
/// Conv-BN without activation; the input is added back when stride is 1 and the channel count is kept.
/// </summary>
public sealed class InvertedResidual : nn.Module<Tensor, Tensor>
{
    readonly Conv2d? expand;
    readonly BatchNorm2d? expandBn;
    readonly Conv2d depthwise, project;
    readonly BatchNorm2d depthwiseBn, projectBn;
    readonly bool residual;

    public InvertedResidual(int inChannels, int outChannels, int stride, int expansion) : base(nameof(InvertedResidual))
    {
        int hidden = inChannels * expansion;
        if (expansion != 1)
        {
            expand = nn.Conv2d(inChannels, hidden, 1, bias: false);
            expandBn = nn.BatchNorm2d(hidden);
        }
        depthwise = nn.Conv2d(hidden, hidden, 3, stride: stride, padding: 1, groups: hidden, bias: false);
        depthwiseBn = nn.BatchNorm2d(hidden);
        project = nn.Conv2d(hidden, outChannels, 1, bias: false);
        projectBn = nn.BatchNorm2d(outChannels);
        residual = stride == 1 && inChannels == outChannels;
        RegisterComponents();
    }

    public override Tensor forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        var h = expand is null ? x : nn.functional.relu6(expandBn!.forward(expand.forward(x)));
        h = nn.functional.relu6(depthwiseBn.forward(depthwise.forward(h)));
        h = projectBn.forward(project.forward(h));
        return (residual ? h + x : h).MoveToOuterDisposeScope();
    }

    internal string ToOnnx(OnnxGraphBuilder g, string name, string input)
    {
        string h = expand is null ? input : MobileNetV2.Relu6(g, $"{name}.expand.relu6", ResNet20.ConvBn(g, $"{name}.expand", expand, expandBn!, input));
        h = MobileNetV2.Relu6(g, $"{name}.depthwise.relu6", ResNet20.ConvBn(g, $"{name}.depthwise", depthwise, depthwiseBn, h));
        h = ResNet20.ConvBn(g, $"{name}.project", project, projectBn, h);
        return residual ? g.AddNode("Add", [h, input], name: $"{name}.add") : h;
    }
}

/// <summary>A sample network that can write itself as ONNX.</summary>
public interface ISampleNetwork
{
    /// <summary>The ONNX graph for input [N, C, <paramref name="height"/>, <paramref name="width"/>] named "image", output "logits".</summary>
    global::Onnx.ModelProto ToOnnx(int height, int width, long opset = 17);
}
