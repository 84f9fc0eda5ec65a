using Onnx;

namespace Sadg.Onnx;

/// <summary>
/// Image inputs declared channels-last, <c>[N, H, W, C]</c>, as tf2onnx and TFLite converters write Keras and
/// TensorFlow models by default: ONNX's Conv is channels-first, so such a graph turns its input with a Transpose
/// (perm 0,3,1,2), maybe after preprocessing (Sub, Mul, Div … by constants). Sadg generates, calibrates and
/// reconstructs channels-first: <see cref="ChannelsFirst"/> gives the pipeline a copy whose input is
/// <c>[N, C, H, W]</c>, turned back to NHWC by one Transpose in front of the original graph (the same values), and
/// <see cref="Restore"/> takes that Transpose out of the written model, so it keeps the input the source declares.
/// Images for ONNX Runtime go in as the file declares them (<see cref="ToChannelsLast"/>).
/// </summary>
public static class InputLayout
{
    /// <summary>The name of the Transpose <see cref="ChannelsFirst"/> puts in front of the graph.</summary>
    public const string ViewNode = "sadg_input_to_nhwc";

    /// <summary>Where N, C, H and W sit in the declared dimensions of a channels-first or channels-last input.</summary>
    public static int[] Axes(bool channelsLast) => channelsLast ? [0, 3, 1, 2] : [0, 1, 2, 3];

    /// <summary>Ops an NHWC image may pass through on its way to the Transpose (with constant other operands).</summary>
    static readonly HashSet<string> Preprocessing = ["Sub", "Add", "Mul", "Div", "Cast", "Identity"];

    /// <summary>
    /// Whether <paramref name="graph"/> reads its rank-4 input <paramref name="input"/> as <c>[N, H, W, C]</c>: every
    /// path from it reaches a Transpose with perm 0,3,1,2, through nothing but Sub, Add, Mul, Div (by a constant),
    /// Cast and Identity (a Shape of it may read it too). Any other reader (a Conv, a Reshape …) means the input is
    /// taken as it is declared, NCHW.
    /// </summary>
    public static bool IsChannelsLast(GraphProto graph, string input)
    {
        var constants = graph.Initializer.Select(t => t.Name)
            .Concat(graph.Node.Where(n => n.OpType == "Constant").SelectMany(n => n.Output)).ToHashSet();
        var frontier = new Queue<string>([input]);
        var seen = new HashSet<string> { input };
        bool reachesTranspose = false;
        while (frontier.TryDequeue(out var tensor))
        {
            if (graph.Output.Any(o => o.Name == tensor)) return false;
            foreach (var node in graph.Node.Where(n => n.Input.Contains(tensor)))
            {
                if (node.OpType == "Transpose" && node.IsDefaultDomain())
                {
                    var perm = node.Attribute.FirstOrDefault(a => a.Name == "perm")?.Ints;
                    if (perm is null || !perm.SequenceEqual([0L, 3, 1, 2])) return false;
                    reachesTranspose = true;
                    continue;
                }
                // A Shape of the image says nothing about its layout (the copy keeps feeding it the NHWC tensor).
                if (node.OpType == "Shape" && node.IsDefaultDomain()) continue;
                if (!Preprocessing.Contains(node.OpType) || !node.IsDefaultDomain()) return false;
                if (node.Input.Any(i => i != tensor && !seen.Contains(i) && !constants.Contains(i) && i.Length > 0)) return false;
                foreach (var o in node.Output.Where(seen.Add)) frontier.Enqueue(o);
            }
        }
        return reachesTranspose;
    }

    /// <summary>
    /// <paramref name="model"/> itself when its image input is channels-first; else a copy whose input is declared
    /// <c>[N, C, H, W]</c> and read by a Transpose (perm 0,2,3,1, named <see cref="ViewNode"/>) that gives the
    /// original graph its NHWC tensor.
    /// </summary>
    public static OnnxModel ChannelsFirst(OnnxModel model)
    {
        var inputs = model.RuntimeInputs;
        if (inputs.Count != 1 || !model.IsImageTensor(inputs[0]) || !IsChannelsLast(model.Graph, inputs[0].Name)) return model;
        var proto = model.Proto.Clone();
        var graph = proto.Graph;
        string name = inputs[0].Name;
        string nhwc = new NameSet(graph).Unique(name + "_nhwc");
        GraphEdits.ReplaceReads(graph.Node, name, nhwc);
        var view = new NodeProto { OpType = "Transpose", Name = ViewNode, Input = { name }, Output = { nhwc } };
        view.Attribute.Add(new AttributeProto { Name = "perm", Type = AttributeProto.Types.AttributeType.Ints, Ints = { 0, 2, 3, 1 } });
        graph.Node.Insert(0, view);
        var dims = graph.Input.First(v => v.Name == name).Type.TensorType.Shape.Dim;
        var declared = dims.Select(d => d.Clone()).ToArray();
        var axes = Axes(channelsLast: true);
        for (int i = 0; i < 4; i++) dims[i] = declared[axes[i]];
        return OnnxModel.FromProto(proto, model.Path);
    }

    /// <summary>
    /// Takes the <see cref="ViewNode"/> Transpose out of <paramref name="written"/> (a model made from the
    /// <see cref="ChannelsFirst"/> copy of <paramref name="source"/>), so its graph reads the input as the source's
    /// does; the caller gives the input the source's type. Nothing to do when the source is channels-first.
    /// </summary>
    public static void Restore(ModelProto written, OnnxModel source)
    {
        var graph = written.Graph;
        var view = graph.Node.FirstOrDefault(n => n.Name == ViewNode && n.OpType == "Transpose");
        if (view is null) return;
        string input = view.Input[0], nhwc = view.Output[0];
        graph.Node.Remove(view);
        GraphEdits.ReplaceReads(graph.Node, nhwc, input);
        if (source.RuntimeInputs.All(v => v.Name != input))
            throw new InvalidOperationException($"the written model's input '{input}' is not the source's");
    }

    /// <summary>
    /// Copies <paramref name="count"/> images from <paramref name="nchw"/> ([C, H, W] each, one after another) to
    /// <paramref name="nhwc"/> as [H, W, C].
    /// </summary>
    public static void ToChannelsLast(ReadOnlySpan<float> nchw, Span<float> nhwc, int count, int channels, int height, int width)
    {
        int plane = height * width, per = channels * plane;
        if (nchw.Length < count * per || nhwc.Length < count * per)
            throw new ArgumentException($"{count} images of {channels}x{height}x{width} need {count * per} values.");
        for (int n = 0; n < count; n++)
        {
            var from = nchw.Slice(n * per, per);
            var to = nhwc.Slice(n * per, per);
            for (int c = 0; c < channels; c++)
                for (int p = 0; p < plane; p++)
                    to[p * channels + c] = from[c * plane + p];
        }
    }
}
