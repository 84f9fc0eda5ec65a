using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Sadg.Onnx;

/// <summary>
/// Writes TorchSharp layers as ONNX nodes (eval-mode semantics; BatchNorm kept as BatchNormalization with its
/// running statistics). Used to export models trained with TorchSharp, such as the sample model.
/// </summary>
public static class ModuleExport
{
    static Dictionary<string, object> Attributes(params (string Key, object Value)[] items) => items.ToDictionary(i => i.Key, i => i.Value);

    public static string Conv(OnnxGraphBuilder g, string name, Conv2d conv, string input)
    {
        var inputs = new List<string> { input, g.AddInitializer($"{name}.weight", conv.weight!) };
        if (conv.bias is { } bias) inputs.Add(g.AddInitializer($"{name}.bias", bias));
        long[] pads = conv.padding is { } p ? [p[0], p[1], p[0], p[1]] : [0, 0, 0, 0];
        return g.AddNode("Conv", inputs, name: name, attributes: Attributes(
            ("kernel_shape", new[] { conv.kernel_size[0], conv.kernel_size[1] }),
            ("strides", new[] { conv.stride[0], conv.stride[1] }),
            ("dilations", new[] { conv.dilation[0], conv.dilation[1] }),
            ("pads", pads),
            ("group", conv.groups)));
    }

    public static string BatchNorm(OnnxGraphBuilder g, string name, BatchNorm2d bn, string input) =>
        g.AddNode("BatchNormalization",
            [
                input,
                g.AddInitializer($"{name}.scale", bn.weight ?? ones(bn.num_features)),
                g.AddInitializer($"{name}.bias", bn.bias ?? zeros(bn.num_features)),
                g.AddInitializer($"{name}.mean", bn.running_mean!),
                g.AddInitializer($"{name}.var", bn.running_var!),
            ],
            name: name, attributes: Attributes(("epsilon", (float)bn.eps)));

    /// <summary>Gemm(x, W, b) with transB = 1: the layout of a Linear layer's weight.</summary>
    public static string Linear(OnnxGraphBuilder g, string name, Linear linear, string input, string? output = null)
    {
        var inputs = new List<string> { input, g.AddInitializer($"{name}.weight", linear.weight!) };
        if (linear.bias is { } bias) inputs.Add(g.AddInitializer($"{name}.bias", bias));
        return g.AddNode("Gemm", inputs, output is null ? null : [output], name: name, attributes: Attributes(("transB", 1L)));
    }

    /// <summary>
    /// A chain of layers: Conv2d, BatchNorm2d, ReLU, MaxPool2d, AdaptiveAvgPool2d(1), Flatten, Linear.
    /// Returns the last value's name.
    /// </summary>
    public static string Sequential(OnnxGraphBuilder g, string prefix, IEnumerable<nn.Module> layers, string input)
    {
        int i = 0;
        foreach (var layer in layers)
        {
            string name = $"{prefix}{i++}";
            input = layer switch
            {
                Conv2d conv => Conv(g, name, conv, input),
                BatchNorm2d bn => BatchNorm(g, name, bn, input),
                ReLU => g.AddNode("Relu", [input], name: name),
                MaxPool2d pool => g.AddNode("MaxPool", [input], name: name, attributes: Attributes(
                    ("kernel_shape", pool.kernel_size.ToArray()),
                    ("strides", (pool.stride ?? pool.kernel_size).ToArray()),
                    ("pads", new long[2 * pool.kernel_size.Length]))),
                AdaptiveAvgPool2d => g.AddNode("GlobalAveragePool", [input], name: name),
                Flatten => g.AddNode("Flatten", [input], name: name, attributes: Attributes(("axis", 1L))),
                Linear linear => Linear(g, name, linear, input),
                _ => throw new NotSupportedException($"ModuleExport cannot write a {layer.GetType().Name} ('{name}')."),
            };
        }
        return input;
    }
}
