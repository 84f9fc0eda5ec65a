using Sadg.Quantization;
using TorchSharp;
using static TorchSharp.torch;

namespace Sadg.Tests.Quantization;

/// <summary>
/// 500 reconstruction-like steps (forward, rounding loss, backward, Adam) of both quantizers, each step inside its
/// own dispose scope, leave TorchSharp's live tensor count where it was.
/// </summary>
[Collection(nameof(QuantizerMemoryTests))]
public class QuantizerMemoryTests
{
    [Fact]
    public void TrainingStepsInDisposeScopesLeaveNoLiveTensors()
    {
        var stats = DisposeScopeManager.Statistics.TensorStatistics;
        using var weight = randn([8, 4, 3, 3], generator: new Generator(0).manual_seed(1));
        using var input = randn([2, 4, 6, 6], generator: new Generator(0).manual_seed(2));
        using var target = randn([2, 8, 4, 4], generator: new Generator(0).manual_seed(3));
        using var wq = new WeightQuantizer(weight, 4) { Mode = WeightRoundingMode.Soft };
        using var aq = new ActivationQuantizer(4);
        aq.Calibrate(input);
        aq.Training = true;
        aq.Generator = new Generator(0).manual_seed(4);
        using var optimizer = optim.Adam([wq.Scale, wq.RoundingVariable, aq.Scale], 1e-3);

        void Step(int i)
        {
            using var scope = NewDisposeScope();
            optimizer.zero_grad();
            var y = nn.functional.conv2d(aq.forward(input), wq.forward());
            var loss = (y - target).square().mean();
            if (!WeightQuantizer.InWarmUp(i, 500)) loss = loss + wq.RoundingLoss(WeightQuantizer.Beta(i, 500)) * 1e-3;
            loss.backward();
            optimizer.step();
        }

        Step(0); // Adam's state is created on the first step.
        long before = stats.ThreadTotalLiveCount;
        for (int i = 1; i < 500; i++) Step(i);
        Assert.True(before == stats.ThreadTotalLiveCount, $"live tensors {before} before the loop, after: {stats}");
        using (NewDisposeScope()) Assert.True(wq.RoundingVariable.isfinite().all().item<bool>());

        using (NewDisposeScope()) wq.Export("conv", "w");
        Assert.Equal(before, stats.ThreadTotalLiveCount);
        using (NewDisposeScope()) _ = aq.Export("x");
        Assert.Equal(before, stats.ThreadTotalLiveCount);
    }
}

/// <summary>Runs <see cref="QuantizerMemoryTests"/> alone, so no other test shares its thread's statistics.</summary>
[CollectionDefinition(nameof(QuantizerMemoryTests), DisableParallelization = true)]
public class QuantizerMemoryCollection;
