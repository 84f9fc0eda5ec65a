using Sadg.Graph;
using Sadg.Quantization;
using TorchSharp;
using static TorchSharp.torch;

namespace Sadg.Reconstruction;

/// <summary>Where the output tuning is: step s of S and that step's loss.</summary>
public sealed record TuningProgress(int Step, int Steps, double Loss);

/// <summary>
/// After the block reconstruction: every quantization scale of the model (each activation's, each weight channel's)
/// learned together against the full-precision model's output on the calibration images, with the weights' rounding
/// final. Block reconstruction fits each block's output on its own; this stage lets the scales trade their errors off
/// through the whole network, as PD-Quant's prediction-difference loss does for activation scales (here applied to
/// the scales alone: a few hundred to a few thousand values per model). Generated images can mislead it (they can be
/// fitted by paths real images do not take), so profiles run it on real calibration images only
/// (<see cref="Sadg.Pipeline.PipelineOptions.ProfileOutputTuningSteps"/>).
/// Rank-2 outputs (class scores) use KL(softmax(y) ‖ softmax(y_q)), others <see cref="BlockReconstruction.ReconstructionLoss"/>.
/// Adam at <see cref="LearningRate"/>, relative to each scale's initial value, with a cosine decay; every activation
/// quantizes every element (no QDrop).
/// </summary>
public static class OutputTuning
{
    /// <summary>
    /// Adam's rate, relative to each scale's initial value: a step moves a scale by at most about 0.3 %. The same for
    /// any step count: a larger rate for a shorter tuning (40 steps at 5e-3 on the quick profile) lost accuracy.
    /// </summary>
    public const double LearningRate = 1e-3;

    /// <summary>Tunes <paramref name="q"/>'s scales in place for <paramref name="steps"/> steps; returns the last step's loss.</summary>
    public static double Run(QuantizedGraph q, GraphModule fp, Tensor images, int steps, IProgress<TuningProgress>? progress = null,
        CancellationToken cancellationToken = default)
    {
        if (steps <= 0) return 0;
        var options = q.Options;
        var scales = q.ActivationQuantizers.Values.Select(a => a.Scale).Concat(q.WeightQuantizers.Values.Select(w => w.Scale)).ToList();
        // The rounding is final: its variables take no gradient while the scales learn.
        var rounding = q.WeightQuantizers.Values.Select(w => w.RoundingVariable).ToList();
        var held = rounding.Select(p => p.requires_grad).ToList();
        foreach (var p in rounding) p.requires_grad = false;
        // Its own stream of mini-batch draws, apart from the reconstruction's (same seed, same draws every run).
        var generator = new Generator((ulong)options.Seed + 7919, images.device);
        using var outer = NewDisposeScope();
        var target = BlockReconstruction.Forward(fp, fp.InputNames[0], fp.OutputNames[0], images);
        var relative = new RelativeScaleSteps(scales);
        using var optimizer = new HeldScalarAdam(scales, LearningRate);
        var schedule = optim.lr_scheduler.CosineAnnealingLR(optimizer, steps, 0);
        double last = 0;
        q.SetTraining(false);
        try
        {
            long n = images.shape[0];
            int reportEvery = Math.Max(1, steps / 20);
            for (int step = 0; step < steps; step++)
            {
                cancellationToken.ThrowIfCancellationRequested();
                using var scope = NewDisposeScope();
                var index = randint(0, n, [Math.Min(options.BatchSize, n)], generator: generator, device: images.device);
                var output = q.Graph.forward(images.index_select(0, index));
                var loss = Loss(output, target.index_select(0, index));
                optimizer.zero_grad();
                loss.backward();
                relative.Step(() =>
                {
                    optimizer.step();
                    schedule.step();
                });
                using (no_grad())
                    foreach (var scale in scales) scale.ClampMin_(BlockReconstruction.MinScale);
                if (step == steps - 1 || (progress is not null && step % reportEvery == 0))
                {
                    last = loss.item<float>();
                    progress?.Report(new TuningProgress(step + 1, steps, last));
                }
            }
            return last;
        }
        finally
        {
            for (int i = 0; i < rounding.Count; i++) rounding[i].requires_grad = held[i];
        }
    }

    /// <summary>KL(softmax(target) ‖ softmax(output)) averaged over the batch for [N, K] outputs; the channel-sum squared error otherwise.</summary>
    public static Tensor Loss(Tensor output, Tensor target) => output.dim() == 2
        ? nn.functional.kl_div(output.log_softmax(1), target.log_softmax(1), reduction: nn.Reduction.Sum, log_target: true).Div(output.shape[0])
        : BlockReconstruction.ReconstructionLoss(output, target);
}
