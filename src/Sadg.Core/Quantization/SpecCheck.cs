using Onnx;
using Sadg.Onnx;
using static TorchSharp.torch;
using DataType = Onnx.TensorProto.Types.DataType;

namespace Sadg.Quantization;

/// <summary>Checks a <see cref="QuantizationSpec"/> against the model it quantizes; every error names the node or value.</summary>
internal static class SpecCheck
{
    public static void Check(OnnxModel model, QuantizationSpec spec)
    {
        string? file = model.Path;
        var graph = model.Graph;
        var nodes = new Dictionary<string, NodeProto>(StringComparer.Ordinal);
        foreach (var n in graph.Node.Where(n => !string.IsNullOrEmpty(n.Name)))
            if (!nodes.TryAdd(n.Name, n) && spec.Weights.Any(w => w.Node == n.Name))
                throw new SadgException(SadgErrorCode.InvalidGraph,
                    $"Two nodes are named '{n.Name}'; the quantization spec cannot say which one it means.", file, n.Name);
        var initializers = graph.Initializer.ToDictionary(t => t.Name, StringComparer.Ordinal);

        var seen = new HashSet<(string, string)>();
        foreach (var w in spec.Weights)
        {
            SadgException Bad(string what) => new(SadgErrorCode.InvalidNode,
                $"Quantized weight '{w.Weight}' of node '{w.Node}': {what}. The quantization spec does not match the model.", file, w.Node);
            if (!nodes.TryGetValue(w.Node, out var node)) throw Bad("the model has no node of that name");
            if (!node.Input.Skip(1).Contains(w.Weight)) throw Bad($"the {node.OpType} node does not read it as a weight");
            if (!initializers.TryGetValue(w.Weight, out var init)) throw Bad("it is not an initializer");
            if ((DataType)init.DataType != DataType.Float) throw Bad($"it is {(DataType)init.DataType}, not float");
            if (!seen.Add((w.Node, w.Weight))) throw Bad("it is quantized twice");
            if (!QuantizeSchema.IsBits(w.Bits)) throw Bad($"{w.Bits} bits (2–8 are supported)");
            long[] dims = init.Dims.ToArray();
            if (w.Axis < 0 || w.Axis >= dims.Length) throw Bad($"axis {w.Axis} is outside the weight's rank {dims.Length}");
            if (!w.Integers.shape.SequenceEqual(dims))
                throw Bad($"the integers have shape [{string.Join(", ", w.Integers.shape)}], the weight [{string.Join(", ", dims)}]");
            long channels = dims[w.Axis];
            if (!w.Scale.shape.SequenceEqual([channels]) || !w.ZeroPoint.shape.SequenceEqual([channels]))
                throw Bad($"scale and zero point must have shape [{channels}] (axis {w.Axis}), not [{string.Join(", ", w.Scale.shape)}] and [{string.Join(", ", w.ZeroPoint.shape)}]");
            using var scope = NewDisposeScope();
            long top = (1L << w.Bits) - 1;
            if (w.Integers.numel() > 0 && (w.Integers.min().item<long>() < 0 || w.Integers.max().item<long>() > top))
                throw Bad($"integers outside [0, {top}]");
            if (w.ZeroPoint.min().item<long>() < 0 || w.ZeroPoint.max().item<long>() > top)
                throw Bad($"zero points outside [0, {top}]");
            var s = w.Scale.to_type(ScalarType.Float32);
            if (!s.isfinite().all().item<bool>() || s.Le(0).any().item<bool>()) throw Bad("a scale is not a positive finite number");
        }

        var biases = new HashSet<string>(StringComparer.Ordinal);
        foreach (var b in spec.Biases)
        {
            SadgException Bad(string what) => new(SadgErrorCode.InvalidNode,
                $"Corrected bias '{b.Bias}' of node '{b.Node}': {what}. The quantization spec does not match the model.", file, b.Node);
            if (!nodes.TryGetValue(b.Node, out var node)) throw Bad("the model has no node of that name");
            if (node.Input.Count < 3 || node.Input[2] != b.Bias) throw Bad($"the {node.OpType} node does not read it as its bias");
            if (graph.Node.Any(n => n != node && n.Input.Contains(b.Bias)) || graph.Output.Any(o => o.Name == b.Bias))
                throw Bad("another node or a graph output reads it too");
            if (!initializers.TryGetValue(b.Bias, out var init)) throw Bad("it is not an initializer");
            if ((DataType)init.DataType != DataType.Float) throw Bad($"it is {(DataType)init.DataType}, not float");
            if (!biases.Add(b.Bias)) throw Bad("it is corrected twice");
            if (!b.Value.shape.SequenceEqual(init.Dims.ToArray()) || b.Value.dtype != ScalarType.Float32)
                throw Bad($"the new value has shape [{string.Join(", ", b.Value.shape)}] ({b.Value.dtype}), the initializer [{string.Join(", ", init.Dims)}] (Float32)");
            using var scope = NewDisposeScope();
            if (!b.Value.isfinite().all().item<bool>()) throw Bad("a value is not finite");
        }

        var values = graph.Input.Select(i => i.Name).Concat(graph.Initializer.Select(i => i.Name))
            .Concat(graph.Node.SelectMany(n => n.Output)).ToHashSet(StringComparer.Ordinal);
        var activations = new HashSet<string>(StringComparer.Ordinal);
        foreach (var a in spec.Activations)
        {
            SadgException Bad(string what) => new(SadgErrorCode.InvalidNode,
                $"Quantized activation '{a.Value}': {what}. The quantization spec does not match the model.", file, a.Value);
            if (!values.Contains(a.Value)) throw Bad("the model has no value of that name");
            if (!activations.Add(a.Value)) throw Bad("it is quantized twice");
            if (!QuantizeSchema.IsBits(a.Bits)) throw Bad($"{a.Bits} bits (2–8 are supported)");
            if (!float.IsFinite(a.Scale) || a.Scale <= 0) throw Bad($"scale {a.Scale} is not a positive finite number");
        }
    }
}
