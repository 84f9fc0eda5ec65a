using Sadg.Graph;
using TorchSharp;
using static TorchSharp.torch;

namespace Sadg.Generation;

/// <summary>
/// L_BN of Genie/SADAG: the input of every BatchNormalization node of the FP model should have per-channel mean μ
/// and std σ = sqrt(running var + eps). After a run of the model, <see cref="Statistics"/> is
/// Σ_layers ‖mean − μ‖²/C + ‖std − σ‖²/C with mean and std over every axis but the channel axis (N, H, W);
/// <see cref="InputPrior"/> pulls the per-image, per-channel mean and std of the images towards the model's
/// expected input statistics (<see cref="Generation.InputPrior"/>), summed over channels and averaged over images.
/// </summary>
public sealed class BnStatisticsLoss : IDisposable
{
    readonly GraphModule model;
    // Each BN input's (variance, mean) over N, H, W, computed by a hook as the input is produced (see Reduce).
    readonly Dictionary<string, (Tensor Variance, Tensor Mean)> reduced = new(StringComparer.Ordinal);
    readonly List<IDisposable> hooks;
    // While paused (Pause) the hooks reduce nothing.
    bool paused;
    readonly List<Layer> layers = [];

    /// <param name="prior">The input prior's targets; null: no input prior term.</param>
    /// <param name="firstOnly">Match only the first BatchNormalization node in execution order.</param>
    public BnStatisticsLoss(GraphModule model, InputPrior? prior, bool firstOnly = false)
    {
        this.model = model;
        Prior = prior;
        foreach (var node in model.Nodes.Where(n => n.OpType == "BatchNormalization" && n.Kind == NodeKind.Dynamic))
        {
            if (firstOnly && layers.Count > 0) break;
            var mean = model.GetConstant(node.Inputs[3]);
            var variance = model.GetConstant(node.Inputs[4]);
            if (mean is null || variance is null) continue;
            float eps = node.Proto.Attribute.FirstOrDefault(a => a.Name == "epsilon")?.F ?? 1e-5f;
            using var scope = NewDisposeScope();
            var mu = mean.detach().to(ScalarType.Float32).flatten().clone().DetachFromDisposeScope();
            var sigma = variance.detach().to(ScalarType.Float32).flatten().Add(eps).sqrt().DetachFromDisposeScope();
            layers.Add(new Layer(node.Name, node.Inputs[0], mu, sigma));
            FirstNodeIndex = layers.Count == 1 ? node.Index : FirstNodeIndex;
        }
        hooks = Hook();
    }

    /// <summary>
    /// Hooks every matched BN input to reduce it as soon as it is produced. The reduction's backward then sits in the
    /// graph next to the layer it reads: the backward pass reaches it right before that layer, instead of running all of
    /// them first and holding an activation-sized gradient per layer until the pass gets there.
    /// </summary>
    List<IDisposable> Hook() => layers.Select(l => l.Input).Distinct()
        .Select(value => model.AddHook(value, x =>
        {
            if (!paused) reduced[value] = Reduce(x);
            return x;
        }, keepsValue: false)).ToList();

    /// <summary>Variance and mean over every axis but the channel axis (N, H, W).</summary>
    static (Tensor Variance, Tensor Mean) Reduce(Tensor x)
    {
        // Reduced in place over N, H, W: var's backward then saves the same tensor the BatchNormalization node
        // saves, where a transposed copy would be a second activation-sized tensor per layer kept for the backward.
        long[] axes = [0, .. Enumerable.Range(2, (int)x.dim() - 2).Select(d => (long)d)];
        return var_mean(x, axes, unbiased: false);
    }

    /// <summary>
    /// Whether <paramref name="model"/> has a BatchNormalization node with constant statistics to match (false: generation
    /// falls back to the statistics-free objective, warning SADG2001).
    /// </summary>
    public static bool HasStatistics(GraphModule model)
    {
        using var bn = new BnStatisticsLoss(model, prior: null, firstOnly: true);
        return bn.Layers > 0;
    }

    /// <summary>The number of BatchNormalization layers whose statistics are matched (0: a BN-free model).</summary>
    public int Layers => layers.Count;

    /// <summary>What the model expects of its input; null: no input prior term.</summary>
    public InputPrior? Prior { get; }

    /// <summary>The execution index of the first matched BatchNormalization node (−1 without one).</summary>
    public int FirstNodeIndex { get; private set; } = -1;

    /// <summary>The value the first matched BatchNormalization node reads (null without one).</summary>
    public string? FirstInput => layers.Count > 0 ? layers[0].Input : null;

    /// <summary>The name of the first matched BatchNormalization node (null without one).</summary>
    public string? FirstName => layers.Count > 0 ? layers[0].Name : null;

    /// <summary>The BN statistics term of the model's latest run (a scalar; 0 when there are no BN layers).</summary>
    public Tensor Statistics()
    {
        if (layers.Count == 0) return zeros([], device: model.Device);
        Tensor? total = null;
        foreach (var layer in layers)
        {
            var (variance, mean) = reduced.TryGetValue(layer.Input, out var r) ? r
                : throw new InvalidOperationException($"BN input '{layer.Input}' was not produced by the latest run of the model.");
            long c = mean.shape[0];
            var std = variance.Add(1e-8).sqrt();
            var term = (mean - layer.Mean).Square().sum().Div(c).Add((std - layer.Std).Square().sum().Div(c));
            total = total is null ? term : total.Add(term);
        }
        return total!;
    }

    /// <summary>
    /// The input prior: per image and channel, mean over pixels pulled to the prior's mean and std to its std, both
    /// differences measured in units of the prior's std (so the term weighs the same whether the model is fed
    /// standardized images, <c>x/255</c> or 0..255 pixels; for a standardized prior, std 1, the plain differences);
    /// summed over channels, averaged over the images (0 without a prior). <paramref name="inputUnits"/>: the plain
    /// differences whatever the std (the ablation <see cref="MethodAblation.PriorInInputUnits"/>).
    /// </summary>
    public Tensor InputPrior(Tensor images, bool inputUnits = false)
    {
        if (Prior is null) return zeros([], device: images.device);
        var flat = images.flatten(2);
        var mean = flat.mean([2]);
        var std = flat.var(2, unbiased: false).Add(1e-8).sqrt();
        var targetMean = tensor(Prior.Mean, device: images.device).unsqueeze(0);
        var targetStd = tensor(Prior.Std, device: images.device).unsqueeze(0);
        var (dMean, dStd) = (mean - targetMean, std - targetStd);
        if (!inputUnits) (dMean, dStd) = (dMean / targetStd, dStd / targetStd);
        return dMean.Square().Add(dStd.Square()).sum(1).mean();
    }

    /// <summary>
    /// Makes no statistics until the result is disposed: a run that needs none (logits alone) then does not reduce every
    /// BN input for nothing.
    /// </summary>
    public IDisposable Pause()
    {
        paused = true;
        return new OnDispose(() => paused = false);
    }

    /// <summary>Forgets the reductions of the latest run (they belong to its dispose scope).</summary>
    public void Clear() => reduced.Clear();

    public void Dispose()
    {
        foreach (var hook in hooks) hook.Dispose();
        hooks.Clear();
        reduced.Clear();
        foreach (var layer in layers)
        {
            layer.Mean.Dispose();
            layer.Std.Dispose();
        }
        layers.Clear();
    }

    sealed record Layer(string Name, string Input, Tensor Mean, Tensor Std);
}
