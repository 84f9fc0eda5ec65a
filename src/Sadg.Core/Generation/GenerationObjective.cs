using Sadg.Graph;
using static TorchSharp.torch;

namespace Sadg.Generation;

/// <summary>
/// The data term both stages minimize: L_BN (BN statistics + input prior) on a model with BatchNormalization, the
/// statistics-free objective (cross-entropy to random targets + TV + L2, + input prior) on one without.
/// Runs the FP model once and returns its logits with the loss.
/// </summary>
sealed class GenerationObjective : IDisposable
{
    readonly GraphModule model;
    readonly GenerationOptions options;
    readonly BnStatisticsLoss bn;

    public GenerationObjective(GraphModule model, GenerationOptions options)
    {
        this.model = model;
        this.options = options;
        bn = new BnStatisticsLoss(model, options.InputPrior);
    }

    /// <summary>False for a model without BatchNormalization layers (the fallback objective is used).</summary>
    public bool HasStatistics => bn.Layers > 0;

    /// <summary>
    /// Runs the model on <paramref name="images"/>; returns its logits and the objective. <paramref name="targets"/>
    /// (class indices) are needed only without statistics. Adds each term to <paramref name="terms"/> when given.
    /// </summary>
    public (Tensor Logits, Tensor Loss) Evaluate(Tensor images, Tensor? targets, Dictionary<string, Tensor>? terms)
    {
        var logits = model.forward(images);
        var prior = bn.InputPrior(images, options.Ablation.HasFlag(MethodAblation.PriorInInputUnits));
        Tensor loss;
        if (HasStatistics)
        {
            var statistics = bn.Statistics();
            loss = statistics.Add(prior.Mul(options.InputPriorWeight));
            if (terms is not null) terms["bn"] = statistics;
        }
        else
        {
            if (targets is null) throw new ArgumentNullException(nameof(targets), "The statistics-free objective needs target classes.");
            var ce = StatisticsFreeLoss.CrossEntropy(logits.flatten(1), targets);
            var tv = StatisticsFreeLoss.TotalVariation(images);
            var l2 = StatisticsFreeLoss.L2(images);
            loss = ce.Mul(options.FallbackCrossEntropyWeight).Add(tv.Mul(options.FallbackTotalVariationWeight))
                .Add(l2.Mul(options.FallbackL2Weight)).Add(prior.Mul(options.InputPriorWeight));
            if (terms is not null)
            {
                terms["ce"] = ce;
                terms["tv"] = tv;
                terms["l2"] = l2;
            }
        }
        bn.Clear();
        if (terms is not null) terms["prior"] = prior;
        return (logits.flatten(1), loss);
    }

    /// <summary>The model's logits [B, classes] for <paramref name="images"/>, without the objective.</summary>
    public Tensor Logits(Tensor images)
    {
        using var paused = bn.Pause();
        return model.forward(images).flatten(1);
    }

    public void Dispose() => bn.Dispose();
}
