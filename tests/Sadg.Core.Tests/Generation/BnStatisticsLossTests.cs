using Sadg.Generation;
using TorchSharp;
using static TorchSharp.torch;

namespace Sadg.Tests.Generation;

public class BnStatisticsLossTests
{
    /// <summary>
    /// L_BN = Σ_layers ‖mean − μ‖²/C + ‖std − σ‖²/C with the batch statistics over N, H, W of each BatchNormalization
    /// node's input, recomputed here from the captured inputs (channel by channel) with their gradient.
    /// </summary>
    [Fact]
    public void TheStatisticsTermAndItsGradientMatchTheDefinition()
    {
        using var fp = GenerationTestSupport.ResNet(channels: 1, size: 28);
        using var loss = new BnStatisticsLoss(fp, prior: null);
        var bnNodes = fp.Nodes.Where(n => n.OpType == "BatchNormalization").ToList();
        Assert.True(loss.Layers >= 3);
        Assert.Equal(bnNodes.Count, loss.Layers);
        using var capture = fp.Capture(bnNodes.Select(n => n.Inputs[0]));
        using var scope = NewDisposeScope();
        using var random = new torch.Generator(4);
        var images = randn([5, 1, 28, 28], generator: random).requires_grad_(true);

        fp.forward(images);
        var term = loss.Statistics();
        var gradient = autograd.grad([term], [images], retain_graph: true)[0];

        Tensor? expected = null;
        foreach (var node in bnNodes)
        {
            var x = capture[node.Inputs[0]];
            var mu = fp.GetConstant(node.Inputs[3])!;
            var sigma = fp.GetConstant(node.Inputs[4])!.Add(1e-5).sqrt();
            long c = x.shape[1];
            var channels = Enumerable.Range(0, (int)c).Select(i => x[.., i].flatten()).ToArray();
            var mean = stack(channels.Select(v => v.mean()).ToArray());
            var std = stack(channels.Select(v => (v - v.mean()).square().mean().Add(1e-8).sqrt()).ToArray());
            var layer = (mean - mu).square().sum().Div(c) + (std - sigma).square().sum().Div(c);
            expected = expected is null ? layer : expected + layer;
        }
        var expectedGradient = autograd.grad([expected!], [images])[0];
        Assert.Equal(expected!.item<float>(), term.item<float>(), 4);
        Assert.True(gradient.allclose(expectedGradient, rtol: 1e-3, atol: 1e-7),
            $"max gradient difference {(gradient - expectedGradient).abs().max().item<float>():G3}");
    }

    /// <summary>
    /// Each BN input is reduced by a hook as it is produced, not captured for later: the run keeps no BN input beyond
    /// what autograd needs (so the backward pass reaches each reduction right before its layer; see
    /// docs/benchmarks/mobilenet-224-quick.md for what that saves at 224²).
    /// </summary>
    [Fact]
    public void The_statistics_keep_no_BN_input_after_the_run()
    {
        using var fp = GenerationTestSupport.ResNet(channels: 3, size: 32);
        int inputs = fp.Nodes.Where(n => n.OpType == "BatchNormalization").Select(n => n.Inputs[0]).Distinct().Count();
        var images = randn(2, 3, 32, 32);
        using var noGrad = no_grad();
        long Live() => DisposeScopeManager.Statistics.TensorStatistics.ThreadTotalLiveCount;

        long plain;
        using (NewDisposeScope())
        {
            long before = Live();
            fp.forward(images);
            plain = Live() - before;
        }
        using var loss = new BnStatisticsLoss(fp, prior: null);
        using var scope = NewDisposeScope();
        long start = Live();
        fp.forward(images);
        long withStatistics = Live() - start;
        // Two small tensors per BN input (its variance and mean), none activation-sized.
        Assert.Equal(plain + 2 * inputs, withStatistics);
        Assert.True(loss.Statistics().item<float>() > 0);
    }
}
