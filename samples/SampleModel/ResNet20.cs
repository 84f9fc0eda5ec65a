using Sadg.Onnx;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using DataType = Onnx.TensorProto.Types.DataType;

namespace Sadg.Samples;

/// <summary>
/// ResNet-20 (He et al. 2016, the CIFAR variant): a 3x3 stem, three stages of three basic blocks with 16, 32 and
/// 64 channels (stages 2 and 3 halve the resolution), global average pooling and a linear classifier. Shortcuts
/// that change shape are 1x1 convolutions with BatchNorm. For 1x28x28 input: 28 -> 14 -> 7.
/// </summary>
public sealed class ResNet20 : nn.Module<Tensor, Tensor>
{
    readonly Conv2d stem;
    readonly BatchNorm2d stemBn;
    readonly ModuleList<BasicBlock> blocks = new();
    readonly Linear fc;

    public ResNet20(int inChannels = 1, int classes = 10) : base(nameof(ResNet20))
    {
        stem = nn.Conv2d(inChannels, 16, 3, padding: 1, bias: false);
        stemBn = nn.BatchNorm2d(16);
        int channels = 16;
        foreach (int width in new[] { 16, 32, 64 })
            for (int i = 0; i < 3; i++)
            {
                int stride = i == 0 && width != 16 ? 2 : 1;
                blocks.Add(new BasicBlock(channels, width, stride));
                channels = width;
            }
        fc = nn.Linear(64, classes);
        RegisterComponents();
        InitializeConvolutions(this);
    }

    public override Tensor forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        var h = nn.functional.relu(stemBn.forward(stem.forward(x)));
        foreach (var block in blocks) h = block.forward(h);
        h = nn.functional.adaptive_avg_pool2d(h, 1).flatten(1);
        return fc.forward(h).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// The ONNX graph of this network (eval mode, BatchNorm kept as BatchNormalization nodes) for input
    /// [N, C, H, W] named "image", output [N, classes] logits named "logits".
    /// </summary>
    public global::Onnx.ModelProto ToOnnx(int height, int width, long opset = 17)
    {
        var g = new OnnxGraphBuilder("resnet20");
        string x = g.AddInput("image", DataType.Float, -1, stem.in_channels, height, width);
        x = ConvBn(g, "stem", stem, stemBn, x);
        x = g.AddNode("Relu", [x], name: "stem.relu");
        for (int i = 0; i < blocks.Count; i++) x = blocks[i].ToOnnx(g, $"layer{i / 3 + 1}.{i % 3}", x);
        x = g.AddNode("GlobalAveragePool", [x], name: "pool");
        x = g.AddNode("Flatten", [x], name: "flatten", attributes: new Dictionary<string, object> { ["axis"] = 1L });
        ModuleExport.Linear(g, "fc", fc, x, output: "logits");
        g.AddOutput("logits", DataType.Float, -1, fc.out_features);
        return g.Build(opset, irVersion: 8);
    }

    /// <summary>Kaiming-normal (fan-out, ReLU) initialization of every convolution weight of a sample network.</summary>
    internal static void InitializeConvolutions(nn.Module module)
    {
        foreach (var (name, p) in module.named_parameters())
            if (name.EndsWith("weight") && p.dim() == 4) nn.init.kaiming_normal_(p, mode: nn.init.FanInOut.FanOut, nonlinearity: nn.init.NonlinearityType.ReLU);
    }

    internal static string ConvBn(OnnxGraphBuilder g, string name, Conv2d conv, BatchNorm2d bn, string input) =>
        ModuleExport.BatchNorm(g, $"{name}.bn", bn, ModuleExport.Conv(g, $"{name}.conv", conv, input));
}

/// <summary>Two 3x3 Conv-BN layers with a shortcut (identity, or 1x1 Conv-BN when the shape changes).</summary>
public sealed class BasicBlock : nn.Module<Tensor, Tensor>
{
    readonly Conv2d conv1, conv2;
    readonly BatchNorm2d bn1, bn2;
    readonly Conv2d? shortcut;
    readonly BatchNorm2d? shortcutBn;

    public BasicBlock(int inChannels, int outChannels, int stride) : base(nameof(BasicBlock))
    {
        conv1 = nn.Conv2d(inChannels, outChannels, 3, stride: stride, padding: 1, bias: false);
        bn1 = nn.BatchNorm2d(outChannels);
        conv2 = nn.Conv2d(outChannels, outChannels, 3, padding: 1, bias: false);
        bn2 = nn.BatchNorm2d(outChannels);
        if (stride != 1 || inChannels != outChannels)
        {
            shortcut = nn.Conv2d(inChannels, outChannels, 1, stride: stride, bias: false);
            shortcutBn = nn.BatchNorm2d(outChannels);
        }
        RegisterComponents();
    }

    public override Tensor forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        var h = nn.functional.relu(bn1.forward(conv1.forward(x)));
        h = bn2.forward(conv2.forward(h));
        var s = shortcut is null ? x : shortcutBn!.forward(shortcut.forward(x));
        return nn.functional.relu(h + s).MoveToOuterDisposeScope();
    }

    internal string ToOnnx(OnnxGraphBuilder g, string name, string input)
    {
        string h = ResNet20.ConvBn(g, $"{name}.1", conv1, bn1, input);
        h = g.AddNode("Relu", [h], name: $"{name}.relu1");
        h = ResNet20.ConvBn(g, $"{name}.2", conv2, bn2, h);
        string s = shortcut is null ? input : ResNet20.ConvBn(g, $"{name}.shortcut", shortcut, shortcutBn!, input);
        string sum = g.AddNode("Add", [h, s], name: $"{name}.add");
        return g.AddNode("Relu", [sum], name: $"{name}.relu2");
    }
}
