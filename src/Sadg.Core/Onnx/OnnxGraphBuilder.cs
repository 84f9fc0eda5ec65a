using Google.Protobuf;
using Onnx;
using static TorchSharp.torch;
using DataType = Onnx.TensorProto.Types.DataType;

namespace Sadg.Onnx;

/// <summary>
/// Builds ONNX graphs in code: inputs, initializers from TorchSharp tensors, nodes with attributes, outputs.
/// Used to write quantized models and, in tests, to make models with known structure.
/// </summary>
public sealed class OnnxGraphBuilder
{
    readonly GraphProto graph;
    int counter;

    public OnnxGraphBuilder(string name = "sadg") => graph = new GraphProto { Name = name };

    public GraphProto Graph => graph;

    /// <summary>A fresh value name with the given prefix.</summary>
    public string Fresh(string prefix) => $"{prefix}_{counter++}";

    /// <summary>Declares a graph input; a dimension of -1 or 0 is symbolic (named "N" for the first).</summary>
    public string AddInput(string name, DataType type, params long[] dims)
    {
        graph.Input.Add(ValueInfo(name, type, dims));
        return name;
    }

    public string AddOutput(string name, DataType type, params long[] dims)
    {
        graph.Output.Add(ValueInfo(name, type, dims));
        return name;
    }

    /// <summary>Adds an output whose type and shape are left unspecified (ONNX Runtime infers them).</summary>
    public string AddOutput(string name)
    {
        graph.Output.Add(new ValueInfoProto { Name = name, Type = new TypeProto { TensorType = new TypeProto.Types.Tensor { ElemType = (int)DataType.Float } } });
        return name;
    }

    public string AddInitializer(string name, Tensor value)
    {
        graph.Initializer.Add(OnnxTensors.FromTorch(name, value));
        return name;
    }

    public string AddInitializer(TensorProto tensor)
    {
        graph.Initializer.Add(tensor);
        return tensor.Name;
    }

    /// <summary>An int64 initializer (shapes, axes, pads).</summary>
    public string AddInt64s(string name, params long[] values)
    {
        using var t = tensor(values);
        return AddInitializer(name, t);
    }

    /// <summary>Adds a node and returns its first output's name (generated when <paramref name="outputs"/> is empty).</summary>
    public string AddNode(string opType, IEnumerable<string> inputs, IEnumerable<string>? outputs = null,
        IReadOnlyDictionary<string, object>? attributes = null, string? name = null)
    {
        var node = new NodeProto { OpType = opType, Name = name ?? Fresh(opType) };
        node.Input.AddRange(inputs);
        var outs = outputs?.ToList() ?? [];
        if (outs.Count == 0) outs.Add(node.Name + "_out");
        node.Output.AddRange(outs);
        if (attributes is not null)
            foreach (var (key, value) in attributes) node.Attribute.Add(Attribute(key, value));
        graph.Node.Add(node);
        return outs[0];
    }

    /// <summary>An AttributeProto from a C# value: long/int, float/double, string, long[]/int[], float[], TensorProto, GraphProto.</summary>
    public static AttributeProto Attribute(string name, object value)
    {
        var a = new AttributeProto { Name = name };
        switch (value)
        {
            case int i: a.Type = AttributeProto.Types.AttributeType.Int; a.I = i; break;
            case long l: a.Type = AttributeProto.Types.AttributeType.Int; a.I = l; break;
            case float f: a.Type = AttributeProto.Types.AttributeType.Float; a.F = f; break;
            case double d: a.Type = AttributeProto.Types.AttributeType.Float; a.F = (float)d; break;
            case string s: a.Type = AttributeProto.Types.AttributeType.String; a.S = ByteString.CopyFromUtf8(s); break;
            case long[] ls: a.Type = AttributeProto.Types.AttributeType.Ints; a.Ints.AddRange(ls); break;
            case int[] ints: a.Type = AttributeProto.Types.AttributeType.Ints; a.Ints.AddRange(ints.Select(x => (long)x)); break;
            case float[] fs: a.Type = AttributeProto.Types.AttributeType.Floats; a.Floats.AddRange(fs); break;
            case TensorProto t: a.Type = AttributeProto.Types.AttributeType.Tensor; a.T = t; break;
            case GraphProto g: a.Type = AttributeProto.Types.AttributeType.Graph; a.G = g; break;
            default: throw new ArgumentException($"Attribute '{name}': unsupported value type {value.GetType().Name}.");
        }
        return a;
    }

    /// <summary>The model: IR version and default-domain opset as given (IR 10 / opset 21 by default).</summary>
    public ModelProto Build(long opset = 21, long irVersion = 10, string producer = "sadg")
    {
        var model = new ModelProto { IrVersion = irVersion, ProducerName = producer, Graph = graph };
        model.OpsetImport.Add(new OperatorSetIdProto { Domain = "", Version = opset });
        return model;
    }

    public static ValueInfoProto ValueInfo(string name, DataType type, long[] dims)
    {
        var shape = new TensorShapeProto();
        for (int i = 0; i < dims.Length; i++)
            shape.Dim.Add(dims[i] > 0
                ? new TensorShapeProto.Types.Dimension { DimValue = dims[i] }
                : new TensorShapeProto.Types.Dimension { DimParam = i == 0 ? "N" : $"d{i}" });
        return new ValueInfoProto
        {
            Name = name,
            Type = new TypeProto { TensorType = new TypeProto.Types.Tensor { ElemType = (int)type, Shape = shape } },
        };
    }
}
