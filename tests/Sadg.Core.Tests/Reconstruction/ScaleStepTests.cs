using Sadg.Onnx;
using Sadg.Quantization;
using Sadg.Reconstruction;
using Sadg.Tests.Support;
using static TorchSharp.torch;

namespace Sadg.Tests.Reconstruction;

/// <summary>Relative scale steps move each learned weight scale by a bounded fraction of itself, whatever its size.</summary>
[Collection(nameof(Sadg.Tests.Quantization.QuantizerMemoryTests))]
public class ScaleStepTests
{
    /// <summary>The largest |s / s₀ − 1| over every channel of every weight quantizer after reconstruction.</summary>
    static double LargestRelativeChange(ScaleSteps mode, int steps)
    {
        var model = OnnxModel.FromProto(TestModels.ResNet());
        using var images = TestModels.Input(16, seed: 9);
        var options = new QuantizationOptions { WeightBits = 8, ActivationBits = 8, Iterations = steps, BatchSize = 8, ScaleSteps = mode };
        var quantized = ModelCalibration.Calibrate(model, images, options).Quantized;
        using (quantized)
        {
            double largest = 0;
            foreach (var w in quantized.WeightQuantizers.Values)
            {
                using var scope = NewDisposeScope();
                var (initial, _) = WeightQuantizer.SearchRange(w.Weight, w.Levels, w.Axis);
                largest = Math.Max(largest, (w.Scale.detach() / initial - 1).abs().max().item<float>());
            }
            return largest;
        }
    }

    [Fact]
    public void Relative_steps_keep_8_bit_weight_scales_within_the_Adam_bound_where_absolute_steps_do_not()
    {
        const int steps = 20;
        // Adam moves a parameter by at most about lr · (1 − β₁) / √(1 − β₂) ≈ 3.2 lr per step.
        double bound = 3.2 * new QuantizationOptions().WeightScaleLearningRate * steps;
        double relative = LargestRelativeChange(ScaleSteps.Relative, steps);
        double absolute = LargestRelativeChange(ScaleSteps.Absolute, steps);
        Assert.InRange(relative, 1e-7, bound);
        Assert.True(absolute > bound, $"Absolute steps changed an 8-bit weight scale by {absolute:P2} at most, within the bound {bound:P2}.");
    }

    [Fact]
    public void Budget_relative_steps_move_a_scale_as_far_in_a_short_budget_as_the_paper_budget_allows()
    {
        const int steps = 20;
        var options = new QuantizationOptions { Iterations = steps, ScaleSteps = ScaleSteps.BudgetRelative };
        Assert.Equal(options.WeightScaleLearningRate * 1000, options.EffectiveWeightScaleLearningRate, 12);
        Assert.Equal(options.ActivationScaleLearningRate * 1000, options.EffectiveActivationScaleLearningRate, 12);
        Assert.Equal(options.WeightScaleLearningRate, (options with { Iterations = 40000 }).EffectiveWeightScaleLearningRate, 12);
        Assert.Equal(options.WeightScaleLearningRate, (options with { ScaleSteps = ScaleSteps.Relative }).EffectiveWeightScaleLearningRate, 12);
        var weightsOnly = options with { ScaleSteps = ScaleSteps.BudgetRelativeWeights };
        Assert.Equal(options.WeightScaleLearningRate * 1000, weightsOnly.EffectiveWeightScaleLearningRate, 12);
        Assert.Equal(options.ActivationScaleLearningRate, weightsOnly.EffectiveActivationScaleLearningRate, 12);

        // Within a short budget, a relative step stays under the Adam bound of that budget; a budget-relative step goes
        // beyond it, and stays under the bound of the paper's 20,000 steps.
        double lr = options.WeightScaleLearningRate;
        double budget = LargestRelativeChange(ScaleSteps.BudgetRelative, steps);
        Assert.True(budget > 3.2 * lr * steps, $"Budget-relative steps changed an 8-bit weight scale by {budget:P3} at most, within the relative bound {3.2 * lr * steps:P3}.");
        Assert.InRange(budget, 0, 3.2 * lr * QuantizationOptions.PaperIterations);
    }
}
