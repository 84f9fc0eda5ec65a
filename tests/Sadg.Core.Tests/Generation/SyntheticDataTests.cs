using Sadg.Generation;
using Sadg.Graph;
using SkiaSharp;
using TorchSharp;
using static TorchSharp.torch;

namespace Sadg.Tests.Generation;

public class SyntheticDataTests
{
    static Tensor Sadag(GraphModule fp, GraphModule q0, GenerationOptions options, IProgress<GenerationProgress>? progress = null) =>
        SyntheticData.Generate(fp, GenerationMethod.Sadag, options, _ => q0, progress);

    [Fact]
    public void GenerationKeepsTheLiveTensorCountFlat()
    {
        using var fp = GenerationTestSupport.ResNet(channels: 3, size: 32);
        using var q0 = GenerationTestSupport.FourBitWeights(fp);
        var options = GenerationTestSupport.Tiny();
        var log = new ProgressLog();
        Sadag(fp, q0, options, log).Dispose();
        long before = DisposeScopeManager.Statistics.TensorStatistics.ThreadTotalLiveCount;
        Sadag(fp, q0, options, log).Dispose();
        SyntheticData.Generate(fp, GenerationMethod.GenieD, options).Dispose();
        SyntheticData.Generate(fp, GenerationMethod.GaussianNoise, options).Dispose();
        long after = DisposeScopeManager.Statistics.TensorStatistics.ThreadTotalLiveCount;
        Assert.Equal(before, after);
        Assert.Contains(log.Reports, r => r.Stage == GenerationStage.Refinement);
    }

    /// <summary>
    /// Nothing of a finished loop stays beyond what later steps use: a warm-up leaves no gradient on its generators
    /// and latents (at 224² a generator's is 103 MB, and every pending batch kept one), and a refined batch holds only
    /// its images (its generator would otherwise sit beside the one being refined).
    /// </summary>
    [Fact]
    public void FinishedLoopsKeepNoGradientsAndRefinedBatchesNoGenerator()
    {
        using var fp = GenerationTestSupport.ResNet(channels: 3, size: 32);
        using var q0 = GenerationTestSupport.FourBitWeights(fp);
        var options = GenerationTestSupport.Tiny();
        using var warm = SyntheticData.WarmUp(fp, options);
        Assert.Equal(2, warm.Batches.Count);
        foreach (var batch in warm.Batches)
        {
            Assert.True(batch.HasGenerator);
            Assert.All(batch.Generator.parameters(), p => Assert.Null(p.grad));
            Assert.Null(batch.Latent.grad);
        }

        using var copy = warm.Copy();
        long before = DisposeScopeManager.Statistics.TensorStatistics.ThreadTotalLiveCount;
        int held = copy.Batches.Sum(b => b.Generator.parameters().Count() + b.Generator.buffers().Count() + 1);
        SyntheticData.Refine(copy, fp, q0, options);
        Assert.All(copy.Batches, b => Assert.False(b.HasGenerator));
        Assert.Throws<InvalidOperationException>(() => copy.Batches[0].Generator);
        // Every refined batch let go of its generator's parameters and buffers and its latents, and took nothing else.
        Assert.Equal(before - held, DisposeScopeManager.Statistics.TensorStatistics.ThreadTotalLiveCount);
        using var images = copy.Images();
        using var again = copy.Copy().Images();
        Assert.True(images.eq(again).all().item<bool>());
        using var unrefined = warm.Images();
        Assert.False(images.allclose(unrefined), "Refinement left the images as they were.");
    }

    [Fact]
    public void TheSameSeedGivesTheSameImagesAndAnotherSeedOthers()
    {
        using var fp = GenerationTestSupport.ResNet(channels: 3, size: 32);
        using var q0 = GenerationTestSupport.FourBitWeights(fp);
        using var scope = NewDisposeScope();
        var first = Sadag(fp, q0, GenerationTestSupport.Tiny(seed: 5));
        var again = Sadag(fp, q0, GenerationTestSupport.Tiny(seed: 5));
        var other = Sadag(fp, q0, GenerationTestSupport.Tiny(seed: 6));
        Assert.Equal(new long[] { 8, 3, 32, 32 }, first.shape);
        Assert.True(first.equal(again).all().item<bool>(), "The same seed gave different images.");
        Assert.False(first.allclose(other), "Another seed gave the same images.");
        var noise = SyntheticData.Generate(fp, GenerationMethod.GaussianNoise, GenerationTestSupport.Tiny(seed: 5));
        Assert.True(noise.equal(SyntheticData.GaussianNoise(fp, 8, 5)).all().item<bool>());
        Assert.Equal(first.shape, noise.shape);
    }

    [Theory]
    [InlineData(NeighbourMode.Paper)]
    [InlineData(NeighbourMode.Raw)]
    public void EveryNeighbourModeRefines(NeighbourMode mode)
    {
        using var fp = GenerationTestSupport.ResNet(channels: 1, size: 28);
        using var q0 = GenerationTestSupport.FourBitWeights(fp);
        var log = new ProgressLog();
        using var images = Sadag(fp, q0, GenerationTestSupport.Tiny() with { Neighbour = mode, Images = 4 }, log);
        Assert.Equal(new long[] { 4, 1, 28, 28 }, images.shape);
        var gm = log.Series(GenerationStage.Refinement, 0, "gm");
        Assert.Equal(3, gm.Length);
        Assert.All(gm, v => Assert.True(double.IsFinite(v) && v >= -1e-5 && v <= 2, $"L_GM = {v}"));
    }

    [Fact]
    public void ABatchNormFreeModelTakesTheFallbackAndSaysSoOnce()
    {
        using var fp = GenerationTestSupport.ResNet(channels: 1, size: 28, batchNorm: false);
        using var q0 = GenerationTestSupport.FourBitWeights(fp);
        Assert.DoesNotContain(fp.Nodes, n => n.OpType == "BatchNormalization");
        var log = new ProgressLog();
        var options = GenerationTestSupport.Tiny() with { WarmupSteps = 30 };
        using var warm = SyntheticData.WarmUp(fp, options, log);
        SyntheticData.Refine(warm, fp, q0, options, log);
        using var images = warm.Images();
        Assert.Equal(new long[] { 8, 1, 28, 28 }, images.shape);
        Assert.False(warm.UsedBatchNormStatistics);
        var warnings = log.Reports.Where(r => r.Warning is not null).Select(r => r.Warning!).ToList();
        Assert.Equal([SadgErrorCode.NoBatchNormStatistics], warnings.Select(w => w.Code));
        var messages = warnings.Select(w => w.Message).ToList();
        Assert.Equal([StatisticsFreeLoss.NoBatchNormWarning], messages);
        Assert.Equal(StatisticsFreeLoss.NoBatchNormWarning, warm.Warning);
        Assert.Contains("BatchNormalization", messages[0]);
        var ce = log.Series(GenerationStage.Warmup, 0, "ce");
        Assert.Equal(30, ce.Length);
        Assert.True(ce[^5..].Average() < ce[..5].Average(), $"Cross-entropy to the targets did not fall: {ce[0]} → {ce[^1]}.");
        Assert.DoesNotContain(log.Reports, r => r.Losses.ContainsKey("bn"));
        Assert.Contains(log.Reports, r => r.Stage == GenerationStage.Refinement && r.Losses.ContainsKey("div"));
    }

    [Theory]
    [InlineData(1, 28, 28)]
    [InlineData(3, 32, 32)]
    [InlineData(3, 30, 27)]
    public void TheGeneratorMakesTheModelsInputShape(int channels, int height, int width)
    {
        using var generator = new GenieGenerator(channels, height, width, 16, 8, seed: 1);
        using var scope = NewDisposeScope();
        var x = generator.forward(randn(4, 16));
        Assert.Equal(new long[] { 4, channels, height, width }, x.shape);
        // Linear, two convolutions and two affine batch norms, each a weight and a bias: all trained.
        Assert.Equal(10, generator.parameters().Count());
        // Batch-normalized output without affine: per channel mean 0, std 1 over the batch.
        Assert.True(x.mean([0, 2, 3]).abs().max().item<float>() < 1e-4);
    }

    [Fact]
    public void TheGeneratorShowsTheModelImagesAtItsExpectedInputStatistics()
    {
        var expected = InputPrior.FromRange(0, 1, 3, "x/255");
        using var generator = new GenieGenerator(3, 32, 32, 16, 8, seed: 1, output: expected);
        using var copy = generator.Copy();
        using var scope = NewDisposeScope();
        var z = randn(16, 16, generator: new torch.Generator(2));
        var x = generator.forward(z);
        // The batch's per-channel mean and std are the expected input's (x/255: about 0.46 and 0.23), not 0 and 1.
        Assert.Equal(expected.Mean, x.mean([0, 2, 3]).data<float>().ToArray(), (a, b) => Math.Abs(a - b) < 1e-4);
        Assert.Equal(expected.Std, x.std([0, 2, 3], unbiased: false).data<float>().ToArray(), (a, b) => Math.Abs(a - b) < 1e-3);
        Assert.True(copy.forward(z).eq(x).all().item<bool>(), "a copy keeps the output statistics");
        Assert.Throws<ArgumentException>(() => new GenieGenerator(1, 28, 28, 16, 8, seed: 1, output: expected));
        // A standardized prior (mean 0, std 1) leaves Genie's images exactly as they were.
        using var genie = new GenieGenerator(3, 32, 32, 16, 8, seed: 1);
        using var standardized = new GenieGenerator(3, 32, 32, 16, 8, seed: 1, output: InputPrior.Standardized(3, "metadata"));
        Assert.True(standardized.forward(z).eq(genie.forward(z)).all().item<bool>());
    }

    [Fact]
    public void WarmUpImagesTakeThePriorsRangeUnlessTheAblationPutsBackStandardizedOutput()
    {
        using var fp = GenerationTestSupport.ResNet(channels: 3, size: 32);
        var prior = InputPrior.FromRange(0, 1, 3, "x/255");
        var options = GenerationTestSupport.Tiny() with { InputPrior = prior };
        using var images = SyntheticData.Generate(fp, GenerationMethod.GenieD, options);
        using var standardized = SyntheticData.Generate(fp, GenerationMethod.GenieD,
            options with { Ablation = MethodAblation.StandardizedGeneratorOutput });
        using var scope = NewDisposeScope();
        // Each batch is at the prior's mean (so is the whole set); Genie's output alone is at 0.
        Assert.Equal(prior.Mean, images.mean([0, 2, 3]).data<float>().ToArray(), (a, b) => Math.Abs(a - b) < 1e-4);
        Assert.True(standardized.mean([0, 2, 3]).abs().max().item<float>() < 1e-4);
    }

    [Theory]
    [InlineData(5, 3, 7, 6)]
    [InlineData(8, 16, 4, 4)]
    public void TheLowResolutionUpsampledConvolutionIsUpsamplingThenConvolution(int inChannels, int outChannels, int height, int width)
    {
        using var scope = NewDisposeScope();
        var generator = new torch.Generator(11);
        var x = randn([2, inChannels, height, width], generator: generator).requires_grad_();
        var weight = randn([outChannels, inChannels, 3, 3], generator: generator).requires_grad_();
        var bias = randn([outChannels], generator: generator).requires_grad_();
        var upstream = randn([2, outChannels, 2 * height, 2 * width], generator: generator);

        (Tensor y, Tensor[] grads) Run(Func<Tensor> f)
        {
            var y = f();
            var grads = autograd.grad([(y * upstream).sum()], [x, weight, bias]).ToArray();
            return (y.detach(), grads);
        }
        var (reference, referenceGrads) = Run(() => nn.functional.conv2d(
            nn.functional.interpolate(x, scale_factor: [2.0, 2.0], mode: InterpolationMode.Nearest), weight, bias, padding: [1, 1]));
        var (low, lowGrads) = Run(() => GenieGenerator.UpsampledConvolution(x, weight, bias));

        Assert.Equal(reference.shape, low.shape);
        Assert.True(low.allclose(reference, rtol: 1e-5, atol: 1e-5), $"max |Δ| {(low - reference).abs().max().item<float>()}");
        for (int i = 0; i < 3; i++)
            Assert.True(lowGrads[i].allclose(referenceGrads[i], rtol: 1e-4, atol: 1e-4),
                $"gradient {i}: max |Δ| {(lowGrads[i] - referenceGrads[i]).abs().max().item<float>()}");
    }

    [Fact]
    public void SwingConvolutionShiftsOnlyTheStridedConvolutionsInput()
    {
        using var fp = GenerationTestSupport.ResNet(channels: 3, size: 32);
        using var scope = NewDisposeScope();
        var x = randn(2, 3, 32, 32);
        Tensor plain;
        using (no_grad()) plain = fp.forward(x);
        var strided = fp.Nodes.Where(n => n.OpType == "Conv" && n.Proto.Attribute.Any(a => a.Name == "strides" && a.Ints.Any(s => s > 1))).ToList();
        using (var swing = new SwingConvolution(fp, seed: 3))
        {
            Assert.Equal(strided.Count, swing.Convolutions);
            bool changed = false;
            using (no_grad())
                for (int i = 0; i < 5 && !changed; i++) changed = !fp.forward(x).allclose(plain);
            Assert.True(changed, "Swing convolution never moved a strided convolution's input.");
        }
        using (no_grad()) Assert.True(fp.forward(x).allclose(plain), "Disposing swing convolution did not remove it.");
    }

    [Fact]
    public void TheImageGridIsAValidPng()
    {
        using var fp = GenerationTestSupport.ResNet(channels: 1, size: 28);
        using var scope = NewDisposeScope();
        string dir = Path.Combine(Path.GetTempPath(), $"sadg-grid-{Guid.NewGuid():N}");
        try
        {
            var images = GenerationTestSupport.SmoothImages(10, 1, 28, 3);
            string gray = Path.Combine(dir, "gray.png");
            ImageGrid.Save(fp, images, gray, columns: 4);
            using (var decoded = SKBitmap.Decode(gray))
            {
                Assert.NotNull(decoded);
                // 28 px tiles scaled ×2 (56), a 9 px label row, 2 px gaps: 4 columns, 3 rows.
                Assert.Equal(2 + 4 * (56 + 2), decoded.Width);
                Assert.Equal(2 + 3 * (56 + 9 + 2), decoded.Height);
                // The label row of the first tile has dark pixels (the class index was drawn).
                bool labelled = Enumerable.Range(2, 20).Any(x => Enumerable.Range(2 + 56, 9).Any(y => decoded.GetPixel(x, y).Red < 128));
                Assert.True(labelled, "No label was drawn.");
            }
            string rgb = Path.Combine(dir, "rgb.png");
            ImageGrid.Save(randn(3, 3, 32, 32), [1, 22, 333], rgb);
            using (var decoded = SKBitmap.Decode(rgb))
            {
                Assert.Equal(2 + 3 * (64 + 2), decoded.Width);
                Assert.Equal(2 + 64 + 9 + 2, decoded.Height);
            }
        }
        finally
        {
            if (Directory.Exists(dir)) Directory.Delete(dir, recursive: true);
        }
    }
}
