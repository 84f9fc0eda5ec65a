using Sadg.Export;
using Sadg.Generation;
using Sadg.Onnx;
using Sadg.Quantization;
using Sadg.Reconstruction;
using Sadg.Tests.Support;
using TorchSharp;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace Sadg.Tests.Quantization;

/// <summary>
/// The reconstruction as Genie, BRECQ and QDrop define it: the AdaRound floor fixed at the initial scale, the loss
/// summed over channels and averaged over batch and positions, rounding variables that end binarized within the CPU
/// budgets, and SADAG's diversity term with its partner side detached.
/// </summary>
[Collection(nameof(QuantizerMemoryTests))]
public class AdaRoundFixesTests(ITestOutputHelper output)
{
    [Fact]
    public void A_learned_scale_that_drifts_across_a_rounding_boundary_keeps_the_integers()
    {
        using var scope = NewDisposeScope();
        var weight = randn([4, 3, 3, 3], generator: new torch.Generator(5));
        using var quantizer = new WeightQuantizer(weight, 4) { Mode = WeightRoundingMode.Hard };
        var before = quantizer.Export("conv", "w");
        var expected = before.Integers.clone();
        // Scale every channel by 1.37: floor(w / s) would now land on other integers for most weights.
        using (no_grad()) quantizer.Scale.mul_(1.37);
        var after = quantizer.Export("conv", "w");
        Assert.True(after.Integers.eq(expected).all().item<bool>(), "The integers moved with the learned scale.");
        var floorWithDrift = (quantizer.Weight / quantizer.Scale.reshape(-1, 1, 1, 1)).floor();
        Assert.False(floorWithDrift.eq(quantizer.Floor).all().item<bool>(), "The test's drift did not cross any boundary.");
        // The hard forward is the learned scale times the fixed integers.
        var z = quantizer.ZeroPoint.reshape(-1, 1, 1, 1);
        var reference = quantizer.Scale.reshape(-1, 1, 1, 1) * (expected.to_type(ScalarType.Float32) - z);
        Assert.True(quantizer.forward().detach().allclose(reference, rtol: 1e-5, atol: 1e-6));
    }

    [Fact]
    public void The_reconstruction_loss_sums_over_channels_and_averages_over_batch_and_positions()
    {
        using var scope = NewDisposeScope();
        var output = randn([2, 3, 4, 5], generator: new torch.Generator(1));
        var target = randn([2, 3, 4, 5], generator: new torch.Generator(2));
        float[] o = output.data<float>().ToArray(), t = target.data<float>().ToArray();
        double sum = 0;
        for (int n = 0; n < 2; n++)
            for (int y = 0; y < 4; y++)
                for (int x = 0; x < 5; x++)
                    for (int c = 0; c < 3; c++)
                    {
                        int i = ((n * 3 + c) * 4 + y) * 5 + x;
                        sum += (o[i] - t[i]) * (o[i] - t[i]);
                    }
        double expected = sum / (2 * 4 * 5);
        Assert.Equal(expected, BlockReconstruction.ReconstructionLoss(output, target).item<float>(), expected * 1e-5);
        // Logits [N, classes]: summed over classes, averaged over the batch.
        var logits = output.flatten(1);
        Assert.Equal(sum / 2, BlockReconstruction.ReconstructionLoss(logits, target.flatten(1)).item<float>(), sum * 1e-5);
    }

    /// <summary>The share of binarized rounding offsets over the blocks, weighted alike.</summary>
    static double Binarized(RoundingRate rate, int steps)
    {
        var model = OnnxModel.FromProto(TestModels.ResNet(width: 8));
        using var images = TestModels.Input(16, seed: 3);
        var options = new QuantizationOptions { WeightBits = 4, ActivationBits = 4, Iterations = steps, BatchSize = 8, RoundingRate = rate };
        using var calibrated = ModelCalibration.Calibrate(model, images, options);
        Assert.NotEmpty(calibrated.Blocks);
        Assert.All(calibrated.Blocks, b => Assert.Equal(steps, b.Steps));
        return calibrated.Blocks.Average(b => b.BinarizedShare);
    }

    [Fact]
    public void Rounding_variables_end_binarized_within_a_short_budget()
    {
        const int steps = 60;
        double relative = Binarized(RoundingRate.StepRelative, steps);
        double fixedRate = Binarized(RoundingRate.Fixed, steps);
        output.WriteLine($"binarized after {steps} steps: step-relative {relative:P1}, fixed {fixedRate:P1}");
        Assert.True(relative >= 0.95, $"Only {relative:P1} of h(V) ended within 0.01 of 0 or 1.");
        Assert.True(fixedRate < 0.5, $"The paper's fixed rate binarized {fixedRate:P1} in {steps} steps; the test no longer shows the difference.");
    }

    [Fact]
    public void The_step_relative_rounding_rate_is_the_papers_at_the_papers_budget()
    {
        Assert.Equal(1e-3, new QuantizationOptions { Iterations = 20000 }.EffectiveRoundingLearningRate, 12);
        Assert.Equal(1e-3 * 40, new QuantizationOptions { Iterations = 500 }.EffectiveRoundingLearningRate, 12);
        Assert.Equal(1e-3, new QuantizationOptions { Iterations = 500, RoundingRate = RoundingRate.Fixed }.EffectiveRoundingLearningRate, 12);
    }

    [Fact]
    public void A_stated_rounding_weight_reaches_the_reconstruction_and_the_canonical_options()
    {
        var plain = new Sadg.Pipeline.PipelineOptions();
        Assert.Equal(QuantizationOptions.DefaultRoundingLossWeight, plain.Quantization().RoundingLossWeight);
        Assert.DoesNotContain("rounding_weight", plain.Canonical());
        var brecq = plain with { RoundingLossWeight = 0.01 };
        Assert.Equal(0.01, brecq.Quantization().RoundingLossWeight);
        Assert.Contains("rounding_weight=0.01", brecq.Canonical());
        Assert.NotEqual(plain.OptionsHash(), brecq.OptionsHash());
        Assert.Throws<ArgumentOutOfRangeException>(() => new QuantizationOptions { RoundingLossWeight = -1 }.Validate());
        Assert.Throws<ArgumentOutOfRangeException>(() => new QuantizationOptions { RoundingLossWeight = double.NaN }.Validate());
    }

    [Fact]
    public void The_block_input_only_ablation_quantizes_every_element_inside_the_block()
    {
        using var scope = NewDisposeScope();
        var model = BatchNormFolding.FoldWithReport(OnnxModel.FromProto(TestModels.ResNet(width: 8))).Model;
        var options = new QuantizationOptions { WeightBits = 4, ActivationBits = 4 };
        using var qdrop = new QuantizedGraph(model, options);
        using var inputOnly = new QuantizedGraph(model, options with { Ablation = MethodAblation.BlockInputDropOnly });
        Assert.NotEmpty(qdrop.ActivationQuantizers);
        Assert.All(qdrop.ActivationQuantizers.Values, a => Assert.Equal(0.5, a.DropProbability));
        Assert.All(inputOnly.ActivationQuantizers.Values, a => Assert.Equal(0, a.DropProbability));
        // In training mode the ablated quantizer gives its evaluation output; QDrop's keeps about half the floats.
        var x = randn([2, 8, 6, 6], generator: new torch.Generator(7)).abs();
        foreach (var quantizer in new[] { inputOnly.ActivationQuantizers.Values.First(), qdrop.ActivationQuantizers.Values.First() })
        {
            quantizer.Calibrate(x);
            quantizer.Training = false;
            var evaluated = quantizer.forward(x);
            quantizer.Training = true;
            var trained = quantizer.forward(x);
            double unchanged = trained.eq(x).to_type(ScalarType.Float32).mean().item<float>();
            if (quantizer.DropProbability == 0) Assert.True(trained.eq(evaluated).all().item<bool>(), "The ablated quantizer kept float values.");
            else Assert.InRange(unchanged, 0.4, 0.6);
        }
    }

    [Fact]
    public void The_diversity_gradient_reaches_each_sample_through_its_own_row_only()
    {
        using var scope = NewDisposeScope();
        using var random = new torch.Generator(4);
        var a = GradientSimilarity.NormalizeRows(randn([5, 6], generator: random)).detach().requires_grad_(true);
        var e = GradientSimilarity.NormalizeRows(randn([5, 3], generator: random)).detach();
        SharpnessAwareRefinement.SelfSimilarity(a, e).sum().backward();
        // d/dâ_i Σ_j≠i (â_i·sg(â_j))(ê_i·ê_j) = Σ_j≠i â_j (ê_i·ê_j): one side only, not twice that.
        var ee = e.matmul(e.t()) * (1 - eye(5));
        var expected = ee.matmul(a.detach());
        Assert.True(a.grad!.allclose(expected, rtol: 1e-4, atol: 1e-5), $"max diff {(a.grad! - expected).abs().max().item<float>()}");
    }
}
