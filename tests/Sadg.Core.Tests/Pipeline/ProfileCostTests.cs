using Sadg.Generation;
using Sadg.Onnx;
using Sadg.Pipeline;
using Sadg.Quantization;
using Sadg.Reconstruction;
using Sadg.Tests.Support;

namespace Sadg.Tests.Pipeline;

/// <summary>The time estimate: measured step times × the steps each profile and method runs.</summary>
public class ProfileCostTests
{
    static readonly StepTimes Times = new()
    {
        GenerationBatch = 20,
        GenieStepSeconds = 0.5,
        RefinementStepSeconds = 2.0,
        BlockStepSeconds = [0.1, 0.2, 0.3],
        CalibrationSecondsPerImage = 0.01,
        RuntimeSecondsPerImage = 0.001,
        ForwardSecondsPerImage = 0.002,
        QuantizedLayers = 4,
    };

    static double Stage(RunEstimate run, string stage) => run.Stages.Single(s => s.Stage == stage).Seconds;

    [Fact]
    public void Sadag_estimate_matches_a_hand_computation()
    {
        // 40 images in 2 batches (quick's 32 + 8), 10 generation steps, 50 reconstruction steps (Q₀: 50 / 5 = 10).
        var options = new PipelineOptions
        {
            Method = CalibrationMethod.Sadag, Profile = StepProfile.Quick, Samples = 40, GenerationSteps = 10, ReconstructionSteps = 50,
        };
        var run = ProfileCost.Estimate(options, Times);

        Assert.Equal(["warm-up (Genie-D)", "reconstruction (Q0)", "refinement (SADAG)", "reconstruction", "layer sensitivity", "ONNX Runtime check"],
            run.Stages.Select(s => s.Stage));
        Assert.Equal(10 * (40 / 20.0) * 0.5, Stage(run, "warm-up (Genie-D)"), 9);       // 10
        Assert.Equal(10 * 0.6 + 40 * 0.01, Stage(run, "reconstruction (Q0)"), 9);       // 6.4
        Assert.Equal(10 * (40 / 20.0) * 2.0, Stage(run, "refinement (SADAG)"), 9);      // 40
        Assert.Equal(50 * 0.6 + 40 * 0.01, Stage(run, "reconstruction"), 9);            // 30.4
        Assert.Equal(40 * 0.01 + 5 * 40 * 0.002, Stage(run, "layer sensitivity"), 9);  // 0.8: calibration, 4 layers and the reference
        Assert.Equal(40 * 0.001, Stage(run, "ONNX Runtime check"), 9);                  // 0.04
        Assert.Equal(87.64, run.TotalSeconds, 9);
        Assert.DoesNotContain("layer sensitivity", ProfileCost.Estimate(options with { MeasureSensitivity = false }, Times).Stages.Select(s => s.Stage));
        var warmUp = run.Stages[0];
        Assert.Equal((10, 2), (warmUp.Steps, warmUp.Repeats));
        Assert.Equal((10, 3), (run.Stages[1].Steps, run.Stages[1].Repeats));
    }

    [Fact]
    public void Profiles_are_costed_with_their_own_step_counts()
    {
        foreach (var profile in Enum.GetValues<StepProfile>())
        {
            var g = GenerationOptions.Profile(profile);
            int reconstruction = PipelineOptions.ProfileReconstructionSteps(profile);
            double calibration = Math.Min(g.Images, new QuantizationOptions().ActivationCalibrationSamples) * 0.01;
            var options = new PipelineOptions { Profile = profile };
            // Generated images are not tuned on the output unless asked (below).
            Assert.Equal(0, (options with { Method = CalibrationMethod.Sadag }).ResolvedOutputTuningSteps);

            var sadag = ProfileCost.Estimate(options with { Method = CalibrationMethod.Sadag }, Times);
            Assert.Equal(g.WarmupSteps * (g.Images / 20.0) * 0.5, Stage(sadag, "warm-up (Genie-D)"), 6);
            Assert.Equal(Math.Max(1, reconstruction / 5) * 0.6 + calibration, Stage(sadag, "reconstruction (Q0)"), 6);
            Assert.Equal(g.RefinementSteps * (g.Images / 20.0) * 2.0, Stage(sadag, "refinement (SADAG)"), 6);
            Assert.Equal(reconstruction * 0.6 + calibration, Stage(sadag, "reconstruction"), 6);
            Assert.Equal(g.Images * 0.001, Stage(sadag, "ONNX Runtime check"), 6);

            var genie = ProfileCost.Estimate(options with { Method = CalibrationMethod.Genie }, Times);
            Assert.Equal(["warm-up (Genie-D)", "reconstruction", "layer sensitivity", "ONNX Runtime check"], genie.Stages.Select(s => s.Stage));
            var gaussian = ProfileCost.Estimate(options with { Method = CalibrationMethod.Gaussian }, Times);
            Assert.Equal(Stage(sadag, "reconstruction") + Stage(sadag, "layer sensitivity") + Stage(sadag, "ONNX Runtime check"), gaussian.TotalSeconds, 6);
            Assert.True(gaussian.TotalSeconds < genie.TotalSeconds && genie.TotalSeconds < sadag.TotalSeconds);
        }

        // The output tuning, when asked, after each reconstruction: one step of every block per tuning step.
        var plain = ProfileCost.Estimate(new PipelineOptions { Profile = StepProfile.Default }, Times);
        var tuned = ProfileCost.Estimate(new PipelineOptions { Profile = StepProfile.Default, OutputTuningSteps = 50 }, Times);
        Assert.Equal(Stage(plain, "reconstruction (Q0)") + 50 * 0.6, Stage(tuned, "reconstruction (Q0)"), 6);
        Assert.Equal(Stage(plain, "reconstruction") + 50 * 0.6, Stage(tuned, "reconstruction"), 6);

        // 100 more reconstruction steps (20 more for Q₀) cost 120 more steps of all blocks.
        var quick = ProfileCost.Estimate(new PipelineOptions { Profile = StepProfile.Quick }, Times);
        var more = ProfileCost.Estimate(new PipelineOptions { Profile = StepProfile.Quick, ReconstructionSteps = 200 }, Times);
        Assert.Equal(quick.TotalSeconds + (200 - 100) * 0.6 + (40 - 20) * 0.6, more.TotalSeconds, 6);
    }

    [Fact]
    public void Every_profile_and_method_is_estimated_once()
    {
        var runs = ProfileCost.EveryProfile(Times);
        Assert.Equal(Enum.GetValues<StepProfile>().Length * ProfileCost.Methods.Count, runs.Count);
        Assert.Equal(runs.Count, runs.Select(r => (r.Profile, r.Method)).Distinct().Count());
        Assert.Throws<ArgumentException>(() => ProfileCost.Estimate(new PipelineOptions { Method = CalibrationMethod.Real }, Times));
    }

    [Fact]
    public void Measure_times_every_block_and_the_runtime_check()
    {
        var model = OnnxModel.FromProto(TestModels.ResNet(seed: 3, width: 4, channels: 1, size: 8));
        int calls = 0;
        float[] Runtime(byte[] bytes, float[] images, long[] shape, CancellationToken _)
        {
            calls++;
            Thread.Sleep(5);
            return [];
        }
        var times = ProfileCost.Measure(model, new PipelineOptions(), Runtime, warmup: 1, timed: 2);

        var options = new PipelineOptions().Quantization();
        var fold = BatchNormFolding.FoldWithReport(model);
        using var q = new QuantizedGraph(fold.Model, options);
        int blocks = BlockPartition.Partition(q.Graph, q.QuantizedNodes.Contains).Count;
        Assert.Equal(blocks, times.BlockStepSeconds.Count);
        Assert.Equal(GenerationOptions.Quick.BatchSize, times.GenerationBatch);
        Assert.All(times.BlockStepSeconds, s => Assert.True(s > 0));
        Assert.True(times.GenieStepSeconds > 0 && times.RefinementStepSeconds > 0);
        Assert.True(times.CalibrationSecondsPerImage >= 0);
        Assert.Equal(2, calls);
        Assert.True(times.RuntimeSecondsPerImage >= 0.010 / times.GenerationBatch);
        Assert.True(times.MeasurementSeconds > 0);
        Assert.True(times.ForwardSecondsPerImage > 0);
        Assert.Equal(q.QuantizedNodes.Count, times.QuantizedLayers);
    }
}
