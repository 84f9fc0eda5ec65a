using System.Diagnostics;
using Sadg.Generation;
using TorchSharp;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace Sadg.Tests.Generation;

public class GradientFactorizationTests
{
    [Fact]
    public void TheFactorizedSimilarityEqualsTheCosineOfPerSampleWeightGradients()
    {
        using var scope = NewDisposeScope();
        using var random = new torch.Generator(7);
        const int n = 5, d = 12, k = 4;
        var weight = randn([k, d], generator: random);
        var bias = randn([k], generator: random);
        var a = randn([n, d], generator: random);
        var q = randn([n, k], generator: random);

        // Explicit: gradient of ½‖W a_i + b − q_i‖² with respect to W, one sample at a time.
        var gradients = new Tensor[n];
        for (int i = 0; i < n; i++)
        {
            var w = weight.clone().requires_grad_(true);
            var f = w.matmul(a[i]) + bias;
            var loss = 0.5 * (f - q[i]).square().sum();
            gradients[i] = autograd.grad([loss], [w])[0].flatten();
        }
        var g = stack(gradients);
        var inner = g.matmul(g.t());
        var cosine = inner / g.norm(1, keepdim: true).matmul(g.norm(1, keepdim: true).t());

        // Fast: e = f − q, (a_i·a_j)(e_i·e_j) and its normalized form.
        var e = a.matmul(weight.t()) + bias - q;
        Assert.True(GradientSimilarity.Matrix(a, e, a, e).allclose(inner, rtol: 1e-4, atol: 1e-4));
        var aHat = GradientSimilarity.NormalizeRows(a);
        var eHat = GradientSimilarity.NormalizeRows(e);
        var fast = GradientSimilarity.Matrix(aHat, eHat, aHat, eHat);
        Assert.True(fast.allclose(cosine, rtol: 1e-4, atol: 1e-5), $"max diff {(fast - cosine).abs().max().item<float>()}");
        Assert.True(GradientSimilarity.Paired(aHat, eHat, aHat, eHat).allclose(ones(n), atol: 1e-5));
    }

    [Fact]
    public void TheDiversityMatrixHasZeroSelfEntries()
    {
        using var scope = NewDisposeScope();
        using var random = new torch.Generator(3);
        var aHat = GradientSimilarity.NormalizeRows(randn([6, 8], generator: random));
        var eHat = GradientSimilarity.NormalizeRows(randn([6, 3], generator: random));
        var s = SharpnessAwareRefinement.SelfSimilarity(aHat, eHat);
        Assert.Equal(0f, s.diagonal().abs().max().item<float>());
        var full = GradientSimilarity.Matrix(aHat, eHat, aHat, eHat);
        Assert.True((s - full).abs().sum().item<float>() > 0);
        Assert.True((s + diag(full.diagonal())).allclose(full));
        // With ζ = 0 every row's largest |S_ij| counts; an identical batch in memory gives the maximum, 1.
        Assert.Equal(1f, SharpnessAwareRefinement.Diversity(aHat, eHat, aHat, eHat, 0).item<float>(), 4);
    }
}

public class GenerationQualityTests(ITestOutputHelper output)
{
    [Fact]
    public void QuickProfileMatchesBnStatisticsAndRefinementLowersSharpnessAndSimilarity()
    {
        using var fp = GenerationTestSupport.ResNet(channels: 1, size: 28);
        using var q0 = GenerationTestSupport.FourBitWeights(fp);
        // The quick profile's per-batch budget (100 warm-up, 20 refinement steps) on two batches of 16 (the second one
        // refined against the memory of the first).
        var options = GenerationOptions.Quick with { Images = 32, BatchSize = 16 };
        var log = new ProgressLog();
        var clock = Stopwatch.StartNew();
        using var images = SyntheticData.WarmUp(fp, options, log);
        double warmup = clock.Elapsed.TotalSeconds;
        SyntheticData.Refine(images, fp, q0, options, log);
        double total = clock.Elapsed.TotalSeconds;

        var bn = log.Series(GenerationStage.Warmup, 0, "bn");
        Assert.Equal(options.WarmupSteps, bn.Length);
        double start = bn[0], end = bn[^5..].Average();
        using var scope = NewDisposeScope();
        using var all = images.Images();
        Assert.Equal(new long[] { 32, 1, 28, 28 }, all.shape);
        long[] classes;
        using (no_grad()) classes = fp.forward(all).argmax(1).data<long>().ToArray();
        int distinct = classes.Distinct().Count();

        var gm = log.Series(GenerationStage.Refinement, 1, "gm");
        var div = log.Series(GenerationStage.Refinement, 1, "div");
        output.WriteLine($"L_BN {start:G4} -> {end:G4} ({100 * end / start:F1}%); classes {distinct}; " +
            $"L_GM {gm[..3].Average():G4} -> {gm[^3..].Average():G4}; L_div {div[..3].Average():G4} -> {div[^3..].Average():G4}; " +
            $"warm-up {warmup:F1}s, total {total:F1}s");
        Assert.True(end <= 0.1 * start, $"L_BN fell from {start} to {end} only.");
        Assert.True(distinct >= 3, $"The batch collapsed to {distinct} classes.");
        Assert.True(gm[^3..].Average() < gm[..3].Average(), "L_GM did not fall.");
        Assert.True(div[^3..].Average() < div[..3].Average(), "L_div did not fall.");
        Assert.True(images.Refined);
    }
}
