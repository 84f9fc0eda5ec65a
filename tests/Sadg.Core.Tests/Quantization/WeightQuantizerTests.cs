using Sadg.Quantization;
using TorchSharp;
using static TorchSharp.torch;

namespace Sadg.Tests.Quantization;

/// <summary>
/// The per-channel AdaRound weight quantizer, checked against explicit reference computations: the clip-ratio
/// search, nearest rounding, the AdaRound initialization, gradients, the rounding loss, β, and the exported integers.
/// </summary>
public class WeightQuantizerTests
{
    static bool SameValues(Tensor a, Tensor b) => a.shape.SequenceEqual(b.shape) && a.eq(b).all().item<bool>();

    static Tensor Randn(long seed, params long[] shape) => randn(shape, generator: new Generator(0).manual_seed(seed));

    /// <summary>The reference search for one channel, in double: the error mean |w − Q(w)|^2.4 of every ratio.</summary>
    static double[] ReferenceErrors(float[] w, int bits)
    {
        long levels = (1L << bits) - 1;
        double min = Math.Min(w.Min(), 0), max = Math.Max(w.Max(), 0);
        var errors = new double[100];
        for (int i = 0; i < 100; i++)
        {
            double r = (100 - i) / 100.0;
            double lo = min * r, hi = max * r;
            double s = (hi - lo) / levels;
            double z = Math.Clamp(Math.Round(-lo / s, MidpointRounding.ToEven), 0, levels);
            errors[i] = w.Average(v => Math.Pow(Math.Abs(v - s * (Math.Clamp(Math.Round(v / s, MidpointRounding.ToEven) + z, 0, levels) - z)), 2.4));
        }
        return errors;
    }

    static double ErrorOfScale(float[] w, double s, double z, int bits)
    {
        long levels = (1L << bits) - 1;
        return w.Average(v => Math.Pow(Math.Abs(v - s * (Math.Clamp(Math.Round(v / s, MidpointRounding.ToEven) + z, 0, levels) - z)), 2.4));
    }

    [Fact]
    public void ClipSearchPicksARatioBelowOneForWeightsWithOutliers()
    {
        using var scope = NewDisposeScope();
        var w = Randn(1, 6, 200) * 0.1f;
        w[TensorIndex.Colon, 0] = tensor(new float[] { 3f, -2.5f, 4f, 2f, -3f, 5f });
        using var q = new WeightQuantizer(w, bits: 4);
        var s = q.Scale.detach();
        for (int c = 0; c < 6; c++)
        {
            var row = w[c].data<float>().ToArray();
            double fullRange = (Math.Max(row.Max(), 0) - Math.Min(row.Min(), 0)) / 15;
            double chosen = s[c].item<float>();
            Assert.True(chosen < 0.99 * fullRange, $"channel {c}: s = {chosen}, the unclipped s = {fullRange}");
            // The chosen range is as good as the best ratio of the reference search.
            var reference = ReferenceErrors(row, 4);
            double best = reference.Min();
            double mine = ErrorOfScale(row, chosen, q.ZeroPoint[c].item<float>(), 4);
            Assert.True(mine <= best * (1 + 1e-3) + 1e-12, $"channel {c}: error {mine} > reference best {best}");
            Assert.True(best < reference[0], "the reference itself prefers clipping");
        }
    }

    /// <summary>Weights already on a 16-level grid spanning [min, max] are represented exactly only by ratio 1.</summary>
    [Fact]
    public void ClipSearchKeepsRatioOneForUniformGridWeights()
    {
        using var scope = NewDisposeScope();
        var levels = randint(0, 16, [5, 64], generator: new Generator(0).manual_seed(2)).to_type(ScalarType.Float32);
        levels[TensorIndex.Colon, 0] = 0f;
        levels[TensorIndex.Colon, 1] = 15f;
        var step = tensor(new float[] { 0.01f, 0.02f, 0.05f, 0.1f, 0.3f }).reshape(5, 1);
        var w = (levels - 6f) * step;
        using var q = new WeightQuantizer(w, bits: 4);
        var s = q.Scale.detach();
        for (int c = 0; c < 5; c++)
        {
            var row = w[c].data<float>().ToArray();
            double fullRange = (row.Max() - row.Min()) / 15.0;
            Assert.Equal(fullRange, s[c].item<float>(), fullRange * 1e-5);
            Assert.Equal(6f, q.ZeroPoint[c].item<float>());
        }
        q.Mode = WeightRoundingMode.Nearest;
        var error = (q.forward() - w).abs().max().item<float>();
        Assert.True(error < 1e-6, $"grid weights are not reproduced: max error {error}");
    }

    [Fact]
    public void EightBitNearestRoundingErrorIsTiny()
    {
        using var scope = NewDisposeScope();
        var w = Randn(3, 16, 3, 3, 3) * 0.2f;
        using var q = new WeightQuantizer(w, bits: 8) { Mode = WeightRoundingMode.Nearest };
        var error = q.forward() - w;
        double relative = (error.square().mean().sqrt() / w.square().mean().sqrt()).item<float>();
        Assert.True(relative < 0.01, $"W8 relative RMS error {relative}");
        // Within the clipped range every element is off by at most s/2.
        var s = q.Scale.detach().reshape(16, 1, 1, 1);
        var z = q.ZeroPoint.reshape(16, 1, 1, 1);
        var inRange = (w / s).round().add(z).ge(0).logical_and((w / s).round().add(z).le(255));
        Assert.True(error.abs().le(s * 0.5001).logical_or(inRange.logical_not()).all().item<bool>());
    }

    [Theory]
    [InlineData(2)]
    [InlineData(3)]
    [InlineData(4)]
    [InlineData(8)]
    public void ExportedIntegersLieInRangeAndDequantizeToTheHardForward(int bits)
    {
        using var scope = NewDisposeScope();
        var w = Randn(4, 8, 4, 3, 3);
        using var q = new WeightQuantizer(w, bits);
        // Move V away from its initialization so Hard differs from Nearest somewhere.
        using (no_grad()) q.RoundingVariable.add_(Randn(5, 8, 4, 3, 3));
        var exported = q.Export("conv", "conv_w");
        Assert.Equal("conv", exported.Node);
        Assert.Equal("conv_w", exported.Weight);
        Assert.Equal(bits, exported.Bits);
        Assert.Equal(0, exported.Axis);
        Assert.Equal(ScalarType.Int64, exported.Integers.dtype);
        Assert.Equal(w.shape, exported.Integers.shape);
        Assert.Equal([8L], exported.Scale.shape);
        long max = (1L << bits) - 1;
        Assert.True(exported.Integers.min().item<long>() >= 0 && exported.Integers.max().item<long>() <= max);
        Assert.True(exported.ZeroPoint.min().item<long>() >= 0 && exported.ZeroPoint.max().item<long>() <= max);

        q.Mode = WeightRoundingMode.Hard;
        var hard = q.forward().detach();
        Assert.True(SameValues(exported.Dequantize(), hard), "Dequantize() differs from the Hard-mode forward");
        // And both follow the formula s · (clamp(floor(w/s) + [V ≥ 0] + z, 0, 2^b − 1) − z).
        var s = q.Scale.detach().reshape(8, 1, 1, 1);
        var z = q.ZeroPoint.reshape(8, 1, 1, 1);
        var reference = s * ((w / s).floor() + q.RoundingVariable.detach().ge(0).to_type(ScalarType.Float32) + z).clamp(0, max).sub(z);
        Assert.True(reference.allclose(hard, rtol: 0, atol: 1e-7));
    }

    /// <summary>MatMul weights ([K, N], channels along axis 1) quantize like their transpose along axis 0.</summary>
    [Fact]
    public void AxisOneMatchesTheTransposeAlongAxisZero()
    {
        using var scope = NewDisposeScope();
        var w = Randn(6, 32, 10);
        using var byColumn = new WeightQuantizer(w, 4, axis: 1) { Mode = WeightRoundingMode.Hard };
        using var byRow = new WeightQuantizer(w.t().contiguous(), 4, axis: 0) { Mode = WeightRoundingMode.Hard };
        Assert.True(byColumn.Scale.detach().allclose(byRow.Scale.detach()));
        Assert.True(byColumn.forward().detach().allclose(byRow.forward().detach().t()));
        var exported = byColumn.Export("matmul", "w");
        Assert.Equal(1, exported.Axis);
        Assert.True(SameValues(exported.Dequantize(), byColumn.forward().detach()));
    }

    [Fact]
    public void AdaRoundInitializationMakesHEqualTheFractionalPart()
    {
        using var scope = NewDisposeScope();
        var w = Randn(7, 8, 50);
        using var q = new WeightQuantizer(w, 4);
        var s = q.Scale.detach().reshape(8, 1);
        var z = q.ZeroPoint.reshape(8, 1);
        var frac = w / s - (w / s).floor();
        var h = q.SoftOffset().detach();
        Assert.True((h - frac).abs().max().item<float>() < 1e-5, "h(V) is not frac(w/s) at initialization");

        var soft = q.forward().detach();
        var reference = s * ((w / s).floor() + frac + z).clamp(0, 15).sub(z);
        Assert.True((soft - reference).abs().le(s * 1e-5).all().item<bool>());
        // Before clamping floor + frac = w/s, so in range the soft weight is the weight itself.
        var inRange = (w / s + z).ge(0).logical_and((w / s + z).le(15));
        Assert.True((soft - w).abs().le(s * 1e-5).logical_or(inRange.logical_not()).all().item<bool>());
        Assert.True(inRange.to_type(ScalarType.Float32).mean().item<float>() > 0.9f);
    }

    /// <summary>h ≥ 0.5 ⇔ V ≥ 0 ⇔ frac ≥ 0.5: at initialization Hard rounding is rounding to nearest (away from exact ties).</summary>
    [Fact]
    public void HardRoundingAtInitializationIsNearestRounding()
    {
        using var scope = NewDisposeScope();
        var w = Randn(8, 8, 3, 3, 3);
        using var q = new WeightQuantizer(w, 4);
        var s = q.Scale.detach().reshape(8, 1, 1, 1);
        var frac = w / s - (w / s).floor();
        q.Mode = WeightRoundingMode.Hard;
        var hard = q.forward().detach();
        q.Mode = WeightRoundingMode.Nearest;
        var nearest = q.forward().detach();
        var awayFromTies = (frac - 0.5).abs().gt(1e-4);
        Assert.True(hard.eq(nearest).logical_or(awayFromTies.logical_not()).all().item<bool>());
        Assert.True(awayFromTies.all().item<bool>() || awayFromTies.to_type(ScalarType.Float32).mean().item<float>() > 0.99f);
    }

    [Fact]
    public void SoftModeGradientsReachVAndS()
    {
        using var scope = NewDisposeScope();
        var w = Randn(9, 4, 20);
        using var q = new WeightQuantizer(w, 4) { Mode = WeightRoundingMode.Soft };
        var target = Randn(10, 4, 20);
        (q.forward() - target).square().sum().backward();
        Assert.NotNull(q.RoundingVariable.grad);
        Assert.NotNull(q.Scale.grad);
        Assert.True(q.RoundingVariable.grad!.abs().max().item<float>() > 0);
        Assert.True(q.Scale.grad!.abs().min().item<float>() > 0, "some channel's scale got no gradient");
    }

    [Fact]
    public void RoundingLossFollowsItsFormulaAndVanishesForDecidedV()
    {
        using var scope = NewDisposeScope();
        var w = Randn(11, 3, 40);
        using var q = new WeightQuantizer(w, 3);
        // V = 0 → h = 0.5 → each element contributes 1 − 0^β = 1.
        using (no_grad()) q.RoundingVariable.zero_();
        Assert.Equal(120.0, q.RoundingLoss(2).item<float>(), 3);

        using (no_grad()) q.RoundingVariable.copy_(Randn(12, 3, 40));
        var h = q.SoftOffset().detach();
        double reference = (1 - (2 * h - 1).abs().pow(5)).sum().item<float>();
        double before = q.RoundingLoss(5).item<float>();
        Assert.Equal(reference, before, 3);

        using (no_grad()) q.RoundingVariable.copy_(q.RoundingVariable.sign() * 20);
        double after = q.RoundingLoss(5).item<float>();
        Assert.True(after < before && after < 1e-3, $"rounding loss {before} → {after}");
    }

    [Fact]
    public void RoundingLossDescentDecidesTheRounding()
    {
        using var scope = NewDisposeScope();
        using var q = new WeightQuantizer(Randn(13, 4, 30), 4);
        using var optimizer = optim.Adam([q.RoundingVariable], 0.05);
        double first = q.RoundingLoss(2).item<float>();
        for (int i = 0; i < 200; i++)
        {
            using var step = NewDisposeScope();
            optimizer.zero_grad();
            q.RoundingLoss(2).backward();
            optimizer.step();
        }
        double last = q.RoundingLoss(2).item<float>();
        Assert.True(last < 0.5 * first, $"rounding loss {first} → {last}");
    }

    [Fact]
    public void BetaIsHeldDuringWarmUpThenAnnealsFromTwentyToTwo()
    {
        Assert.True(WeightQuantizer.InWarmUp(0, 1000));
        Assert.True(WeightQuantizer.InWarmUp(199, 1000));
        Assert.False(WeightQuantizer.InWarmUp(200, 1000));
        Assert.Equal(20.0, WeightQuantizer.Beta(0, 1000));
        Assert.Equal(20.0, WeightQuantizer.Beta(200, 1000), 9);
        Assert.Equal(2.0, WeightQuantizer.Beta(999, 1000), 9);
        // Halfway through the annealing (step 599.5 of [200, 999]) β is halfway between 20 and 2.
        Assert.InRange(WeightQuantizer.Beta(599, 1000), 11.0, 11.05);
        double previous = double.PositiveInfinity;
        for (int step = 200; step < 1000; step++)
        {
            double beta = WeightQuantizer.Beta(step, 1000);
            Assert.True(beta <= previous && beta >= 2 && beta <= 20);
            previous = beta;
        }
        Assert.Throws<ArgumentOutOfRangeException>(() => WeightQuantizer.Beta(1000, 1000));
    }

    [Theory]
    [InlineData(1)]
    [InlineData(9)]
    [InlineData(0)]
    public void BitsOutsideTwoToEightAreRejected(int bits)
    {
        using var scope = NewDisposeScope();
        var e = Assert.Throws<ArgumentOutOfRangeException>(() => new WeightQuantizer(Randn(1, 2, 3), bits));
        Assert.Contains("2 to 8 bits", e.Message);
        var a = Assert.Throws<ArgumentOutOfRangeException>(() => new ActivationQuantizer(bits));
        Assert.Contains("2 to 8 bits", a.Message);
    }

    [Fact]
    public void ParametersOutliveTheScopeTheQuantizerWasBuiltIn()
    {
        WeightQuantizer q;
        using (NewDisposeScope()) q = new WeightQuantizer(Randn(14, 4, 8), 4);
        using (q)
        {
            using var scope = NewDisposeScope();
            Assert.Equal([4L], q.Scale.shape);
            Assert.Equal([4L, 8L], q.RoundingVariable.shape);
            Assert.True(q.forward().isfinite().all().item<bool>());
            Assert.Equal(2, q.parameters().Count());
        }
    }
}
