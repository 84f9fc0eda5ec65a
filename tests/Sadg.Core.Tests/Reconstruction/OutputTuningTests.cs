using Sadg.Graph;
using Sadg.Onnx;
using Sadg.Options;
using Sadg.Pipeline;
using Sadg.Quantization;
using Sadg.Reconstruction;
using Sadg.Tests.Support;
using TorchSharp;
using static TorchSharp.torch;

namespace Sadg.Tests.Reconstruction;

/// <summary>The output-level tuning of the activation scales: what it changes, what it leaves, and its loss.</summary>
[Collection(nameof(Sadg.Tests.Quantization.QuantizerMemoryTests))]
public class OutputTuningTests
{
    static double OutputLoss(QuantizedGraph q, GraphModule fp, Tensor images)
    {
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        return OutputTuning.Loss(q.Graph.forward(images), fp.forward(images)).item<float>();
    }

    [Fact]
    public void Tuning_lowers_the_output_loss_and_moves_the_scales_but_not_the_rounding()
    {
        var model = OnnxModel.FromProto(TestModels.ResNet());
        using var images = TestModels.Input(32, seed: 9);
        var options = new QuantizationOptions { WeightBits = 3, ActivationBits = 3, Iterations = 20, BatchSize = 8, Seed = 1 };
        using var calibrated = ModelCalibration.Calibrate(model, images, options);
        var q = calibrated.Quantized;
        using var fp = new GraphModule(calibrated.Fold.Model);
        using var scope = NewDisposeScope();
        var roundingBefore = q.WeightQuantizers.ToDictionary(p => p.Key, p => p.Value.RoundingVariable.detach().clone());
        var weightScalesBefore = q.WeightQuantizers.ToDictionary(p => p.Key, p => p.Value.Scale.detach().clone());
        var scalesBefore = q.ActivationQuantizers.ToDictionary(p => p.Key, p => p.Value.Scale.item<float>());
        double before = OutputLoss(q, fp, images);

        OutputTuning.Run(q, fp, images, steps: 60);

        double after = OutputLoss(q, fp, images);
        Assert.True(after < before, $"The output loss went from {before} to {after}.");
        Assert.Contains(q.ActivationQuantizers, p => p.Value.Scale.item<float>() != scalesBefore[p.Key]);
        Assert.Contains(q.WeightQuantizers, p => !p.Value.Scale.detach().eq(weightScalesBefore[p.Key]).all().item<bool>());
        foreach (var (name, w) in q.WeightQuantizers)
            Assert.True(w.RoundingVariable.detach().eq(roundingBefore[name]).all().item<bool>(), $"The rounding of '{name}' changed.");
        Assert.All(q.WeightQuantizers.Values, w => Assert.True(w.Scale.requires_grad && w.RoundingVariable.requires_grad));
    }

    [Fact]
    public void Tuning_steps_leave_no_live_tensors()
    {
        var model = OnnxModel.FromProto(TestModels.ResNet());
        using var images = TestModels.Input(16, seed: 9);
        using var calibrated = ModelCalibration.Calibrate(model, images, new QuantizationOptions { Iterations = 2, BatchSize = 8 });
        using var fp = new GraphModule(calibrated.Fold.Model);
        OutputTuning.Run(calibrated.Quantized, fp, images, steps: 3);
        long before = DisposeScopeManager.Statistics.TensorStatistics.ThreadTotalLiveCount;
        OutputTuning.Run(calibrated.Quantized, fp, images, steps: 30);
        Assert.Equal(before, DisposeScopeManager.Statistics.TensorStatistics.ThreadTotalLiveCount);
    }

    [Fact]
    public void Real_images_on_the_default_profile_are_tuned_for_two_fifths_of_its_reconstruction_steps_and_nothing_else_is()
    {
        var real = new PipelineOptions { Profile = StepProfile.Default, Method = CalibrationMethod.Real };
        Assert.Equal(200, real.ResolvedOutputTuningSteps);
        Assert.Equal(200, real.Quantization().OutputTuningSteps);
        Assert.Equal(40, (real with { ReconstructionSteps = 100 }).ResolvedOutputTuningSteps);
        Assert.Equal(0, (real with { ReconstructionSteps = 0 }).ResolvedOutputTuningSteps);
        Assert.Equal(0, (real with { Profile = StepProfile.Quick }).ResolvedOutputTuningSteps);
        Assert.Equal(0, (real with { Profile = StepProfile.Paper }).ResolvedOutputTuningSteps);
        foreach (var method in new[] { CalibrationMethod.Sadag, CalibrationMethod.Genie, CalibrationMethod.Gaussian })
        {
            Assert.Equal(0, (real with { Method = method }).ResolvedOutputTuningSteps);
            Assert.Equal(200, (real with { Method = method, OutputTuningSteps = 200 }).Quantization().OutputTuningSteps);
        }
        Assert.Equal(7, new PipelineOptions { Profile = StepProfile.Quick, OutputTuningSteps = 7 }.Quantization().OutputTuningSteps);
    }

    [Fact]
    public void Real_images_on_the_default_profile_report_the_tuning_and_generated_ones_only_when_asked()
    {
        var model = OnnxModel.FromProto(TestModels.ResNet(seed: 3, width: 4, channels: 1, size: 8));
        using var images = TestModels.Input(16, 5, 1, 8, 8);
        var options = new PipelineOptions
        {
            Method = CalibrationMethod.Real, CalibrationImages = images, Profile = StepProfile.Default, Seed = 7, ReconstructionSteps = 10,
        };
        using (var real = QuantizationPipeline.Quantize(model, options))
        {
            var tuning = Assert.Single(real.Report.Losses, l => l.Stage == "output tuning");
            Assert.True(double.IsFinite(tuning.First["output"]) && double.IsFinite(tuning.Last["output"]));
        }
        var generated = options with { Method = CalibrationMethod.Sadag, CalibrationImages = null, Samples = 8, GenerationSteps = 2 };
        using (var sadag = QuantizationPipeline.Quantize(model, generated))
            Assert.DoesNotContain(sadag.Report.Losses, l => l.Stage.StartsWith("output tuning", StringComparison.Ordinal));
        using (var asked = QuantizationPipeline.Quantize(model, generated with { OutputTuningSteps = 4 }))
        {
            Assert.Single(asked.Report.Losses, l => l.Stage == "output tuning");
            Assert.Single(asked.Report.Losses, l => l.Stage == "output tuning (Q0)");
        }
        using var quick = QuantizationPipeline.Quantize(model, options with { Profile = StepProfile.Quick });
        Assert.DoesNotContain(quick.Report.Losses, l => l.Stage.StartsWith("output tuning", StringComparison.Ordinal));
    }

    [Fact]
    public void Class_scores_are_compared_by_their_softmax_and_maps_by_the_channel_sum_of_squares()
    {
        using var scope = NewDisposeScope();
        var logits = tensor(new float[] { 1, 2, 0.5f, -1, 0, 3 }, [2, 3]);
        var target = tensor(new float[] { 0, 2, 1, 1, 1, 1 }, [2, 3]);
        double expected = 0;
        for (int i = 0; i < 2; i++)
        {
            var p = target[i].softmax(0).data<float>().ToArray();
            var qq = logits[i].softmax(0).data<float>().ToArray();
            for (int k = 0; k < 3; k++) expected += p[k] * Math.Log(p[k] / qq[k]);
        }
        Assert.Equal(expected / 2, OutputTuning.Loss(logits, target).item<float>(), 5);

        var map = randn(2, 3, 4, 4, generator: new Generator(1));
        var reference = randn(2, 3, 4, 4, generator: new Generator(2));
        Assert.Equal((map - reference).square().sum().item<float>() / 32, OutputTuning.Loss(map, reference).item<float>(), 4);
    }
}
