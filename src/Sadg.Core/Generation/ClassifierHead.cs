using Sadg.Onnx;
using Sadg.Graph;

namespace Sadg.Generation;

/// <summary>
/// The layer SADAG reads its features a from: the last quantized layer (<see cref="QuantizableOps.OpTypes"/>, with a constant
/// weight) that the model's first output depends on, whatever its op, and the value it reads (flattened per sample).
/// For a classifier this is the head (a Gemm/MatMul, or a 1×1 Conv over a 1×1 map as Keras writes it); for a
/// feature extractor, detector or segmenter it is the last layer before the output.
/// </summary>
public sealed record ClassifierHead(GraphNode Node, int FeatureInput)
{
    /// <summary>Ops that pass class scores on unchanged in meaning (shape changes, normalization, a constant bias).</summary>
    static readonly HashSet<string> PassThrough = new(StringComparer.Ordinal)
    {
        "Flatten", "Reshape", "Squeeze", "Unsqueeze", "Softmax", "LogSoftmax", "Identity", "Dropout", "Cast",
    };

    static readonly HashSet<string> ConstantOperand = new(StringComparer.Ordinal) { "Add", "Sub", "Mul", "Div" };

    /// <summary>The name of the feature value the layer reads.</summary>
    public string Features => Node.Inputs[FeatureInput];

    /// <summary>Finds the layer; SADG1404 (naming the model and the fix) when the first output depends on no quantized layer.</summary>
    public static ClassifierHead Find(GraphModule graph) => TryFind(graph)
        ?? throw new SadgException(SadgErrorCode.MethodNotApplicable,
            $"The output '{graph.OutputNames[0]}' of {ModelName(graph)} depends on no {QuantizableOps.Names} with a constant weight, " +
            "so SADAG has no last layer to take its gradient-matching and diversity terms from. Set " +
            $"{QuantizeSchema.Method.Label} to genie (Genie-D generation only) for this model.", graph.Model.Path);

    /// <summary>The last quantizable node, in execution order, among those the first output depends on; null if none.</summary>
    public static ClassifierHead? TryFind(GraphModule graph)
    {
        var needed = new HashSet<string>(StringComparer.Ordinal);
        var pending = new Stack<string>([graph.OutputNames[0]]);
        GraphNode? last = null;
        while (pending.Count > 0)
        {
            string value = pending.Pop();
            if (!needed.Add(value) || graph.Producer(value) is not { } node) continue;
            if (graph.IsQuantizable(node) && (last is null || node.Index > last.Index)) last = node;
            foreach (var input in node.Inputs.Where(i => i.Length > 0)) pending.Push(input);
        }
        return last is null ? null : new ClassifierHead(last, 0);
    }

    /// <summary>Ops through which a 1×1 Conv head's per-position class scores may also reach the output: a ReLU and pooling.</summary>
    static readonly HashSet<string> PooledScores = new(StringComparer.Ordinal)
    {
        "Relu", "GlobalAveragePool", "GlobalMaxPool", "AveragePool", "MaxPool", "ReduceMean", "ReduceMax",
    };

    /// <summary>
    /// True when this layer is a classifier head: a Gemm or MatMul, or a Conv with a 1×1 kernel over a 1×1 map
    /// (<paramref name="featureShape"/>: the shape of what it reads), whose output reaches the model's first output
    /// only through shape changes, (log-)softmax or a constant bias/scale; or a Conv with a 1×1 kernel over a larger map
    /// whose per-position scores are pooled over the positions into the output, through a ReLU or not (SqueezeNet,
    /// Network-in-Network and all-convolutional classifiers): then the output holds one value per output channel of
    /// the Conv (<paramref name="outputsPerSample"/>).
    /// </summary>
    public bool IsClassifierHead(GraphModule graph, IReadOnlyList<long> featureShape, long outputsPerSample)
    {
        bool pointwise = Node.OpType == "Conv" && graph.GetConstant(Node.Inputs[1]) is { } w && w.dim() == 4 && w.shape[2] == 1 && w.shape[3] == 1;
        bool overOnePosition = featureShape.Count == 4 && featureShape[2] == 1 && featureShape[3] == 1;
        if (!(Node.OpType is "Gemm" or "MatMul" || pointwise)) return false;
        string value = graph.OutputNames[0];
        while (graph.Producer(value) is { } node && node.Index != Node.Index)
        {
            bool passes = PassThrough.Contains(node.OpType)
                || (ConstantOperand.Contains(node.OpType) && node.Inputs.Count == 2 && graph.IsConstant(node.Inputs[1]));
            passes |= pointwise && PooledScores.Contains(node.OpType);
            if (!passes) return false;
            value = node.Inputs[0];
        }
        if (graph.Producer(value)?.Index != Node.Index) return false;
        if (!pointwise || overOnePosition) return true;
        // Pooled over every position: one score per class left.
        return graph.GetConstant(Node.Inputs[1])!.shape[0] == outputsPerSample;
    }

    static string ModelName(GraphModule graph) => graph.Model.Path is { } path ? $"'{Path.GetFileName(path)}'" : "the model";

    /// <summary>
    /// Records what the layer reads on every run, before any quantizer hook on that value changes it, flattened to
    /// [N, features]. Dispose the result to stop recording.
    /// </summary>
    public FeatureRecorder Record(GraphModule graph) => new(graph, this);
}

/// <summary>The features the last layer saw on the latest run; see <see cref="ClassifierHead.Record"/>.</summary>
public sealed class FeatureRecorder : IDisposable
{
    readonly IDisposable hook;
    TorchSharp.torch.Tensor? latest;

    internal FeatureRecorder(GraphModule graph, ClassifierHead head)
    {
        hook = graph.AddHook(head.Features, t =>
        {
            latest = t;
            return t;
        }, first: true);
    }

    /// <summary>The latest run's features as [N, features] (belongs to that run's dispose scope).</summary>
    public TorchSharp.torch.Tensor Features => (latest ?? throw new InvalidOperationException("Nothing was recorded yet; run the graph first."))
        .flatten(1);

    /// <summary>Forgets the recorded tensor.</summary>
    public void Clear() => latest = null;

    public void Dispose()
    {
        hook.Dispose();
        latest = null;
    }
}
