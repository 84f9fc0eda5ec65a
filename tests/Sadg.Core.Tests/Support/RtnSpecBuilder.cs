using Onnx;
using Sadg.Graph;
using Sadg.Onnx;
using Sadg.Quantization;
using static TorchSharp.torch;

namespace Sadg.Tests.Support;

/// <summary>
/// TEST CODE ONLY: the simplest quantization spec that exercises the QDQ writer — round-to-nearest, per output
/// channel, asymmetric min/max weight quantization, and symmetric per-tensor activation scales max|x| / Max from one
/// random batch. It is not Sadg's quantizer (no clip search, no reconstruction).
/// </summary>
public static class RtnSpecBuilder
{
    /// <summary>Bits for the i-th of n quantized ops: weight bits, and input-activation bits (0: input not quantized).</summary>
    public delegate (int WeightBits, int ActivationBits) BitPolicy(int index, int count);

    public static BitPolicy Uniform(int weightBits, int activationBits) => (_, _) => (weightBits, activationBits);

    /// <summary>The first quantized op W8A8, every other one W4A4.</summary>
    public static BitPolicy FirstLayer8Bit => (i, _) => i == 0 ? (8, 8) : (4, 4);

    /// <param name="symmetricActivations">Activations with negatives on the symmetric signed grid (INT containers) at
    /// every bit width; otherwise below 8 bits on the asymmetric one (UINT containers with a zero point), as the
    /// product does (<see cref="ActivationQuantizer.AsymmetricGrid"/>).</param>
    public static QuantizationSpec Build(OnnxModel folded, Tensor calibration, BitPolicy policy, bool symmetricActivations = false)
    {
        using var scope = NewDisposeScope();
        var initializers = folded.Graph.Initializer.ToDictionary(t => t.Name);
        var ops = folded.Graph.Node.Where(n => QuantizableOps.OpTypes.Contains(n.OpType) && n.Input.Count > 1
            && initializers.TryGetValue(n.Input[1], out var w) && w.DataType == (int)TensorProto.Types.DataType.Float).ToList();

        var spec = new QuantizationSpec();
        var activationBits = new Dictionary<string, int>(StringComparer.Ordinal);
        for (int i = 0; i < ops.Count; i++)
        {
            var node = ops[i];
            var (wb, ab) = policy(i, ops.Count);
            int axis = QuantizedGraph.WeightAxis(node);
            var w = OnnxTensors.ToTorch(initializers[node.Input[1]]);
            var moved = w.movedim([axis], [0]).reshape(w.shape[axis], -1);
            var lo = moved.amin(1).clamp(max: 0);
            var hi = moved.amax(1).clamp(min: 0);
            long top = (1L << wb) - 1;
            var scale = ((hi - lo) / top).clamp(min: 1e-8f);
            var zeroPoint = (-lo / scale).round().clamp(0, top);
            long[] view = Enumerable.Repeat(1L, (int)w.dim()).ToArray();
            view[axis] = w.shape[axis];
            var integers = (w / scale.reshape(view)).round().add(zeroPoint.reshape(view)).clamp(0, top);
            spec.Weights.Add(new WeightQuantization(node.Name, node.Input[1], integers.to_type(ScalarType.Int64).DetachFromDisposeScope(),
                scale.DetachFromDisposeScope(), zeroPoint.to_type(ScalarType.Int64).DetachFromDisposeScope(), wb, axis));
            if (ab > 0) activationBits[node.Input[0]] = Math.Max(activationBits.GetValueOrDefault(node.Input[0]), ab);
        }

        using var graph = new GraphModule(folded);
        using var capture = graph.Capture(activationBits.Keys);
        graph.forward(calibration);
        foreach (var (value, bits) in activationBits)
        {
            var x = capture[value];
            float min = x.min().item<float>(), max = x.max().item<float>();
            long top = (1L << bits) - 1;
            if (min < 0 && ActivationQuantizer.AsymmetricGrid(bits, symmetricActivations))
            {
                // Asymmetric: [min, max] on 2^b levels, the zero point rounded.
                float step = Math.Max((max - min) / top, 1e-8f);
                long zero = Math.Clamp((long)Math.Round(-min / step), 0, top);
                spec.Activations.Add(new ActivationQuantization(value, step, bits, Signed: false) { ZeroPoint = zero });
                continue;
            }
            bool signed = min < 0;
            long hi = signed ? (1L << (bits - 1)) - 1 : top;
            float scale = Math.Max(x.abs().max().item<float>() / hi, 1e-8f);
            spec.Activations.Add(new ActivationQuantization(value, scale, bits, signed));
        }
        spec.Metadata["sadg.method"] = "rtn-test";
        spec.Metadata["sadg.bits"] = string.Join(",", ops.Select((_, i) => policy(i, ops.Count)).Select(b => $"W{b.WeightBits}A{b.ActivationBits}"));
        return spec;
    }
}

/// <summary>
/// TEST CODE ONLY: removes BatchNormalization the simple way, by folding each BN that directly follows a Conv
/// (whose output nothing else reads) into that Conv's weight and bias. Sadg's own BN folding lives elsewhere.
/// </summary>
public static class TestBatchNormRemoval
{
    public static ModelProto Fold(ModelProto source)
    {
        using var scope = NewDisposeScope();
        var model = source.Clone();
        var graph = model.Graph;
        var init = graph.Initializer.ToDictionary(t => t.Name);
        Tensor Get(string name) => OnnxTensors.ToTorch(init[name]);
        void Set(string name, Tensor value)
        {
            var t = OnnxTensors.FromTorch(name, value);
            if (init.TryGetValue(name, out var old)) graph.Initializer.Remove(old);
            graph.Initializer.Add(t);
            init[name] = t;
        }

        foreach (var bn in graph.Node.Where(n => n.OpType == "BatchNormalization").ToList())
        {
            var conv = graph.Node.Single(n => n.Output.Contains(bn.Input[0]));
            if (conv.OpType != "Conv" || graph.Node.Count(n => n.Input.Contains(bn.Input[0])) != 1)
                throw new InvalidOperationException($"BN '{bn.Name}' does not directly follow a Conv.");
            float eps = bn.Attribute.FirstOrDefault(a => a.Name == "epsilon")?.F ?? 1e-5f;
            var factor = Get(bn.Input[1]) / (Get(bn.Input[4]) + eps).sqrt();
            var w = Get(conv.Input[1]);
            var b = conv.Input.Count > 2 ? Get(conv.Input[2]) : zeros(w.shape[0]);
            Set(conv.Input[1], w * factor.reshape(-1, 1, 1, 1));
            string biasName = conv.Input.Count > 2 ? conv.Input[2] : conv.Input[1] + "_bias";
            Set(biasName, (b - Get(bn.Input[3])) * factor + Get(bn.Input[2]));
            if (conv.Input.Count == 2) conv.Input.Add(biasName);
            conv.Output[0] = bn.Output[0];
            graph.Node.Remove(bn);
        }
        var used = graph.Node.SelectMany(n => n.Input).ToHashSet();
        foreach (var t in graph.Initializer.Where(t => !used.Contains(t.Name)).ToList()) graph.Initializer.Remove(t);
        return model;
    }
}
