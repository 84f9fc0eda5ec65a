using Onnx;
using static TorchSharp.torch;

namespace Sadg.Graph.Ops;

/// <summary>
/// One ONNX operator, built once per node and run on every forward pass. Implementations read attributes in
/// their constructor (throwing <see cref="SadgException"/> for forms they do not support) and do only tensor
/// work in <see cref="Run"/>, with TorchSharp operations that autograd can differentiate.
/// Integer tensors that describe shapes, axes or indices live on the CPU; an op moves them to the data's
/// device when it uses them as data.
/// </summary>
public abstract class OnnxOp
{
    protected OnnxOp(OpContext context) => Context = context;

    public OpContext Context { get; }

    /// <summary>
    /// Runs the operator. Absent optional inputs are null; the result has one entry per declared node output
    /// (null where an optional output is not produced).
    /// </summary>
    public abstract Tensor?[] Run(IReadOnlyList<Tensor?> inputs);

    /// <summary>An input that must be present.</summary>
    protected Tensor Required(IReadOnlyList<Tensor?> inputs, int index) =>
        index < inputs.Count && inputs[index] is { } t ? t
            : throw Context.Error(SadgErrorCode.InvalidNode, $"input {index} is required but missing");

    protected static Tensor? Optional(IReadOnlyList<Tensor?> inputs, int index) => index < inputs.Count ? inputs[index] : null;
}

/// <summary>Marks an <see cref="OnnxOp"/> as the implementation of an ONNX op type in the default domain.</summary>
[AttributeUsage(AttributeTargets.Class, AllowMultiple = true)]
public sealed class OnnxOperatorAttribute(string opType) : Attribute
{
    public string OpType { get; } = opType;
}

/// <summary>What an op needs to know about its node: attributes, opset, and graph-wide facts.</summary>
public sealed class OpContext
{
    public OpContext(NodeProto node, long opset, int index, string? file = null, bool declaredBatchIsOne = false)
    {
        Node = node;
        Opset = opset;
        Index = index;
        File = file;
        DeclaredBatchIsOne = declaredBatchIsOne;
        Attributes = node.Attribute.ToDictionary(a => a.Name);
    }

    public NodeProto Node { get; }

    /// <summary>Opset version of the default domain the model imports.</summary>
    public long Opset { get; }

    /// <summary>The node's position in the original graph.</summary>
    public int Index { get; }

    public string? File { get; }

    /// <summary>
    /// True when the model declares its image input with a fixed batch of 1 (older converters): a Reshape whose
    /// constant target starts with 1 then reads that 1 as the batch.
    /// </summary>
    public bool DeclaredBatchIsOne { get; }

    public IReadOnlyDictionary<string, AttributeProto> Attributes { get; }

    /// <summary>"Conv 'conv1' (node 3)" — how errors name the node.</summary>
    public string Describe() => string.IsNullOrEmpty(Node.Name)
        ? $"{Node.OpType} node {Index} (output '{Node.Output.FirstOrDefault()}')"
        : $"{Node.OpType} '{Node.Name}' (node {Index})";

    public SadgException Error(SadgErrorCode code, string message) =>
        new(code, $"{Describe()}: {message}.", File, string.IsNullOrEmpty(Node.Name) ? $"{Node.OpType}#{Index}" : Node.Name);

    public SadgException Unsupported(string what) =>
        Error(SadgErrorCode.UnsupportedAttribute, $"{what} is not supported by Sadg's executor");

    public bool Has(string name) => Attributes.ContainsKey(name);

    public long Int(string name, long fallback) => Attributes.TryGetValue(name, out var a) ? a.I : fallback;

    public float Float(string name, float fallback) => Attributes.TryGetValue(name, out var a) ? a.F : fallback;

    public string String(string name, string fallback) =>
        Attributes.TryGetValue(name, out var a) ? a.S.ToStringUtf8() : fallback;

    public long[]? Ints(string name) => Attributes.TryGetValue(name, out var a) ? a.Ints.ToArray() : null;

    public float[]? Floats(string name) => Attributes.TryGetValue(name, out var a) ? a.Floats.ToArray() : null;

    public TensorProto? TensorAttribute(string name) => Attributes.TryGetValue(name, out var a) ? a.T : null;
}
