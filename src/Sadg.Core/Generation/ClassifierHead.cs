using Sadg.Graph;

namespace Sadg.Generation;

/// <summary>
/// The classifier's last layer: the last Gemm or MatMul (with a constant weight) of the graph, and the value it
/// reads as features (the flattened penultimate activations a of SADAG).
/// </summary>
public sealed record ClassifierHead(GraphNode Node, int FeatureInput)
{
    /// <summary>The name of the feature value feeding the head.</summary>
    public string Features => Node.Inputs[FeatureInput];

    /// <summary>Finds the last Gemm/MatMul whose other operand is a constant weight.</summary>
    public static ClassifierHead Find(GraphModule graph)
    {
        for (int i = graph.Nodes.Count - 1; i >= 0; i--)
        {
            var node = graph.Nodes[i];
            if (node.OpType is not ("Gemm" or "MatMul") || node.Kind != NodeKind.Dynamic) continue;
            bool a = graph.IsConstant(node.Inputs[0]), b = graph.IsConstant(node.Inputs[1]);
            if (!a && b) return new ClassifierHead(node, 0);
            if (a && !b) return new ClassifierHead(node, 1);
        }
        throw new SadgException(SadgErrorCode.InvalidGraph,
            "The model has no final Gemm/MatMul with a constant weight (a classifier head), which SADAG needs for its " +
            "gradient-matching and diversity terms. Use Genie-D generation (warm-up only) for this model.", graph.Model.Path);
    }

    /// <summary>
    /// Records what the head reads on every run (after any quantizer hooks already on that input), flattened to
    /// [N, features]. Dispose the result to stop recording.
    /// </summary>
    public FeatureRecorder Record(GraphModule graph) => new(graph, this);
}

/// <summary>The features a classifier head saw on the latest run; see <see cref="ClassifierHead.Record"/>.</summary>
public sealed class FeatureRecorder : IDisposable
{
    readonly IDisposable hook;
    TorchSharp.torch.Tensor? latest;

    internal FeatureRecorder(GraphModule graph, ClassifierHead head)
    {
        hook = graph.AddInputHook(head.Node, head.FeatureInput, t =>
        {
            latest = t;
            return t;
        });
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
