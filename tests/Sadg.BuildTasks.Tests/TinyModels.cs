using Google.Protobuf;
using Onnx;

namespace Sadg.BuildTasks.Tests;

/// <summary>Small valid ONNX models written directly as protobuf (no TorchSharp in this test project).</summary>
public static class TinyModels
{
    /// <summary>
    /// An image classifier: input [N, 3, 8, 8] → Conv (4 filters, 3×3, pad 1) → Relu → GlobalAveragePool → Flatten →
    /// Gemm (10 classes). Seeded weights.
    /// </summary>
    public static byte[] Classifier(int seed = 1)
    {
        var rng = new Random(seed);
        var g = new GraphProto { Name = "tiny" };
        g.Input.Add(Value("input", ["N", 3, 8, 8]));
        g.Output.Add(Value("logits", ["N", 10]));
        g.Initializer.Add(Tensor("w", [4, 3, 3, 3], rng));
        g.Initializer.Add(Tensor("b", [4], rng));
        g.Initializer.Add(Tensor("fc_w", [10, 4], rng));
        g.Initializer.Add(Tensor("fc_b", [10], rng));
        var conv = Node("Conv", ["input", "w", "b"], ["c"]);
        conv.Attribute.Add(new AttributeProto { Name = "pads", Type = AttributeProto.Types.AttributeType.Ints, Ints = { 1, 1, 1, 1 } });
        g.Node.Add(conv);
        g.Node.Add(Node("Relu", ["c"], ["r"]));
        g.Node.Add(Node("GlobalAveragePool", ["r"], ["p"]));
        g.Node.Add(Node("Flatten", ["p"], ["f"]));
        var gemm = Node("Gemm", ["f", "fc_w", "fc_b"], ["logits"]);
        gemm.Attribute.Add(new AttributeProto { Name = "transB", Type = AttributeProto.Types.AttributeType.Int, I = 1 });
        g.Node.Add(gemm);
        return Model(g);
    }

    /// <summary>No image input (input [N, 16] → Gemm): sadg refuses it with SADG1102 before any work.</summary>
    public static byte[] Flat()
    {
        var rng = new Random(3);
        var g = new GraphProto { Name = "flat" };
        g.Input.Add(Value("x", ["N", 16]));
        g.Output.Add(Value("y", ["N", 4]));
        g.Initializer.Add(Tensor("w", [4, 16], rng));
        var gemm = Node("Gemm", ["x", "w"], ["y"]);
        gemm.Attribute.Add(new AttributeProto { Name = "transB", Type = AttributeProto.Types.AttributeType.Int, I = 1 });
        g.Node.Add(gemm);
        return Model(g);
    }

    private static byte[] Model(GraphProto g)
    {
        var m = new ModelProto { IrVersion = 8, ProducerName = "sadg-tests", Graph = g };
        m.OpsetImport.Add(new OperatorSetIdProto { Domain = "", Version = 13 });
        return m.ToByteArray();
    }

    private static NodeProto Node(string op, string[] inputs, string[] outputs)
    {
        var n = new NodeProto { OpType = op, Name = op + "_" + outputs[0] };
        n.Input.AddRange(inputs);
        n.Output.AddRange(outputs);
        return n;
    }

    private static ValueInfoProto Value(string name, object[] dims)
    {
        var shape = new TensorShapeProto();
        foreach (var d in dims)
            shape.Dim.Add(d is string s ? new TensorShapeProto.Types.Dimension { DimParam = s }
                                        : new TensorShapeProto.Types.Dimension { DimValue = Convert.ToInt64(d) });
        return new ValueInfoProto
        {
            Name = name,
            Type = new TypeProto { TensorType = new TypeProto.Types.Tensor { ElemType = (int)TensorProto.Types.DataType.Float, Shape = shape } },
        };
    }

    private static TensorProto Tensor(string name, long[] dims, Random rng)
    {
        var t = new TensorProto { Name = name, DataType = (int)TensorProto.Types.DataType.Float };
        t.Dims.AddRange(dims);
        long n = dims.Aggregate(1L, (a, b) => a * b);
        for (long i = 0; i < n; i++) t.FloatData.Add((float)(rng.NextDouble() - 0.5));
        return t;
    }
}
