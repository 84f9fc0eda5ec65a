using static TorchSharp.torch;

namespace Sadg.Reconstruction;

/// <summary>
/// <see cref="Sadg.Quantization.ScaleSteps.Relative"/> steps: each optimizer update of a scale multiplied by the scale's
/// value when this was made, so that a step moves every scale by the same fraction of itself whatever its size. Make
/// it inside the dispose scope that should own the initial values.
/// </summary>
internal sealed class RelativeScaleSteps(IReadOnlyList<Tensor> scales)
{
    readonly List<Tensor> initial = scales.Select(t => t.detach().clone()).ToList();

    /// <summary>Runs <paramref name="step"/> (the optimizers' steps), then rescales each scale's update.</summary>
    public void Step(Action step)
    {
        using var scope = NewDisposeScope();
        var before = scales.Select(t => t.detach().clone()).ToList();
        step();
        using var noGrad = no_grad();
        for (int i = 0; i < scales.Count; i++)
            scales[i].copy_(before[i].Add((scales[i] - before[i]) * initial[i]));
    }
}
