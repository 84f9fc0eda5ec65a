using Google.Protobuf;
using Onnx;
using Sadg.Onnx;
using Sadg.Quantization;
using static TorchSharp.torch;
using DataType = Onnx.TensorProto.Types.DataType;

namespace Sadg.Export;

/// <summary>
/// Writes a BN-folded model and its <see cref="QuantizationSpec"/> as a standard QDQ ONNX model (opset 21, IR 10):
/// <list type="bullet">
/// <item>each quantized weight becomes a UINT4 (2–4 bits) or UINT8 (5–8 bits) initializer with per-channel float
/// scale and zero point, and a DequantizeLinear(axis) feeding the node that read the float weight (the float
/// initializer stays only if a node that is not quantized still reads it);</item>
/// <item>each quantized activation v gets QuantizeLinear → DequantizeLinear with a scalar scale and its zero point
/// (0 on the signed and the ReLU grids),
/// stored as <see cref="ActivationStorage"/> says, plus a Clip to [Min·scale, Max·scale] after the
/// DequantizeLinear when the bit width is narrower than its container (4 bits in INT8, 3 bits in INT4, …); every
/// node that read v reads the result instead, but the activation's <see cref="ActivationQuantization.FloatReaders"/>
/// (excluded operators) and graph outputs keep the float v;</item>
/// <item>weights of operators the spec does not list (excluded operators) stay float initializers;</item>
/// <item>biases stay float, with the spec's corrected values (<see cref="QuantizationSpec.Biases"/>); nothing else changes (older opsets are first upgraded by <see cref="OpsetUpgrader"/>).</item>
/// </list>
/// New values, initializers and nodes are named after the value they quantize ("{v}_quantized", "{v}_scale",
/// "{v}_zero_point", "{v}_QuantizeLinear", "{v}_DequantizeLinear", "{v}_dequantized").
/// The model computes exactly what <see cref="FakeQuantSimulation"/> computes, up to float rounding.
/// </summary>
public static class QdqWriter
{
    /// <summary>
    /// How quantized activations are stored. Activations are never stored in the file, so this changes no file
    /// size; it decides which ONNX Runtime configurations run the model.
    /// </summary>
    public enum ActivationStorage
    {
        /// <summary>
        /// INT8/UINT8 Q/DQ pairs; bit widths below 8 are enforced by the Clip after DequantizeLinear. ONNX Runtime
        /// 1.31 runs these with its default graph optimizations (the default).
        /// </summary>
        Compatible,

        /// <summary>
        /// INT4/UINT4 Q/DQ pairs for 2–4 bits. The literal form, but ONNX Runtime 1.31 with its default graph
        /// optimizations refuses some of these models (its Clip→QuantizeLinear fusion cannot read a 4-bit zero
        /// point; Q/DQ propagation leaves a MaxPool reading UINT4) and changes the results of others: run them with
        /// graph optimizations disabled.
        /// </summary>
        Exact,
    }

    /// <summary>The QDQ model of <paramref name="foldedModel"/> quantized as <paramref name="spec"/> says.</summary>
    public static ModelProto Write(OnnxModel foldedModel, QuantizationSpec spec, ActivationStorage storage = ActivationStorage.Compatible)
    {
        ArgumentNullException.ThrowIfNull(foldedModel);
        ArgumentNullException.ThrowIfNull(spec);
        string? file = foldedModel.Path;
        SpecCheck.Check(foldedModel, spec);

        var model = OpsetUpgrader.Upgrade(foldedModel.Proto, file);
        var graph = model.Graph;
        var names = new NameSet(graph);

        // IR ≥ 4 does not list initializers as inputs; listed ones would be overridable and block constant folding.
        var initializerNames = graph.Initializer.Select(t => t.Name).ToHashSet(StringComparer.Ordinal);
        foreach (var input in graph.Input.Where(i => initializerNames.Contains(i.Name)).ToList()) graph.Input.Remove(input);

        var prefix = new List<NodeProto>();
        var after = new Dictionary<string, List<NodeProto>>(StringComparer.Ordinal);
        var nodeByName = graph.Node.ToDictionary(n => n.Name, StringComparer.Ordinal);

        foreach (var b in spec.Biases)
        {
            using var scope = NewDisposeScope();
            int at = graph.Initializer.IndexOf(graph.Initializer.First(t => t.Name == b.Bias));
            graph.Initializer[at] = OnnxTensors.FromTorch(b.Bias, b.Value);
        }

        foreach (var w in spec.Weights)
        {
            var node = nodeByName[w.Node];
            var initializer = graph.Initializer.First(t => t.Name == w.Weight);
            string baseName = spec.Weights.Count(o => o.Weight == w.Weight) > 1 ? $"{w.Weight}_{w.Node}" : w.Weight;
            string q = names.Unique($"{baseName}_quantized");
            string scale = names.Unique($"{baseName}_scale");
            string zeroPoint = names.Unique($"{baseName}_zero_point");
            string output = names.Unique($"{baseName}_dequantized");
            long[] dims = initializer.Dims.ToArray();
            using (NewDisposeScope())
            {
                graph.Initializer.Add(IntegerTensor(q, w.Integers, dims, w.Bits, signed: false));
                graph.Initializer.Add(OnnxTensors.FromTorch(scale, w.Scale.to_type(ScalarType.Float32)));
                graph.Initializer.Add(IntegerTensor(zeroPoint, w.ZeroPoint, [w.Scale.shape[0]], w.Bits, signed: false));
            }
            var dq = new NodeProto { Name = names.Unique($"{baseName}_DequantizeLinear"), OpType = "DequantizeLinear" };
            dq.Input.AddRange([q, scale, zeroPoint]);
            dq.Output.Add(output);
            dq.Attribute.Add(OnnxGraphBuilder.Attribute("axis", (long)w.Axis));
            prefix.Add(dq);
            GraphEdits.ReplaceReads([node], w.Weight, output);
        }

        var graphOutputs = graph.Output.Select(o => o.Name).ToHashSet(StringComparer.Ordinal);
        var producerOf = GraphEdits.Producers(graph);

        foreach (var a in spec.Activations)
        {
            bool fourBit = a.Bits <= 4 && storage == ActivationStorage.Exact;
            var container = fourBit ? (a.Signed ? DataType.Int4 : DataType.Uint4) : (a.Signed ? DataType.Int8 : DataType.Uint8);
            string v = a.Value;
            string scale = names.Unique($"{v}_scale");
            string zeroPoint = names.Unique($"{v}_zero_point");
            string quantized = names.Unique($"{v}_quantized");
            graph.Initializer.Add(new TensorProto { Name = scale, DataType = (int)DataType.Float, FloatData = { a.Scale } });
            graph.Initializer.Add(container is DataType.Int4 or DataType.Uint4
                ? OnnxTensors.FromInt4(zeroPoint, [(int)a.ZeroPoint], [], container == DataType.Int4)
                : new TensorProto { Name = zeroPoint, DataType = (int)container, Int32Data = { (int)a.ZeroPoint } });

            var quantize = new NodeProto { Name = names.Unique($"{v}_QuantizeLinear"), OpType = "QuantizeLinear" };
            quantize.Input.AddRange([v, scale, zeroPoint]);
            quantize.Output.Add(quantized);
            var dequantize = new NodeProto { Name = names.Unique($"{v}_DequantizeLinear"), OpType = "DequantizeLinear" };
            dequantize.Input.AddRange([quantized, scale, zeroPoint]);
            var inserted = new List<NodeProto> { quantize, dequantize };

            string result;
            bool narrower = a.Bits != (fourBit ? 4 : 8);
            if (narrower)
            {
                // QuantizeLinear saturates to the container (INT8 for 4 bits, INT4 for 3); the spec's range is narrower.
                // Clipping after DequantizeLinear at Min·scale and Max·scale (float products, as the dequantized
                // values are) gives exactly ActivationQuantization.Apply.
                string unclipped = names.Unique($"{v}_dequantized_unclipped");
                dequantize.Output.Add(unclipped);
                string lo = names.Unique($"{v}_clip_min");
                string hi = names.Unique($"{v}_clip_max");
                graph.Initializer.Add(new TensorProto { Name = lo, DataType = (int)DataType.Float, FloatData = { (float)a.Min * a.Scale } });
                graph.Initializer.Add(new TensorProto { Name = hi, DataType = (int)DataType.Float, FloatData = { (float)a.Max * a.Scale } });
                result = names.Unique($"{v}_dequantized");
                var clip = new NodeProto { Name = names.Unique($"{v}_Clip"), OpType = "Clip" };
                clip.Input.AddRange([unclipped, lo, hi]);
                clip.Output.Add(result);
                inserted.Add(clip);
            }
            else
            {
                result = names.Unique($"{v}_dequantized");
                dequantize.Output.Add(result);
            }

            GraphEdits.ReplaceReads(graph.Node.Where(n => !a.FloatReaders.Contains(n.Name)), v, result);

            if (producerOf.TryGetValue(v, out var producer))
                (after.TryGetValue(producer.Name, out var list) ? list : after[producer.Name] = []).AddRange(inserted);
            else
                prefix.AddRange(inserted);
        }

        var nodes = graph.Node.ToList();
        graph.Node.Clear();
        graph.Node.AddRange(prefix);
        foreach (var n in nodes)
        {
            graph.Node.Add(n);
            if (after.TryGetValue(n.Name, out var list)) graph.Node.AddRange(list);
        }

        // Float weights no node reads any more go; so do their value_info entries.
        var read = graph.Node.SelectMany(n => n.Input).Concat(graph.Output.Select(o => o.Name)).ToHashSet(StringComparer.Ordinal);
        var replaced = spec.Weights.Select(w => w.Weight).Where(w => !read.Contains(w)).ToHashSet(StringComparer.Ordinal);
        foreach (var t in graph.Initializer.Where(t => replaced.Contains(t.Name)).ToList()) graph.Initializer.Remove(t);
        foreach (var vi in graph.ValueInfo.Where(vi => replaced.Contains(vi.Name)).ToList()) graph.ValueInfo.Remove(vi);

        string sourceProducer = $"{foldedModel.Proto.ProducerName} {foldedModel.Proto.ProducerVersion}".Trim();
        model.ProducerName = "sadg";
        model.ProducerVersion = typeof(QdqWriter).Assembly.GetName().Version?.ToString() ?? "";
        SadgMetadata.Set(model, SadgMetadata.SourceProducer, sourceProducer);
        SadgMetadata.Set(model, SadgMetadata.SourceOpset, foldedModel.Opset.ToString(System.Globalization.CultureInfo.InvariantCulture));
        foreach (var (key, value) in spec.Metadata.OrderBy(kv => kv.Key, StringComparer.Ordinal)) SadgMetadata.Set(model, key, value);
        SadgMetadata.Set(model, SadgMetadata.Format, SadgMetadata.FormatValue);
        return model;
    }

    /// <summary>Writes the QDQ model to <paramref name="path"/> atomically and returns it.</summary>
    public static ModelProto Write(OnnxModel foldedModel, QuantizationSpec spec, string path,
        ActivationStorage storage = ActivationStorage.Compatible)
    {
        var model = Write(foldedModel, spec, storage);
        OnnxModel.Save(model, path);
        return model;
    }

    /// <summary>UINT4/INT4 (≤ 4 bits, packed) or UINT8/INT8 (5–8 bits) holding integer values already checked to fit.</summary>
    static TensorProto IntegerTensor(string name, Tensor values, long[] dims, int bits, bool signed)
    {
        using var longs = values.detach().cpu().to_type(ScalarType.Int64).contiguous();
        if (OnnxTensors.ContainerBits(bits) == 4)
            return OnnxTensors.FromInt4(name, longs.data<long>().ToArray().Select(v => (int)v).ToArray(), dims, signed);
        using var bytes = longs.to_type(signed ? ScalarType.Int8 : ScalarType.Byte);
        var t = OnnxTensors.FromTorch(name, bytes);
        t.Dims.Clear();
        t.Dims.AddRange(dims);
        return t;
    }
}
